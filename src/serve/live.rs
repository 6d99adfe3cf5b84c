//! A run started from the page: an ordinary `ppgn sample` or `ppgn
//! restore` job in its own thread, reporting every record as a frame (the
//! grid of the chains' current images and their numbers; for a
//! restoration, each image's chains then their mean and spread) and taking
//! the page's pause, resume, stop and changes of eps1, eps2, eps3 and the
//! step (`crate::run::config::steer`).

use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::data::image::{encode_png, grid};
use crate::error::{Error, Result};
use crate::run::config::preset::SamplerConfig;
use crate::run::config::steer::Change;
use crate::run::drive::driver::Record;
use crate::run::jobs::restore::RestoreSpec;
use crate::run::{Progress, SampleSpec};
use crate::sampler::diagnostics::rank_rhat;

/// One update of a live run, as the event stream sends it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Frame {
    /// `starting`, `running`, `paused`, `finished` or `failed`.
    pub state: String,
    pub step: usize,
    pub steps: usize,
    /// The condition value of each chain now (p(class) or the unit's activation).
    pub value: Vec<f64>,
    /// Each chain's acceptance rate so far.
    pub accept: Vec<f64>,
    pub mean_value: f64,
    pub mean_accept: f64,
    pub step_size: f64,
    pub eps1: f64,
    pub eps2: f64,
    pub eps3: f64,
    /// The largest rank R-hat of the condition value over the classes'
    /// chains (second half of the records), once there are enough.
    pub rhat: Option<f64>,
    /// The chains' current images as a PNG grid (a data URL), `cols` a row.
    pub grid: String,
    pub cols: usize,
    pub elapsed_s: f64,
    /// The run folder's name (under the runs folder), and the message of
    /// a failed run or the summary of a finished one.
    pub run: String,
    pub message: String,
}

impl Frame {
    pub fn terminal(&self) -> bool {
        matches!(self.state.as_str(), "finished" | "failed")
    }
}

/// What a live run runs.
#[derive(Debug)]
pub enum Job {
    Sample(SampleSpec),
    /// A restoration: its frames show each image's chains, their mean and
    /// their spread (x4).
    Restore(RestoreSpec),
}

impl Job {
    pub fn settings(&self) -> &SamplerConfig {
        match self {
            Job::Sample(s) => &s.settings,
            Job::Restore(r) => &r.settings,
        }
    }

    /// Chains a class (sampling) or an image (restoration).
    pub fn chains(&self) -> usize {
        match self {
            Job::Sample(s) => s.chains,
            Job::Restore(r) => r.chains,
        }
    }

    /// Runs the job to its summary line.
    fn run(&self, progress: &mut dyn Progress) -> Result<String> {
        match self {
            Job::Sample(s) => Ok(crate::run::sample(s, progress)?.to_string()),
            Job::Restore(r) => crate::run::jobs::restore::job(r, progress),
        }
    }
}

/// What the page asks of a running run.
#[derive(Debug, Default)]
struct Control {
    paused: bool,
    pending: Vec<Change>,
}

/// A run the server started: its control and its latest frame.
pub struct LiveRun {
    pub name: String,
    /// Whether the run adapts its step (then the step cannot be set by
    /// hand: the adapted one would silently replace it).
    adapting: bool,
    control: Mutex<Control>,
    wake: Condvar,
    pub frames: watch::Sender<Arc<Frame>>,
}

/// What the page may send to a running run.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Pause,
    Resume,
    Stop,
}

impl LiveRun {
    /// Starts `job` in a thread of its own; `chains_per_row` lays out the
    /// frames' grid; `done` is called when it ends.
    pub fn start(
        name: String,
        job: Job,
        chains_per_row: usize,
        done: impl FnOnce() + Send + 'static,
    ) -> Arc<LiveRun> {
        let first = Frame {
            state: "starting".into(),
            steps: job.settings().steps,
            run: name.clone(),
            ..Frame::default()
        };
        let run = Arc::new(LiveRun {
            name,
            adapting: job.settings().adapt.is_some(),
            control: Mutex::new(Control::default()),
            wake: Condvar::new(),
            frames: watch::channel(Arc::new(first)).0,
        });
        let me = run.clone();
        std::thread::spawn(move || {
            let mut watcher = Watcher {
                run: me.clone(),
                cols: chains_per_row.clamp(1, 16),
                per_class: job.chains(),
                restoring: matches!(job, Job::Restore(_)),
                started: Instant::now(),
                last: Frame::default(),
            };
            // a panic (a bug) ends this run as failed, not the server
            let result =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.run(&mut watcher)));
            let mut last = watcher.last;
            last.run = me.name.clone();
            last.elapsed_s = watcher.started.elapsed().as_secs_f64();
            (last.state, last.message) = match result {
                Ok(Ok(out)) => ("finished".into(), out),
                Ok(Err(e)) => ("failed".into(), e.to_string()),
                Err(_) => (
                    "failed".into(),
                    "the run stopped on an internal error (a bug: please report it)".into(),
                ),
            };
            // free the run's place before the page hears it ended
            done();
            me.frames.send_replace(Arc::new(last));
        });
        run
    }

    /// Pauses, resumes or stops the run (a stop ends the chains at the
    /// next step; the run writes its folder as a finished one).
    pub fn act(&self, action: Action) {
        let mut c = self.control.lock().unwrap_or_else(|p| p.into_inner());
        match action {
            Action::Pause => c.paused = true,
            Action::Resume => c.paused = false,
            Action::Stop => {
                c.paused = false;
                c.pending.push(Change {
                    stop: true,
                    ..Change::default()
                });
            }
        }
        self.wake.notify_all();
    }

    /// Queues a change of the settings for the next record.
    pub fn change(&self, change: Change) -> Result<()> {
        change.validate()?;
        if change.is_empty() {
            return Err(Error::setting(
                "change",
                "nothing",
                "at least one of eps1, eps2, eps3, step",
            ));
        }
        if change.step.is_some() && self.adapting {
            return Err(Error::unsupported(
                "changing the step of a run whose step is adapted (--adapt: dual averaging sets it)",
                "change eps1, eps2 or eps3, or start a run without --adapt to set the step by hand",
            ));
        }
        let mut c = self.control.lock().unwrap_or_else(|p| p.into_inner());
        c.pending.push(change);
        Ok(())
    }

    pub fn finished(&self) -> bool {
        self.frames.borrow().terminal()
    }
}

