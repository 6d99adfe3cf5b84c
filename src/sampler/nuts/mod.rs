//! The No-U-Turn Sampler (Hoffman and Gelman 2014) as Stan runs it
//! (Betancourt 2017, "A Conceptual Introduction to Hamiltonian Monte
//! Carlo"): the trajectory doubles in a random direction until it turns
//! back on itself, the state is drawn from it with multinomial weights
//! `exp(-H)` (within a new subtree; biased progressively between the old
//! tree and the new subtree), and "turning back" is the generalised
//! criterion `p#(-) . rho > 0 and p#(+) . rho > 0` on every subtree, with
//! `rho` the sum of the subtree's momenta and `p# = M^-1 p`, plus Stan's
//! two extra checks across the halves of each merge. A leaf whose energy
//! error exceeds [`super::hmc::DIVERGENCE_ENERGY`] (or is not finite) ends
//! the tree as a divergence and its subtree is discarded.
//!
//! **Batched chains.** Every chain builds its own tree, but all chains take
//! their leapfrog steps in lockstep, so the network evaluations stay
//! batched: at doubling `j` every chain still going adds a subtree of `2^j`
//! leaves, and each round evaluates the whole batch, the rows of the chains
//! whose subtree is still growing at their next points and the others at
//! their positions, dropped (a target's rows are its chains': it may hold a
//! class or an observation per chain). Waiting chains cost their rows of
//! each round's pass. A step's
//! `grad_evals` is the number of rounds, the longest tree's leaves: what
//! every chain waited for; `Info::tree_depth` has each chain's own depth.
//! Each chain draws from its own stream in the order its own tree needs,
//! so its draws do not depend on the batch.
//!
//! **Metric.** The mass matrix is diagonal ([`Nuts::inv_mass`]); in
//! warm-up ([`Kernel::warm_up`]) it is estimated from the chains' positions
//! in Stan's windows (75 steps fast, slow windows of 25 doubling, 50 fast
//! at the end; scaled down when warm-up is shorter), pooled over chains and
//! regularised toward 1e-3 as Stan's, and the step size's dual averaging
//! restarts after each update.

use candle_core::{DType, Tensor};
use rand::Rng;

use super::metric::{Window, Windows};
use super::schedule::Schedule;
use super::{ChainRngs, Info, Kernel, State};
use tree::{Leaf, Subtree, Tree};

mod tree;
use crate::density::{require_value, Term};
use crate::error::Result;

pub struct Nuts {
    pub step: Schedule,
    /// The deepest tree: at most `2^max_depth - 1` leapfrog steps per step.
    pub max_depth: usize,
    /// The diagonal of the inverse mass matrix (one per coordinate of a
    /// chain's position); `None` is the identity until warm-up sets it.
    pub inv_mass: Option<Vec<f64>>,
    /// The U-turn criterion: [`Criterion::Generalised`]; the other exists
    /// to show that the tests catch a wrong one.
    pub criterion: Criterion,
    /// Warm-up's running sums of the positions in the current window.
    window: Window,
}

/// When a block of a trajectory has turned back on itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Criterion {
    /// Stan's: `p#(-) . rho > 0` and `p#(+) . rho > 0`, symmetric in the
    /// block's two ends, so the trajectory is the same whichever of its
    /// points it grew from (what detailed balance needs).
    Generalised,
    /// A wrong one, for tests only: the naive rule Hoffman and Gelman
    /// start from, stopping when the newest point moves back toward the
    /// starting point, `(x - x0) . p# < 0`, which depends on where the
    /// trajectory started.
    #[doc(hidden)]
    FromStart,
}

/// The deepest tree of the `nuts` sampler's runs: Stan's default, at most
/// 1,023 leapfrog steps a step.
pub const MAX_DEPTH: usize = 10;

impl Nuts {
    pub fn new(step: Schedule, max_depth: usize) -> Self {
        Self {
            step,
            max_depth,
            inv_mass: None,
            criterion: Criterion::Generalised,
            window: Window::default(),
        }
    }
}

/// Rows of `t` (`[chains, ...]`) as f64 vectors.
fn rows(t: &Tensor) -> Result<Vec<Vec<f64>>> {
    Ok(t.to_dtype(DType::F64)?.flatten_from(1)?.to_vec2()?)
}

