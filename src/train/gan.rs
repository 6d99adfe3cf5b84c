//! Training the generator `G` against the frozen classifier `E` with the
//! discriminator `D` ("Plug & Play Generative Networks" (supplementary), S9.4, eqs. 18-22):
//!
//! `L_G = l_img ||G(h) - x||^2 + l_h1 ||E1(G(h)) - h1||^2 + l_gan * (-log D(G(h)))`
//! `L_D = -log D(x) - log(1 - D(G(h)))`
//!
//! with `h1 = E1(x)`, `h = E2(h1)`. The `--joint` variant (S9.5) adds noise to
//! `x`, `h1` and `h` and the loss `l_h ||E(G(h)) - h||^2` (eq. 24). The
//! losses are means over elements; the weights `l_*` scale them.
//! Pause heuristic (S9.1): with `r = L_D / L_GAN` of the previous step,
//! `D` is not updated when `r < 0.1` and `G` is not updated when `r > 10`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{named_vars, validation_start};
use super::{Data, Task, TrainOptions};
use crate::error::{Error, Result};
use crate::models::fashion::{
    self as stack, Classifier, Discriminator, DiscriminatorConfig, Evaluator, Generator,
    GeneratorConfig,
};
use crate::models::weights::varmap_tensors;
use crate::nn::adam::{Adam, AdamParams};
use crate::nn::{gaussian_like, init::init_seeded, log_sigmoid, mse};

/// How a generator is trained: the variant, loss weights and width.
#[derive(Debug, Clone, Default)]
pub struct GanSettings {
    /// The Joint PPGN-h variant (S9.5): noise on x, h1, h and `L_h`.
    pub joint: bool,
    /// Weights of `(L_img, L_h1, L_GAN)` in place of the defaults.
    pub weights: Option<(f64, f64, f64)>,
    /// Weight of the code loss `L_h = ||E(G(h)) - h||^2` (eq. 24) without
    /// the joint variant's noise (Fig. S8's code-layer feature loss).
    pub code_loss: Option<f64>,
}

impl GanSettings {
    /// The settings of `ppgn train generator`'s flags, checked: loss
    /// weights finite and non-negative. (Its width is `TrainOptions::size`,
    /// checked by [`channels`].)
    pub fn from_flags(
        joint: bool,
        loss_weights: Option<&[f64]>,
        code_loss: Option<f64>,
    ) -> Result<Self> {
        let weights = match loss_weights {
            Some(&[img, h1, gan]) => Some((img, h1, gan)),
            Some(w) => {
                return Err(Error::setting(
                    "loss-weights",
                    format!("{w:?}"),
                    "IMG H1 GAN",
                ))
            }
            None => None,
        };
        for w in loss_weights.unwrap_or_default().iter().chain(&code_loss) {
            if !(*w >= 0.0 && w.is_finite()) {
                return Err(Error::setting("loss weight", w, "finite and non-negative"));
            }
        }
        Ok(GanSettings {
            joint,
            weights,
            code_loss,
        })
    }
}

/// The generator's channels at 7x7, 14x14 and 28x28 from `--size`, in
/// place of the default width.
pub fn channels(size: Option<&[usize]>) -> Result<Option<[usize; 3]>> {
    match size {
        Some(&[c7, c14, c28]) if c7 > 0 && c14 > 0 && c28 > 0 => Ok(Some([c7, c14, c28])),
        Some(c) => Err(Error::setting(
            "--size",
            format!("{c:?}"),
            "the generator's C7 C14 C28: three positive widths",
        )),
        None => Ok(None),
    }
}

/// Loss weights and noise levels; written into the generator's card.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GanLosses {
    pub img: f64,
    pub h1: f64,
    pub gan: f64,
    /// Weight of `L_h` (0 for the noiseless variant).
    pub h: f64,
    /// Noise std on x, h1, h (all 0 for the noiseless variant).
    pub noise_x: f64,
    pub noise_h1: f64,
    pub noise_h: f64,
}

impl GanLosses {
    pub fn noiseless() -> Self {
        Self {
            img: 1.0,
            h1: 1.0,
            gan: 0.01,
            h: 0.0,
            noise_x: 0.0,
            noise_h1: 0.0,
            noise_h: 0.0,
        }
    }
}

