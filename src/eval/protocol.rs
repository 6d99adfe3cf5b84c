//! The report's protocol (`ppgn report`): runs the samplers at equal
//! gradient budgets and the studies of the papers' figures, and writes
//! `results.md` (with its images in `results/` and every number in
//! `results/results.json`), built in a hidden folder and moved into place.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Module, Tensor};

use super::experiments::phase;
use super::experiments::{compare_one, mean_over_classes, real_per_class, SamplerRow, Yardsticks};
use super::generators;
use super::report::{reference, score, Scores};
use super::results::{self, BudgetTable, Report};
use super::resume::{RowCache, RowKey};
use super::studies::{per_image, save_rows, Studies, StudySettings};
use crate::data::fashion_mnist::{self, parse_class, Dataset, Split};
use crate::error::{Error, Result};
use crate::fsutil::write_atomic;
use crate::models::fashion::{self as stack, Discriminator, Stack};
use crate::run::config::preset::{preset, SamplerConfig};
use crate::run::Progress;

/// What the report runs.
#[derive(Debug, Clone)]
pub struct ReportSpec {
    /// Folder for results.md and results/.
    pub out: PathBuf,
    /// Chains per class for every sampler (and real test images per class).
    pub per_class: usize,
    /// Gradient evaluations per chain: one table per budget.
    pub budgets: Vec<usize>,
    /// Chains per class in the eps1/eps3/mixing studies.
    pub study_chains: usize,
    /// Steps of the studies and of the t-SNE chains.
    pub study_steps: usize,
    /// Class of the t-SNE grid (Fig. S11).
    pub tsne_class: String,
    /// PPGN chains of the t-SNE grid.
    pub tsne_chains: usize,
    pub seed: u64,
    pub models: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    /// Frechet reference: the first N training images (default all).
    pub reference_images: Option<usize>,
    /// Draws of each prior alone, and test images reconstructed beside them.
    pub prior_draws: usize,
    /// A folder of trained generator candidates (`scripts/generator-study.sh`)
    /// to compare in the report (Fig. S8's loss ablation), if any.
    pub generator_study: Option<PathBuf>,
    /// A folder where every sampler's row is kept as it is scored and read
    /// back by a later report of the same networks and settings
    /// ([`super::resume`]).
    pub cache: Option<PathBuf>,
    /// The command line, for the report.
    pub command: String,
}

/// Where the report went and what it found.
#[derive(Debug, Clone)]
pub struct ReportOutput {
    pub markdown: PathBuf,
    pub images: PathBuf,
    pub supported: usize,
    pub claims: usize,
}

impl std::fmt::Display for ReportOutput {
    /// What the report wrote and how many claims it supported, in a line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "wrote {} and {}: {} of {} claims supported",
            self.markdown.display(),
            self.images.display(),
            self.supported,
            self.claims
        )
    }
}

impl ReportSpec {
    pub fn validate(&self) -> Result<()> {
        if self.per_class < 2
            || self.study_chains == 0
            || self.study_steps < 4
            || self.tsne_chains == 0
            || self.prior_draws < 20
        {
            return Err(Error::setting(
                "per_class, study_chains, study_steps, tsne_chains, prior_draws",
                format!(
                    "{}, {}, {}, {}, {}",
                    self.per_class, self.study_chains, self.study_steps, self.tsne_chains, self.prior_draws
                ),
                "per_class at least 2, study_chains and tsne_chains at least 1, study_steps at least 4, prior_draws at least 20",
            ));
        }
        if self.budgets.is_empty() || self.budgets.contains(&0) {
            return Err(Error::setting(
                "budgets",
                format!("{:?}", self.budgets),
                "positive gradient-evaluation counts, e.g. 200,800",
            ));
        }
        Ok(())
    }
}

