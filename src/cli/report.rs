//! `ppgn report`: runs the samplers at equal gradient budgets and the
//! studies of the papers' figures, and writes docs/results.md (with its
//! images in docs/results/ and every number in docs/results/results.json).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use candle_core::{DType, Device, Tensor};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use rand::seq::SliceRandom;
use rand::SeedableRng;

use ppgn::data::fashion_mnist::{self, parse_class, Split, CLASS_NAMES};
use ppgn::data::image::save_grid;
use ppgn::eval::experiments::{
    chain_study, compare_one, mean_over_classes, noise_robustness, real_per_class, ChainStudy,
    Yardsticks,
};
use ppgn::eval::report::{features_and_probs, reference, score};
use ppgn::eval::results::{self, BudgetTable, Report, TsneInfo};
use ppgn::models::fashion::{self as stack, Discriminator, Stack};
use ppgn::run::preset::{preset, PriorKind, SamplerConfig};
use ppgn::sampler::schedule::Schedule;
use ppgn::viz::{tsne::Tsne, tsne_grid_png};

#[derive(Args, Debug)]
#[command(
    after_help = "Defaults take under 30 minutes on 2 cores. Smaller --per-class, \
--budgets and --study-steps give a quick look (the numbers then differ)."
)]
pub struct ReportArgs {
    /// Folder for results.md and results/ (images and results.json).
    #[arg(long, default_value = "docs")]
    pub out: PathBuf,
    /// Chains per class for every sampler (and real test images per class for the baseline).
    #[arg(long, default_value_t = 20)]
    pub per_class: usize,
    /// Gradient evaluations per chain, comma-separated: one table per budget.
    #[arg(long, default_value = "200,800", value_delimiter = ',')]
    pub budgets: Vec<usize>,
    /// Chains per class in the eps1/eps3/mixing studies.
    #[arg(long, default_value_t = 3)]
    pub study_chains: usize,
    /// Steps of the eps1/eps3/mixing studies and of the t-SNE chains.
    #[arg(long, default_value_t = 200)]
    pub study_steps: usize,
    /// Class of the t-SNE grid (Fig. S11).
    #[arg(long, default_value = "bag")]
    pub tsne_class: String,
    /// PPGN chains of the t-SNE grid (S11 ran 10).
    #[arg(long, default_value_t = 10)]
    pub tsne_chains: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long)]
    pub models: Option<PathBuf>,
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Frechet reference: the first N training images (default all 60000;
    /// fewer for a quick look).
    #[arg(long)]
    pub reference_images: Option<usize>,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

/// The compared samplers: (label, preset).
const SAMPLERS: [(&str, &str); 7] = [
    (results::MAP_CLIP, "dgn-am"),
    (results::MAP, "xu-map"),
    (results::MALA, "xu-mala"),
    (results::MALA_CLIP, "xu-mala-clip"),
    (results::HMC, "xu-hmc"),
    (results::PPGN, "ppgn"),
    (results::DGN_CHAIN, "dgn-am-chain"),
];

fn bar(quiet: bool, len: usize, what: &str) -> ProgressBar {
    let b = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(len as u64)
    };
    b.set_style(
        ProgressStyle::with_template("report [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .expect("valid template"),
    );
    b.set_message(what.to_string());
    b
}

/// Images `[n, 28, 28, 1]` as one `Vec<f32>` per image.
fn per_image(t: &Tensor) -> anyhow::Result<Vec<Vec<f32>>> {
    Ok(t.flatten_from(1)?.to_vec2::<f32>()?)
}

/// One row per chain in `chains`, up to 12 evenly spaced snapshots across.
fn filmstrip_rows(s: &ChainStudy, chains: &[usize]) -> anyhow::Result<Vec<Vec<f32>>> {
    let k = s.filmstrip.len();
    let picks: Vec<usize> = if k <= 12 {
        (0..k).collect()
    } else {
        (0..12).map(|j| j * (k - 1) / 11).collect()
    };
    let snaps: Vec<Vec<Vec<f32>>> = picks
        .iter()
        .map(|&j| per_image(&s.filmstrip[j]))
        .collect::<anyhow::Result<_>>()?;
    Ok(chains
        .iter()
        .map(|&c| snaps.iter().flat_map(|sn| sn[c].iter().copied()).collect())
        .collect())
}

fn save_rows(path: &Path, rows: &[Vec<f32>], cols: usize) -> anyhow::Result<()> {
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    save_grid(path, &flat, flat.len() / 784, (28, 28, 1), cols)?;
    Ok(())
}

pub fn run(a: ReportArgs) -> anyhow::Result<()> {
    if a.per_class < 2 || a.study_chains == 0 || a.study_steps < 4 || a.tsne_chains == 0 {
        bail!("--per-class must be at least 2, --study-chains and --tsne-chains at least 1, --study-steps at least 4");
    }
    if a.budgets.is_empty() || a.budgets.contains(&0) {
        bail!("--budgets: expected positive gradient-evaluation counts, e.g. 200,800");
    }
    let tsne_class = parse_class(&a.tsne_class)?;
    let device = Device::Cpu;
    let dir = stack::resolve_dir(a.models.as_deref());
    let s = Stack::load(&dir, DType::F32, &device)?;
    if !stack::paths(&dir, "realness").0.exists() {
        bail!(
            "the report needs the realness judge in {}: train it with `ppgn train realness`",
            dir.display()
        );
    }
    let (judge, _) = stack::load(&dir, "realness", DType::F32, &device, Discriminator::new)?;
    let data_dir = fashion_mnist::resolve_dir(a.data_dir.as_deref());
    let mut train = fashion_mnist::load(&data_dir, Split::Train)?;
    if let Some(n) = a.reference_images {
        if !(100..=train.len()).contains(&n) {
            bail!("--reference-images {n}: expected 100 to {}", train.len());
        }
        train.images.truncate(n * 784);
        train.labels.truncate(n);
    }
    let test = fashion_mnist::load(&data_dir, Split::Test)?;
    let refs = reference(&s.evaluator, &train, &device)?;
    let y = Yardsticks {
        reference: &refs,
        judge: Some(&judge),
    };
    let classes: Vec<usize> = (0..10).collect();

    // everything is built in a hidden folder and moved into place at the end
    let img_dir = a.out.join(".results.partial");
    let _ = std::fs::remove_dir_all(&img_dir);
    std::fs::create_dir_all(&img_dir).with_context(|| format!("creating {}", img_dir.display()))?;
    let result = build(&a, &s, &y, &test, &classes, tsne_class, &img_dir);
    let (report, timing) = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&img_dir);
            return Err(e);
        }
    };
    let json = serde_json::to_string_pretty(&report)?;
    ppgn::fsutil::write_atomic(
        &img_dir.join("results.json"),
        format!("{json}\n").as_bytes(),
    )?;
    let final_dir = a.out.join("results");
    if final_dir.exists() {
        std::fs::remove_dir_all(&final_dir)
            .with_context(|| format!("replacing {}", final_dir.display()))?;
    }
    std::fs::rename(&img_dir, &final_dir)
        .with_context(|| format!("moving the images into {}", final_dir.display()))?;
    let md = a.out.join("results.md");
    ppgn::fsutil::write_atomic(&md, results::render(&report, &timing).as_bytes())?;
    let supported = report.claims.iter().filter(|c| c.supported).count();
    println!(
        "wrote {} and {}: {} of {} claims supported",
        md.display(),
        final_dir.display(),
        supported,
        report.claims.len()
    );
    Ok(())
}

