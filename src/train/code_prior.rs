//! Training the flow prior on codes (`crate::models::fashion::code_prior`)
//! by maximum likelihood on the pre-ReLU codes `u` of the training images.
//! The last [`super::VALIDATION`] training images are held out (the validation
//! split settings are tuned on); the card reports the held-out negative
//! log-likelihood in nats per dimension on the validation and test codes,
//! beside a full-covariance Gaussian fitted to the same training codes and
//! the isotropic `N(0, sigma^2)` of the Xu et al. presets.
//!
//! **Which flow ships** is chosen as the score model is
//! (`super::code_score`): by the card's `validation_draws_frechet`,
//! [`DRAWS`] exact draws of the flow (`T(z)`, `z` from
//! `N(0, I)`, seed 0) against the validation split's codes, both
//! standardised by the training codes; lowest first, a candidate with more
//! parameters than another chosen over it only when its distance is lower
//! by more than 5% of the smaller one's (`scripts/prior-candidates
//! code-prior` applies it). The likelihood is on the card but does not
//! choose: the exact samplers need a density whose mass is where the codes
//! are, which is what the draws measure.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use nalgebra::{DMatrix, DVector};
use rand_chacha::ChaCha8Rng;

use super::{batched, validation_start, Data, Task, TrainOptions};
use crate::error::{Error, Result};
use crate::models::fashion::code_prior::HALF_LN_2PI;
use crate::models::fashion::{self as stack, Classifier, CodePrior, CodePriorConfig};
use crate::nn::adam::Adam;
use crate::nn::frechet::{spread, Spread};
use crate::nn::init::init_seeded;
use rand::Rng;

/// How many prior draws the cards' `validation_draws_frechet` compares
/// (this flow's and `super::code_score`'s)
/// at most: as many as there are validation codes (5,000 on the full
/// data set), so that the floor compares equal counts too.
pub const DRAWS: usize = 5000;

/// The standard deviation of the isotropic Gaussian prior the card
/// compares with (the `xu-*` presets' `prior_sigma`).
pub const ISOTROPIC_SIGMA: f64 = 3.0;

pub struct CodePriorTask {
    flow: CodePrior,
    varmap: VarMap,
    adam: Adam,
    /// `[n, dim]` codes of the training images minus the validation split
    train: Tensor,
    validation: Tensor,
    test: Tensor,
    cfg: CodePriorConfig,
    depends: Vec<(String, PathBuf)>,
}

/// How the priors on codes train, beside the options every network has.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CodeTraining {
    /// Whiten the codes by their principal axes (code-score and
    /// code-prior; the flow then starts as their Gaussian fit).
    pub whiten: bool,
    /// Start the score model's residual blocks' last layers and its output
    /// layer at zero (code-score only), so that the untrained denoiser is
    /// `D(v; s) = c_skip(s) v`.
    pub zero_init: bool,
    /// The mean of `ln s` over the score model's training noise levels
    /// (code-score only; `None`: [`crate::models::fashion::code_score::CodeScoreConfig`]'s).
    pub noise_mean: Option<f64>,
}

/// The pre-ReLU codes `u` (the generator reads `relu(u)`) of the images
/// `idx` of a split, `[n, h_dim]`, on the sampling engine.
pub fn pre_relu_codes(
    clf: &Classifier,
    data: &crate::data::fashion_mnist::Dataset,
    idx: &[usize],
    device: &Device,
) -> Result<Tensor> {
    let net = clf.compile::<f32>()?.upto("h", true)?;
    let mut ws = crate::nn::fast::Workspace::default();
    let mut codes = Vec::with_capacity(idx.len() * clf.cfg.h_dim);
    for chunk in idx.chunks(1000) {
        let x: Vec<f32> = data
            .images_tensor(chunk, device)?
            .flatten_all()?
            .to_vec1()?;
        codes.extend_from_slice(net.forward(&x, chunk.len(), &mut ws)?);
    }
    Ok(Tensor::from_vec(codes, (idx.len(), clf.cfg.h_dim), device)?)
}

/// The pre-ReLU codes `[n, h_dim]` of the three splits (training images
/// before the validation split, the validation split, the test images)
/// under the trained classifier in `opts.models_dir`, with the code's
/// dimension: what the priors on codes are fitted to. `what` names the
/// network in the error for a data set with no training images.
pub struct SplitCodes {
    pub train: Tensor,
    pub validation: Tensor,
    pub test: Tensor,
    pub dim: usize,
}