/// The compared samplers: (label, preset).
const SAMPLERS: [(&str, &str); 13] = [
    (results::MAP_CLIP, "dgn-am"),
    (results::MAP, "xu-map"),
    (results::MALA, "xu-mala"),
    (results::MALA_CLIP, "xu-mala-clip"),
    (results::HMC, "xu-hmc"),
    (results::PPGN, "ppgn"),
    (results::DGN_CHAIN, "dgn-am-chain"),
    (results::EXACT_MALA, "exact-mala"),
    (results::EXACT_HMC, "exact-hmc"),
    (results::PPGN_FLOW, "ppgn-flow"),
    (results::PPGN_SCORE, "ppgn-score"),
    (results::PPGN_SCORE_LANGEVIN, "ppgn-score-langevin"),
    (results::PPGN_X, "ppgn-x"),
];

/// Runs the report `spec` describes, reporting each phase to `progress`;
/// a failure leaves the previous report in place.
pub fn report(spec: &ReportSpec, progress: &mut dyn Progress) -> Result<ReportOutput> {
    spec.validate()?;
    let tsne_class = parse_class(&spec.tsne_class)?;
    let device = Device::Cpu;
    let dir = stack::resolve_dir(spec.models.as_deref());
    let s = Stack::load(&dir, DType::F32, &device)?;
    if !stack::paths(&dir, "realness").0.exists() {
        return Err(Error::NotInstalled {
            what: "the realness judge".into(),
            missing: stack::paths(&dir, "realness").0,
            hint: "the report needs it: train it with `ppgn train realness`".into(),
        });
    }
    let (judge, judge_card) =
        stack::load(&dir, "realness", DType::F32, &device, Discriminator::new)?;
    let weights: Vec<(String, String)> = s
        .cards
        .iter()
        .chain([&judge_card])
        .map(|c| (c.network.clone(), c.weights_sha256.clone()))
        .collect();
    let cache = spec.cache.as_deref().map(RowCache::open).transpose()?;
    let data_dir = fashion_mnist::resolve_dir(spec.data_dir.as_deref());
    let mut train = fashion_mnist::load(&data_dir, Split::Train)?;
    if let Some(n) = spec.reference_images {
        if !(100..=train.len()).contains(&n) {
            return Err(Error::setting(
                "reference_images",
                n,
                format!("100 to {}", train.len()),
            ));
        }
        train.images.truncate(n * 784);
        train.labels.truncate(n);
    }
    let test = fashion_mnist::load(&data_dir, Split::Test)?;
    // the generator study first (minutes), so a wrong folder or a
    // candidate of another classifier fails before the samplers run
    let generators = generator_study(spec)?;
    let refs = reference(s.evaluator()?, &train, &device)?;
    let y = Yardsticks {
        reference: &refs,
        judge: Some(&judge),
    };
    // everything is built in a hidden folder and moved into place at the end
    let img_dir = spec.out.join(".results.partial");
    let _ = std::fs::remove_dir_all(&img_dir);
    std::fs::create_dir_all(&img_dir).map_err(|e| Error::io(&img_dir, e))?;
    let run = Run {
        spec,
        s: &s,
        y: &y,
        test: &test,
        img_dir: &img_dir,
        generators: generators.as_ref(),
        cache: cache.as_ref().map(|c| (c, weights)),
    };
    let (report, timing) = match run.build(tsne_class, progress) {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&img_dir);
            return Err(e);
        }
    };
    publish(&spec.out, &img_dir, &report, &timing)
}

