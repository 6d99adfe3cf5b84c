//! The report's studies of the papers' figures: the eps1 (S23), eps3 (S15)
//! and mixing (S13) chain studies, the generator's robustness to noise in
//! h (S16) and the t-SNE grid of one class (S11), each with its image.

use std::path::Path;

use candle_core::{Device, Tensor};
use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::experiments::{
    chain_study, noise_robustness, phase, real_per_class, ChainStudy, NoisePoint,
};
use super::report::features_and_probs;
use super::results::{self, TsneInfo};
use crate::data::fashion_mnist::{Dataset, CLASS_NAMES};
use crate::data::image::{save_grid, upscale};
use crate::error::{Error, Result};
use crate::fsutil::write_atomic;
use crate::models::fashion::Stack;
use crate::run::config::preset::{preset, PriorKind, SamplerConfig};
use crate::run::drive::chains::{random_codes, Outcome, Pipeline};
use crate::run::drive::driver::run_chains;
use crate::run::output::folder::filmstrip_picks;
use crate::run::pairs::fashion::Condition;
use crate::run::Progress;
use crate::viz::{tsne::Tsne, tsne_grid_png};

/// The studies' share of the report's settings.
#[derive(Debug, Clone, Copy)]
pub struct StudySettings {
    pub seed: u64,
    pub study_chains: usize,
    pub study_steps: usize,
    pub tsne_chains: usize,
}

/// What the studies run on and where their images go.
pub struct Studies<'a> {
    pub stack: &'a Stack,
    pub test: &'a Dataset,
    pub img_dir: &'a Path,
    pub settings: StudySettings,
}

/// Images `[n, 28, 28, 1]` as one `Vec<f32>` per image.
pub fn per_image(t: &Tensor) -> Result<Vec<Vec<f32>>> {
    Ok(t.flatten_from(1)?.to_vec2::<f32>()?)
}

/// One row per chain in `chains`, up to 12 evenly spaced snapshots across.
fn filmstrip_rows(s: &ChainStudy, chains: &[usize]) -> Result<Vec<Vec<f32>>> {
    let picks = filmstrip_picks(s.filmstrip.len());
    let snaps: Vec<Vec<Vec<f32>>> = picks
        .iter()
        .map(|&j| per_image(&s.filmstrip[j]))
        .collect::<Result<_>>()?;
    Ok(chains
        .iter()
        .map(|&c| snaps.iter().flat_map(|sn| sn[c].iter().copied()).collect())
        .collect())
}

/// How many times the report's grids enlarge each 28-pixel image: 56
/// pixels a cell, a 10x10 grid about 600 pixels wide (large enough to
/// see; four times, as `ppgn sample` draws, would make the report's
/// two dozen grids some 12 MB a rerun).
pub const REPORT_SCALE: usize = 2;

/// Images (each 28x28 grey) as a PNG grid of `cols` columns, enlarged
/// [`REPORT_SCALE`] times.
pub fn save_rows(path: &Path, rows: &[Vec<f32>], cols: usize) -> Result<()> {
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    let n = flat.len() / 784;
    let big = upscale(&flat, n, (28, 28, 1), REPORT_SCALE);
    let side = 28 * REPORT_SCALE;
    save_grid(path, &big, n, (side, side, 1), cols)
}

