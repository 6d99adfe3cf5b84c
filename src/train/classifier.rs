//! Training the classifier `E`/`C` and the evaluator: cross-entropy with
//! dropout on the last hidden layer.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rand_chacha::ChaCha8Rng;

use super::{batched, validation_start, Data, Task, TrainOptions};
use crate::error::Result;
use crate::models::fashion::{Classifier, ClassifierConfig, Evaluator, EvaluatorConfig};
use crate::nn::adam::Adam;
use crate::nn::{accuracy, dropout, init::init_seeded};

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

pub struct ClassifierTask {
    name: &'static str,
    net: Net,
    config: serde_json::Value,
    varmap: VarMap,
    adam: Adam,
    data: Data,
    device: Device,
}

impl ClassifierTask {
    /// `evaluator = true` trains the independent scoring network instead of `E`/`C`.
    pub fn new(evaluator: bool, data: Data, opts: &TrainOptions, device: &Device) -> Result<Self> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
        let (name, net, config) = if evaluator {
            let cfg = EvaluatorConfig::default();
            (
                "evaluator",
                Net::Evaluator(Evaluator::new(&cfg, vb)?),
                serde_json::to_value(cfg).unwrap(),
            )
        } else {
            let cfg = ClassifierConfig::default();
            (
                "classifier",
                Net::Classifier(Classifier::new(&cfg, vb)?),
                serde_json::to_value(cfg).unwrap(),
            )
        };
        init_seeded(&varmap, opts.seed)?;
        let adam = super::adam_for(&varmap, opts)?;
        Ok(Self {
            name,
            net,
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
        Ok(BTreeMap::from([
            ("test_accuracy".to_string(), acc),
            ("validation_accuracy".to_string(), val),
        ]))
    }
    fn config_json(&self) -> serde_json::Value {
        self.config.clone()
    }
}
