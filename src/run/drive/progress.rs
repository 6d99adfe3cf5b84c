//! How a job reports its progress and learns that it should stop: the
//! library neither prints nor handles signals; a front end (the CLI's
//! progress bar and Ctrl-C, a test, a server) implements [`Progress`].
//! [`drive`] runs chains reporting to one.

/// What a running job tells its front end, and asks it.
pub trait Progress {
    /// A phase of `total` steps begins (`what` names it: "sample", ...).
    fn begin(&mut self, _what: &str, _total: usize) {}
    /// `step` of the phase is done; `mean` is the chains' mean condition
    /// value (p(class) or the unit's activation), `accept` their mean
    /// acceptance so far.
    fn update(&mut self, _step: usize, _mean: f64, _accept: f64) {}
    /// `step` of the phase is done, with nothing to say of the chains.
    fn tick(&mut self, step: usize) {
        self.update(step, f64::NAN, f64::NAN);
    }
    /// After every step of a run of chains, with the chains as they are
    /// (a live view; `record.recorded` says whether this step has a fresh
    /// snapshot); returns changes of the settings to make from this step
    /// on (`crate::run::config::steer`). A front end pauses a run by not returning.
    fn record(&mut self, _record: &Record) -> Vec<Change> {
        Vec::new()
    }
    /// A line worth keeping (a training checkpoint's losses, a resume).
    fn note(&mut self, _line: &str) {}
    /// The phase ended (finished or stopped).
    fn end(&mut self) {}
    /// Whether the job should stop at the next step it can stop at
    /// (resumable jobs write a checkpoint there).
    fn should_stop(&self) -> bool {
        false
    }
}

/// Reports nothing and never stops.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Progress for Silent {}

use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::Tensor;

use super::chains::{ChainsOutput, Outcome, Pipeline, Streams};
use super::driver::{run_chains, Record};
use crate::error::Result;
use crate::run::config::preset::SamplerConfig;
use crate::run::config::steer::Change;

/// [`drive`] for a run that does not resume: from `start` to the end, or
/// an [`crate::Error::Interrupted`] that says nothing was written.
#[allow(clippy::too_many_arguments)]
pub fn drive_to_end(
    what: &str,
    pipeline: &Pipeline,
    cfg: &SamplerConfig,
    start: &Tensor,
    seed: u64,
    record_every: usize,
    progress: &mut dyn Progress,
) -> Result<ChainsOutput> {
    let outcome = drive(
        what,
        pipeline,
        cfg,
        start,
        seed,
        record_every,
        None,
        progress,
        |_| Ok(()),
    )?;
    match outcome {
        Outcome::Finished(o) => Ok(o),
        Outcome::Interrupted(o) => Err(crate::Error::Interrupted {
            step: o.step,
            steps: cfg.steps,
            then: "nothing written (this kind of run does not resume)".into(),
        }),
    }
}

/// Chains from `start` (or from `resume`) to `cfg.steps` on `pipeline`,
/// reported to `progress` as phase `what` every `record_every` steps and
/// stopped when it asks (then `checkpoint` has the state, as at every
/// record).
#[allow(clippy::too_many_arguments)]
pub fn drive(
    what: &str,
    pipeline: &Pipeline,
    cfg: &SamplerConfig,
    start: &Tensor,
    streams: impl Into<Streams>,
    record_every: usize,
    resume: Option<ChainsOutput>,
    progress: &mut dyn Progress,
    checkpoint: impl FnMut(&ChainsOutput) -> Result<()>,
) -> Result<Outcome> {
    let stop = AtomicBool::new(progress.should_stop());
    progress.begin(what, cfg.steps);
    let outcome = run_chains(
        pipeline,
        cfg,
        start,
        streams,
        record_every,
        resume,
        &stop,
        |r| {
            if r.recorded {
                progress.update(r.step, r.mean, r.accept);
            }
            let made = progress.record(r);
            if progress.should_stop() {
                stop.store(true, Ordering::SeqCst);
            }
            made
        },
        checkpoint,
    );
    progress.end();
    outcome
}
