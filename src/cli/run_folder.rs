//! Run folders, built hidden and renamed into place, and what every RGB
//! run (pretrained generators, pixel-space visualisation) shares: running
//! the chains with a progress bar and Ctrl-C, and the files it writes.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Context};
use candle_core::Tensor;
use indicatif::{ProgressBar, ProgressStyle};

use ppgn::data::image::save_grid;
use ppgn::data::npy;
use ppgn::fsutil::write_atomic;
use ppgn::nn::Func;
use ppgn::run::chains::{run_chains, ChainsOutput, Outcome, Pipeline};
use ppgn::run::preset::SamplerConfig;

/// A new folder under `runs/` (`runs/sample-001`, ...).
pub fn new_run_dir() -> PathBuf {
    (1..)
        .map(|i| PathBuf::from(format!("runs/sample-{i:03}")))
        .find(|p| !p.exists())
        .unwrap_or_else(|| PathBuf::from("runs/sample"))
}

/// Refuses an existing run folder unless `force`.
pub fn refuse_existing(out: &Path, force: bool) -> anyhow::Result<()> {
    if out.exists() && !force {
        bail!(
            "run folder {} exists; choose another --out or pass --force to replace it",
            out.display()
        );
    }
    Ok(())
}

/// The hidden sibling folder a run is built in before it is renamed to `out`.
pub fn partial_path(out: &Path) -> PathBuf {
    out.with_file_name(format!(
        ".{}.partial",
        out.file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default()
    ))
}

/// Builds a run in a fresh hidden folder beside `out` with `build`, then
/// renames it into place; on any error the hidden folder is removed, so a
/// failed or interrupted run leaves nothing. Refuses an existing `out`
/// unless `force`.
pub fn build_in<T>(
    out: &Path,
    force: bool,
    build: impl FnOnce(&Path) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    refuse_existing(out, force)?;
    let tmp = partial_path(out);
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let result = build(&tmp).and_then(|v| {
        if out.exists() {
            std::fs::remove_dir_all(out).with_context(|| format!("replacing {}", out.display()))?;
        }
        std::fs::rename(&tmp, out)
            .with_context(|| format!("renaming {} to {}", tmp.display(), out.display()))?;
        Ok(v)
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

/// Runs the chains to `cfg.steps` with a progress bar; Ctrl-C stops them
/// with an error (these runs do not resume).
#[allow(clippy::too_many_arguments)]
pub fn run_to_end(
    pipeline: &Pipeline,
    cfg: &SamplerConfig,
    start: &Tensor,
    seed: u64,
    record_every: usize,
    quiet: bool,
    what: &str,
) -> anyhow::Result<ChainsOutput> {
    static STOP: AtomicBool = AtomicBool::new(false);
    let _ = ctrlc::set_handler(|| STOP.store(true, Ordering::SeqCst));
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(cfg.steps as u64)
    };
    bar.set_style(ProgressStyle::with_template(&format!(
        "{what} [{{elapsed_precise}}] {{bar:30}} {{pos}}/{{len}} steps, {{per_sec}}, {{msg}}"
    ))?);
    let outcome = run_chains(
        pipeline,
        cfg,
        start,
        seed,
        record_every,
        None,
        &STOP,
        |t, p, acc| {
            bar.set_position(t as u64);
            bar.set_message(format!("mean {p:.3}, accept {acc:.2}"));
        },
        |_| Ok(()),
    )?;
    bar.finish_and_clear();
    match outcome {
        Outcome::Finished(o) => Ok(o),
        Outcome::Interrupted(o) => {
            bail!(
                "stopped after {} of {} steps; nothing written (this kind of run does not resume)",
                o.step,
                cfg.steps
            )
        }
    }
}

/// grid.png (final images, `cols` per row), start.png (the decoded
/// starting positions), chains.png (each chain over time, up to 12
/// snapshots), samples.npy (`[n, 3, side, side]` RGB in [0, 1]) and
/// labels.npy; `to_rgb` maps decoded images to RGB in [0, 1].
#[allow(clippy::too_many_arguments)]
pub fn write_rgb_files(
    dir: &Path,
    o: &ChainsOutput,
    start: &Tensor,
    decode: &Func,
    to_rgb: &Func,
    side: usize,
    cols: usize,
    labels: &[i64],
) -> anyhow::Result<()> {
    let rgb = |t: &Tensor| -> anyhow::Result<Vec<f32>> {
        Ok(to_rgb(t)?.flatten_all()?.to_vec1::<f32>()?)
    };
    let n = o.images.dim(0)?;
    let hwc = (side, side, 3);
    let images = rgb(&o.images)?; // [n, side, side, 3]
    save_grid(&dir.join("grid.png"), &images, n, hwc, cols)?;
    save_grid(&dir.join("start.png"), &rgb(&decode(start)?)?, n, hwc, cols)?;
    let k = o.snapshots.len();
    let picks: Vec<usize> = if k <= 12 {
        (0..k).collect()
    } else {
        (0..12).map(|j| j * (k - 1) / 11).collect()
    };
    let snaps: Vec<Vec<f32>> = picks
        .iter()
        .map(|&j| rgb(&o.snapshots[j]))
        .collect::<anyhow::Result<_>>()?;
    let per = side * side * 3;
    let strip: Vec<f32> = (0..n)
        .flat_map(|c| {
            snaps
                .iter()
                .flat_map(move |s| s[c * per..(c + 1) * per].iter().copied())
        })
        .collect();
    save_grid(
        &dir.join("chains.png"),
        &strip,
        n * picks.len(),
        hwc,
        picks.len(),
    )?;
    let nchw: Vec<f32> = to_rgb(&o.images)?
        .permute((0, 3, 1, 2))?
        .flatten_all()?
        .to_vec1::<f32>()?;
    npy::write_f32(&dir.join("samples.npy"), &[n, 3, side, side], &nchw)?;
    npy::write_i64(&dir.join("labels.npy"), &[n], labels)?;
    Ok(())
}

/// Writes manifest.json.
pub fn write_manifest(dir: &Path, manifest: &serde_json::Value) -> anyhow::Result<()> {
    write_atomic(
        &dir.join("manifest.json"),
        serde_json::to_string_pretty(manifest)?.as_bytes(),
    )?;
    Ok(())
}
