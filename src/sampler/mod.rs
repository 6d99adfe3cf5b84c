//! Sampler kernels (BlackJAX style): `init` evaluates the target at the
//! starting positions, `step` moves every chain once. All chains are one
//! batched tensor; each chain draws its randomness from its own ChaCha
//! stream, so chain `i` gets the same numbers whatever the batch or the
//! number of threads. A proposal whose log-density or gradient is not finite
//! is rejected and counted as a divergence, never propagated.

pub mod adapt;
pub mod clip;
pub mod diagnostics;
pub mod diffusion;
pub mod hmc;
pub mod mala;
pub mod mala_approx;
pub mod map;
mod metric;
pub mod nuts;
pub mod probability_flow;
pub mod rwmh;
pub mod schedule;

use candle_core::{DType, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use crate::density::{per_chain_sum, Eval, Term};
use crate::error::Result;

/// Where the chains are: position `[chains, ...]`, and the target's value
/// and gradient there (kept so a step does not recompute them).
#[derive(Debug, Clone)]
pub struct State {
    pub position: Tensor,
    pub log_density: Option<Vec<f64>>,
    pub grad: Tensor,
}

/// What one step did, per chain.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Info {
    /// Metropolis-Hastings acceptance probability (1 for kernels without MH).
    pub accept_prob: Vec<f64>,
    pub accepted: Vec<bool>,
    pub divergent: Vec<bool>,
    /// Gradient evaluations spent by this step (per chain; all chains
    /// alike: for NUTS, the rounds every chain waited for).
    pub grad_evals: usize,
    /// Each chain's tree depth (NUTS; empty for the other kernels).
    pub tree_depth: Vec<usize>,
    /// Each chain's leaves, the rounds of the step in which it took a
    /// leapfrog step (NUTS; the other rounds its row of the batched pass
    /// was computed and dropped).
    pub leaves: Vec<usize>,
}

/// A sampler kernel.
pub trait Kernel {
    fn name(&self) -> &'static str;
    /// Checks the kernel can run on `target` (MH kernels need values).
    fn check(&self, _target: &dyn Term) -> Result<()> {
        Ok(())
    }
    /// Replaces the step-size schedule by a constant (used by adaptation).
    fn set_step_size(&mut self, eps: f64);
    /// The noise level the target is read at before step `t`, for kernels
    /// that anneal one ([`diffusion::ReverseDiffusion`]); `None` for the
    /// others, whose target has no level.
    fn level(&self, _t: usize) -> Option<f64> {
        None
    }
    /// Warm-up step `t` of `warmup` has moved the chains to `state`: a
    /// kernel that learns from warm-up (NUTS's metric) does so here, and
    /// says whether it changed how it moves (the step size's adaptation
    /// then starts again from the current step).
    fn warm_up(&mut self, _t: usize, _warmup: usize, _state: &State) -> Result<bool> {
        Ok(false)
    }
    /// What the kernel has learnt from warm-up so far, for a checkpoint
    /// (`None`: it learns nothing), so that a resumed run moves as the
    /// uninterrupted one would.
    fn learnt(&self) -> Option<serde_json::Value> {
        None
    }
    /// Takes back what [`Kernel::learnt`] gave.
    fn relearn(&mut self, _learnt: &serde_json::Value) -> Result<()> {
        Ok(())
    }
    /// Moves all chains one step; `t` is the step index (for schedules).
    fn step(
        &self,
        rngs: &mut ChainRngs,
        state: &State,
        target: &dyn Term,
        t: usize,
    ) -> Result<(State, Info)>;
}

/// Evaluates the target at `position`.
pub fn init(position: &Tensor, target: &dyn Term) -> Result<State> {
    init_at(position, target, None)
}

/// Evaluates the target at `position` at noise level `level` (see
/// [`Kernel::level`]).
pub fn init_at(position: &Tensor, target: &dyn Term, level: Option<f64>) -> Result<State> {
    let Eval { log_density, grad } = target.value_and_grad_at(position, level)?;
    Ok(State {
        position: position.clone(),
        log_density,
        grad,
    })
}

/// One independent random stream per chain.
#[derive(Debug, Clone)]
pub struct ChainRngs(pub Vec<ChaCha8Rng>);

