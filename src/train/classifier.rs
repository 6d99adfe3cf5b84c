//! Training the classifier `E`/`C`, the evaluator and a guide (a
//! classifier of `E`/`C`'s architecture trained only to guide, robust with
//! `--noise-std` / `--adversarial`: `super::robust`): cross-entropy with
//! dropout on the last hidden layer.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rand_chacha::ChaCha8Rng;

use super::robust::{pgd_l2, Robust, EVAL_PGD_STEPS};
use super::{batched, validation_start, Data, Task, TrainOptions};
use crate::error::Result;
use crate::models::fashion::{Classifier, ClassifierConfig, Evaluator, EvaluatorConfig};
use crate::nn::adam::Adam;
use crate::nn::{accuracy, dropout, gaussian_like, init::init_seeded};

/// Either of the two image classifiers.
pub enum Net {
    Classifier(Classifier),
    Evaluator(Evaluator),
}

impl Net {
    /// Logits with dropout on the last hidden layer (training mode).
    fn logits_train(&self, x: &Tensor, rng: &mut ChaCha8Rng) -> candle_core::Result<Tensor> {
        match self {
            Net::Classifier(c) => c.classify_h(&dropout(&c.encode(x)?, c.cfg.dropout, rng)?),
            Net::Evaluator(e) => e.head(&dropout(&e.features(x)?, e.cfg.dropout, rng)?),
        }
    }
    fn logits(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Net::Classifier(c) => c.forward(x),
            Net::Evaluator(e) => e.forward(x),
        }
    }
}

/// Which classifier a [`ClassifierTask`] trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `E`/`C`, which defines the codes.
    Classifier,
    /// The independent scoring network.
    Evaluator,
    /// `E`/`C`'s architecture, trained only to guide (`--classifier
    /// fashion-guide`).
    Guide,
}

pub struct ClassifierTask {
    name: &'static str,
    net: Net,
    robust: Robust,
    config: serde_json::Value,
    varmap: VarMap,
    adam: Adam,
    data: Data,
    device: Device,
}

impl ClassifierTask {
    /// A task training `kind` with `opts.robust`'s perturbations.
    pub fn new(kind: Kind, data: Data, opts: &TrainOptions, device: &Device) -> Result<Self> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
        let (name, net, config) = if kind == Kind::Evaluator {
            let cfg = EvaluatorConfig::default();
            (
                "evaluator",
                Net::Evaluator(Evaluator::new(&cfg, vb)?),
                serde_json::to_value(cfg).unwrap(),
            )
        } else {
            let cfg = ClassifierConfig::default();
            (
                match kind {
                    Kind::Guide => "guide",
                    _ => "classifier",
                },
                Net::Classifier(Classifier::new(&cfg, vb)?),
                serde_json::to_value(cfg).unwrap(),
            )
        };
        init_seeded(&varmap, opts.seed)?;
        let adam = super::adam_for(&varmap, opts)?;
        Ok(Self {
            name,
            net,
            robust: opts.robust,
            config,
            varmap,
            adam,
            data,
            device: device.clone(),
        })
    }
}

/// Test accuracy of a classifier given as a logits function, in batches of `EVAL_BATCH`.
pub fn test_accuracy(
    data: &crate::data::fashion_mnist::Dataset,
    device: &Device,
    logits: impl Fn(&Tensor) -> candle_core::Result<Tensor>,
) -> Result<f64> {
    accuracy_over(data, 0..data.len(), device, logits)
}

/// Accuracy on the images `range` of `data`, in batches of `EVAL_BATCH`.
pub fn accuracy_over(
    data: &crate::data::fashion_mnist::Dataset,
    range: std::ops::Range<usize>,
    device: &Device,
    logits: impl Fn(&Tensor) -> candle_core::Result<Tensor>,
) -> Result<f64> {
    let (start, n) = (range.start, range.len());
    let counts = batched(n, super::EVAL_BATCH, |idx| {
        let idx: Vec<usize> = idx.iter().map(|i| i + start).collect();
        let x = data.images_tensor(&idx, device)?;
        let y = data.labels_tensor(&idx, device)?;
        Ok(accuracy(&logits(&x)?, &y)? * idx.len() as f64)
    })?;
    Ok(counts.iter().sum::<f64>() / n.max(1) as f64)
}