/// The run's [`Progress`]: sends frames and waits while paused.
struct Watcher {
    run: Arc<LiveRun>,
    cols: usize,
    per_class: usize,
    restoring: bool,
    started: Instant,
    last: Frame,
}

impl Watcher {
    /// The frame of `r`, with the settings as the `pending` changes leave
    /// them.
    fn frame(&self, r: &Record, paused: bool, pending: &[Change]) -> Result<Frame> {
        let out = r.out;
        let value = out.condition_value.last().cloned().unwrap_or_default();
        let n = value.len();
        let keyed: Vec<Change> = pending
            .iter()
            .map(|c| Change {
                at: r.step,
                ..c.clone()
            })
            .collect();
        let settings = r.settings.with_changes(&keyed);
        let now = settings.at_step(r.step);
        let snapshot = out
            .snapshots
            .last()
            .ok_or_else(|| Error::unsupported("a frame before any record", "wait for a record"))?;
        let (_, h, w, c) = snapshot.dims4()?;
        let mut images: Vec<f32> = snapshot.flatten_all()?.to_vec1()?;
        let (mut cells, mut cols) = (n, self.cols);
        if self.restoring {
            images = with_spread(&images, self.per_class.max(1), h * w * c);
            cols = self.per_class + 2;
            cells = images.len() / (h * w * c);
        }
        let (pixels, gw, gh) = grid(&images, cells, (h, w, c), cols, 1)?;
        let png = encode_png(&pixels, gw, gh, c)?;
        Ok(Frame {
            state: if paused { "paused" } else { "running" }.into(),
            step: r.step,
            steps: settings.last_step(),
            accept: out
                .accepted
                .iter()
                .map(|&a| a as f64 / r.step.max(1) as f64)
                .collect(),
            value,
            mean_value: r.mean,
            mean_accept: r.accept,
            step_size: r.step_size,
            eps1: now.eps1,
            eps2: now.eps2,
            eps3: now.eps3,
            rhat: rhat(&out.condition_value, self.per_class),
            grid: format!(
                "data:image/png;base64,{}",
                base64::engine::general_purpose::STANDARD.encode(png)
            ),
            cols,
            elapsed_s: self.started.elapsed().as_secs_f64(),
            run: self.run.name.clone(),
            message: String::new(),
        })
    }
}

impl Progress for Watcher {
    /// A frame at every record and whenever the run pauses or goes on;
    /// waits while paused; hands over the changes asked for.
    fn record(&mut self, r: &Record) -> Vec<Change> {
        let mut c = self.run.control.lock().unwrap_or_else(|p| p.into_inner());
        let mut sent: Option<bool> = None;
        loop {
            let paused = c.paused && !c.pending.iter().any(|p| p.stop);
            let fresh = sent.is_none() && (r.recorded || paused || !c.pending.is_empty());
            if fresh || sent.is_some_and(|s| s != paused) {
                // a frame that cannot be drawn is not worth stopping the run
                if let Ok(f) = self.frame(r, paused, &c.pending) {
                    self.last = f.clone();
                    self.run.frames.send_replace(Arc::new(f));
                }
                sent = Some(paused);
            }
            if !paused {
                return std::mem::take(&mut c.pending);
            }
            c = self.run.wake.wait(c).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// Each group of `chains` images (`per` values each) followed by its mean
/// and its standard deviation times 4 (at most 1): a restoration's image
/// as its chains see it now.
fn with_spread(images: &[f32], chains: usize, per: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(images.len() + 2 * images.len() / chains);
    for group in images.chunks(chains * per) {
        out.extend_from_slice(group);
        let k = (group.len() / per) as f32;
        let at = |p: usize| (0..group.len() / per).map(move |j| group[j * per + p]);
        let mean: Vec<f32> = (0..per).map(|p| at(p).sum::<f32>() / k).collect();
        let spread = (0..per).map(|p| {
            let var = at(p).map(|v| (v - mean[p]).powi(2)).sum::<f32>() / k;
            (4.0 * var.sqrt()).min(1.0)
        });
        out.extend_from_slice(&mean);
        out.extend(spread);
    }
    out
}

/// The largest rank R-hat over groups of `per_class` chains of the second
/// half of the records (`probability[record][chain]`); `None` with fewer
/// than 8 records in that half or one chain a class.
fn rhat(probability: &[Vec<f64>], per_class: usize) -> Option<f64> {
    let half = &probability[probability.len() / 2..];
    let n = half.first()?.len();
    if half.len() < 8 || per_class < 2 || n < per_class {
        return None;
    }
    (0..n / per_class)
        .map(|g| {
            let chains: Vec<Vec<f64>> = (g * per_class..(g + 1) * per_class)
                .map(|i| half.iter().map(|p| p[i]).collect())
                .collect();
            rank_rhat(&chains)
        })
        .filter(|r| r.is_finite())
        .reduce(f64::max)
}
