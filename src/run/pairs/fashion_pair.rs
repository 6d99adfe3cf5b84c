//! The shipped Fashion-MNIST stack as a [`Pair`]: its generator with its
//! priors (the joint `E(G(h)) - h`, the DAEs, the flow), guided by its own
//! classifier or by any classifier side brought with it (a user's ONNX
//! classifier of Fashion-MNIST images: [`super::fashion::Guide`]), judged
//! by the stack's independent evaluator. It has an encoder (the
//! classifier's `E`) and a data set (the Fashion-MNIST test images).

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use candle_core::{Device, Module, Tensor};

use super::fashion::{code_to_image, Condition, Guide};
use super::pair::{Pair, Part};
use crate::data::fashion_mnist::{self, Dataset, Split, CLASS_NAMES, SIDE};
use crate::error::{Error, Result};
use crate::models::fashion::Stack;
use crate::models::generator_error::ErrorByValue;
use crate::models::plug::ClassifierSide;
use crate::nn::fast::Net;
use crate::run::config::preset::{PriorKind, SamplerConfig};
use crate::run::drive::chains::{fashion_starts, Pipeline, Streams};

/// The stack, its folder, the guide when it is not the stack's classifier,
/// and where the test images are.
pub struct FashionPair {
    pub stack: Arc<Stack>,
    pub dir: PathBuf,
    pub guide: Option<Guide>,
    names: Vec<String>,
    data_dir: Option<PathBuf>,
    test: OnceLock<Dataset>,
    train: OnceLock<Dataset>,
}

impl FashionPair {
    /// The stack in `dir`, guided by `guide` (a classifier side; the
    /// stack's own classifier when `None`).
    pub fn new(
        stack: Arc<Stack>,
        dir: PathBuf,
        guide: Option<ClassifierSide>,
        data_dir: Option<PathBuf>,
    ) -> Result<Self> {
        let guide = match guide {
            Some(c) => Some(Guide {
                net: c.reading((SIDE, SIDE, 1))?,
                name: c.name,
                class_names: c.class_names,
                provenance: c.provenance,
            }),
            None => None,
        };
        let names = match &guide {
            Some(g) => g.class_names.clone(),
            None => CLASS_NAMES.iter().map(|s| s.to_string()).collect(),
        };
        Ok(Self {
            stack,
            dir,
            guide,
            names,
            data_dir,
            test: OnceLock::new(),
            train: OnceLock::new(),
        })
    }

    /// The test set, loaded once.
    fn test(&self) -> Result<&Dataset> {
        self.loaded(&self.test, Split::Test)
    }

    /// The training set, loaded once (its last 5,000 images are the
    /// validation split, `crate::train::validation_start`).
    fn train(&self) -> Result<&Dataset> {
        self.loaded(&self.train, Split::Train)
    }

    /// `split` of the data set in `cell`, read on first use.
    fn loaded<'a>(&self, cell: &'a OnceLock<Dataset>, split: Split) -> Result<&'a Dataset> {
        if let Some(t) = cell.get() {
            return Ok(t);
        }
        let dir = fashion_mnist::resolve_dir(self.data_dir.as_deref());
        let t = fashion_mnist::load(&dir, split)?;
        Ok(cell.get_or_init(|| t))
    }
}

impl Pair for FashionPair {
    fn names(&self) -> (String, String) {
        let c = self.guide.as_ref().map_or("fashion", |g| g.name.as_str());
        ("fashion".into(), c.into())
    }

    fn class_names(&self) -> &[String] {
        &self.names
    }

    fn parse_class(&self, s: &str) -> Result<usize> {
        match &self.guide {
            None => fashion_mnist::parse_class(s),
            Some(g) => crate::data::imagenet::parse_class_in(s, &g.class_names, "class"),
        }
    }

    fn has(&self, _: Part) -> bool {
        true
    }

    fn image(&self) -> (usize, usize, usize) {
        (SIDE, SIDE, 1)
    }

    fn pixels(&self) -> Option<(usize, usize, usize)> {
        Some((SIDE, SIDE, 1))
    }

    fn pipeline(&self, cfg: &SamplerConfig, condition: &Condition) -> Result<Pipeline> {
        Pipeline::guided(&self.stack, self.guide.as_ref(), cfg, condition)
    }