impl ChainRngs {
    /// Stream `i` of `seed` for chain `i`.
    pub fn new(seed: u64, chains: usize) -> Self {
        Self::from_chain(seed, 0, chains)
    }

    /// The streams of chains `first..first + chains` of a larger run
    /// (chain ids are global, so a batch or a shard draws what the whole
    /// run would for its chains).
    pub fn from_chain(seed: u64, first: usize, chains: usize) -> Self {
        Self(
            (first..first + chains)
                .map(|i| {
                    let mut r = ChaCha8Rng::seed_from_u64(seed);
                    r.set_stream(i as u64);
                    r
                })
                .collect(),
        )
    }

    /// Standard normal noise shaped like `like` (`[chains, ...]`), row `i` from stream `i`.
    pub fn normal_like(&mut self, like: &Tensor) -> Result<Tensor> {
        let n = like.dim(0)?;
        let per = like.elem_count() / n.max(1);
        let mut v = Vec::with_capacity(like.elem_count());
        for r in self.0.iter_mut().take(n) {
            v.extend((0..per).map(|_| r.sample::<f64, _>(StandardNormal)));
        }
        Ok(Tensor::from_vec(v, like.shape(), like.device())?.to_dtype(like.dtype())?)
    }

    /// One uniform in [0, 1) per chain.
    pub fn uniform(&mut self) -> Vec<f64> {
        self.0.iter_mut().map(|r| r.random::<f64>()).collect()
    }
}

/// Whether each chain's row of `t` is all finite.
pub fn finite_rows(t: &Tensor) -> Result<Vec<bool>> {
    Ok(per_chain_sum(t)?.iter().map(|v| v.is_finite()).collect())
}

/// The error of an MH kernel stepped on a state without log-density values
/// (`sample` checks the target first; this guards direct calls of `step`).
pub fn no_values() -> crate::Error {
    crate::Error::unsupported(
        "this kernel's accept/reject step needs log-density values; the target has only gradients",
        "check it with Kernel::check, or use map or mala-approx",
    )
}

/// One value per chain as a `[chains, 1, ...]` tensor that broadcasts over
/// each chain's coordinates of `like`.
pub fn per_chain_tensor(values: Vec<f64>, like: &Tensor) -> Result<Tensor> {
    let shape: Vec<usize> = std::iter::once(values.len())
        .chain(std::iter::repeat_n(1, like.rank() - 1))
        .collect();
    Ok(Tensor::from_vec(values, shape, like.device())?.to_dtype(like.dtype())?)
}

/// Picks, per chain, the row of `a` where `mask[i]` and of `b` otherwise.
pub fn select_rows(mask: &[bool], a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let m = per_chain_tensor(mask.iter().map(|&x| x as u8 as f64).collect(), a)?
        .to_dtype(DType::U8)?
        .broadcast_as(a.shape())?;
    Ok(m.where_cond(a, b)?)
}

/// The step of a kernel without accept/reject (MAP, MALA-approx): every
/// chain moves to the proposal unless its gradient is not finite, which
/// keeps the old state and counts a divergence.
pub fn move_unless_divergent(proposal: &State, current: &State) -> Result<(State, Info)> {
    let ok = finite_rows(&proposal.grad)?;
    Ok((
        merge(&ok, proposal, current)?,
        Info {
            accept_prob: vec![1.0; ok.len()],
            divergent: ok.iter().map(|v| !v).collect(),
            accepted: ok,
            grad_evals: 1,
            tree_depth: Vec::new(),
            leaves: Vec::new(),
        },
    ))
}

/// Log acceptance ratios per chain from `f(i)`, guarded by
/// [`guarded_ratio`] with the proposal's gradient and log-density.
pub fn log_ratios(proposal: &State, f: impl Fn(usize) -> f64) -> Result<Vec<f64>> {
    let lq = proposal.log_density.as_ref().ok_or_else(no_values)?;
    Ok(finite_rows(&proposal.grad)?
        .into_iter()
        .enumerate()
        .map(|(i, ok)| guarded_ratio(ok, lq[i], || f(i)))
        .collect())
}