impl Studies<'_> {
    /// The eps1 (S23), eps3 (S15) and mixing (S13) studies, with their
    /// filmstrips; the chains start from real images of the class after
    /// the target.
    #[allow(clippy::type_complexity)]
    pub fn chain_studies(
        &self,
        progress: &mut dyn Progress,
    ) -> Result<(Vec<ChainStudy>, Vec<ChainStudy>, Vec<ChainStudy>)> {
        let spec = &self.settings;
        let starts_of: Vec<usize> = (0..10).map(|c| (c + 1) % 10).collect();
        let (starts, _, _) =
            real_per_class(self.test, &starts_of, spec.study_chains, spec.seed + 1)?;
        let targets: Vec<usize> = (0..10)
            .flat_map(|c| std::iter::repeat_n(c, spec.study_chains))
            .collect();
        let record_every = (spec.study_steps / 20).max(1);
        let mut study = |label: String, value: f64, cfg: SamplerConfig| -> Result<ChainStudy> {
            let cfg = SamplerConfig {
                steps: spec.study_steps,
                ..cfg
            };
            phase(progress, &label, spec.study_steps, |p| {
                chain_study(
                    self.stack,
                    &label,
                    value,
                    &cfg,
                    &starts,
                    &targets,
                    record_every,
                    spec.seed,
                    p,
                )
            })
        };
        let ppgn = preset("ppgn")?;
        let mut eps1_sweep = Vec::new();
        for e in [1.0, 1e-1, 1e-3, 1e-5, 0.0] {
            let cfg = SamplerConfig {
                eps1: e,
                ..ppgn.clone()
            };
            eps1_sweep.push(study(format!("eps1 = {}", short(e)), e, cfg)?);
        }
        let mut eps3_sweep = Vec::new();
        for e in [0.3, 0.1, 0.03, 0.01, 1e-17] {
            let cfg = SamplerConfig {
                eps3: e,
                ..ppgn.clone()
            };
            eps3_sweep.push(study(format!("eps3 = {}", short(e)), e, cfg)?);
        }
        let mut mixing = vec![
            study(results::PPGN.into(), 0.0, ppgn.clone())?,
            study(results::DGN_CHAIN.into(), 0.0, preset("dgn-am-chain")?)?,
        ];
        if self.stack.h_dae.is_some() {
            let cfg = SamplerConfig {
                prior: PriorKind::HDae,
                ..ppgn.clone()
            };
            mixing.push(study("h-DAE prior (S13c)".into(), 0.0, cfg)?);
        }
        let shown = [0, 5 * spec.study_chains];
        for (name, v) in [
            ("eps1-sweep.png", &eps1_sweep),
            ("eps3-sweep.png", &eps3_sweep),
            ("mixing.png", &mixing),
        ] {
            let rows: Vec<Vec<f32>> = v
                .iter()
                .map(|st| filmstrip_rows(st, &shown))
                .collect::<Result<Vec<_>>>()?
                .concat();
            let cols = rows.first().map_or(1, |r| r.len() / 784);
            save_rows(&self.img_dir.join(name), &rows, cols)?;
        }
        Ok((eps1_sweep, eps3_sweep, mixing))
    }

    /// Fig. S16: G's robustness to noise in h, with its image.
    pub fn noise_study(&self) -> Result<(f64, Vec<NoisePoint>)> {
        let classes: Vec<usize> = (0..10).collect();
        let (nx, nl, _) = real_per_class(self.test, &classes, 10, self.settings.seed + 2)?;
        let fractions = [0.0, 0.01, 0.1, 0.2, 0.3, 0.4];
        let (mean_act, noise) =
            noise_robustness(self.stack, &nx, &nl, &fractions, self.settings.seed)?;
        let real_imgs = per_image(&nx)?;
        let levels: Vec<Vec<Vec<f32>>> = noise
            .iter()
            .map(|p| match &p.images {
                Some(t) => per_image(t),
                None => Err(Error::data(self.img_dir, "a noise level kept no images")),
            })
            .collect::<Result<_>>()?;
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
            &self.img_dir.join("noise-robustness.png"),
            &rows,
            fractions.len() + 1,
        )?;
        Ok((mean_act, noise))
    }

    /// Fig. S11: a t-SNE grid of confident snapshots of one class.
    pub fn tsne(&self, tsne_class: usize, progress: &mut dyn Progress) -> Result<TsneInfo> {
        let spec = &self.settings;
        let threshold = 0.97;
        let cfg = SamplerConfig {
            steps: spec.study_steps,
            ..preset("ppgn")?
        };
        let h0 = random_codes(
            spec.tsne_chains,
            self.stack.classifier.cfg.h_dim,
            spec.seed + 3,
        )?;
        let never = std::sync::atomic::AtomicBool::new(false);
        let condition = Condition::Classes(vec![tsne_class; spec.tsne_chains]);
        let pipeline = Pipeline::fashion(self.stack, &cfg, &condition)?;
        let out = phase(progress, "t-SNE chains", spec.study_steps, |p| {
            run_chains(
                &pipeline,
                &cfg,
                &h0,
                spec.seed + 3,
                1,
                None,
                &never,
                |r| {
                    if r.recorded {
                        p(r.step);
                    }
                    Vec::new()
                },
                |_| Ok(()),
            )
        })?;
        let Outcome::Finished(out) = out else {
            return Err(Error::data(self.img_dir, "the t-SNE chains stopped"));
        };
        let mut kept: Vec<Vec<f32>> = Vec::new();
        for (snap, p) in out.snapshots.iter().zip(&out.condition_value).skip(1) {
            let imgs = per_image(snap)?;
            kept.extend(
                (0..imgs.len())
                    .filter(|&i| p[i] >= threshold)
                    .map(|i| imgs[i].clone()),
            );
        }
        let n_kept = kept.len();
        kept.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(spec.seed));
        kept.truncate(400);
        if kept.len() >= 4 {
            let flat: Vec<f32> = kept.iter().flatten().copied().collect();
            let t = Tensor::from_vec(flat, (kept.len(), 28, 28, 1), &Device::Cpu)?;
            let (f, _) = features_and_probs(self.stack.evaluator()?, &t)?;
            let tsne = Tsne {
                seed: spec.seed,
                ..Tsne::default()
            };
            write_atomic(
                &self.img_dir.join("tsne.png"),
                &tsne_grid_png(&kept, &f, &tsne)?,
            )?;
        }
        Ok(TsneInfo {
            class: CLASS_NAMES[tsne_class].to_string(),
            chains: spec.tsne_chains,
            steps: spec.study_steps,
            threshold,
            kept: n_kept,
            shown: kept.len(),
        })
    }
}

/// A sweep value as a person writes it: 1e-17, 0.01, 1.
fn short(v: f64) -> String {
    if v != 0.0 && v.abs() < 1e-3 {
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}