impl ClassifierTask {
    /// Accuracy on the first [`ROBUST_EVAL_IMAGES`] validation images under
    /// the perturbations trained against: Gaussian noise of the training
    /// std (one fixed draw) and PGD of [`EVAL_PGD_STEPS`] steps at the
    /// training radius.
    fn robust_accuracy(&self) -> Result<Vec<(String, f64)>> {
        use rand::SeedableRng;
        let n = self.data.train.len();
        let start = validation_start(n);
        let idx: Vec<usize> = (start..n.min(start + ROBUST_EVAL_IMAGES)).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let logits = |x: &Tensor| self.net.logits(x);
        let (mut noisy, mut attacked) = (0.0, 0.0);
        for chunk in idx.chunks(super::EVAL_BATCH) {
            let x = self.data.train.images_tensor(chunk, &self.device)?;
            let y = self.data.train.labels_tensor(chunk, &self.device)?;
            let k = chunk.len() as f64;
            if self.robust.noise_std > 0.0 {
                let z = gaussian_like(&x, self.robust.noise_std, &mut rng)?;
                noisy += accuracy(&logits(&(&x + z)?)?, &y)? * k;
            }
            if let Some(eps) = self.robust.l2_eps {
                let adv = pgd_l2(&x, &y, eps, EVAL_PGD_STEPS, logits)?;
                attacked += accuracy(&logits(&adv)?, &y)? * k;
            }
        }
        let k = idx.len().max(1) as f64;
        let mut m = Vec::new();
        if self.robust.noise_std > 0.0 {
            m.push((
                format!("validation_accuracy_noise_{}", self.robust.noise_std),
                noisy / k,
            ));
        }
        if let Some(eps) = self.robust.l2_eps {
            m.push((format!("validation_accuracy_pgd_l2_{eps}"), attacked / k));
        }
        Ok(m)
    }
}

/// Validation images the card's robust accuracies are measured on.
pub const ROBUST_EVAL_IMAGES: usize = 1000;

impl Task for ClassifierTask {
    fn name(&self) -> &'static str {
        self.name
    }
    fn varmaps(&self) -> Vec<(&'static str, &VarMap)> {
        vec![("net", &self.varmap)]
    }
    fn optimizers(&mut self) -> Vec<&mut Adam> {
        vec![&mut self.adam]
    }
    fn optimizers_ref(&self) -> Vec<&Adam> {
        vec![&self.adam]
    }
    fn train_len(&self) -> usize {
        validation_start(self.data.train.len())
    }
    fn step(&mut self, idx: &[usize], rng: &mut ChaCha8Rng) -> Result<Vec<(&'static str, f64)>> {
        let x = self.data.train.images_tensor(idx, &self.device)?;
        let y = self.data.train.labels_tensor(idx, &self.device)?;
        let x = match self.robust.is_on() {
            true => self.robust.perturb(&x, &y, |x| self.net.logits(x), rng)?,
            false => x,
        };
        let logits = self.net.logits_train(&x, rng)?;
        let loss = candle_nn::loss::cross_entropy(&logits, &y)?;
        self.adam.backward_step(&loss)?;
        let acc = accuracy(&logits, &y)?;
        Ok(vec![
            ("loss", loss.to_scalar::<f32>()? as f64),
            ("acc", acc),
        ])
    }
    fn evaluate(&self) -> Result<BTreeMap<String, f64>> {
        let acc = test_accuracy(&self.data.test, &self.device, |x| self.net.logits(x))?;
        let n = self.data.train.len();
        let val = accuracy_over(
            &self.data.train,
            validation_start(n)..n,
            &self.device,
            |x| self.net.logits(x),
        )?;
        let mut m = BTreeMap::from([
            ("test_accuracy".to_string(), acc),
            ("validation_accuracy".to_string(), val),
        ]);
        if self.robust.is_on() {
            m.extend(self.robust_accuracy()?);
        }
        Ok(m)
    }
    fn config_json(&self) -> serde_json::Value {
        let mut c = self.config.clone();
        if self.robust.is_on() {
            c["robust"] = serde_json::to_value(self.robust).unwrap_or_default();
        }
        c
    }
}