    /// [`fashion_starts`]: the same starts as the report's.
    fn random_starts(&self, cfg: &SamplerConfig, streams: Streams, n: usize) -> Result<Tensor> {
        fashion_starts(&self.stack, cfg, streams, n)
    }

    /// The images' codes `E(x)`; with the flow prior their base points
    /// `T^-1` of the codes before their ReLU, with the score prior those
    /// codes standardised; for PPGN-x the images.
    fn encode(&self, cfg: &SamplerConfig, images: &Tensor) -> Result<Tensor> {
        let s = &self.stack;
        match (cfg.prior, &s.code_prior) {
            (PriorKind::XDae, _) => Ok(images.clone()),
            (PriorKind::Flow, Some(flow)) => {
                Ok(flow.inverse(&s.classifier.encode_pre_relu(images)?)?.0)
            }
            (PriorKind::Score, _) => Ok(s
                .code_score()?
                .standardise(&s.classifier.encode_pre_relu(images)?)?),
            _ => Ok(s.classifier.encode(images)?),
        }
    }

    fn real_image(&self, i: usize) -> Result<(Tensor, usize)> {
        let test = self.test()?;
        if i >= test.len() {
            return Err(Error::setting(
                "image",
                format!("test:{i}"),
                format!("an image of the test set, 0..{}", test.len()),
            ));
        }
        Ok((
            test.images_tensor(&[i], &Device::Cpu)?,
            test.labels[i] as usize,
        ))
    }

    fn validation_image(&self, i: usize) -> Result<(Tensor, usize)> {
        let train = self.train()?;
        let first = crate::train::validation_start(train.len());
        if first + i >= train.len() {
            return Err(Error::setting(
                "image",
                format!("val:{i}"),
                format!(
                    "an image of the validation split, 0..{}",
                    train.len() - first
                ),
            ));
        }
        Ok((
            train.images_tensor(&[first + i], &Device::Cpu)?,
            train.labels[first + i] as usize,
        ))
    }

    fn evaluate(&self, images: &Tensor) -> Result<Option<Vec<u32>>> {
        match self.stack.has_evaluator() {
            true => Ok(Some(
                self.stack
                    .evaluator()?
                    .forward(images)?
                    .argmax(1)?
                    .to_vec1()?,
            )),
            false => Ok(None),
        }
    }

    fn evaluator(&self) -> String {
        match self.stack.has_evaluator() {
            true => "the stack's independent evaluator (never used by sampling)".into(),
            false => "none: the model folder has no evaluator (`ppgn eval RUN --models DIR` scores the run with one)".into(),
        }
    }

    fn display(&self, images: &Tensor) -> Result<Tensor> {
        Ok(images.clone())
    }

    fn models(&self) -> serde_json::Value {
        let hashes: std::collections::BTreeMap<String, String> = self
            .stack
            .cards
            .iter()
            .map(|c| (c.network.clone(), c.weights_sha256.clone()))
            .collect();
        let mut m = serde_json::json!({"folder": self.dir.display().to_string(), "sha256": hashes});
        if let Some(g) = &self.guide {
            m["guide"] = g.provenance.clone();
        }
        if self.stack.code_prior.is_some() {
            // what `--prior flow` draws at (its card's, 1 as trained)
            m["flow_temperature"] = self.stack.flow_temperature().into();
        }
        m
    }

    fn cost_net(&self, cfg: &SamplerConfig) -> Result<Net<f32>> {
        let head = match &self.guide {
            Some(g) => g.net.clone(),
            None => self.stack.classifier.compile::<f32>()?,
        };
        match cfg.prior {
            PriorKind::XDae => Ok(head),
            _ => code_to_image(&self.stack, cfg)?.then(head),
        }
    }

    fn default_preset(&self) -> &'static str {
        "ppgn"
    }

    fn generator_error(&self) -> Option<Vec<f64>> {
        let card = self.stack.cards.iter().find(|c| c.network == "generator")?;
        let tau = card.metrics.get(crate::models::card::GENERATOR_ERROR)?;
        Some(vec![*tau])
    }

    fn generator_error_by_value(&self) -> Option<ErrorByValue> {
        let card = self.stack.cards.iter().find(|c| c.network == "generator")?;
        card.error_by_value.clone()
    }
}
