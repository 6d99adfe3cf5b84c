//! The score-based prior on codes (`ppgn::models::fashion::code_score`,
//! `ppgn::density::score`): its network on the engine against its training
//! module and against finite differences in f64, and the chain rule of the
//! condition read on the denoiser's estimate against finite differences.

use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use ppgn::density::backend::Backend;
use ppgn::density::score::{DenoisedCondition, Denoiser, ScorePrior};
use ppgn::density::{Eval, Term};
use ppgn::models::fashion::{CodeScore, CodeScoreConfig};
use ppgn::nn::fast::Engine;

use super::engine::{fd_worst, graph_matches_module};
use super::gradients::uniform;

/// A small score model with seeded random weights (and a non-trivial
/// standardisation), in `dtype`.
fn small(dtype: DType) -> CodeScore {
    let cfg = CodeScoreConfig {
        dim: 12,
        hidden: 16,
        blocks: 2,
        frequencies: 3,
        ..Default::default()
    };
    let varmap = VarMap::new();
    let m = CodeScore::new(&cfg, VarBuilder::from_varmap(&varmap, dtype, &Device::Cpu)).unwrap();
    ppgn::nn::init::init_seeded(&varmap, 9).unwrap();
    m
}

/// `F` compiled for the engine equals the training module's `F` in f64
/// (outputs and input gradients, on the engine and the reference path),
/// and the engine's input gradient matches central differences.
#[test]
fn code_score_graph_matches_its_module_and_finite_differences_in_f64() {
    let m = small(DType::F64);
    let net = m.compile::<f64>().unwrap();
    let n = 4;
    let x = uniform(&[n, m.cfg.input_width()], -1.5, 1.5, 3);
    let w: Vec<f64> = uniform(&[n, m.cfg.dim], -1.0, 1.0, 4)
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    graph_matches_module(&net, &|x| m.f(x).unwrap(), &x, &w);
    let worst = fd_worst(&net, 5);
    assert!(
        worst < 1e-6,
        "engine gradient vs finite differences {worst:e}"
    );
}

/// `log p = -|v - a|^2 / 2`, a smooth stand-in for a condition.
struct Quadratic(f64);
impl Term for Quadratic {
    fn name(&self) -> String {
        "quadratic".into()
    }
    fn has_value(&self) -> bool {
        true
    }
    fn value_and_grad(&self, v: &Tensor) -> ppgn::Result<Eval> {
        let d = (v - self.0)?;
        let value = ppgn::density::per_chain_sum(&(d.sqr()? * -0.5)?)?;
        Ok(Eval {
            log_density: Some(value),
            grad: d.neg()?,
        })
    }
}

/// The condition read on `D(v; s)` with its gradient through the
/// denoiser: the gradient is the derivative of the value it reports
/// (central differences in f32 at a coarse step, so a missing `c_in`,
/// `c_skip` or `c_out` — each far from 1 at level 2 — would show as an
/// error of 10% or more). Without `through`, the gradient is the
/// condition's at the estimate. The prior's score is `(D - v) / s^2`.
#[test]
fn the_denoised_condition_differentiates_through_the_denoiser() {
    let m = small(DType::F32);
    let denoiser = Arc::new(Denoiser::new(
        Backend::new(Arc::new(m.compile::<f32>().unwrap()), Engine::Fast).unwrap(),
        m.cfg.clone(),
    ));
    let term = |through| DenoisedCondition {
        denoiser: denoiser.clone(),
        condition: Box::new(Quadratic(0.3)),
        through,
    };
    let s = 2.0;
    let v = uniform(&[2, m.cfg.dim], -1.0, 1.0, 7)
        .to_dtype(DType::F32)
        .unwrap();
    let e = term(true).value_and_grad_at(&v, Some(s)).unwrap();
    let g: Vec<f32> = e.grad.flatten_all().unwrap().to_vec1().unwrap();
    let flat: Vec<f32> = v.flatten_all().unwrap().to_vec1().unwrap();
    let value = |x: &[f32]| -> f64 {
        let t = Tensor::from_slice(x, v.shape(), &Device::Cpu).unwrap();
        let e = term(true).value_and_grad_at(&t, Some(s)).unwrap();
        e.log_density.unwrap().iter().sum()
    };
    let gmax = g.iter().fold(0f32, |a, b| a.max(b.abs())) as f64;
    let mut worst = 0f64;
    for i in 0..flat.len() {
        let (mut a, mut b) = (flat.clone(), flat.clone());
        a[i] += 1e-2;
        b[i] -= 1e-2;
        let fd = (value(&a) - value(&b)) / 2e-2;
        worst = worst.max((fd - g[i] as f64).abs() / gmax);
    }
    assert!(
        worst < 0.02,
        "gradient through the denoiser vs differences: {worst}"
    );

    let est = denoiser.denoise(&v, s).unwrap();
    let est_t = Tensor::from_vec(est.clone(), v.shape(), &Device::Cpu).unwrap();
    let plain = term(false).value_and_grad_at(&v, Some(s)).unwrap();
    let want: Vec<f32> = (0.3 - &est_t)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let got: Vec<f32> = plain.grad.flatten_all().unwrap().to_vec1().unwrap();
    assert!(got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-5));
    // the two gradients differ: the Jacobian of D is not the identity
    assert!(g
        .iter()
        .zip(&got)
        .any(|(a, b)| (a - b).abs() > 0.05 * gmax as f32));

    let prior = ScorePrior {
        denoiser: denoiser.clone(),
    };
    let score: Vec<f32> = prior
        .value_and_grad_at(&v, Some(s))
        .unwrap()
        .grad
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    for ((sc, d), x) in score.iter().zip(&est).zip(&flat) {
        assert!((sc - (d - x) / (s * s) as f32).abs() < 1e-5);
    }
}

