//! `ppgn viz tsne`: a t-SNE grid of a run's samples by their evaluator
//! features (Fig. S11): similar samples land in nearby cells.

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::report::features_and_probs;
use crate::data::fashion_mnist::parse_class;
use crate::data::npy;
use crate::error::{Error, Result};
use crate::models::fashion::{self as stack, Evaluator};
use crate::viz::{tsne::Tsne, tsne_grid_png};

/// Which samples of a run to lay out, and how.
#[derive(Debug, Clone)]
pub struct TsneSpec {
    pub run_dir: PathBuf,
    /// `samples.npy`, or `kept.npy` of a `--keep-above` run.
    pub file: String,
    /// Only samples of this class (needs labels.npy).
    pub class: Option<String>,
    /// At most this many samples (a random subset beyond it).
    pub max: usize,
    pub perplexity: f64,
    pub seed: u64,
    /// Output PNG (default RUN_DIR/tsne.png).
    pub out: Option<PathBuf>,
    pub models: Option<PathBuf>,
}

/// The indices of the samples to lay out: of `class` if given, a random
/// subset of at most `max`, in order.
fn pick(spec: &TsneSpec, n: usize) -> Result<Vec<usize>> {
    let mut idx: Vec<usize> = (0..n).collect();
    if let Some(c) = &spec.class {
        let c = parse_class(c)?;
        let lp = spec.run_dir.join("labels.npy");
        let (ls, labels) = npy::read_i64(&lp)?;
        if ls != [n] {
            return Err(Error::shape(
                format!("labels in {}", lp.display()),
                n,
                format!("{ls:?}"),
            ));
        }
        idx.retain(|&i| labels[i] == c as i64);
    }
    if idx.len() < 4 {
        return Err(Error::shape(
            "samples to lay out",
            "at least 4 (t-SNE)",
            idx.len(),
        ));
    }
    idx.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(spec.seed));
    idx.truncate(spec.max);
    idx.sort();
    Ok(idx)
}

/// Writes the t-SNE grid of `spec`; returns how many samples it shows and
/// where it went.
pub fn tsne_of_run(spec: &TsneSpec) -> Result<(usize, PathBuf)> {
    let path = spec.run_dir.join(&spec.file);
    let (shape, px) = npy::read_f32(&path)?;
    if shape.len() != 4 || shape[1..] != [1, 28, 28] {
        return Err(Error::shape(
            path.display().to_string(),
            "N x 1 x 28 x 28",
            format!("{shape:?}"),
        ));
    }
    if !(spec.perplexity > 0.0 && spec.perplexity.is_finite()) || spec.max < 4 {
        return Err(Error::setting(
            "perplexity, max",
            format!("{}, {}", spec.perplexity, spec.max),
            "a positive perplexity and max at least 4",
        ));
    }
    let idx = pick(spec, shape[0])?;
    let images: Vec<Vec<f32>> = idx
        .iter()
        .map(|&i| px[i * 784..(i + 1) * 784].to_vec())
        .collect();
    let device = Device::Cpu;
    let dir = stack::resolve_dir(spec.models.as_deref());
    let (e, _) = stack::load(&dir, "evaluator", DType::F32, &device, Evaluator::new)?;
    let t = Tensor::from_vec(images.concat(), (images.len(), 28, 28, 1), &device)?;
    let (f, _) = features_and_probs(&e, &t)?;
    let tsne = Tsne {
        perplexity: spec.perplexity,
        seed: spec.seed,
        ..Tsne::default()
    };
    let png = tsne_grid_png(&images, &f, &tsne)?;
    let out = spec
        .out
        .clone()
        .unwrap_or_else(|| spec.run_dir.join("tsne.png"));
    crate::fsutil::write_atomic(&out, &png)?;
    Ok((images.len(), out))
}
