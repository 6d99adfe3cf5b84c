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

use anyhow::bail;

use super::run_folder::{
    build_in, new_run_dir, refuse_existing, run_to_end, write_manifest, write_rgb_files,
};
use super::sample::SampleArgs;
use ppgn::data::imagenet;
use ppgn::models::caffe::{CaffeNetConfig, DgnConfig};
use ppgn::models::pretrained;
use ppgn::run::pretrained::PlugPair;

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
    let cfg = a.settings()?;
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
    refuse_existing(&out, a.force)?;
    let pair = load()?;
    let per_chain: Vec<usize> = classes
        .iter()
        .flat_map(|&c| std::iter::repeat_n(c, a.chains))
        .collect();
    let n = per_chain.len();
    let pipeline = pair.pipeline(&per_chain, &cfg)?;
    let z0 = pair.initial_codes(n, a.seed)?;
    let side = pair.side;
    let (o, top1_fraction) = build_in(&out, a.force, |tmp| {
        let o = run_to_end(
            &pipeline,
            &cfg,
            &z0,
            a.seed,
            a.record_every,
            a.quiet,
            "sample",
        )?;
        let labels: Vec<i64> = per_chain.iter().map(|&c| c as i64).collect();
        write_rgb_files(
            tmp,
            &o,
            &z0,
            &pipeline.decode,
            &pair.to_rgb,
            side,
            a.chains,
            &labels,
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
        write_manifest(tmp, &manifest)?;
        Ok((o, top1_fraction))
    })?;
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