/// The log acceptance ratio of a proposal whose log-density is `lq`:
/// NaN (a rejection counted as a divergence in [`mh_accept`]) when its
/// gradient is not finite (`grad_ok` false) or its log-density is NaN or
/// +infinity; minus infinity (a plain rejection) when it has zero density;
/// otherwise `ratio()`, which is +infinity (an acceptance) when the current
/// state has zero density and the proposal does not.
pub fn guarded_ratio(grad_ok: bool, lq: f64, ratio: impl FnOnce() -> f64) -> f64 {
    if !grad_ok || lq.is_nan() || lq == f64::INFINITY {
        f64::NAN
    } else if lq == f64::NEG_INFINITY {
        f64::NEG_INFINITY
    } else {
        ratio()
    }
}

/// The Metropolis-Hastings decision per chain from `log_ratio` (log of the
/// acceptance ratio, possibly NaN or infinite): NaN is a rejection and a
/// divergence, +infinity an acceptance (from a state of zero density to
/// one of positive density).
pub fn mh_accept(log_ratio: &[f64], rngs: &mut ChainRngs) -> (Vec<f64>, Vec<bool>, Vec<bool>) {
    let u = rngs.uniform();
    let mut prob = Vec::with_capacity(log_ratio.len());
    let mut acc = Vec::with_capacity(log_ratio.len());
    let mut div = Vec::with_capacity(log_ratio.len());
    for (lr, u) in log_ratio.iter().zip(u) {
        if lr.is_nan() {
            prob.push(0.0);
            acc.push(false);
            div.push(true);
        } else {
            let p = lr.min(0.0).exp();
            prob.push(p);
            acc.push(u < p);
            div.push(false);
        }
    }
    (prob, acc, div)
}

/// The new state from an accept mask: accepted chains take the proposal.
pub fn merge(accepted: &[bool], proposal: &State, current: &State) -> Result<State> {
    let log_density = match (&proposal.log_density, &current.log_density) {
        (Some(p), Some(c)) => Some(
            accepted
                .iter()
                .enumerate()
                .map(|(i, &a)| if a { p[i] } else { c[i] })
                .collect(),
        ),
        _ => None,
    };
    Ok(State {
        position: select_rows(accepted, &proposal.position, &current.position)?,
        log_density,
        grad: select_rows(accepted, &proposal.grad, &current.grad)?,
    })
}

/// The outcome of [`sample`]: the kept states' positions and per-step info.
#[derive(Debug, Clone)]
pub struct Run {
    /// Positions after each kept step, `[chains, ...]` each.
    pub positions: Vec<Tensor>,
    /// Per-chain log-density after each kept step, when the target has values.
    pub log_density: Vec<Option<Vec<f64>>>,
    /// Info of every step, warm-up included.
    pub infos: Vec<Info>,
    /// The step size used after warm-up when adapted.
    pub adapted_step: Option<f64>,
    pub last: State,
}

impl Run {
    /// Coordinate `j` of the flattened position, as `[chain][draw]`.
    pub fn coordinate(&self, j: usize) -> Result<Vec<Vec<f64>>> {
        let n = self.positions.first().map_or(Ok(0), |p| p.dim(0))?;
        let mut out = vec![Vec::with_capacity(self.positions.len()); n];
        for p in &self.positions {
            let col: Vec<f64> = p
                .to_dtype(DType::F64)?
                .flatten_from(1)?
                .narrow(1, j, 1)?
                .squeeze(1)?
                .to_vec1()?;
            for (c, v) in col.into_iter().enumerate() {
                out[c].push(v);
            }
        }
        Ok(out)
    }

    /// Mean acceptance probability over chains and steps after `skip` steps.
    pub fn mean_accept(&self, skip: usize) -> f64 {
        let v: Vec<f64> = self.infos[skip..]
            .iter()
            .flat_map(|i| i.accept_prob.iter().copied())
            .collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    }

    /// The per-chain log-density after each kept step, as `[chain][draw]`.
    pub fn log_density_draws(&self) -> Option<Vec<Vec<f64>>> {
        let first = self.log_density.first()?.as_ref()?;
        let mut out = vec![Vec::with_capacity(self.log_density.len()); first.len()];
        for ld in &self.log_density {
            for (c, v) in ld.as_ref()?.iter().enumerate() {
                out[c].push(*v);
            }
        }
        Some(out)
    }

