//! The realness judge of "Generating Class-conditional Images with Gradient-based Inference", Table 2: a
//! DCGAN-style discriminator trained against its *own* unconditional
//! generator `z -> x` (z ~ N(0, I)), never against ours, so it scores any
//! sampler's images without having seen them. Its `log D(x)` ("log
//! probability of real") is the score.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rand_chacha::ChaCha8Rng;

use super::named_vars;
use super::{Data, Task, TrainOptions, EVAL_BATCH};
use crate::error::Result;
use crate::models::fashion::{Discriminator, DiscriminatorConfig, Generator, GeneratorConfig};
use crate::models::weights::varmap_tensors;
use crate::nn::adam::{Adam, AdamParams};
use crate::nn::{gaussian_like, init::init_seeded, log_sigmoid};

/// Width of the generator's noise input.
pub const Z_DIM: usize = 64;

pub struct RealnessTask {
    g: Generator,
    d: Discriminator,
    g_vars: VarMap,
    d_vars: VarMap,
    g_adam: Adam,
    d_adam: Adam,
    data: Data,
    device: Device,
}

impl RealnessTask {
    pub fn new(data: Data, opts: &TrainOptions, device: &Device) -> Result<Self> {
        let g_vars = VarMap::new();
        let g_cfg = GeneratorConfig {
            h_dim: Z_DIM,
            ..Default::default()
        };
        let g = Generator::new(&g_cfg, VarBuilder::from_varmap(&g_vars, DType::F32, device))?;
        init_seeded(&g_vars, opts.seed)?;
        let d_vars = VarMap::new();
        let d = Discriminator::new(
            &DiscriminatorConfig::default(),
            VarBuilder::from_varmap(&d_vars, DType::F32, device),
        )?;
        init_seeded(&d_vars, opts.seed.wrapping_add(1))?;
        // DCGAN's Adam (beta1 0.5)
        let params = AdamParams {
            lr: opts.lr,
            beta1: 0.5,
            weight_decay: opts.weight_decay,
            ..Default::default()
        };
        Ok(Self {
            g_adam: Adam::new(named_vars(&g_vars), params)?,
            d_adam: Adam::new(named_vars(&d_vars), params)?,
            g,
            d,
            g_vars,
            d_vars,
            data,
            device: device.clone(),
        })
    }

    fn noise(&self, n: usize, rng: &mut ChaCha8Rng) -> Result<Tensor> {
        let z = Tensor::zeros((n, Z_DIM), DType::F32, &self.device)?;
        gaussian_like(&z, 1.0, rng).map_err(Into::into)
    }
}

/// Mean `log D(x)` over images `[n, 28, 28, 1]`, in batches.
pub fn mean_log_real(d: &Discriminator, images: &Tensor) -> Result<f64> {
    let n = images.dim(0)?;
    let mut sum = 0.0;
    let mut i = 0;
    while i < n {
        let b = EVAL_BATCH.min(n - i);
        let l = log_sigmoid(&d.forward(&images.narrow(0, i, b)?)?)?;
        sum += l.sum_all()?.to_scalar::<f32>()? as f64;
        i += b;
    }
    Ok(sum / n.max(1) as f64)
}

impl Task for RealnessTask {
    fn name(&self) -> &'static str {
        "realness"
    }
    fn varmaps(&self) -> Vec<(&'static str, &VarMap)> {
        vec![("d", &self.d_vars), ("g", &self.g_vars)]
    }
    fn optimizers(&mut self) -> Vec<&mut Adam> {
        vec![&mut self.d_adam, &mut self.g_adam]
    }
    fn optimizers_ref(&self) -> Vec<&Adam> {
        vec![&self.d_adam, &self.g_adam]
    }
    fn train_len(&self) -> usize {
        super::validation_start(self.data.train.len())
    }
    fn step(&mut self, idx: &[usize], rng: &mut ChaCha8Rng) -> Result<Vec<(&'static str, f64)>> {
        let x = self.data.train.images_tensor(idx, &self.device)?;
        let fake = self.g.forward(&self.noise(idx.len(), rng)?)?;
        let l_d = super::gan::discriminator_loss(&self.d, &x, &fake)?;
        self.d_adam.backward_step(&l_d)?;
        let l_g = log_sigmoid(&self.d.forward(&fake)?)?.mean_all()?.neg()?;
        self.g_adam.backward_step(&l_g)?;
        Ok(vec![
            ("d", l_d.to_scalar::<f32>()? as f64),
            ("g", l_g.to_scalar::<f32>()? as f64),
        ])
    }
    fn evaluate(&self) -> Result<BTreeMap<String, f64>> {
        use rand::SeedableRng;
        let idx: Vec<usize> = (0..self.data.test.len()).collect();
        let real = mean_log_real(&self.d, &self.data.test.images_tensor(&idx, &self.device)?)?;
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let fake = self.g.forward(&self.noise(1000, &mut rng)?)?;
        Ok(BTreeMap::from([
            ("test_mean_log_real".to_string(), real),
            (
                "own_generator_mean_log_real".to_string(),
                mean_log_real(&self.d, &fake)?,
            ),
        ]))
    }
    fn config_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.d.cfg).unwrap()
    }
    fn weights(&self) -> std::collections::HashMap<String, Tensor> {
        varmap_tensors(&self.d_vars, "")
    }
    fn companions(
        &self,
    ) -> Vec<(
        &'static str,
        serde_json::Value,
        std::collections::HashMap<String, Tensor>,
    )> {
        vec![(
            "realness-generator",
            serde_json::to_value(&self.g.cfg).unwrap(),
            varmap_tensors(&self.g_vars, ""),
        )]
    }
}
