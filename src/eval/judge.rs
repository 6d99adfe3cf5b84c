//! What scores a run's images ([`Judge`]: features and class
//! probabilities): the shipped stack's independent evaluator, or any
//! classifier a user brings (a sidecar file or a built-in name,
//! [`NetJudge`]), whose features are read at a named node or, by default,
//! at the input of its last fully connected layer (what a `Gemm` or
//! `MatMul` becomes), as the Frechet Inception distance reads Inception's
//! pool features.

use std::sync::Arc;

use candle_core::{DType, Tensor};

use super::scores::{FeatureGaussian, Rows};
use crate::density::backend::Backend;
use crate::error::{Error, Result};
use crate::models::fashion::Evaluator;
use crate::models::plug::ClassifierSide;
use crate::nn::fast::{Net, Op};
use crate::run::config::preset::Engine;
use crate::train::EVAL_BATCH;

/// Features `[n][d]` and class probabilities `[n][k]` of images `[n, h, w, c]`.
pub trait Judge {
    fn features_and_probs(&self, images: &Tensor) -> Result<(Rows, Rows)>;
}

impl Judge for Evaluator {
    fn features_and_probs(&self, images: &Tensor) -> Result<(Rows, Rows)> {
        features_and_probs(self, images)
    }
}

/// Evaluator features `[n][d]` and class probabilities `[n][k]` of images `[n, 28, 28, 1]`.
pub fn features_and_probs(e: &Evaluator, images: &Tensor) -> Result<(Rows, Rows)> {
    let n = images.dim(0)?;
    let (mut f, mut p) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let mut i = 0;
    while i < n {
        let b = EVAL_BATCH.min(n - i);
        let x = images.narrow(0, i, b)?;
        let feat = e.features(&x)?;
        let probs = candle_nn::ops::log_softmax(&e.head(&feat)?, 1)?.exp()?;
        f.extend(feat.to_dtype(DType::F64)?.to_vec2::<f64>()?);
        p.extend(probs.to_dtype(DType::F64)?.to_vec2::<f64>()?);
        i += b;
    }
    Ok((f, p))
}

/// A classifier brought by the user, reading images of one shape.
pub struct NetJudge {
    pub name: String,
    pub class_names: Vec<String>,
    /// Which node the features are read at.
    pub features: String,
    backend: Backend,
    slots: [usize; 2],
}

/// Images scored at a time.
const BATCH: usize = 64;

impl NetJudge {
    /// `side` on images `(h, w, c)` in [0, 1], its features at the node
    /// `features` (default: the input of its last fully connected layer).
    pub fn new(
        side: ClassifierSide,
        hwc: (usize, usize, usize),
        features: Option<&str>,
    ) -> Result<Self> {
        let net = side.reading(hwc)?;
        let (slot, name) = match features {
            Some(node) => (net.tap(node)?, node.to_string()),
            None => last_dense_input(&net),
        };
        let last = net.len();
        Ok(Self {
            name: side.name,
            class_names: side.class_names,
            features: name,
            backend: Backend::new(Arc::new(net), Engine::Fast)?,
            slots: [slot, last],
        })
    }
}

/// The slot read by the last fully connected op (a convolution of a 1x1
/// input), and a name for it; the last slot before the output when there
/// is none.
fn last_dense_input(net: &Net<f32>) -> (usize, String) {
    let dense = (0..net.len()).rev().find(|&i| {
        let input = net.inputs(i).first().copied().unwrap_or(i);
        matches!(net.ops()[i], Op::Conv { .. }) && {
            let (h, w, _) = net.shape(input);
            h == 1 && w == 1
        }
    });
    let slot = match dense {
        Some(i) => net.inputs(i).first().copied().unwrap_or(i),
        None => net.len().saturating_sub(1),
    };
    let named = net
        .taps()
        .iter()
        .find(|(_, &s)| s == slot)
        .map(|(n, _)| n.clone());
    (
        slot,
        named.unwrap_or_else(|| {
            format!("the input of the last fully connected layer (slot {slot})")
        }),
    )
}

impl Judge for NetJudge {
    fn features_and_probs(&self, images: &Tensor) -> Result<(Rows, Rows)> {
        let n = images.dim(0)?;
        let (mut f, mut p) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for start in (0..n).step_by(BATCH) {
            let k = BATCH.min(n - start);
            let x = images.narrow(0, start, k)?;
            let v = self.backend.values(&x, &self.slots)?;
            let (fd, ld) = (v[0].len() / k, v[1].len() / k);
            let logits = Tensor::from_slice(&v[1], (k, ld), images.device())?;
            let probs = candle_nn::ops::log_softmax(&logits, 1)?.exp()?;
            p.extend(probs.to_dtype(DType::F64)?.to_vec2::<f64>()?);
            f.extend(
                v[0].chunks(fd.max(1))
                    .map(|r| r.iter().map(|&x| x as f64).collect::<Vec<f64>>()),
            );
        }
        Ok((f, p))
    }
}

/// The Frechet reference of real images without labels: Gaussians of
/// their features, overall and per class by the judge's own top-1 class;
/// also returns those classes.
pub fn unlabelled_reference(
    judge: &dyn Judge,
    images: &Tensor,
) -> Result<(super::scores::Reference, Vec<usize>)> {
    let (f, p) = judge.features_and_probs(images)?;
    let top1: Vec<usize> = p.iter().map(|r| argmax(r)).collect();
    let mut per_class = std::collections::BTreeMap::new();
    for c in top1
        .iter()
        .copied()
        .collect::<std::collections::BTreeSet<_>>()
    {
        let own: Rows = (0..f.len())
            .filter(|&i| top1[i] == c)
            .map(|i| f[i].clone())
            .collect();
        if own.len() >= 2 {
            per_class.insert(c, FeatureGaussian::fit(&own)?);
        }
    }
    if f.len() < 2 {
        return Err(Error::setting(
            "real",
            format!("{} images", f.len()),
            "at least 2 real images to fit the Frechet distance's Gaussian",
        ));
    }
    Ok((
        super::scores::Reference {
            overall: FeatureGaussian::fit(&f)?,
            per_class,
        },
        top1,
    ))
}

fn argmax(r: &[f64]) -> usize {
    (0..r.len())
        .max_by(|&a, &b| r[a].total_cmp(&r[b]))
        .unwrap_or(0)
}