impl SplitCodes {
    pub fn new(data: &Data, models_dir: &Path, device: &Device, what: &str) -> Result<Self> {
        let (clf, _) = stack::load(
            models_dir,
            "classifier",
            DType::F32,
            device,
            Classifier::new,
        )?;
        let n = data.train.len();
        let v = validation_start(n);
        if v == 0 {
            return Err(Error::data(
                models_dir,
                format!("no training images to fit the {what} to"),
            ));
        }
        let all: Vec<usize> = (0..n).collect();
        let test_idx: Vec<usize> = (0..data.test.len()).collect();
        Ok(Self {
            train: pre_relu_codes(&clf, &data.train, &all[..v], device)?,
            validation: pre_relu_codes(&clf, &data.train, &all[v..], device)?,
            test: pre_relu_codes(&clf, &data.test, &test_idx, device)?,
            dim: clf.cfg.h_dim,
        })
    }
}

/// Per-unit mean and standard deviation of codes `[n, dim]` (the standard
/// deviation kept off zero).
pub fn moments(codes: &Tensor) -> Result<(Tensor, Tensor)> {
    let mean = codes.mean(0)?;
    let std = codes
        .broadcast_sub(&mean)?
        .sqr()?
        .mean(0)?
        .affine(1.0, 1e-6)?
        .sqrt()?;
    Ok((mean, std))
}

impl CodePriorTask {
    /// Reads the trained classifier from `opts.models_dir` and encodes the
    /// three splits once.
    pub fn new(data: Data, opts: &TrainOptions, device: &Device) -> Result<Self> {
        let SplitCodes {
            train,
            validation,
            test,
            dim,
        } = SplitCodes::new(&data, &opts.models_dir, device, "code prior")?;
        let (couplings, hidden) = size(opts.size.as_deref())?;
        let cfg = CodePriorConfig {
            dim,
            couplings,
            hidden,
            whiten: opts.codes.whiten,
        };
        let varmap = VarMap::new();
        let flow = CodePrior::new(&cfg, VarBuilder::from_varmap(&varmap, DType::F32, device))?;
        init_seeded(&varmap, opts.seed)?;
        start(&varmap, &cfg, &train)?;
        let adam = super::adam_for(&varmap, opts)?;
        Ok(Self {
            flow,
            varmap,
            adam,
            train,
            validation,
            test,
            cfg,
            depends: vec![(
                "classifier".into(),
                stack::paths(&opts.models_dir, "classifier").0,
            )],
        })
    }
}

/// The flow's couplings and hidden width from `--size COUPLINGS HIDDEN`,
/// or the defaults.
pub fn size(size: Option<&[usize]>) -> Result<(usize, usize)> {
    match size {
        None => {
            let d = CodePriorConfig::default();
            Ok((d.couplings, d.hidden))
        }
        Some(&[c, h]) if c > 0 && h > 0 => Ok((c, h)),
        Some(s) => Err(Error::setting(
            "--size",
            format!("{s:?}"),
            "code-prior's COUPLINGS HIDDEN: a positive number of couplings and a positive width",
        )),
    }
}

/// The Frechet distance between two sets of codes `[n, dim]`.
pub fn codes_frechet(a: &Tensor, b: &Tensor) -> Result<f64> {
    crate::nn::frechet::frechet_distance(&rows(a)?, &rows(b)?)
}

/// Rows of a `[n, d]` tensor in f64.
pub fn rows(t: &Tensor) -> Result<Vec<Vec<f64>>> {
    Ok(t.to_dtype(DType::F64)?.to_vec2()?)
}

/// The eigenvalues below which a principal axis of the standardised codes
/// is whitened as if its variance were this (units that barely vary).
const WHITEN_FLOOR: f64 = 1e-3;