/// `rows` as a tensor shaped like `like`'s rows, in its dtype.
fn tensor(rows: &[&[f64]], like: &Tensor) -> Result<Tensor> {
    let mut shape = like.dims().to_vec();
    shape[0] = rows.len();
    let flat: Vec<f64> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    Ok(Tensor::from_vec(flat, shape, like.device())?.to_dtype(like.dtype())?)
}

impl Nuts {
    /// One leapfrog step of size `eps` (signed) from each leaf in `from`
    /// (with its chain), the target evaluated once for all of them. The
    /// evaluation is of the whole batch `like` (the chains' positions),
    /// with each stepping chain's row replaced by its leaf's next point:
    /// a target may hold one condition per chain (a class, an
    /// observation), so its rows are the chains'; the rows of chains that
    /// wait are computed and dropped (the waste of lockstep trees).
    fn leapfrog(
        &self,
        from: &[(usize, &Leaf)],
        eps: &[f64],
        inv: &[f64],
        target: &dyn Term,
        like: &Tensor,
    ) -> Result<Vec<Leaf>> {
        let mut half = Vec::with_capacity(from.len());
        let mut xs = Vec::with_capacity(from.len());
        for ((_, l), &e) in from.iter().zip(eps) {
            let p: Vec<f64> = l.p.iter().zip(&l.g).map(|(p, g)| p + 0.5 * e * g).collect();
            let x: Vec<f64> =
                l.x.iter()
                    .zip(&p)
                    .zip(inv)
                    .map(|((x, p), m)| x + e * m * p)
                    .collect();
            half.push(p);
            xs.push(x);
        }
        let mut batch = rows(like)?;
        for ((i, _), x) in from.iter().zip(&xs) {
            batch[*i].clone_from(x);
        }
        let refs: Vec<&[f64]> = batch.iter().map(|x| x.as_slice()).collect();
        let eval = target.value_and_grad(&tensor(&refs, like)?)?;
        let all_logp = eval.log_density.ok_or_else(super::no_values)?;
        let all_grads = rows(&eval.grad)?;
        let logp: Vec<f64> = from.iter().map(|(i, _)| all_logp[*i]).collect();
        let grads: Vec<Vec<f64>> = from.iter().map(|(i, _)| all_grads[*i].clone()).collect();
        Ok(xs
            .into_iter()
            .zip(half)
            .zip(grads)
            .zip(logp)
            .zip(eps)
            .map(|((((x, p), g), logp), &e)| {
                let p = p.iter().zip(&g).map(|(p, g)| p + 0.5 * e * g).collect();
                // a non-finite gradient is a divergence (its energy is NaN)
                let logp = if g.iter().all(|v| v.is_finite()) {
                    logp
                } else {
                    f64::NAN
                };
                Leaf { x, p, g, logp }
            })
            .collect())
    }
}

impl Kernel for Nuts {
    fn name(&self) -> &'static str {
        "nuts"
    }
    fn check(&self, target: &dyn Term) -> Result<()> {
        self.step.validate("NUTS step")?;
        if !(1..=16).contains(&self.max_depth) {
            return Err(crate::Error::setting(
                "NUTS max tree depth",
                self.max_depth,
                "1 to 16 (Stan's default is 10)",
            ));
        }
        require_value(target, "NUTS")
    }
    fn set_step_size(&mut self, eps: f64) {
        self.step = Schedule::Constant { value: eps };
    }
    fn learnt(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!({"inv_mass": self.inv_mass, "window": self.window}))
    }
    fn relearn(&mut self, learnt: &serde_json::Value) -> Result<()> {
        let bad = |e: serde_json::Error| {
            crate::Error::setting(
                "NUTS's learnt metric",
                e.to_string(),
                "what a checkpoint of NUTS holds",
            )
        };
        self.inv_mass = serde_json::from_value(learnt["inv_mass"].clone()).map_err(bad)?;
        self.window = serde_json::from_value(learnt["window"].clone()).map_err(bad)?;
        Ok(())
    }
    fn warm_up(&mut self, t: usize, warmup: usize, state: &State) -> Result<bool> {
        let windows = Windows::new(warmup);
        if !windows.slow(t) {
            return Ok(false);
        }
        self.window.add(&rows(&state.position)?);
        if windows.ends_slow(t) {
            self.inv_mass = Some(self.window.variance());
            self.window = Window::default();
            return Ok(true);
        }
        Ok(false)
    }
    fn step(
        &self,
        rngs: &mut ChainRngs,
        s: &State,
        target: &dyn Term,
        t: usize,
    ) -> Result<(State, Info)> {
        let eps = self.step.at(t);
        let xs = rows(&s.position)?;
        let gs = rows(&s.grad)?;
        let lp = s.log_density.as_ref().ok_or_else(super::no_values)?;
        let d = xs.first().map_or(0, |x| x.len());
        let inv = self.inv(d);
        let mut trees = self.plant(rngs, (&xs, &gs, lp), &inv);
        let mut rounds = 0;
        for j in 0..self.max_depth {
            let going: Vec<usize> = (0..trees.len()).filter(|&i| trees[i].going).collect();
            if going.is_empty() {
                break;
            }
            // each chain's direction, then its subtree from that edge
            let mut subs: Vec<(usize, bool, Subtree)> = Vec::with_capacity(going.len());
            for &i in &going {
                let forward = rngs.0[i].random::<f64>() < 0.5;
                let tr = &trees[i];
                let edge = if forward { &tr.right } else { &tr.left };
                // the start is kept only for the wrong criterion's tests
                let x0: &[f64] = if self.criterion == Criterion::FromStart {
                    &xs[i]
                } else {
                    &[]
                };
                subs.push((i, forward, Subtree::new(edge, j, x0)));
            }
            rounds += self.grow_all(
                &mut trees,
                &mut subs,
                j,
                (eps, &inv),
                target,
                rngs,
                &s.position,
            )?;
            for (i, forward, sub) in subs {
                self.join(&mut trees[i], forward, sub, j, &inv, &mut rngs.0[i]);
            }
        }
        self.finish(trees, rounds, s, &xs)
    }
}