impl GanLosses {
    /// The weights and noise `settings` ask for; the joint variant's noise
    /// levels are fractions of the mean activations on training images.
    fn of(settings: &GanSettings, e: &Classifier, data: &Data, device: &Device) -> Result<Self> {
        let mut losses = GanLosses::noiseless();
        if let Some((img, h1, gan)) = settings.weights {
            (losses.img, losses.h1, losses.gan) = (img, h1, gan);
        }
        if let Some(w) = settings.code_loss {
            losses.h = w;
        }
        if settings.joint {
            // S9.5: sigma = {1, 4, 1} for x, h1, h: ~1% of pixel values and
            // ~10% of the mean pool5 / fc6 activations.
            let idx: Vec<usize> = (0..data.train.len().min(2000)).collect();
            let out = e.forward_all(&data.train.images_tensor(&idx, device)?)?;
            losses.h = settings.code_loss.unwrap_or(1.0);
            losses.noise_x = 0.01;
            losses.noise_h1 = 0.1 * out.h1.mean_all()?.to_scalar::<f32>()? as f64;
            losses.noise_h = 0.1 * out.h.mean_all()?.to_scalar::<f32>()? as f64;
        }
        Ok(losses)
    }
}

/// Eq. 22, as a mean over the batch: `-log D(x) - log(1 - D(fake))`, with
/// `fake` detached so only `D` learns from it.
pub fn discriminator_loss(d: &Discriminator, real: &Tensor, fake: &Tensor) -> Result<Tensor> {
    let on_real = log_sigmoid(&d.forward(real)?)?.mean_all()?;
    let on_fake = log_sigmoid(&d.forward(&fake.detach())?.neg()?)?.mean_all()?;
    Ok((on_real + on_fake)?.neg()?)
}

pub struct GanTask {
    e: Classifier,
    evaluator: Evaluator,
    g: Generator,
    d: Discriminator,
    g_vars: VarMap,
    d_vars: VarMap,
    g_adam: Adam,
    d_adam: Adam,
    losses: GanLosses,
    /// `L_D / L_GAN` of the previous step (the pause heuristic's input).
    ratio: f64,
    paused: (u64, u64),
    data: Data,
    depends: Vec<(String, PathBuf)>,
    device: Device,
}

impl GanTask {
    /// G is trained on the training images before the validation split
    /// ([`super::VALIDATION`]), which its card measures reconstructions on.
    pub fn new(
        data: Data,
        opts: &TrainOptions,
        settings: &GanSettings,
        device: &Device,
    ) -> Result<Self> {
        if validation_start(data.train.len()) == 0 {
            return Err(Error::data(
                "training images",
                "none left for the generator beside the validation split",
            ));
        }
        let (e, _) = stack::load(
            &opts.models_dir,
            "classifier",
            DType::F32,
            device,
            Classifier::new,
        )?;
        let (evaluator, _) = stack::load(
            &opts.models_dir,
            "evaluator",
            DType::F32,
            device,
            Evaluator::new,
        )?;
        let mut g_cfg = GeneratorConfig {
            h_dim: e.cfg.h_dim,
            ..Default::default()
        };
        if let Some(c) = channels(opts.size.as_deref())? {
            g_cfg.channels = c;
        }
        let g_vars = VarMap::new();
        let g = Generator::new(&g_cfg, VarBuilder::from_varmap(&g_vars, DType::F32, device))?;
        init_seeded(&g_vars, opts.seed)?;
        let d_vars = VarMap::new();
        let d = Discriminator::new(
            &DiscriminatorConfig::default(),
            VarBuilder::from_varmap(&d_vars, DType::F32, device),
        )?;
        init_seeded(&d_vars, opts.seed.wrapping_add(1))?;
        let params = AdamParams {
            lr: opts.lr,
            weight_decay: opts.weight_decay,
            ..Default::default()
        };
        let g_adam = Adam::new(named_vars(&g_vars), params)?;
        let d_adam = Adam::new(named_vars(&d_vars), params)?;
        let losses = GanLosses::of(settings, &e, &data, device)?;
        let depends = ["classifier", "evaluator"]
            .iter()
            .map(|n| (n.to_string(), stack::paths(&opts.models_dir, n).0))
            .collect();
        Ok(Self {
            e,
            evaluator,
            g,
            d,
            g_vars,
            d_vars,
            g_adam,
            d_adam,
            losses,
            ratio: 1.0,
            paused: (0, 0),
            data,
            depends,
            device: device.clone(),
        })
    }
}

