//! Training the score-based prior on codes
//! (`crate::models::fashion::code_score`) by denoising score matching over
//! noise levels (Vincent 2011; the recipe of Karras et al. 2022: the
//! preconditioned network, its loss weighting, log-normal training levels
//! and an exponential moving average of the weights, which is what ships).
//! The codes are the pre-ReLU `u` of the training images before the
//! validation split, standardised per unit; the card gives the validation
//! split's denoising error at a ladder of levels beside the error of
//! returning the noisy code (`sigma^2` per unit).
//!
//! **Which model ships** is chosen by a rule written before the candidates
//! were trained: the card's `validation_draws_frechet` ([`DRAWS`] draws of
//! the prior alone by the `ppgn-score` preset's reverse diffusion, compared
//! with the validation split's codes by the Frechet distance in the
//! per-unit standardised code, where a whitened model's draws are mapped
//! back) decides, lowest first; a candidate with more
//! parameters than another is chosen over it only when its distance is
//! lower by more than 5% of the smaller one's
//! (`scripts/prior-candidates code-score` applies it to the cards). The
//! card's `training_codes_frechet` (as many training codes against the
//! same validation codes) is the distance's floor from sampling alone. No
//! image and no evaluator is involved.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde::Serialize;

use super::code_prior::{codes_frechet, moments, rows, whitening, SplitCodes, DRAWS};
use super::{varmap_tensors, Data, Task, TrainOptions};
use crate::data::fashion_mnist;
use crate::density::{Eval, Term};
use crate::error::{Error, Result};
use crate::models::fashion::{self as stack, CodeScore, CodeScoreConfig};
use crate::nn::adam::Adam;
use crate::nn::frechet::{spread, Spread};
use crate::nn::init::init_seeded;
use crate::run::config::preset::preset;
use crate::run::config::preset::{Choice, SamplerConfig};
use crate::run::drive::progress::{Progress, Silent};
use crate::sampler::{init_at, ChainRngs};

/// The moving average's decay per step.
pub const EMA_DECAY: f64 = 0.999;

/// The noise levels the card reports the validation error at.
pub const CARD_LEVELS: [f64; 7] = [0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0];

pub struct CodeScoreTask {
    net: CodeScore,
    varmap: VarMap,
    /// The moving average of `varmap`, and the model reading it.
    ema: VarMap,
    ema_net: CodeScore,
    adam: Adam,
    /// Standardised codes `[n, dim]` of the training images before the
    /// validation split, of the validation split, and of the test images.
    train: Tensor,
    validation: Tensor,
    test: Tensor,
    depends: Vec<(String, PathBuf)>,
}

impl CodeScoreTask {
    /// Reads the trained classifier from `opts.models_dir`, encodes the
    /// three splits once and standardises them by the training codes
    /// (and whitens them by the training codes' principal axes with
    /// `opts.codes.whiten`).
    pub fn new(data: Data, opts: &TrainOptions, device: &Device) -> Result<Self> {
        let codes = SplitCodes::new(&data, &opts.models_dir, device, "score model")?;
        let (mean, std) = moments(&codes.train)?;
        let base = config(codes.dim, opts.size.as_deref())?;
        let cfg = CodeScoreConfig {
            whiten: opts.codes.whiten,
            zero_init: opts.codes.zero_init,
            p_mean: opts.codes.noise_mean.unwrap_or(base.p_mean),
            ..base
        };
        let (varmap, ema) = (VarMap::new(), VarMap::new());
        let net = CodeScore::new(&cfg, VarBuilder::from_varmap(&varmap, DType::F32, device))?;
        let ema_net = CodeScore::new(&cfg, VarBuilder::from_varmap(&ema, DType::F32, device))?;
        init_seeded(&varmap, opts.seed)?;
        for (name, t) in [("norm.mean", &mean), ("norm.std", &std)] {
            set(&varmap, name, t)?;
        }
        if opts.codes.zero_init {
            for name in net.zero_init_names() {
                let v = varmap.data().lock().unwrap()[&name]
                    .as_tensor()
                    .zeros_like()?;
                set(&varmap, &name, &v)?;
            }
        }
        if opts.codes.whiten {
            let z = codes.train.broadcast_sub(&mean)?.broadcast_div(&std)?;
            let (white, colour, _) = whitening(&z)?;
            set(&varmap, "norm.white", &white)?;
            set(&varmap, "norm.colour", &colour)?;
        }
        for (name, t) in varmap_tensors(&varmap, "") {
            set(&ema, &name, &t)?;
        }
        // detached: the standardisation's variables would otherwise put
        // all the codes in each step's graph
        let (train, validation, test) = (
            net.standardise(&codes.train)?.detach(),
            net.standardise(&codes.validation)?.detach(),
            net.standardise(&codes.test)?.detach(),
        );
        let adam = super::adam_for(&varmap, opts)?;
        Ok(Self {
            train,
            net,
            varmap,
            ema,
            ema_net,
            adam,
            validation,
            test,
            depends: vec![(
                "classifier".into(),
                stack::paths(&opts.models_dir, "classifier").0,
            )],
        })
    }

