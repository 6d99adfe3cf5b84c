//! `ppgn sample --generator dcgan-faces --classifier efficientnet-lite0
//! --class sunglasses` (or `--generator dgn-fc6 --classifier alexnet
//! --weights DIR`): plug and play with pretrained networks we did not
//! train. Same samplers, presets and flags as the Fashion-MNIST runs; the
//! run folder holds grid.png (final images, one row per class), start.png
//! (the unconditioned images G(z0) of the same seeds), chains.png (each
//! chain over time), samples.npy (float32 N x 3 x side x side in [0, 1]),
//! labels.npy and manifest.json (settings, weights' SHA-256, per-chain
//! p(y|x) and the classifier's top-1 class, the fraction of chains whose
//! top-1 class is the requested one, per class).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Context};
use candle_core::Tensor;
use indicatif::{ProgressBar, ProgressStyle};

use super::sample::{new_run_dir, resolve_config, SampleArgs};
use crate::data::image::save_grid;
use crate::data::{imagenet, npy};
use crate::fsutil::write_atomic;
use crate::models::caffe::{CaffeNetConfig, DgnConfig};
use crate::models::pretrained;
use crate::run::chains::{run_chains, Outcome};
use crate::run::pretrained::PlugPair;

pub fn run(a: SampleArgs) -> anyhow::Result<()> {
    let load = || -> anyhow::Result<PlugPair> {
        Ok(match (a.generator.as_str(), a.classifier.as_str()) {
            ("dcgan-faces", "efficientnet-lite0") => PlugPair::faces_imagenet(&pretrained::home())?,
            ("dgn-fc6", "alexnet") => {
                let Some(dir) = &a.weights else {
                    bail!("--generator dgn-fc6 --classifier alexnet needs --weights DIR with the converted Caffe weights (docs/caffe-weights.md)")
                };
                PlugPair::caffe(dir, DgnConfig::fc6(), CaffeNetConfig::caffenet())?
            }
            (g, c) => bail!(
                "--generator {g} with --classifier {c}: the supported pairs are fashion with fashion (the shipped stack), dcgan-faces with efficientnet-lite0, and dgn-fc6 with alexnet"
            ),
        })
    };
    if a.neuron.is_some() || a.keep_above.is_some() || a.resume || a.init != "random" {
        bail!("--neuron, --keep-above, --resume and --init work on the Fashion-MNIST stack only; pretrained pairs start from random codes");
    }
    let cfg = resolve_config(&a)?;
    if a.chains == 0 {
        bail!("--chains must be at least 1");
    }
    let names = imagenet::class_names();
    let classes: Vec<usize> = a
        .class
        .split(',')
        .map(imagenet::parse_class)
        .collect::<Result<_, _>>()?;
    let out = a.out.clone().unwrap_or_else(new_run_dir);
    if out.exists() && !a.force {
        bail!(
            "run folder {} exists; choose another --out or pass --force to replace it",
            out.display()
        );
    }
    let pair = load()?;
    let per_chain: Vec<usize> = classes
        .iter()
        .flat_map(|&c| std::iter::repeat_n(c, a.chains))
        .collect();
    let n = per_chain.len();
    let pipeline = pair.pipeline(&per_chain, &cfg)?;
    let z0 = pair.initial_codes(n, a.seed)?;
    let rgb = |t: &Tensor| -> anyhow::Result<Vec<f32>> {
        Ok((pair.to_rgb)(t)?.flatten_all()?.to_vec1::<f32>()?)
    };
    let side = pair.side;

    let tmp = out.with_file_name(format!(
        ".{}.partial",
        out.file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    static STOP: AtomicBool = AtomicBool::new(false);
    let _ = ctrlc::set_handler(|| STOP.store(true, Ordering::SeqCst));
    let bar = if a.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(cfg.steps as u64)
    };
    bar.set_style(ProgressStyle::with_template(
        "sample [{elapsed_precise}] {bar:30} {pos}/{len} steps, {per_sec}, {msg}",
    )?);
    let outcome = run_chains(
        &pipeline,
        &cfg,
        &z0,
        a.seed,
        a.record_every,
        None,
        &STOP,
        |t, p, acc| {
            bar.set_position(t as u64);
            bar.set_message(format!("mean p {p:.3}, accept {acc:.2}"));
        },
        |_| Ok(()),
    )?;
    bar.finish_and_clear();
    let o = match outcome {
        Outcome::Finished(o) => o,
        Outcome::Interrupted(o) => {
            let _ = std::fs::remove_dir_all(&tmp);
            bail!(
                "stopped after {} of {} steps; nothing written (runs of pretrained networks do not resume yet)",
                o.step,
                cfg.steps
            );
        }
    };

    let images = rgb(&o.images)?; // [n, side, side, 3]
    save_grid(&tmp.join("grid.png"), &images, n, (side, side, 3), a.chains)?;
    save_grid(
        &tmp.join("start.png"),
        &rgb(&(pipeline.decode)(&z0)?)?,
        n,
        (side, side, 3),
        a.chains,
    )?;
    // filmstrip: one row per chain, up to 12 evenly spaced snapshots
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
        &tmp.join("chains.png"),
        &strip,
        n * picks.len(),
        (side, side, 3),
        picks.len(),
    )?;
    let nchw: Vec<f32> = (pair.to_rgb)(&o.images)?
        .permute((0, 3, 1, 2))?
        .flatten_all()?
        .to_vec1::<f32>()?;
    npy::write_f32(&tmp.join("samples.npy"), &[n, 3, side, side], &nchw)?;
    npy::write_i64(
        &tmp.join("labels.npy"),
        &[n],
        &per_chain.iter().map(|&c| c as i64).collect::<Vec<_>>(),
    )?;

    let top1 = pair.top1(&o.images)?;
    let last_p = o.probability.last().cloned().unwrap_or_default();
    let mut hits: BTreeMap<usize, (usize, usize)> = BTreeMap::new();
    let chains: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            let e = hits.entry(per_chain[i]).or_default();
            e.0 += (top1[i] == per_chain[i]) as usize;
            e.1 += 1;
            serde_json::json!({
                "class": per_chain[i], "class_name": names[per_chain[i]],
                "final_probability": last_p.get(i), "top1": top1[i], "top1_name": names[top1[i]],
                "accept_rate": o.accepted[i] as f64 / o.step.max(1) as f64,
                "divergences": o.divergences[i],
                "probability": o.probability.iter().map(|p| p[i]).collect::<Vec<_>>(),
            })
        })
        .collect();
    let top1_fraction: BTreeMap<String, f64> = hits
        .iter()
        .map(|(c, (h, t))| (names[*c].to_string(), *h as f64 / *t as f64))
        .collect();
    let manifest = serde_json::json!({
        "command": super::command_line(),
        "seed": a.seed,
        "networks": &pair.provenance,
        "sampler": &cfg,
        "chains_per_class": a.chains,
        "steps": o.step,
        "grad_evals_per_chain": o.grad_evals,
        "record_every": a.record_every,
        "wall_time_s": o.wall_s,
        "top1_is_requested_class": &top1_fraction,
        "chains": chains,
    });
    write_atomic(
        &tmp.join("manifest.json"),
        serde_json::to_string_pretty(&manifest)?.as_bytes(),
    )?;
    if out.exists() {
        std::fs::remove_dir_all(&out).with_context(|| format!("replacing {}", out.display()))?;
    }
    std::fs::rename(&tmp, &out)
        .with_context(|| format!("renaming {} to {}", tmp.display(), out.display()))?;
    let summary: Vec<String> = top1_fraction
        .iter()
        .map(|(c, f)| format!("{c} {:.0}%", 100.0 * f))
        .collect();
    println!(
        "{n} chains x {} steps of {} in {:.1} s: the classifier's top-1 class is the requested one for {}; wrote {}",
        o.step,
        cfg.preset,
        o.wall_s,
        summary.join(", "),
        out.display()
    );
    Ok(())
}
