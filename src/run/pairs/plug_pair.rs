//! A generator side and a classifier side composed without retraining
//! (and the Caffe pair) as a [`Pair`]: the chain moves the generator's
//! code under its declared prior; inpainting clamps the generator's image
//! in [0, 1] as the shipped stack's does (S10, eq. 25) and pulls its known
//! pixels toward a real image given as a file.

use std::sync::Arc;

use candle_core::{DType, Tensor};

use super::pair::{clamp_net, Condition, Pair, Part, Restoring};
use super::pretrained::PlugPair;
use crate::density::backend::Backend;
use crate::density::condition::{class_probability, NetCondition, Objective};
use crate::density::image::{clamp_known, InpaintContext};
use crate::density::Sum;
use crate::error::{Error, Result};
use crate::nn::fast::Net as FastNet;
use crate::run::config::preset::{PriorKind, SamplerConfig};
use crate::run::drive::chains::{Pipeline, Streams};
use crate::sampler::ChainRngs;

impl Pair for PlugPair {
    fn names(&self) -> (String, String) {
        self.names.clone()
    }

    fn class_names(&self) -> &[String] {
        &self.class_names
    }

    fn parse_class(&self, s: &str) -> Result<usize> {
        PlugPair::parse_class(self, s)
    }

    /// Neither an image encoder nor a data set of its generator's images.
    fn has(&self, _: Part) -> bool {
        false
    }

    fn image(&self) -> (usize, usize, usize) {
        (self.side, self.side, 3)
    }

    /// The generator's image in [0, 1]; the Caffe pair's is in CaffeNet's
    /// input space.
    fn pixels(&self) -> Option<(usize, usize, usize)> {
        match self.nonnegative_codes {
            true => None,
            false => Some(self.decode_net.output()),
        }
    }

    fn pipeline(&self, cfg: &SamplerConfig, condition: &Condition) -> Result<Pipeline> {
        match condition {
            Condition::Classes(classes) => PlugPair::pipeline(self, classes, cfg),
            Condition::Neuron { layer, neuron } => self.unit_pipeline(layer, *neuron, cfg),
            Condition::Inpaint {
                classes,
                real,
                mask,
                weight,
            } => inpaint(self, classes, (real, mask, *weight), cfg),
            Condition::Restore(r) => restore(self, r, cfg),
        }
    }

    /// `N(0, I)` codes (the declared prior's draws), or `relu(N(0, 2^2))`
    /// for post-ReLU codes.
    fn random_starts(&self, cfg: &SamplerConfig, streams: Streams, n: usize) -> Result<Tensor> {
        let zeros = Tensor::zeros((n, self.code_dim), DType::F32, &candle_core::Device::Cpu)?;
        let z =
            ChainRngs::from_chain(streams.seed ^ 0x5eed, streams.first, n).normal_like(&zeros)?;
        Ok(
            match self.nonnegative_codes && cfg.prior != PriorKind::Flow {
                true => (z * 2.0)?.relu()?,
                false => z,
            },
        )
    }

    fn evaluate(&self, images: &Tensor) -> Result<Option<Vec<u32>>> {
        Ok(Some(
            self.top1(images)?.into_iter().map(|c| c as u32).collect(),
        ))
    }

    fn evaluator(&self) -> String {
        format!(
            "the guiding classifier's top-1 ({}; `ppgn eval RUN --evaluator FILE.toml` scores with an independent one)",
            self.names.1
        )
    }

    fn display(&self, images: &Tensor) -> Result<Tensor> {
        Ok((self.to_rgb)(images)?)
    }

    fn models(&self) -> serde_json::Value {
        self.provenance.clone()
    }

    fn cost_net(&self, _: &SamplerConfig) -> Result<FastNet<f32>> {
        Ok((*self.compiled).clone())
    }

    fn default_preset(&self) -> &'static str {
        match self.nonnegative_codes {
            true => "ppgn",
            false => "faces",
        }
    }
}

/// The inpainting pipeline of `pair`: the class term on the clamped image
/// `M * G(z) + (1 - M) * real`, the prior, and `eps2 * weight` times the
/// context term on `G` alone; snapshots and samples are clamped too.
fn inpaint(
    pair: &PlugPair,
    classes: &[usize],
    (real, mask, weight): (&Tensor, &Tensor, f64),
    cfg: &SamplerConfig,
) -> Result<Pipeline> {
    pixels_only(pair, "inpaint")?;
    let g = (*pair.decode_net).clone();
    let clamp = clamp_net(real, mask, g.output())?;
    let classify = pair.classify.as_ref().ok_or_else(|| {
        Error::unsupported(
            format!("inpainting with {}", pair.names.1),
            "inpaint with another classifier",
        )
    })?;
    let net = g
        .clone()
        .without_taps()
        .then(clamp)?
        .then((**classify).clone())?;
    let (mut terms, joint) = pair.prior(cfg)?;
    if joint.is_some() {
        return Err(Error::unsupported(
            "inpainting with the joint prior on this pair",
            "use --prior gaussian or none",
        ));
    }
    let objective = Objective::Class {
        classes: classes.to_vec(),
        gradient: cfg.gradient,
    };
    let backend = Backend::new(Arc::new(net), cfg.engine)?;
    let (w, term) = NetCondition::weighed(backend, objective, cfg.eps2, None)?;
    terms.push((w, Box::new(term)));
    let ctx = InpaintContext::new(
        Backend::new(pair.decode_net.clone(), cfg.engine)?,
        real.clone(),
        mask.clone(),
    )?;
    terms.push((cfg.eps2 * weight, Box::new(ctx)));
    let (decode, r, m) = (pair.decode.clone(), real.clone(), mask.clone());
    let (logits, classes) = (pair.logits.clone(), classes.to_vec());
    Ok(Pipeline {
        target: Sum::new(terms),
        decode: Arc::new(move |h: &Tensor| {
            clamp_known(&decode(h)?, &r, &m).map_err(candle_core::Error::wrap)
        }),
        measure: Box::new(move |x: &Tensor| class_probability(&logits(x)?, &classes)),
        backend: cfg.engine,
        retarget: None,
    })
}

/// A restoration's pipeline on `pair`: the prior and `eps2 *` the
/// observation's log-likelihood on `G` (no class).
fn restore(pair: &PlugPair, r: &Restoring, cfg: &SamplerConfig) -> Result<Pipeline> {
    pixels_only(pair, "restore")?;
    let (mut terms, joint) = pair.prior(cfg)?;
    if joint.is_some() {
        return Err(Error::unsupported(
            "restoring with the joint prior on this pair (it reads E off the class pass)",
            "use --prior gaussian, flow or none",
        ));
    }
    let g = Backend::new(pair.decode_net.clone(), cfg.engine)?;
    terms.push((cfg.eps2, Box::new(r.term(g)?)));
    Ok(Pipeline {
        target: Sum::new(terms),
        decode: pair.decode.clone(),
        measure: r.measure()?,
        backend: cfg.engine,
        retarget: None,
    })
}

/// Refuses `job` ("inpaint", "restore") on a pair whose generator's images
/// are not pixels in [0, 1].
fn pixels_only(pair: &PlugPair, job: &str) -> Result<()> {
    match pair.pixels() {
        Some(_) => Ok(()),
        None => Err(Error::unsupported(
            format!(
                "{}ing with {}: its generator's images are not pixels in [0, 1]",
                job.trim_end_matches('e'),
                pair.names.0
            ),
            format!("{job} with the shipped stack or a generator with an output_range"),
        )),
    }
}