    /// `ema <- d ema + (1 - d) net` for every variable.
    fn update_ema(&self) -> Result<()> {
        let net = self.varmap.data().lock().unwrap();
        let ema = self.ema.data().lock().unwrap();
        for (name, var) in net.iter() {
            if let Some(e) = ema.get(name) {
                let next = ((e.as_tensor() * EMA_DECAY)? + (var.as_tensor() * (1.0 - EMA_DECAY))?)?;
                e.set(&next)?;
            }
        }
        Ok(())
    }

    /// The moving-average model's mean squared denoising error per unit on
    /// `codes` at level `sigma`, with a fixed noise draw.
    fn denoise_mse(&self, codes: &Tensor, sigma: f64) -> Result<f64> {
        use rand::SeedableRng;
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let (n, d) = codes.dims2()?;
        let mut total = 0.0;
        for start in (0..n).step_by(1000) {
            let rows = codes.narrow(0, start, 1000.min(n - start))?;
            let m = rows.dim(0)?;
            let noise = normal(&mut rng, m * d, rows.shape(), rows.device())?;
            let noisy = (&rows + (noise * sigma)?)?;
            let est = self.ema_net.denoise(&noisy, &vec![sigma; m])?;
            let err = (est - &rows)?.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
            total += err;
        }
        Ok(total / (n * d) as f64)
    }
}

/// The residual MLP's width and blocks from `--size WIDTH BLOCKS`, or
/// the defaults.
pub fn size(size: Option<&[usize]>) -> Result<(usize, usize)> {
    match size {
        None => {
            let d = CodeScoreConfig::default();
            Ok((d.hidden, d.blocks))
        }
        Some(&[w, b]) if w > 0 => Ok((w, b)),
        Some(s) => Err(crate::error::Error::setting(
            "--size",
            format!("{s:?}"),
            "code-score's WIDTH BLOCKS: a positive width and a number of residual blocks",
        )),
    }
}

/// The model's configuration: the defaults, with `--size WIDTH BLOCKS`.
fn config(dim: usize, size: Option<&[usize]>) -> Result<CodeScoreConfig> {
    let (hidden, blocks) = self::size(size)?;
    Ok(CodeScoreConfig {
        dim,
        hidden,
        blocks,
        ..Default::default()
    })
}

/// A score model as a sampling target: its score `(D(v; s) - v) / s^2`
/// at the level the kernel asks for, on candle.
struct Score<'a>(&'a CodeScore);

impl Term for Score<'_> {
    fn name(&self) -> String {
        "code-score (training)".into()
    }
    fn has_value(&self) -> bool {
        false
    }
    fn value_and_grad(&self, v: &Tensor) -> Result<Eval> {
        self.value_and_grad_at(v, None)
    }
    fn value_and_grad_at(&self, v: &Tensor, level: Option<f64>) -> Result<Eval> {
        let s = level.unwrap_or(self.0.cfg.sigma_min);
        // detached: the moving average's variables would otherwise keep
        // every step's graph alive
        let d = self.0.denoise(v, &vec![s; v.dim(0)?])?.detach();
        Ok(Eval {
            log_density: None,
            grad: ((d - v)? / (s * s))?,
        })
    }
}