/// The whitening `W` and colouring `C = W^-1` of codes `z [n, dim]` (rows):
/// `W = U diag(l)^-1/2`, `C = diag(l)^1/2 U^T` for their covariance's
/// eigenvalues `l` (at least [`WHITEN_FLOOR`]) and eigenvectors `U`, so
/// that `z W` has unit variance along every axis; with `log |det C|`.
pub fn whitening(z: &Tensor) -> Result<(Tensor, Tensor, f64)> {
    let (_, cov) = crate::nn::frechet::mean_cov(&rows(z)?);
    let e = nalgebra::SymmetricEigen::new(cov);
    let s = e.eigenvalues.map(|v| v.max(WHITEN_FLOOR).sqrt());
    let u = &e.eigenvectors;
    let white = u * nalgebra::DMatrix::from_diagonal(&s.map(|v| 1.0 / v));
    let colour = nalgebra::DMatrix::from_diagonal(&s) * u.transpose();
    // nalgebra is column-major: its transpose's storage is the rows in order
    let tensor = |m: nalgebra::DMatrix<f64>| -> Result<Tensor> {
        let v: Vec<f32> = m.transpose().iter().map(|&x| x as f32).collect();
        Ok(Tensor::from_vec(v, (m.nrows(), m.ncols()), z.device())?)
    };
    let log_det = s.iter().map(|v| v.ln()).sum();
    Ok((tensor(white)?, tensor(colour)?, log_det))
}

/// Where training starts: each coupling's output layer at zero (the flow
/// is the affine map alone), tanh scales at 1, and the affine map at the
/// training codes' per-dimension mean and standard deviation; whitened
/// (`cfg.whiten`), the affine map at the identity and the colouring at
/// the codes' principal axes, so that the flow starts as their
/// full-covariance Gaussian fit.
fn start(varmap: &VarMap, cfg: &CodePriorConfig, codes: &Tensor) -> Result<()> {
    let (mean, std) = moments(codes)?;
    let data = varmap.data().lock().unwrap();
    let set = |name: &str, t: &Tensor| -> Result<()> {
        match data.get(name) {
            Some(v) => Ok(v.set(t)?),
            None => Err(
                candle_core::Error::Msg(format!("the code prior has no variable {name}")).into(),
            ),
        }
    };
    if cfg.whiten {
        // the affine map at the identity, then the fixed colouring:
        // `u = (z C) * std + mean` as one matrix, `C' = C diag(std)`
        let (white, colour, log_det) =
            whitening(&codes.broadcast_sub(&mean)?.broadcast_div(&std)?)?;
        let row = std.unsqueeze(0)?;
        set("norm.colour", &colour.broadcast_mul(&row)?)?;
        set("norm.white", &white.broadcast_div(&row.t()?)?)?;
        set("norm.centre", &mean)?;
        let log_det = log_det
            + std
                .to_dtype(DType::F64)?
                .log()?
                .sum_all()?
                .to_scalar::<f64>()?;
        set(
            "norm.colour_log_det",
            &Tensor::new(&[log_det as f32], codes.device())?,
        )?;
        set("norm.mean", &mean.zeros_like()?)?;
        set("norm.log_std", &std.zeros_like()?)?;
    } else {
        set("norm.mean", &mean)?;
        set("norm.log_std", &std.log()?)?;
    }
    for k in 0..cfg.couplings {
        let w = format!("c{k}.fc2.weight");
        set(&w, &data[&w].zeros_like()?)?;
        let s = format!("c{k}.scale");
        set(&s, &data[&s].ones_like()?)?;
    }
    Ok(())
}

/// Mean negative log-likelihood in nats per dimension of `test` under the
/// full-covariance Gaussian fitted (maximum likelihood) to `train`.
pub fn gaussian_fit_nll(train: &Tensor, test: &Tensor) -> Result<f64> {
    let rows = |t: &Tensor| -> Result<(usize, usize, Vec<f64>)> {
        let (n, d) = t.dims2()?;
        Ok((n, d, t.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?))
    };
    let (n, d, x) = rows(train)?;
    let x = DMatrix::from_row_slice(n, d, &x);
    let mean = x.row_mean();
    let centred = DMatrix::from_fn(n, d, |i, j| x[(i, j)] - mean[j]);
    let cov = centred.transpose() * &centred / n as f64 + DMatrix::identity(d, d) * 1e-9;
    let chol = cov.cholesky().ok_or_else(|| Error::Network {
        at: "the Gaussian fit".into(),
        message: "the training codes' covariance is not positive definite".into(),
    })?;
    let log_det: f64 = 2.0 * chol.l().diagonal().iter().map(|v| v.ln()).sum::<f64>();
    let (m, _, y) = rows(test)?;
    let mut total = 0.0;
    for i in 0..m {
        let r = DVector::from_fn(d, |j, _| y[i * d + j] - mean[j]);
        let w = chol.l().solve_lower_triangular(&r).unwrap_or(r);
        total += 0.5 * w.norm_squared();
    }
    Ok((total / m as f64 + 0.5 * log_det) / d as f64 + HALF_LN_2PI)
}