impl Task for GanTask {
    fn name(&self) -> &'static str {
        "generator"
    }
    fn varmaps(&self) -> Vec<(&'static str, &VarMap)> {
        vec![("g", &self.g_vars), ("d", &self.d_vars)]
    }
    fn optimizers(&mut self) -> Vec<&mut Adam> {
        vec![&mut self.g_adam, &mut self.d_adam]
    }
    fn optimizers_ref(&self) -> Vec<&Adam> {
        vec![&self.g_adam, &self.d_adam]
    }
    fn train_len(&self) -> usize {
        validation_start(self.data.train.len())
    }
    fn step(&mut self, idx: &[usize], rng: &mut ChaCha8Rng) -> Result<Vec<(&'static str, f64)>> {
        let l = &self.losses;
        let x = self.data.train.images_tensor(idx, &self.device)?;
        let noisy = |t: &Tensor, s: f64, rng: &mut ChaCha8Rng| -> Result<Tensor> {
            Ok(if s > 0.0 {
                (t + gaussian_like(t, s, rng)?)?
            } else {
                t.clone()
            })
        };
        // Targets from the frozen encoder (constants: no graph is built).
        let x_in = noisy(&x, l.noise_x, rng)?;
        let h1 = self.e.encode_h1(&x_in)?;
        let h = self.e.h1_to_h(&noisy(&h1, l.noise_h1, rng)?)?;
        let h_in = noisy(&h, l.noise_h, rng)?;

        let x_hat = self.g.forward(&h_in)?; // [n, 28, 28, 1]
        let h1_hat = self.e.encode_h1(&x_hat)?;
        let l_img = mse(&x_hat, &x)?;
        let l_h1 = mse(&h1_hat, &h1)?;
        let l_gan = log_sigmoid(&self.d.forward(&x_hat)?)?.mean_all()?.neg()?;
        let mut l_g = ((l_img.clone() * l.img)? + (l_h1.clone() * l.h1)?)?;
        l_g = (l_g + (l_gan.clone() * l.gan)?)?;
        let mut l_h_val = 0.0;
        if l.h > 0.0 {
            let l_h = mse(&self.e.h1_to_h(&h1_hat)?, &h)?;
            l_h_val = l_h.to_scalar::<f32>()? as f64;
            l_g = (l_g + (l_h * l.h)?)?;
        }

        // D on real images and on detached fakes (eq. 22).
        let fake = x_hat.detach();
        let l_d = discriminator_loss(&self.d, &x, &fake)?;

        let (lg, ld) = (
            l_gan.to_scalar::<f32>()? as f64,
            l_d.to_scalar::<f32>()? as f64,
        );
        if self.ratio > 10.0 {
            self.paused.0 += 1;
        } else {
            // G's step needs only G's gradients: D's are dropped.
            self.g_adam.backward_step(&l_g)?;
        }
        if self.ratio < 0.1 {
            self.paused.1 += 1;
        } else {
            self.d_adam.backward_step(&l_d)?;
        }
        self.ratio = ld / lg.max(1e-12);
        let mut out = vec![
            ("img", l_img.to_scalar::<f32>()? as f64),
            ("h1", l_h1.to_scalar::<f32>()? as f64),
            ("gan", lg),
            ("d", ld),
        ];
        if l.h > 0.0 {
            out.push(("h", l_h_val));
        }
        Ok(out)
    }

    fn evaluate(&self) -> Result<BTreeMap<String, f64>> {
        let report = super::reconstruction::evaluate(
            &self.e,
            &self.g,
            &self.evaluator,
            &self.data.test,
            &self.device,
        )?;
        let mut m = report.metrics();
        let n = self.data.train.len();
        let validation: Vec<usize> = (validation_start(n)..n).collect();
        let d = super::reconstruction::frechet_in_features(
            &self.e,
            &self.g,
            &self.data.train,
            &validation,
            &self.device,
        )?;
        m.insert("validation_reconstruction_frechet_h".into(), d.h);
        m.insert(crate::models::card::GENERATOR_ERROR.into(), d.rmse);
        m.insert(
            "validation_reconstruction_frechet_h1_pooled".into(),
            d.h1_pooled,
        );
        m.insert("steps_g_paused".into(), self.paused.0 as f64);
        m.insert("steps_d_paused".into(), self.paused.1 as f64);
        Ok(m)
    }

    fn config_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(&self.g.cfg).unwrap();
        v["training_losses"] = serde_json::to_value(&self.losses).unwrap();
        v
    }
    fn weights(&self) -> std::collections::HashMap<String, Tensor> {
        varmap_tensors(&self.g_vars, "")
    }
    fn companions(
        &self,
    ) -> Vec<(
        &'static str,
        serde_json::Value,
        std::collections::HashMap<String, Tensor>,
    )> {
        vec![(
            "discriminator",
            serde_json::to_value(&self.d.cfg).unwrap(),
            varmap_tensors(&self.d_vars, ""),
        )]
    }
    fn depends_on(&self) -> Vec<(String, PathBuf)> {
        self.depends.clone()
    }
    fn state_json(&self) -> serde_json::Value {
        serde_json::json!({"ratio": self.ratio, "paused_g": self.paused.0, "paused_d": self.paused.1})
    }
    fn load_state_json(&mut self, v: &serde_json::Value) {
        self.ratio = v["ratio"].as_f64().unwrap_or(1.0);
        self.paused = (
            v["paused_g"].as_u64().unwrap_or(0),
            v["paused_d"].as_u64().unwrap_or(0),
        );
    }
}