/// `n` draws of the model alone by the kernel and ladder of `sampling`
/// (its steps, its noise levels or else the model's), seed 0, with the
/// gradient evaluations each draw spent (the start's included).
fn prior_draws(
    net: &CodeScore,
    sampling: &SamplerConfig,
    n: usize,
    device: &Device,
    progress: &mut dyn Progress,
) -> Result<(Tensor, usize)> {
    let cfg = &net.cfg;
    let levels = sampling
        .noise_levels
        .unwrap_or((cfg.sigma_max, cfg.sigma_min));
    let kernel = SamplerConfig {
        noise_levels: Some(levels),
        ..sampling.clone()
    }
    .kernel()?;
    let mut rngs = ChainRngs::new(0, n);
    let zeros = Tensor::zeros((n, cfg.dim), DType::F32, device)?;
    let start = (rngs.normal_like(&zeros)? * levels.0)?;
    let target = Score(net);
    let mut state = init_at(&start, &target, kernel.level(0))?;
    let mut evals = 1;
    progress.begin("draws", sampling.steps);
    for t in 0..sampling.steps {
        let (next, info) = kernel.step(&mut rngs, &state, &target, t)?;
        (state, evals) = (next, evals + info.grad_evals);
        progress.tick(t + 1);
    }
    Ok((state.position, evals))
}

/// The score prior's own draws measured as its card measures them.
#[derive(Debug, Clone, Serialize)]
pub struct ScoreDraws {
    /// The kernel and its levels.
    pub sampler: String,
    pub levels: usize,
    pub draws: usize,
    /// Gradient evaluations per draw, the start's included.
    pub grad_evals: usize,
    /// The draws' Frechet distance to the validation split's codes, in the
    /// standardised code.
    pub validation_draws_frechet: f64,
    /// As many training codes against the same validation codes: the
    /// floor that sampling error alone leaves.
    pub training_codes_frechet: f64,
    /// Where the draws differ from the validation codes.
    pub spread: Spread,
}

impl std::fmt::Display for ScoreDraws {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} draws by {} over {} levels ({} gradient evaluations each): Frechet distance to the validation codes {:.4} (floor, training codes: {:.4})",
            self.draws,
            self.sampler,
            self.levels,
            self.grad_evals,
            self.validation_draws_frechet,
            self.training_codes_frechet
        )
    }
}

/// Draws the shipped score model in `models_dir` alone by `sampling` (a
/// kernel that walks a ladder of noise levels) and measures the draws as
/// the card's `validation_draws_frechet` does: at most `draws` of them
/// against as many codes of the validation split, in the standardised
/// code. `scripts/score-samplers` compares kernels this way. `data_dir`
/// is the Fashion-MNIST folder (`None`: the default one).
pub fn score_draws(
    models_dir: &Path,
    data_dir: Option<&Path>,
    sampling: &SamplerConfig,
    draws: usize,
    progress: &mut dyn Progress,
) -> Result<ScoreDraws> {
    if !sampling.sampler.walks_ladder() {
        return Err(Error::unsupported(
            format!("drawing the score prior alone with {}", sampling.sampler.name()),
            "a sampler that walks the ladder of noise levels: reverse-diffusion or probability-flow",
        ));
    }
    if draws == 0 {
        return Err(Error::setting("draws", 0, "at least 1"));
    }
    let device = Device::Cpu;
    let (net, _) = stack::load(
        models_dir,
        "code-score",
        DType::F32,
        &device,
        CodeScore::new,
    )?;
    let data = Data::load(&fashion_mnist::resolve_dir(data_dir))?;
    let codes = SplitCodes::new(&data, models_dir, &device, "score model")?;
    let n = draws.min(codes.validation.dim(0)?).min(codes.train.dim(0)?);
    // every model's draws measured in the per-unit standardised code
    let z = |u: &Tensor| -> Result<Tensor> { Ok(net.unwhiten(&net.standardise(u)?)?) };
    let validation = z(&codes.validation.narrow(0, 0, n)?)?;
    let seen = z(&codes.train.narrow(0, 0, n)?)?;
    let (drawn, grad_evals) = prior_draws(&net, sampling, n, &device, progress)?;
    let drawn = net.unwhiten(&drawn)?;
    Ok(ScoreDraws {
        sampler: sampling.sampler.name(),
        levels: sampling.steps,
        draws: n,
        grad_evals,
        validation_draws_frechet: codes_frechet(&drawn, &validation)?,
        training_codes_frechet: codes_frechet(&seen, &validation)?,
        spread: spread(&rows(&drawn)?, &rows(&validation)?),
    })
}

