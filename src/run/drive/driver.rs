//! The chain driver: steps a batch of chains on a [`Pipeline`] to the
//! end (or a stop), records them, reports after every step to a front end
//! that may change the settings (`crate::run::config::steer`), and checkpoints.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use candle_core::Tensor;

use super::chains::{ChainsOutput, Outcome, Pipeline, Streams, CHECKPOINT_SECONDS};
use crate::density::Sum;
use crate::error::{Error, Result};
use crate::run::config::preset::SamplerConfig;
use crate::run::config::steer::Change;
use crate::sampler::schedule::Schedule;
use crate::sampler::{advance, init_at, Kernel};

/// What [`run_chains`] reports after every step.
pub struct Record<'a> {
    /// Steps done.
    pub step: usize,
    /// Whether this step was recorded (its snapshot and condition values
    /// are the last in `out`); `mean` is NaN otherwise.
    pub recorded: bool,
    /// The chains' mean condition value and mean acceptance so far.
    pub mean: f64,
    pub accept: f64,
    /// The step size in force.
    pub step_size: f64,
    /// The settings in force, with every change so far.
    pub settings: &'a SamplerConfig,
    /// The chains: the last snapshot and condition values are this step's.
    pub out: &'a ChainsOutput,
    /// The chains' positions after this step (`out.codes` is those of the
    /// last record before it).
    pub position: &'a Tensor,
}

/// The settings of a run as it goes: the schedule of changes (the
/// settings' own and those made during the run), the kernel and the target
/// they give (`crate::run::config::steer`).
struct Steered<'p> {
    all: SamplerConfig,
    pipeline: &'p Pipeline,
    kernel: Box<dyn Kernel>,
    /// The target rebuilt for changed weights.
    target: Option<Sum>,
    warmup: usize,
    /// The step schedule in force (kept, so that reporting the step size
    /// after every step does not rebuild the settings).
    step: Schedule,
}

impl<'p> Steered<'p> {
    /// The settings in force at `out.step` of a fresh or resumed run.
    fn new(pipeline: &'p Pipeline, cfg: &SamplerConfig, out: &ChainsOutput) -> Result<Self> {
        let mut s = Steered {
            all: cfg.with_changes(&out.changes),
            pipeline,
            kernel: cfg.kernel()?,
            target: None,
            warmup: cfg.steps / 2,
            step: cfg.step,
        };
        s.kernel.check(&pipeline.target)?;
        if let Some(l) = &out.learnt {
            s.kernel.relearn(l)?;
        }
        let reweighted = s
            .all
            .changes
            .iter()
            .any(|c| c.at <= out.step && c.reweights());
        if reweighted || !s.all.changes.is_empty() {
            s.rebuild(out, reweighted)?;
        } else {
            s.adapted(out);
        }
        Ok(s)
    }

    fn target(&self) -> &Sum {
        self.target.as_ref().unwrap_or(&self.pipeline.target)
    }

    /// The step size from the adaptation state at `out.step`, when adapting.
    fn adapted(&mut self, out: &ChainsOutput) {
        if let Some(da) = out.adapt.as_ref().filter(|_| out.step > 0) {
            self.kernel.set_step_size(match out.step >= self.warmup {
                true => da.final_step(),
                false => da.current_step(),
            });
        }
    }

    /// The kernel (and, when `retarget`, the target) of the settings in
    /// force at `out.step`.
    fn rebuild(&mut self, out: &ChainsOutput, retarget: bool) -> Result<()> {
        let now = self.all.at_step(out.step);
        // what the kernel learnt carries over to the new settings' kernel
        let learnt = self.kernel.learnt();
        self.kernel = now.kernel()?;
        if let Some(l) = &learnt {
            self.kernel.relearn(l)?;
        }
        self.step = now.step;
        if retarget {
            let build = self.pipeline.retarget.as_ref().ok_or_else(|| {
                Error::unsupported(
                    "changing eps1 or eps2 during a run of these networks",
                    "change eps3 or the step, or start a new run with the new weights",
                )
            })?;
            self.target = Some(build(&now)?);
        }
        self.kernel.check(self.target())?;
        self.adapted(out);
        Ok(())
    }

    /// Applies the changes that take effect at `out.step`; whether the
    /// target changed (its value and gradient must be recomputed).
    fn at(&mut self, out: &ChainsOutput) -> Result<bool> {
        let changes: Vec<&Change> = self.all.changes_at(out.step).collect();
        if changes.is_empty() {
            return Ok(false);
        }
        let retarget = changes.iter().any(|c| c.reweights());
        self.rebuild(out, retarget)?;
        Ok(retarget)
    }

    /// Adds changes made at the record of `out.step` (after the settings'
    /// own changes of the same step).
    fn add(&mut self, out: &mut ChainsOutput, made: Vec<Change>) -> Result<()> {
        for mut c in made.into_iter().filter(|c| !c.is_empty()) {
            c.at = out.step;
            c.validate()?;
            self.all = self.all.with_changes(std::slice::from_ref(&c));
            out.changes.push(c);
        }
        Ok(())
    }