type Timing = Vec<(String, usize, f64)>;

fn build(
    a: &ReportArgs,
    s: &Stack,
    y: &Yardsticks,
    test: &fashion_mnist::Dataset,
    classes: &[usize],
    tsne_class: usize,
    img_dir: &Path,
) -> anyhow::Result<(Report, Timing)> {
    // the baseline row: as many real test images per class as samples
    let (real_x, real_labels, _) = real_per_class(test, classes, a.per_class, a.seed)?;
    let real = score(&s.evaluator, y.judge, &real_x, &real_labels, y.reference)?;
    let real_mean_ms_ssim = mean_over_classes(&real.ms_ssim_per_class);
    // the evaluator's card holds its accuracy on the whole test set (the
    // shipped-card test checks it is reproduced)
    let real_full_accuracy = s
        .cards
        .iter()
        .find(|c| c.network == "evaluator")
        .and_then(|c| c.metrics.get("test_accuracy").copied())
        .context("the evaluator's card lacks its test_accuracy")?;
    let mut timing = Vec::new();
    let cols = a.per_class.min(10);
    let grid_of = |t: &Tensor| -> anyhow::Result<Vec<Vec<f32>>> {
        let imgs = per_image(t)?;
        Ok((0..10)
            .flat_map(|c| imgs[c * a.per_class..c * a.per_class + cols].to_vec())
            .collect())
    };
    let mut budgets = Vec::new();
    for &b in &a.budgets {
        let mut rows = Vec::new();
        for (label, name) in SAMPLERS {
            let cfg = preset(name)?;
            let steps = b / cfg.grads_per_step();
            let pb = bar(
                a.quiet,
                steps,
                &format!("{label} at {b} gradient evaluations"),
            );
            let mut r = compare_one(s, y, label, &cfg, a.per_class, b, a.seed, &real, &mut |t| {
                pb.set_position(t as u64)
            })?;
            pb.finish_and_clear();
            let png = img_dir.join(
                results::grid_name(label, b)
                    .strip_prefix("results/")
                    .expect("grid names are under results/"),
            );
            save_rows(
                &png,
                &grid_of(r.images.as_ref().expect("images kept"))?,
                cols,
            )?;
            r.images = None;
            timing.push((label.to_string(), b, r.wall_s));
            rows.push(r);
        }
        budgets.push(BudgetTable {
            grad_evals: b,
            rows,
        });
    }

    // how the ppgn preset's step was chosen, at the first budget
    let b0 = a.budgets[0];
    let mut step_study = Vec::new();
    for step in [0.1, 0.2, 0.3] {
        let cfg = SamplerConfig {
            step: Schedule::Constant { value: step },
            ..preset("ppgn")?
        };
        if let Some(same) = budgets[0]
            .rows
            .iter()
            .find(|r| r.label == results::PPGN && r.config.step == cfg.step)
        {
            step_study.push(same.clone());
            continue;
        }
        let pb = bar(a.quiet, b0, &format!("PPGN step {step}"));
        let mut r = compare_one(
            s,
            y,
            &format!("PPGN step {step}"),
            &cfg,
            a.per_class,
            b0,
            a.seed,
            &real,
            &mut |t| pb.set_position(t as u64),
        )?;
        pb.finish_and_clear();
        timing.push((r.label.clone(), b0, r.wall_s));
        r.images = None;
        step_study.push(r);
    }

    // the chain studies start from real images of the class after the target
    let starts_of: Vec<usize> = classes.iter().map(|&c| (c + 1) % 10).collect();
    let (starts, _, _) = real_per_class(test, &starts_of, a.study_chains, a.seed + 1)?;
    let targets: Vec<usize> = classes
        .iter()
        .flat_map(|&c| std::iter::repeat_n(c, a.study_chains))
        .collect();
    let record_every = (a.study_steps / 20).max(1);
    let shown = [0, 5 * a.study_chains];
    let study = |label: String, value: f64, cfg: SamplerConfig| -> anyhow::Result<ChainStudy> {
        let cfg = SamplerConfig {
            steps: a.study_steps,
            ..cfg
        };
        let pb = bar(a.quiet, a.study_steps, &label);
        let r = chain_study(
            s,
            &label,
            value,
            &cfg,
            &starts,
            &targets,
            record_every,
            a.seed,
            &mut |t| pb.set_position(t as u64),
        )?;
        pb.finish_and_clear();
        Ok(r)
    };
    let ppgn = preset("ppgn")?;
    let mut eps1_sweep = Vec::new();
    for e in [1.0, 1e-1, 1e-3, 1e-5, 0.0] {
        eps1_sweep.push(study(
            format!("eps1 = {}", short(e)),
            e,
            SamplerConfig {
                eps1: e,
                ..ppgn.clone()
            },
        )?);
    }
    let mut eps3_sweep = Vec::new();
    for e in [0.3, 0.1, 0.03, 0.01, 1e-17] {
        eps3_sweep.push(study(
            format!("eps3 = {}", short(e)),
            e,
            SamplerConfig {
                eps3: e,
                ..ppgn.clone()
            },
        )?);
    }
    let mut mixing = vec![
        study(results::PPGN.into(), 0.0, ppgn.clone())?,
        study(results::DGN_CHAIN.into(), 0.0, preset("dgn-am-chain")?)?,
    ];
    if s.h_dae.is_some() {
        mixing.push(study(
            "h-DAE prior (S13c)".into(),
            0.0,
            SamplerConfig {
                prior: PriorKind::HDae,
                ..ppgn.clone()
            },
        )?);
    }
    for (name, v) in [
        ("eps1-sweep.png", &eps1_sweep),
        ("eps3-sweep.png", &eps3_sweep),
        ("mixing.png", &mixing),
    ] {
        let rows: Vec<Vec<f32>> = v
            .iter()
            .map(|st| filmstrip_rows(st, &shown))
            .collect::<anyhow::Result<Vec<_>>>()?
            .concat();
        let cols = rows.first().map_or(1, |r| r.len() / 784);
        save_rows(&img_dir.join(name), &rows, cols)?;
    }

    // Fig. S16: G's robustness to noise in h
    let (nx, nl, _) = real_per_class(test, classes, 10, a.seed + 2)?;
    let fractions = [0.0, 0.01, 0.1, 0.2, 0.3, 0.4];
    let (mean_act, noise) = noise_robustness(s, &nx, &nl, &fractions, a.seed)?;
    {
        let real_imgs = per_image(&nx)?;
        let levels: Vec<Vec<Vec<f32>>> = noise
            .iter()
            .map(|p| per_image(p.images.as_ref().expect("images kept")))
            .collect::<anyhow::Result<_>>()?;
        let rows: Vec<Vec<f32>> = (0..10)
            .map(|c| {
                let i = c * 10;
                std::iter::once(&real_imgs[i])
                    .chain(levels.iter().map(|l| &l[i]))
                    .flatten()
                    .copied()
                    .collect()
            })
            .collect();
        save_rows(
            &img_dir.join("noise-robustness.png"),
            &rows,
            fractions.len() + 1,
        )?;
    }

    // Fig. S11: t-SNE grid of confident snapshots of one class
    let threshold = 0.97;
    let tsne_cfg = SamplerConfig {
        steps: a.study_steps,
        ..ppgn.clone()
    };
    let h0 = ppgn::run::chains::random_codes(a.tsne_chains, s.classifier.cfg.h_dim, a.seed + 3)?;
    let pb = bar(a.quiet, a.study_steps, "t-SNE chains");
    let never = std::sync::atomic::AtomicBool::new(false);
    let condition = ppgn::run::chains::Condition::Classes(vec![tsne_class; a.tsne_chains]);
    let pipeline = ppgn::run::chains::Pipeline::fashion(s, &tsne_cfg, &condition)?;
    let out = match ppgn::run::chains::run_chains(
        &pipeline,
        &tsne_cfg,
        &h0,
        a.seed + 3,
        1,
        None,
        &never,
        |t, _, _| pb.set_position(t as u64),
        |_| Ok(()),
    )? {
        ppgn::run::chains::Outcome::Finished(o) => o,
        ppgn::run::chains::Outcome::Interrupted(_) => bail!("t-SNE chains stopped"),
    };
    pb.finish_and_clear();
    let mut kept: Vec<Vec<f32>> = Vec::new();
    for (snap, p) in out.snapshots.iter().zip(&out.probability).skip(1) {
        let imgs = per_image(snap)?;
        kept.extend(
            (0..imgs.len())
                .filter(|&i| p[i] >= threshold)
                .map(|i| imgs[i].clone()),
        );
    }
    let n_kept = kept.len();
    kept.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(a.seed));
    kept.truncate(400);
    if kept.len() >= 4 {
        let flat: Vec<f32> = kept.iter().flatten().copied().collect();
        let t = Tensor::from_vec(flat, (kept.len(), 28, 28, 1), &Device::Cpu)?;
        let (f, _) = features_and_probs(&s.evaluator, &t)?;
        let png = tsne_grid_png(
            &kept,
            &f,
            &Tsne {
                seed: a.seed,
                ..Tsne::default()
            },
        )?;
        ppgn::fsutil::write_atomic(&img_dir.join("tsne.png"), &png)?;
    }

    let mut report = Report {
        command: super::command_line(),
        seed: a.seed,
        per_class: a.per_class,
        study_chains: a.study_chains,
        study_steps: a.study_steps,
        real,
        real_mean_ms_ssim,
        real_full_accuracy,
        budgets,
        step_study,
        eps1_sweep,
        eps3_sweep,
        noise_mean_activation: mean_act,
        noise,
        mixing,
        tsne: TsneInfo {
            class: CLASS_NAMES[tsne_class].to_string(),
            chains: a.tsne_chains,
            steps: a.study_steps,
            threshold,
            kept: n_kept,
            shown: kept.len(),
        },
        claims: Vec::new(),
    };
    report.claims = results::claims(&report);
    Ok((report, timing))
}

/// A sweep value as a person writes it: 1e-17, 0.01, 1.
fn short(v: f64) -> String {
    if v != 0.0 && v.abs() < 1e-3 {
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}