/// Sets variable `name` of `varmap` to `t`.
fn set(varmap: &VarMap, name: &str, t: &Tensor) -> Result<()> {
    let data = varmap.data().lock().unwrap();
    match data.get(name) {
        Some(v) => Ok(v.set(t)?),
        None => {
            Err(candle_core::Error::Msg(format!("the score model has no variable {name}")).into())
        }
    }
}

/// `len` standard normal draws from `rng`, shaped `shape`.
fn normal(
    rng: &mut ChaCha8Rng,
    len: usize,
    shape: &candle_core::Shape,
    device: &Device,
) -> Result<Tensor> {
    let v: Vec<f32> = (0..len)
        .map(|_| rng.sample::<f32, _>(StandardNormal))
        .collect();
    Ok(Tensor::from_vec(v, shape, device)?)
}

impl Task for CodeScoreTask {
    fn name(&self) -> &'static str {
        "code-score"
    }
    fn varmaps(&self) -> Vec<(&'static str, &VarMap)> {
        vec![("net", &self.varmap), ("ema", &self.ema)]
    }
    fn optimizers(&mut self) -> Vec<&mut Adam> {
        vec![&mut self.adam]
    }
    fn optimizers_ref(&self) -> Vec<&Adam> {
        vec![&self.adam]
    }
    fn train_len(&self) -> usize {
        self.train.dim(0).unwrap_or(0)
    }
    fn step(&mut self, idx: &[usize], rng: &mut ChaCha8Rng) -> Result<Vec<(&'static str, f64)>> {
        let ids: Vec<u32> = idx.iter().map(|&i| i as u32).collect();
        let ids = Tensor::from_vec(ids, idx.len(), self.train.device())?;
        let v = self.train.index_select(&ids, 0)?;
        let cfg = &self.net.cfg;
        let sigmas: Vec<f64> = (0..idx.len())
            .map(|_| (cfg.p_mean + cfg.p_std * rng.sample::<f64, _>(StandardNormal)).exp())
            .collect();
        let noise = normal(rng, v.elem_count(), v.shape(), v.device())?;
        let loss = self.net.loss(&v, &noise, &sigmas)?;
        self.adam.backward_step(&loss)?;
        self.update_ema()?;
        Ok(vec![("weighted_loss", loss.to_scalar::<f32>()? as f64)])
    }
    fn evaluate(&self) -> Result<BTreeMap<String, f64>> {
        let mut m = BTreeMap::new();
        for s in CARD_LEVELS {
            m.insert(
                format!("validation_denoise_mse_sigma_{s}"),
                self.denoise_mse(&self.validation, s)?,
            );
            m.insert(format!("noisy_input_mse_sigma_{s}"), s * s);
        }
        let n = DRAWS.min(self.validation.dim(0)?).min(self.train.dim(0)?);
        // the same error on as many training codes: far below the
        // validation split's, the model has learnt its training codes
        let seen = self.train.narrow(0, 0, n)?;
        for s in CARD_LEVELS {
            m.insert(
                format!("training_denoise_mse_sigma_{s}"),
                self.denoise_mse(&seen, s)?,
            );
        }
        let validation = self.ema_net.unwhiten(&self.validation.narrow(0, 0, n)?)?;
        let seen = self.ema_net.unwhiten(&seen)?;
        let (draws, _) = prior_draws(
            &self.ema_net,
            &preset("ppgn-score")?,
            n,
            validation.device(),
            &mut Silent,
        )?;
        m.insert(
            "validation_draws_frechet".into(),
            codes_frechet(&self.ema_net.unwhiten(&draws)?, &validation)?,
        );
        m.insert(
            "training_codes_frechet".into(),
            codes_frechet(&seen, &validation)?,
        );
        m.insert(
            "test_denoise_mse_sigma_0.3".into(),
            self.denoise_mse(&self.test, 0.3)?,
        );
        Ok(m)
    }
    fn weights(&self) -> HashMap<String, Tensor> {
        varmap_tensors(&self.ema, "")
    }
    fn config_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.net.cfg).unwrap_or_default()
    }
    fn depends_on(&self) -> Vec<(String, PathBuf)> {
        self.depends.clone()
    }
}