/// Puts a built report in place in `out`: `results.json` beside its
/// images in the hidden folder `img_dir`, which becomes `results/`, then
/// `results.md`.
fn publish(out: &Path, img_dir: &Path, report: &Report, timing: &Timing) -> Result<ReportOutput> {
    let json = serde_json::to_string_pretty(report)
        .map_err(|e| Error::data(img_dir.join("results.json"), e.to_string()))?;
    write_atomic(
        &img_dir.join("results.json"),
        format!("{json}\n").as_bytes(),
    )?;
    let final_dir = out.join("results");
    if final_dir.exists() {
        std::fs::remove_dir_all(&final_dir).map_err(|e| Error::io(&final_dir, e))?;
    }
    std::fs::rename(img_dir, &final_dir).map_err(|e| Error::io(&final_dir, e))?;
    let md = out.join("results.md");
    write_atomic(&md, results::render(report, timing).as_bytes())?;
    Ok(ReportOutput {
        markdown: md,
        images: final_dir,
        supported: report.claims.iter().filter(|c| c.supported).count(),
        claims: report.claims.len(),
    })
}

/// The generators of `spec.generator_study`, compared (Fig. S8).
fn generator_study(spec: &ReportSpec) -> Result<Option<generators::Comparison>> {
    let Some(dir) = &spec.generator_study else {
        return Ok(None);
    };
    let (models, data) = (spec.models.as_deref(), spec.data_dir.as_deref());
    let dirs = generators::with_shipped(generators::candidates_in(dir)?, models)?;
    generators::compare(&dirs, models, data).map(Some)
}

type Timing = Vec<(String, usize, f64)>;

/// One report being built.
struct Run<'a> {
    spec: &'a ReportSpec,
    s: &'a Stack,
    y: &'a Yardsticks<'a>,
    test: &'a Dataset,
    img_dir: &'a Path,
    generators: Option<&'a generators::Comparison>,
    /// Kept rows, and the networks' hashes that key them.
    cache: Option<(&'a RowCache, Vec<(String, String)>)>,
}

