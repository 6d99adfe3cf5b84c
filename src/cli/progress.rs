//! The CLI's [`Progress`]: an indicatif bar on stderr, and Ctrl-C as a
//! request to stop (resumable runs then write their checkpoint).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

use indicatif::{ProgressBar, ProgressStyle};
use ppgn::run::Progress;

static STOP: AtomicBool = AtomicBool::new(false);
static HANDLER: Once = Once::new();

/// A progress bar (hidden with `quiet`) that stops the job on Ctrl-C, or
/// after `stop_after` steps (a test hook).
pub struct Bar {
    bar: ProgressBar,
    quiet: bool,
    stop_after: Option<usize>,
    step: usize,
}

impl Bar {
    pub fn new(quiet: bool, stop_after: Option<usize>) -> Self {
        HANDLER.call_once(|| {
            // a second handler cannot be set in one process; this one serves all
            let _ = ctrlc::set_handler(|| STOP.store(true, Ordering::SeqCst));
        });
        Self {
            bar: ProgressBar::hidden(),
            quiet,
            stop_after,
            step: 0,
        }
    }
}

impl Progress for Bar {
    fn begin(&mut self, what: &str, total: usize) {
        self.bar = if self.quiet {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(total as u64)
        };
        if let Ok(style) = ProgressStyle::with_template(&format!(
            "{what} [{{elapsed_precise}}] {{bar:30}} {{pos}}/{{len}} steps, {{per_sec}}, {{msg}}"
        )) {
            self.bar.set_style(style);
        }
    }
    fn update(&mut self, step: usize, mean: f64, accept: f64) {
        self.step = step;
        self.bar.set_position(step as u64);
        self.bar
            .set_message(format!("mean {mean:.3}, accept {accept:.2}"));
    }
    fn note(&mut self, line: &str) {
        if self.quiet {
            return;
        }
        if self.bar.is_hidden() {
            eprintln!("{line}");
        } else {
            self.bar.println(line);
        }
    }
    fn end(&mut self) {
        self.bar.finish_and_clear();
    }
    fn should_stop(&self) -> bool {
        STOP.load(Ordering::SeqCst) || self.stop_after.is_some_and(|k| self.step >= k)
    }
}