/// The mean of the guide's p(class) at the chains' ends of a `ppgn
/// sample --preset ppgn-score` run toward trousers at `eps2`, with `extra`
/// flags, and its manifest.
fn trouser_run(
    d: &std::path::Path,
    name: &str,
    eps2: &str,
    extra: &[&str],
) -> (f64, serde_json::Value) {
    let out = d.join(format!("{name}-eps2-{eps2}"));
    let mut args = vec![
        "sample",
        "--preset",
        "ppgn-score",
        "--class",
        "1",
        "--chains",
        "8",
        "--seed",
        "2",
        "--eps2",
        eps2,
        "-q",
    ];
    args.extend_from_slice(extra);
    let r = super::ppgn_into(&args, &out, &[]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    let chains = m["chains"].as_array().unwrap();
    let p: f64 = chains
        .iter()
        .map(|c| c["final_condition_value"].as_f64().unwrap())
        .sum::<f64>()
        / chains.len() as f64;
    (p, m)
}

/// `ppgn sample --preset ppgn-score` on the shipped stack: reverse
/// diffusion guided toward trousers ends with the guide's p(trouser)
/// far above that of the same chains drawn from the prior alone
/// (`--eps2 0`), and the manifest names the sampler and what the chains move.
#[test]
fn ppgn_score_guides_reverse_diffusion_and_eps2_zero_draws_the_prior() {
    let d = super::tempdir("ppgn-score");
    let (guided, m) = trouser_run(&d, "sde", "1", &["--steps", "40"]);
    let (prior, _) = trouser_run(&d, "sde", "0", &["--steps", "40"]);
    assert!(
        guided > prior + 0.3,
        "guided mean p(trouser) {guided}, prior alone {prior}"
    );
    assert_eq!(m["sampler"]["sampler"], "reverse-diffusion");
    assert!(m["space"]
        .as_str()
        .unwrap()
        .contains("standardised pre-ReLU code"));
    assert_eq!(m["grad_evals_per_chain"], 41);
}

/// Heun's probability-flow ODE (`sampler = "probability-flow"`) on the
/// same target: guided at the preset's eps2 (5), it ends far more often in
/// the class than the prior alone, and 20 levels cost the start's
/// evaluation, two a level and one for the last (40 in all). (At eps2 1,
/// 20 deterministic levels moved the mean p(trouser) from 0.375 to 0.624
/// on the fifth-round score model: guided, but by less than the margin.)
#[test]
fn the_probability_flow_ode_is_guided_too_and_counts_two_evaluations_a_level() {
    let d = super::tempdir("ppgn-score-ode");
    let config = d.join("ode.toml");
    std::fs::write(&config, "sampler = \"probability-flow\"\n").unwrap();
    let c = config.to_str().unwrap();
    let (guided, m) = trouser_run(&d, "ode", "5", &["--steps", "20", "--config", c]);
    let (prior, _) = trouser_run(&d, "ode", "0", &["--steps", "20", "--config", c]);
    assert!(
        guided > prior + 0.3,
        "guided mean p(trouser) {guided}, prior alone {prior}"
    );
    assert_eq!(m["sampler"]["sampler"], "probability-flow");
    assert_eq!(m["grad_evals_per_chain"], 40);
}

/// A card written before the embedding's frequencies were settings reads
/// as what that model was trained with (pi to 64 pi); new models default
/// to 0.5 to 16.
#[test]
fn an_older_score_card_keeps_its_embedding() {
    let mut json = serde_json::to_value(CodeScoreConfig::default()).unwrap();
    let obj = json.as_object_mut().unwrap();
    assert_eq!(obj["omega_min"], 0.5);
    obj.remove("omega_min");
    obj.remove("omega_max");
    let old: CodeScoreConfig = serde_json::from_value(json).unwrap();
    assert_eq!(old.omega_min, std::f64::consts::PI);
    assert_eq!(old.omega_max, 64.0 * std::f64::consts::PI);
    let e = old.embedding(0.1);
    assert!((e[0] - (0.1 * std::f64::consts::PI).sin()).abs() < 1e-12);
}
