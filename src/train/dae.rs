//! Training the two denoising autoencoders used as priors: the MLP DAE on
//! codes `h` (S9.3) and the convolutional DAE on images (S9.2). Both learn
//! `R(v + n) ~ v` with `n ~ N(0, sigma^2)`, so `(R(v) - v) / sigma^2`
//! estimates the score `d log p(v) / dv` (Alain & Bengio).

use std::collections::BTreeMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rand_chacha::ChaCha8Rng;

use super::{batched, Data, Task, TrainOptions};
use crate::error::Result;
use crate::models::fashion::{self as stack, Classifier, HDae, HDaeConfig, XDae, XDaeConfig};
use crate::nn::adam::Adam;
use crate::nn::{gaussian_like, init::init_seeded, mse};

enum Net {
    /// With the precomputed training and test codes `[n, h_dim]`.
    H {
        dae: HDae,
        train_codes: Tensor,
        test_codes: Tensor,
    },
    X(XDae),
}

pub struct DaeTask {
    name: &'static str,
    net: Net,
    sigma: f64,
    config: serde_json::Value,
    varmap: VarMap,
    adam: Adam,
    data: Data,
    depends: Vec<(String, PathBuf)>,
    device: Device,
}

/// Codes `h = E(x)` of a whole split, `[n, h_dim]`.
pub fn encode_split(
    clf: &Classifier,
    data: &crate::data::fashion_mnist::Dataset,
    device: &Device,
) -> Result<Tensor> {
    let parts = batched(data.len(), super::EVAL_BATCH, |idx| {
        Ok(clf.encode(&data.images_tensor(idx, device)?)?)
    })?;
    Ok(Tensor::cat(&parts, 0)?)
}

impl DaeTask {
    /// The DAE on `h`; reads the trained classifier from `opts.models_dir`. Its
    /// noise is 10% of the mean active code unit over the training set (S9.3).
    /// The last layer starts at zero, so training starts from `R(h) = h`.
    pub fn new_h(data: Data, opts: &TrainOptions, device: &Device) -> Result<Self> {
        let (clf, _) = stack::load(
            &opts.models_dir,
            "classifier",
            DType::F32,
            device,
            Classifier::new,
        )?;
        let train_codes = encode_split(&clf, &data.train, device)?;
        let test_codes = encode_split(&clf, &data.test, device)?;
        // Mean over the active (non-zero) units: h is post-ReLU and ~80% zeros,
        // so the mean over all entries would make the noise negligible.
        let total = train_codes.sum_all()?.to_scalar::<f32>()? as f64;
        let active = train_codes
            .gt(0f32)?
            .to_dtype(DType::F32)?
            .sum_all()?
            .to_scalar::<f32>()? as f64;
        let mean_act = total / active.max(1.0);
        let cfg = HDaeConfig {
            h_dim: clf.cfg.h_dim,
            sigma: 0.1 * mean_act,
            ..Default::default()
        };
        let varmap = VarMap::new();
        let dae = HDae::new(&cfg, VarBuilder::from_varmap(&varmap, DType::F32, device))?;
        init_seeded(&varmap, opts.seed)?;
        let last = format!("fc{}.weight", cfg.hidden.len() + 1);
        if let Some(w) = varmap.data().lock().unwrap().get(&last) {
            w.set(&w.zeros_like()?)?;
        }
        let adam = super::adam_for(&varmap, opts)?;
        Ok(Self {
            name: "h-dae",
            sigma: cfg.sigma,
            config: serde_json::to_value(&cfg).unwrap(),
            net: Net::H {
                dae,
                train_codes,
                test_codes,
            },
            varmap,
            adam,
            data,
            depends: vec![(
                "classifier".into(),
                stack::paths(&opts.models_dir, "classifier").0,
            )],
            device: device.clone(),
        })
    }

    /// The DAE on images, noise std 0.1 of the [0, 1] range (S9.2's 25.6 of 256).
    pub fn new_x(data: Data, opts: &TrainOptions, device: &Device) -> Result<Self> {
        let cfg = XDaeConfig::default();
        let varmap = VarMap::new();
        let dae = XDae::new(&cfg, VarBuilder::from_varmap(&varmap, DType::F32, device))?;
        init_seeded(&varmap, opts.seed)?;
        let adam = super::adam_for(&varmap, opts)?;
        Ok(Self {
            name: "x-dae",
            sigma: cfg.sigma,
            config: serde_json::to_value(&cfg).unwrap(),
            net: Net::X(dae),
            varmap,
            adam,
            data,
            depends: Vec::new(),
            device: device.clone(),
        })
    }

    fn clean(&self, idx: &[usize], test: bool) -> Result<Tensor> {
        match &self.net {
            Net::H {
                train_codes,
                test_codes,
                ..
            } => {
                let codes = if test { test_codes } else { train_codes };
                let ids: Vec<u32> = idx.iter().map(|&i| i as u32).collect();
                let ids = Tensor::from_vec(ids, idx.len(), &self.device)?;
                Ok(codes.index_select(&ids, 0)?)
            }
            Net::X(_) => {
                let d = if test {
                    &self.data.test
                } else {
                    &self.data.train
                };
                d.images_tensor(idx, &self.device)
            }
        }
    }

    fn reconstruct(&self, v: &Tensor) -> candle_core::Result<Tensor> {
        match &self.net {
            Net::H { dae, .. } => dae.forward(v),
            Net::X(dae) => dae.forward(v),
        }
    }
}

impl Task for DaeTask {
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
        super::validation_start(self.data.train.len())
    }
    fn step(&mut self, idx: &[usize], rng: &mut ChaCha8Rng) -> Result<Vec<(&'static str, f64)>> {
        let clean = self.clean(idx, false)?;
        let noisy = (&clean + gaussian_like(&clean, self.sigma, rng)?)?;
        let loss = mse(&self.reconstruct(&noisy)?, &clean)?;
        self.adam.backward_step(&loss)?;
        Ok(vec![("mse", loss.to_scalar::<f32>()? as f64)])
    }
    fn evaluate(&self) -> Result<BTreeMap<String, f64>> {
        // Denoising error on the test set with a fixed noise draw, against
        // the error of returning the noisy input unchanged (= sigma^2).
        use rand::SeedableRng;
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let mut sum = 0.0;
        let mut sum_noisy = 0.0;
        let n = self.data.test.len();
        for chunk in (0..n).collect::<Vec<_>>().chunks(super::EVAL_BATCH) {
            let clean = self.clean(chunk, true)?;
            let noisy = (&clean + gaussian_like(&clean, self.sigma, &mut rng)?)?;
            let m = mse(&self.reconstruct(&noisy)?, &clean)?.to_scalar::<f32>()? as f64;
            let m0 = mse(&noisy, &clean)?.to_scalar::<f32>()? as f64;
            sum += m * chunk.len() as f64;
            sum_noisy += m0 * chunk.len() as f64;
        }
        Ok(BTreeMap::from([
            ("test_denoised_mse".to_string(), sum / n as f64),
            ("test_noisy_input_mse".to_string(), sum_noisy / n as f64),
            ("sigma".to_string(), self.sigma),
        ]))
    }
    fn config_json(&self) -> serde_json::Value {
        self.config.clone()
    }
    fn depends_on(&self) -> Vec<(String, PathBuf)> {
        self.depends.clone()
    }
}