    /// Acceptance, divergences, gradient cost, and bulk ESS / split R-hat of
    /// the log-density (when there is one) and of the first `coords` coordinates.
    pub fn summary(&self, coords: usize) -> Result<Summary> {
        let mut projections = Vec::new();
        if let Some(ld) = self.log_density_draws() {
            projections.push(("log_density".to_string(), ld));
        }
        let dim = self
            .positions
            .first()
            .map_or(0, |p| p.elem_count() / p.dim(0).unwrap_or(1).max(1));
        for j in 0..coords.min(dim) {
            projections.push((format!("x[{j}]"), self.coordinate(j)?));
        }
        let enough = self.positions.len() >= 4;
        Ok(Summary {
            accept_rate: self.mean_accept(0),
            divergences: self.divergences(),
            grad_evals: self.infos.iter().map(|i| i.grad_evals).sum(),
            projections: projections
                .into_iter()
                .filter(|_| enough)
                .map(|(name, d)| ProjectionSummary {
                    bulk_ess: diagnostics::bulk_ess(&d),
                    split_rhat: diagnostics::rank_rhat(&d),
                    name,
                })
                .collect(),
        })
    }

    pub fn divergences(&self) -> usize {
        self.infos
            .iter()
            .map(|i| i.divergent.iter().filter(|&&d| d).count())
            .sum()
    }
}

/// Convergence diagnostics of a run (see [`Run::summary`]).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    pub accept_rate: f64,
    pub divergences: usize,
    /// Per chain, warm-up included.
    pub grad_evals: usize,
    pub projections: Vec<ProjectionSummary>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ProjectionSummary {
    pub name: String,
    pub bulk_ess: f64,
    pub split_rhat: f64,
}

/// Runs `warmup + draws` steps of `kernel` from `start`, keeping the states
/// after warm-up. With `adapt`, the step size is tuned by dual averaging
/// during warm-up and fixed to its averaged value afterwards.
/// One step `t` of every chain, with the step size adapted by dual
/// averaging toward a target acceptance during the first `warmup` steps
/// and frozen at its final value from then on: the one step-and-adapt
/// loop body of every driver ([`sample`] and the run driver).
pub fn advance(
    kernel: &mut dyn Kernel,
    rngs: &mut ChainRngs,
    state: &State,
    target: &dyn Term,
    t: usize,
    warmup: usize,
    adapt: Option<&mut adapt::DualAveraging>,
) -> Result<(State, Info)> {
    let (next, info) = kernel.step(rngs, state, target, t)?;
    let changed = t < warmup && kernel.warm_up(t, warmup, &next)?;
    if let Some(da) = adapt {
        if t < warmup {
            let a = info.accept_prob.iter().sum::<f64>() / info.accept_prob.len() as f64;
            kernel.set_step_size(da.update(a));
            if changed {
                da.restart();
            }
        }
        if t + 1 == warmup {
            kernel.set_step_size(da.final_step());
        }
    }
    Ok((next, info))
}

pub fn sample(
    kernel: &mut dyn Kernel,
    target: &dyn Term,
    start: &Tensor,
    warmup: usize,
    draws: usize,
    rngs: &mut ChainRngs,
    mut adapt: Option<adapt::DualAveraging>,
) -> Result<Run> {
    kernel.check(target)?;
    let mut state = init(start, target)?;
    let mut run = Run {
        positions: Vec::with_capacity(draws),
        log_density: Vec::with_capacity(draws),
        infos: Vec::with_capacity(warmup + draws),
        adapted_step: None,
        last: state.clone(),
    };
    for t in 0..warmup + draws {
        let (next, info) = advance(kernel, rngs, &state, target, t, warmup, adapt.as_mut())?;
        state = next;
        if t + 1 == warmup {
            run.adapted_step = adapt.as_ref().map(|da| da.final_step());
        }
        run.infos.push(info);
        if t >= warmup {
            run.positions.push(state.position.clone());
            run.log_density.push(state.log_density.clone());
        }
    }
    run.last = state;
    Ok(run)
}