impl Nuts {
    /// Grows every chain's subtree of doubling `j` leaf by leaf in
    /// lockstep, one batched evaluation per round for the subtrees still
    /// growing; returns the rounds.
    #[allow(clippy::too_many_arguments)]
    fn grow_all(
        &self,
        trees: &mut [Tree],
        subs: &mut [(usize, bool, Subtree)],
        j: usize,
        (eps, inv): (f64, &[f64]),
        target: &dyn Term,
        rngs: &mut ChainRngs,
        like: &Tensor,
    ) -> Result<usize> {
        let mut rounds = 0;
        for _ in 0..1usize << j {
            let live: Vec<usize> = (0..subs.len()).filter(|&k| !subs[k].2.failed).collect();
            if live.is_empty() {
                break;
            }
            rounds += 1;
            let from: Vec<(usize, &Leaf)> = live
                .iter()
                .map(|&k| (subs[k].0, &subs[k].2.frontier))
                .collect();
            let signed: Vec<f64> = live
                .iter()
                .map(|&k| if subs[k].1 { eps } else { -eps })
                .collect();
            let next = self.leapfrog(&from, &signed, inv, target, like)?;
            for (&k, leaf) in live.iter().zip(next) {
                let (i, _, sub) = &mut subs[k];
                let tree = &mut trees[*i];
                tree.sum_metro += self.grow(sub, leaf, tree.h0, inv, &mut rngs.0[*i]);
                tree.leaves += 1;
            }
        }
        Ok(rounds)
    }

    /// The chains' next state (each tree's draw) and what the step did.
    fn finish(
        &self,
        trees: Vec<Tree>,
        rounds: usize,
        s: &State,
        x0: &[Vec<f64>],
    ) -> Result<(State, Info)> {
        let xs: Vec<&[f64]> = trees.iter().map(|t| t.candidate.x.as_slice()).collect();
        let gs: Vec<&[f64]> = trees.iter().map(|t| t.candidate.g.as_slice()).collect();
        let info = Info {
            accept_prob: trees
                .iter()
                .map(|t| t.sum_metro / t.leaves.max(1) as f64)
                .collect(),
            accepted: trees
                .iter()
                .zip(x0)
                .map(|(t, x0)| &t.candidate.x != x0)
                .collect(),
            divergent: trees.iter().map(|t| t.divergent).collect(),
            grad_evals: rounds,
            tree_depth: trees.iter().map(|t| t.depth).collect(),
            leaves: trees.iter().map(|t| t.leaves).collect(),
        };
        let state = State {
            position: tensor(&xs, &s.position)?,
            log_density: Some(trees.iter().map(|t| t.candidate.logp).collect()),
            grad: tensor(&gs, &s.grad)?,
        };
        Ok((state, info))
    }
}