/// The same for `N(0, sigma^2 I)`.
pub fn isotropic_nll(test: &Tensor, sigma: f64) -> Result<f64> {
    let (m, d) = test.dims2()?;
    let sq = test
        .to_dtype(DType::F64)?
        .sqr()?
        .sum_all()?
        .to_scalar::<f64>()?;
    Ok(sq / (2.0 * sigma * sigma * (m * d) as f64) + sigma.ln() + HALF_LN_2PI)
}

/// The card's `validation_draws_frechet` and its floor
/// `training_codes_frechet` (module doc), in the code standardised by
/// the training codes `train`: [`DRAWS`] draws `T(temperature z)` of the
/// flow (`z ~ N(0, I)`, seed 0; the trained flow is `temperature` 1,
/// [`super::flow_temperature`] tries others) against as many
/// `validation` codes, with where the draws differ from them.
pub fn draws_frechet(
    flow: &CodePrior,
    train: &Tensor,
    validation: &Tensor,
    temperature: f64,
) -> Result<(f64, f64, Spread)> {
    use rand::SeedableRng;
    let dim = flow.cfg.dim;
    let n = DRAWS.min(validation.dim(0)?).min(train.dim(0)?);
    let (mean, std) = moments(train)?;
    let standard =
        |u: &Tensor| -> Result<Tensor> { Ok(u.broadcast_sub(&mean)?.broadcast_div(&std)?) };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let z: Vec<f32> = (0..n * dim)
        .map(|_| rng.sample::<f32, _>(rand_distr::StandardNormal))
        .collect();
    let z = (Tensor::from_vec(z, (n, dim), train.device())? * temperature)?;
    let parts = batched(n, 1000, |idx| {
        Ok(flow.transport(&z.narrow(0, idx[0], idx.len())?)?)
    })?;
    let draws = standard(&Tensor::cat(&parts, 0)?)?;
    let validation = standard(&validation.narrow(0, 0, n)?)?;
    let seen = standard(&train.narrow(0, 0, n)?)?;
    Ok((
        codes_frechet(&draws, &validation)?,
        codes_frechet(&seen, &validation)?,
        spread(&rows(&draws)?, &rows(&validation)?),
    ))
}

impl Task for CodePriorTask {
    fn name(&self) -> &'static str {
        "code-prior"
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
        self.train.dim(0).unwrap_or(0)
    }
    fn step(&mut self, idx: &[usize], _rng: &mut ChaCha8Rng) -> Result<Vec<(&'static str, f64)>> {
        let ids: Vec<u32> = idx.iter().map(|&i| i as u32).collect();
        let ids = Tensor::from_vec(ids, idx.len(), self.train.device())?;
        let loss = self.flow.nll_per_dim(&self.train.index_select(&ids, 0)?)?;
        self.adam.backward_step(&loss)?;
        Ok(vec![("nll_per_dim", loss.to_scalar::<f32>()? as f64)])
    }
    fn evaluate(&self) -> Result<BTreeMap<String, f64>> {
        let (frechet, floor, _) = draws_frechet(&self.flow, &self.train, &self.validation, 1.0)?;
        let nll = |codes: &Tensor| -> Result<f64> {
            let n = codes.dim(0)?;
            let parts = batched(n, 1000, |idx| {
                let rows = codes.narrow(0, idx[0], idx.len())?;
                let v = self.flow.nll_per_dim(&rows)?.to_scalar::<f32>()? as f64;
                Ok(v * idx.len() as f64)
            })?;
            Ok(parts.iter().sum::<f64>() / n as f64)
        };
        Ok(BTreeMap::from([
            ("validation_nll_per_dim".into(), nll(&self.validation)?),
            ("test_nll_per_dim".into(), nll(&self.test)?),
            (
                "test_nll_per_dim_gaussian_fit".into(),
                gaussian_fit_nll(&self.train, &self.test)?,
            ),
            (
                "test_nll_per_dim_isotropic_sigma3".into(),
                isotropic_nll(&self.test, ISOTROPIC_SIGMA)?,
            ),
            ("validation_draws_frechet".into(), frechet),
            ("training_codes_frechet".into(), floor),
        ]))
    }
    fn config_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.cfg).unwrap_or_default()
    }
    fn depends_on(&self) -> Vec<(String, PathBuf)> {
        self.depends.clone()
    }
}