    /// The step size the kernel uses at step `t`.
    fn step_size(&self, out: &ChainsOutput, t: usize) -> f64 {
        match &out.adapt {
            Some(da) if t >= self.warmup => da.final_step(),
            Some(da) => da.current_step(),
            None => self.step.at(t),
        }
    }
}

/// After step `out.step`: its record when due, then the front end's say
/// (at every step: it may pause, stop or change the settings at any);
/// whether the step was recorded and whether the settings changed.
fn report(
    out: &mut ChainsOutput,
    steered: &mut Steered,
    h: &Tensor,
    record_every: usize,
    progress: &mut impl FnMut(&Record) -> Vec<Change>,
) -> Result<(bool, bool)> {
    let due = out.step.is_multiple_of(record_every.max(1)) || out.step == steered.all.last_step();
    let mean = match due {
        true => out.record(steered.pipeline, h)?,
        false => f64::NAN,
    };
    let made = progress(&Record {
        step: out.step,
        recorded: due,
        mean,
        accept: out.accept_sum / out.step as f64,
        step_size: steered.step_size(out, out.step),
        settings: &steered.all,
        out,
        position: h,
    });
    let changed = !made.is_empty();
    steered.add(out, made)?;
    if !due && out.step == steered.all.last_step() {
        // a stop made here: the record a stop always has
        out.record(steered.pipeline, h)?;
    }
    Ok((due, changed))
}

/// The chains' state before their first step: at `h0`, or at each
/// chain's pick of its start candidates (`super::starts`), recorded.
fn begin(
    pipeline: &Pipeline,
    cfg: &SamplerConfig,
    h0: &Tensor,
    streams: Streams,
) -> Result<ChainsOutput> {
    let h0 = match cfg.start_evals() {
        0 => h0.clone(),
        k => super::starts::resampled_starts(&pipeline.target, k, h0, streams)?,
    };
    let mut out = ChainsOutput::start(cfg, &h0, streams)?;
    out.record(pipeline, &h0)?;
    Ok(out)
}

/// Runs the chains from `h0` (or from `resume`; with
/// `cfg.start_candidates` above 1, `h0` holds draws of the flow prior and
/// each chain starts from its pick of that many, `super::starts`) to `cfg.steps` (or the
/// first stop of its changes), recording every `record_every` steps,
/// calling `progress` after every step and `checkpoint(output)` at the
/// first record, then at most every [`CHECKPOINT_SECONDS`]; `progress` may return changes of the
/// settings, which take effect from that step on and are kept in the
/// output. When `stop` becomes true it checkpoints and returns
/// [`Outcome::Interrupted`]; resuming from that checkpoint gives the same
/// bits as an uninterrupted run (the state is the position, the chains'
/// random streams and the changes made; the target is re-evaluated exactly).
#[allow(clippy::too_many_arguments)]
pub fn run_chains(
    pipeline: &Pipeline,
    cfg: &SamplerConfig,
    h0: &Tensor,
    streams: impl Into<Streams>,
    record_every: usize,
    resume: Option<ChainsOutput>,
    stop: &AtomicBool,
    mut progress: impl FnMut(&Record) -> Vec<Change>,
    mut checkpoint: impl FnMut(&ChainsOutput) -> Result<()>,
) -> Result<Outcome> {
    let started = Instant::now();
    let mut out = match resume {
        Some(r) => r,
        None => begin(pipeline, cfg, h0, streams.into())?,
    };
    let base_wall = out.wall_s;
    let mut steered = Steered::new(pipeline, cfg, &out)?;
    let mut state = init_at(&out.codes, steered.target(), steered.kernel.level(out.step))?;
    let first = out.step;
    let mut saved: Option<Instant> = None;
    for t in out.step..cfg.steps {
        if t >= steered.all.last_step() {
            break;
        }
        if t > first && steered.at(&out)? {
            state = init_at(&state.position, steered.target(), steered.kernel.level(t))?;
        }
        let target = steered.target.as_ref().unwrap_or(&pipeline.target);
        let (next, info) = advance(
            steered.kernel.as_mut(),
            &mut out.rngs,
            &state,
            target,
            t,
            steered.warmup,
            out.adapt.as_mut(),
        )?;
        state = next;
        out.count(t + 1, &info);
        let (due, changed) = report(
            &mut out,
            &mut steered,
            &state.position,
            record_every,
            &mut progress,
        )?;
        let end = steered.all.last_step();
        let interrupted = stop.load(Ordering::SeqCst) && out.step < end;
        if due || changed || interrupted {
            out.codes = state.position.clone();
            out.wall_s = base_wall + started.elapsed().as_secs_f64();
            let stale = saved.is_none_or(|s| s.elapsed().as_secs_f64() >= CHECKPOINT_SECONDS);
            if out.step < end && (stale || changed || interrupted) {
                out.learnt = steered.kernel.learnt();
                checkpoint(&out)?;
                saved = Some(Instant::now());
            }
            if interrupted {
                out.images = (pipeline.decode)(&state.position)?;
                return Ok(Outcome::Interrupted(out));
            }
        }
    }
    out.images = (pipeline.decode)(&state.position)?;
    out.codes = state.position;
    out.wall_s = base_wall + started.elapsed().as_secs_f64();
    Ok(Outcome::Finished(out))
}
