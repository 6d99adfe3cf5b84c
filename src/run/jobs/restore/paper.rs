//! The first paper's inpainting as a restoration ("Plug & Play Generative
//! Networks" (supplementary), S10): in place of the likelihood, the chains
//! are conditioned on a class read on the clamped image `M * G(h) + (1 -
//! M) * y` (eq. 25) with the context term `-w |(1 - M) * (y - G(h))|^2`,
//! and their images are clamped to the observation's known pixels; the
//! sampler is the `ppgn` preset's (MALA-approx on the joint prior), as
//! `ppgn inpaint` runs it. The clamp holds one image for every chain, so
//! the images are restored one after the other, each with its own chains.

use candle_core::{DType, Device, Tensor};

use super::chains::{kept, Chains};
use crate::density::observation::Operator;
use crate::error::{Error, Result};
use crate::run::config::preset::SamplerConfig;
use crate::run::config::restore::Asked;
use crate::run::config::spec::Init;
use crate::run::drive::init::Starts;
use crate::run::drive::progress::{drive_to_end, Progress};
use crate::run::pairs::pair::{Condition, Pair};

/// The preset name under which `ppgn restore` runs the paper's inpainting.
pub const PAPER_INPAINT: &str = "paper-inpaint";

/// The paper's inpainting as asked (`--preset paper-inpaint`).
#[derive(Debug, Clone)]
pub struct PaperInpaint {
    /// The class (a name or an index) every image is conditioned on;
    /// `None`: each test image's label.
    pub class: Option<String>,
    /// The context term's weight `w` (`ppgn inpaint --context-weight`).
    pub context_weight: f64,
}

impl PaperInpaint {
    /// The preset and class of a restoration as asked (`ppgn restore`, the
    /// page): preset `paper-inpaint` is the paper's inpainting conditioned
    /// on `class` (each test image's label when `None`), and `preset`
    /// becomes the `ppgn` preset whose sampler it runs; any other preset
    /// with a class is refused (a restoration's posterior has none).
    pub fn asked(preset: &mut Option<String>, class: Option<String>) -> Result<Option<Self>> {
        match (preset.as_deref(), class) {
            (Some(PAPER_INPAINT), class) => {
                *preset = Some("ppgn".into());
                Ok(Some(Self {
                    class,
                    context_weight: 1.0,
                }))
            }
            (_, Some(c)) => Err(Error::setting(
                "class",
                format!("{c:?} with a restoration"),
                format!("no class (a restoration's posterior has none), or preset {PAPER_INPAINT}, the paper's inpainting"),
            )),
            (_, None) => Ok(None),
        }
    }
}

/// What the paper's inpainting conditions each image's chains on.
#[derive(Debug, Clone)]
pub struct Inpainting {
    /// One class per image.
    pub classes: Vec<usize>,
    /// The context term's weight `w` (`ppgn inpaint --context-weight`).
    pub context_weight: f64,
}

/// Refuses an operator that is not a mask (with noise or not): the clamp
/// of eq. 25 needs pixels that are known.
pub fn check(operator: &[Asked]) -> Result<()> {
    let masks = operator
        .iter()
        .filter(|a| matches!(a, Asked::Mask(_)))
        .count();
    let others = operator
        .iter()
        .any(|a| !matches!(a, Asked::Mask(_) | Asked::Noise));
    match (masks, others) {
        (1.., false) => Ok(()),
        _ => Err(Error::setting(
            "operator",
            crate::run::config::restore::written(operator),
            format!("a mask (mask:WxH@X,Y or mask:FILE.png) for --preset {PAPER_INPAINT}: the paper's inpainting clamps the pixels the observation shows"),
        )),
    }
}

/// The chains of each image in turn (`observed`: `[k, h, w, c]` flat, the
/// hidden pixels 0), with image `i`'s class and seed `seed + i`.
pub(super) fn chains(
    pair: &dyn Pair,
    operator: &Operator,
    observed: &[f64],
    paper: &Inpainting,
    (cfg, chains, every, seed): (&SamplerConfig, usize, usize, u64),
    progress: &mut dyn Progress,
) -> Result<Vec<Chains>> {
    let (h, w, c) = operator.input();
    let per = h * w * c;
    let k = observed.len() / per;
    if operator.output() != operator.input() || paper.classes.len() != k {
        return Err(Error::shape(
            "the paper's inpainting",
            format!("a mask's observation of {h}x{w}x{c} and a class per image"),
            format!(
                "{:?} and {} classes",
                operator.output(),
                paper.classes.len()
            ),
        ));
    }
    let seen = operator.adjoint(&operator.apply(&vec![1.0; per]));
    let hidden: Vec<f32> = seen.iter().map(|&v| (v == 0.0) as u8 as f32).collect();
    let mask = Tensor::from_vec(hidden, (1, h, w, c), &Device::Cpu)?;
    (0..k)
        .map(|i| {
            let real = Tensor::from_vec(
                observed[i * per..(i + 1) * per].to_vec(),
                (1, h, w, c),
                &Device::Cpu,
            )?
            .to_dtype(DType::F32)?;
            let condition = Condition::Inpaint {
                classes: vec![paper.classes[i]; chains],
                real: real.clone(),
                mask: mask.clone(),
                weight: paper.context_weight,
            };
            let pipeline = pair.pipeline(cfg, &condition)?;
            let seed = seed.wrapping_add(i as u64);
            let starts = Starts::new(&Init::Random, pair, cfg, seed, Some((&real, &mask)), chains)?;
            let start = starts.of(cfg, 0..chains)?;
            let out = drive_to_end("inpaint", &pipeline, cfg, &start, seed, every, progress)?;
            kept(out, cfg.steps, every)
        })
        .collect()
}