impl Run<'_> {
    /// The generator's floor: the same test images through `G(E(x))`, scored.
    fn reconstructed(&self, real_x: &Tensor, labels: &[usize]) -> Result<Scores> {
        let recon_x = self
            .s
            .generator
            .forward(&self.s.classifier.forward_all(real_x)?.h)?;
        score(
            self.s.evaluator()?,
            self.y.judge,
            &recon_x,
            labels,
            self.y.reference,
        )
    }

    /// The baseline rows: as many real test images per class as samples,
    /// and their reconstructions `G(E(x))`.
    fn baseline(&self) -> Result<(Scores, Scores)> {
        let spec = self.spec;
        let classes: Vec<usize> = (0..10).collect();
        let (real_x, real_labels, _) =
            real_per_class(self.test, &classes, spec.per_class, spec.seed)?;
        let real = score(
            self.s.evaluator()?,
            self.y.judge,
            &real_x,
            &real_labels,
            self.y.reference,
        )?;
        Ok((real, self.reconstructed(&real_x, &real_labels)?))
    }

    /// The evaluator's accuracy on the whole test set, from its card (the
    /// shipped-card test checks it is reproduced).
    fn evaluator_full_accuracy(&self) -> Result<f64> {
        self.s
            .cards
            .iter()
            .find(|c| c.network == "evaluator")
            .and_then(|c| c.metrics.get("test_accuracy").copied())
            .ok_or_else(|| {
                Error::data(
                    "evaluator.json",
                    "the evaluator's card lacks its test_accuracy",
                )
            })
    }

    fn build(&self, tsne_class: usize, progress: &mut dyn Progress) -> Result<(Report, Timing)> {
        let spec = self.spec;
        let (real, reconstructed) = self.baseline()?;
        let real_full_accuracy = self.evaluator_full_accuracy()?;
        let mut timing = Vec::new();
        let budgets = self.budget_tables(&real, &mut timing, progress)?;
        let priors = super::priors::measure(
            self.s,
            self.y,
            self.test,
            spec.prior_draws,
            spec.seed,
            progress,
        )?;
        let studies = Studies {
            stack: self.s,
            test: self.test,
            img_dir: self.img_dir,
            settings: StudySettings {
                seed: spec.seed,
                study_chains: spec.study_chains,
                study_steps: spec.study_steps,
                tsne_chains: spec.tsne_chains,
            },
        };
        let (eps1_sweep, eps3_sweep, mixing) = studies.chain_studies(progress)?;
        let (noise_mean_activation, noise) = studies.noise_study()?;
        let tsne = studies.tsne(tsne_class, progress)?;
        let mut report = Report {
            command: spec.command.clone(),
            seed: spec.seed,
            per_class: spec.per_class,
            study_chains: spec.study_chains,
            study_steps: spec.study_steps,
            real_mean_ms_ssim: mean_over_classes(&real.ms_ssim_per_class),
            real,
            real_full_accuracy,
            reconstructed,
            budgets,
            priors,
            eps1_sweep,
            eps3_sweep,
            noise_mean_activation,
            noise,
            mixing,
            tsne,
            generators: self.generators.cloned(),
            claims: Vec::new(),
            bar: Vec::new(),
        };
        report.claims = super::claims::claims(&report);
        report.bar = super::claims::exact_bar(&report);
        Ok((report, timing))
    }

    /// One table per budget: every sampler, with its grid of 10 per class.
    fn budget_tables(
        &self,
        real: &Scores,
        timing: &mut Timing,
        progress: &mut dyn Progress,
    ) -> Result<Vec<BudgetTable>> {
        let mut budgets = Vec::new();
        for &b in &self.spec.budgets {
            let mut rows = Vec::new();
            for (label, name) in SAMPLERS {
                let mut cfg = preset(name)?;
                // a budget too small for the preset's start candidates and
                // one step keeps room for the step (the report's quick looks)
                let room = b.saturating_sub(cfg.grads_per_step()).max(1);
                cfg.start_candidates = cfg.start_candidates.min(room);
                let r = self.kept_or_compared(label, &cfg, b, real, progress)?;
                timing.push((label.to_string(), b, r.wall_s));
                rows.push(r);
            }
            budgets.push(BudgetTable {
                grad_evals: b,
                rows,
            });
        }
        Ok(budgets)
    }

    /// One row of a budget table with its grid saved: read from the cache
    /// when it holds the row, else sampled, scored and kept there.
    fn kept_or_compared(
        &self,
        label: &str,
        cfg: &SamplerConfig,
        budget: usize,
        real: &Scores,
        progress: &mut dyn Progress,
    ) -> Result<SamplerRow> {
        let name = results::grid_name(label, budget);
        let file = self
            .img_dir
            .join(name.strip_prefix("results/").unwrap_or(&name));
        let cache = self.cache.as_ref().map(|(c, weights)| {
            let key = RowKey {
                weights: weights.clone(),
                per_class: self.spec.per_class,
                seed: self.spec.seed,
                reference_images: self.spec.reference_images,
                label: label.to_string(),
                budget,
                config: cfg.clone(),
            };
            (*c, key)
        });
        if let Some((c, key)) = &cache {
            if let Some(row) = c.get(key, &file)? {
                return Ok(row);
            }
        }
        let (spec, steps) = (self.spec, budget / cfg.grads_per_step());
        let what = format!("{label} at {budget} gradient evaluations");
        let mut r = phase(progress, &what, steps, |p| {
            compare_one(
                self.s,
                self.y,
                label,
                cfg,
                spec.per_class,
                budget,
                spec.seed,
                real,
                p,
            )
        })?;
        let imgs = per_image(
            r.images
                .as_ref()
                .ok_or_else(|| Error::data(self.img_dir, "a compared run kept no images"))?,
        )?;
        let (per, cols) = (self.spec.per_class, self.spec.per_class.min(10));
        let grid: Vec<Vec<f32>> = (0..10)
            .flat_map(|c| imgs[c * per..c * per + cols].to_vec())
            .collect();
        save_rows(&file, &grid, cols)?;
        r.images = None;
        if let Some((c, key)) = &cache {
            c.put(key, &r, &file)?;
        }
        Ok(r)
    }
}
