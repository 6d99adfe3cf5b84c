//! The flow prior on codes (`ppgn::models::fashion::code_prior`): its two
//! engine graphs against its training module in f64 (values and input
//! gradients) and against central differences; its density term against
//! the module; and the density's correctness as a sampling target: MH,
//! MALA and HMC on `log p_flow(u)` in code coordinates reproduce the
//! flow's own ancestral samples `T(z)`, and a wrong log-determinant fails
//! the same checks, as a wrong acceptance ratio does.

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use ppgn::density::backend::Backend;
use ppgn::density::prior::FlowDensity;
use ppgn::density::{Eval, Term};
use ppgn::models::fashion::{CodePrior, CodePriorConfig};
use ppgn::nn::fast::{Engine, Net, Workspace};
use ppgn::sampler::adapt::DualAveraging;
use ppgn::sampler::hmc::Hmc;
use ppgn::sampler::mala::Mala;
use ppgn::sampler::rwmh::RandomWalk;
use ppgn::sampler::schedule::Schedule;
use ppgn::sampler::{sample, ChainRngs, Kernel, Run};

use super::engine::{graph_matches_module, rel};
use super::gradients::uniform;
use super::samplers::{check_expectation, BrokenMh};
use super::vec_f64;

/// A flow with random weights (seeded): `fc2` and the affine map away
/// from the identity, so every part of the density matters.
pub fn random_flow(cfg: &CodePriorConfig, dtype: DType, seed: u64) -> CodePrior {
    let varmap = VarMap::new();
    let flow = CodePrior::new(cfg, VarBuilder::from_varmap(&varmap, dtype, &Device::Cpu)).unwrap();
    ppgn::nn::init::init_seeded(&varmap, seed).unwrap();
    let data = varmap.data().lock().unwrap();
    let d = cfg.dim;
    for (name, v) in data.iter() {
        let t = match name.as_str() {
            "norm.mean" => uniform(&[d], -1.0, 1.0, seed + 1),
            "norm.log_std" => uniform(&[d], -0.5, 0.5, seed + 2),
            n if n.ends_with(".scale") => uniform(&[d], 0.5, 1.0, seed + 3),
            n if n.ends_with("fc2.weight") => uniform(v.dims(), -0.3, 0.3, seed + 5),
            n if n.ends_with("bias") => uniform(v.dims(), -0.3, 0.3, seed + 4),
            _ => continue,
        };
        v.set(&t.to_dtype(dtype).unwrap()).unwrap();
    }
    if cfg.whiten {
        // a colouring away from the identity, its inverse and log |det|
        let c = (uniform(&[d, d], -0.3, 0.3, seed + 6)
            + Tensor::eye(d, DType::F64, &Device::Cpu).unwrap())
        .unwrap();
        let m = nalgebra::DMatrix::from_row_slice(d, d, &vec_f64(&c));
        let w = m.clone().try_inverse().unwrap();
        let log_det = m.determinant().abs().ln();
        let w: Vec<f64> = w.transpose().iter().copied().collect();
        let w = Tensor::from_vec(w, (d, d), &Device::Cpu).unwrap();
        for (name, t) in [
            ("norm.colour", c),
            ("norm.white", w),
            ("norm.centre", uniform(&[d], -1.0, 1.0, seed + 7)),
            (
                "norm.colour_log_det",
                Tensor::new(&[log_det], &Device::Cpu).unwrap(),
            ),
        ] {
            data[name].set(&t.to_dtype(dtype).unwrap()).unwrap();
        }
    }
    drop(data);
    flow
}

fn small() -> CodePriorConfig {
    CodePriorConfig {
        dim: 6,
        couplings: 4,
        hidden: 12,
        whiten: false,
    }
}

/// [`small`] and its whitened form (a fixed colouring after the affine map).
fn both() -> [CodePriorConfig; 2] {
    [
        small(),
        CodePriorConfig {
            whiten: true,
            ..small()
        },
    ]
}

/// `log p(u)` per row and its gradient off the inverse graph in f64: the
/// value from `z` and the `-s` values, the gradient seeded with `-z` and 1.
fn engine_log_p(
    net: &Net<f64>,
    u: &[f64],
    n: usize,
    d: usize,
    constant: f64,
) -> (Vec<f64>, Vec<f64>) {
    let mut ws = Workspace::default();
    let out = net.forward(u, n, &mut ws).unwrap().to_vec();
    let per = out.len() / n;
    let mut value = vec![constant; n];
    let mut seed = vec![0.0; out.len()];
    for i in 0..n {
        for j in 0..per {
            let o = out[i * per + j];
            if j < d {
                value[i] -= 0.5 * o * o;
                seed[i * per + j] = -o;
            } else {
                value[i] += o;
                seed[i * per + j] = 1.0;
            }
        }
    }
    let mut g = Vec::new();
    net.backward(&seed, &mut ws, &mut g).unwrap();
    (value, g)
}

#[test]
fn flow_graphs_match_the_training_module_in_f64() {
    for cfg in both() {
        flow_graphs_match(&cfg);
    }
}

fn flow_graphs_match(cfg: &CodePriorConfig) {
    let flow = random_flow(cfg, DType::F64, 3);
    let n = 5;
    let z = uniform(&[n, cfg.dim], -2.0, 2.0, 10);
    let w: Vec<f64> = vec_f64(&uniform(&[n, cfg.dim], -1.0, 1.0, 11));
    // T: base points to codes
    graph_matches_module(
        &flow.compile::<f64>().unwrap(),
        &|z| flow.transport(z).unwrap(),
        &z,
        &w,
    );
    // the inverse, and log p(u) with its gradient
    let u = flow.transport(&z).unwrap();
    let (z_back, lp) = flow.inverse(&u).unwrap();
    let back = (z_back - &z).unwrap().abs().unwrap().max_all().unwrap();
    assert!(back.to_scalar::<f64>().unwrap() < 1e-12, "T^-1(T(z)) != z");
    let constant = -flow.affine_log_det().unwrap()
        - cfg.dim as f64 * ppgn::models::fashion::code_prior::HALF_LN_2PI;
    let inverse = flow.compile_inverse::<f64>().unwrap();
    let (value, g) = engine_log_p(&inverse, &vec_f64(&u), n, cfg.dim, constant);
    let lp = vec_f64(&lp);
    for (a, b) in value.iter().zip(&lp) {
        assert!(
            (a - b).abs() < 1e-11 * (1.0 + b.abs()),
            "log p: engine {a} vs module {b}"
        );
    }
    let var = candle_core::Var::from_tensor(&u).unwrap();
    let grads = flow
        .inverse(var.as_tensor())
        .unwrap()
        .1
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let g_ref = vec_f64(grads.get(var.as_tensor()).unwrap());
    let worst = rel(&g, &g_ref);
    assert!(worst < 1e-10, "gradient of log p: {worst:e}");
    let scale = g_ref.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    // and against central differences of the module's log p
    let uv = vec_f64(&u);
    for i in [0, 7, 13, 29] {
        let at = |delta: f64| {
            let mut x = uv.clone();
            x[i] += delta;
            let t = Tensor::from_vec(x, (n, cfg.dim), &Device::Cpu).unwrap();
            vec_f64(&flow.inverse(&t).unwrap().1).iter().sum::<f64>()
        };
        let fd = (at(1e-6) - at(-1e-6)) / 2e-6;
        assert!(
            (fd - g[i]).abs() < 1e-6 * scale.max(1.0),
            "coordinate {i}: fd {fd} vs {}",
            g[i]
        );
    }
}

/// The f32 term `FlowDensity`, on both backends, gives the module's f64
/// log-density and gradient to f32 rounding.
#[test]
fn flow_density_term_matches_the_module() {
    for cfg in both() {
        flow_density_term_matches(&cfg);
    }
}

fn flow_density_term_matches(cfg: &CodePriorConfig) {
    let flow64 = random_flow(cfg, DType::F64, 4);
    let flow32 = random_flow(cfg, DType::F32, 4);
    let u = flow64
        .transport(&uniform(&[7, cfg.dim], -2.0, 2.0, 12))
        .unwrap();
    let var = candle_core::Var::from_tensor(&u).unwrap();
    let lp = flow64.inverse(var.as_tensor()).unwrap().1;
    let g_ref = vec_f64(
        lp.sum_all()
            .unwrap()
            .backward()
            .unwrap()
            .get(var.as_tensor())
            .unwrap(),
    );
    let lp = vec_f64(&lp);
    for engine in [Engine::Fast, Engine::Reference] {
        let term = FlowDensity::new(&flow32, engine).unwrap();
        let e = term
            .value_and_grad(&u.to_dtype(DType::F32).unwrap())
            .unwrap();
        for (a, b) in e.log_density.unwrap().iter().zip(&lp) {
            assert!(
                (a - b).abs() < 1e-4 * (1.0 + b.abs()),
                "{engine:?}: {a} vs {b}"
            );
        }
        let g = vec_f64(&e.grad);
        let worst = rel(&g, &g_ref);
        assert!(worst < 1e-4, "{engine:?}: gradient {worst:e}");
    }
}

/// The flow's density with its couplings' log-determinant left out: the
/// density of `z = T^-1(u)` pushed forward wrongly.
struct NoLogDet(FlowDensity);

impl Term for NoLogDet {
    fn name(&self) -> String {
        "no-log-det".into()
    }
    fn has_value(&self) -> bool {
        true
    }
    fn value_and_grad(&self, u: &Tensor) -> ppgn::Result<Eval> {
        let n = u.dim(0)?;
        let d = self.0.inverse.net().input().2;
        let inv: &Backend = &self.0.inverse;
        let pass = inv.vjp(u, &[], |out, d_out| {
            let per = out.len() / n;
            Ok((0..n)
                .map(|i| {
                    (0..d)
                        .map(|j| {
                            let o = out[i * per + j];
                            d_out[i * per + j] = -o;
                            -0.5 * (o as f64) * (o as f64)
                        })
                        .sum()
                })
                .collect::<Vec<f64>>())
        })?;
        Ok(Eval {
            log_density: Some(pass.seeded),
            grad: Tensor::from_vec(pass.grad, u.shape(), u.device())?,
        })
    }
}

/// Scalar projections whose expectations the chains must match: each
/// coordinate, its square, the product of neighbours, and the indicators
/// of the ancestral samples' quartiles of each coordinate.
fn projections(u: &[f64], d: usize, quartiles: &[[f64; 3]]) -> Vec<f64> {
    let mut p = Vec::new();
    for j in 0..d {
        p.push(u[j]);
        p.push(u[j] * u[j]);
        p.push(u[j] * u[(j + 1) % d]);
        for q in quartiles[j] {
            p.push(if u[j] < q { 1.0 } else { 0.0 });
        }
    }
    p
}

/// The ancestral samples' expectations of [`projections`] (40,000 draws
/// of `T(z)`: their own error is small beside the chains') and quartiles.
fn ancestral(flow: &CodePrior, d: usize) -> (Vec<f64>, Vec<[f64; 3]>) {
    let n = 40_000;
    let z = Tensor::zeros((n, d), DType::F32, &Device::Cpu).unwrap();
    let z = ChainRngs::new(99, n).normal_like(&z).unwrap();
    let u = vec_f64(&flow.transport(&z).unwrap());
    let quartiles: Vec<[f64; 3]> = (0..d)
        .map(|j| {
            let mut c: Vec<f64> = (0..n).map(|i| u[i * d + j]).collect();
            c.sort_by(f64::total_cmp);
            [c[n / 4], c[n / 2], c[3 * n / 4]]
        })
        .collect();
    let mut mean = vec![0.0; projections(&u[..d], d, &quartiles).len()];
    for i in 0..n {
        for (m, v) in mean
            .iter_mut()
            .zip(projections(&u[i * d..(i + 1) * d], d, &quartiles))
        {
            *m += v / n as f64;
        }
    }
    (mean, quartiles)
}

/// Every projection of the chains' draws against the ancestral value.
fn check_against_ancestral(
    run: &Run,
    d: usize,
    expected: &[f64],
    quartiles: &[[f64; 3]],
) -> Result<(), String> {
    let coords: Vec<Vec<Vec<f64>>> = (0..d).map(|j| run.coordinate(j).unwrap()).collect();
    let (chains, draws) = (coords[0].len(), coords[0][0].len());
    for (k, want) in expected.iter().enumerate() {
        let proj: Vec<Vec<f64>> = (0..chains)
            .map(|c| {
                (0..draws)
                    .map(|t| {
                        let u: Vec<f64> = (0..d).map(|j| coords[j][c][t]).collect();
                        projections(&u, d, quartiles)[k]
                    })
                    .collect()
            })
            .collect();
        check_expectation(&format!("projection {k}"), &proj, *want)?;
    }
    Ok(())
}

fn chains_on(
    kernel: &mut dyn Kernel,
    target: &dyn Term,
    d: usize,
    adapt: Option<DualAveraging>,
) -> Run {
    let chains = 16;
    let start = Tensor::zeros((chains, d), DType::F32, &Device::Cpu).unwrap();
    let start = ChainRngs::new(5, chains).normal_like(&start).unwrap();
    let mut rngs = ChainRngs::new(42, chains);
    sample(kernel, target, &start, 1000, 4000, &mut rngs, adapt).unwrap()
}

/// Item 4 of the exact samplers' plan: the density is right if exact
/// samplers on it reproduce the flow's ancestral samples; the same checks
/// reject the density without its log-determinant and a kernel with a
/// wrong acceptance ratio.
#[test]
fn exact_samplers_on_the_flow_density_reproduce_its_ancestral_samples() {
    let cfg = CodePriorConfig {
        dim: 3,
        couplings: 4,
        hidden: 8,
        whiten: false,
    };
    let flow = random_flow(&cfg, DType::F32, 21);
    let d = cfg.dim;
    let (expected, quartiles) = ancestral(&flow, d);
    let density = FlowDensity::new(&flow, Engine::Fast).unwrap();
    let mut rw = RandomWalk {
        scale: Schedule::Constant { value: 0.8 },
    };
    let mut mala = Mala::new(Schedule::Constant { value: 0.1 });
    let mut hmc = Hmc {
        step: Schedule::Constant { value: 0.2 },
        leapfrog_steps: 8,
        jitter: 0.2,
        clip: None,
    };
    let kernels: [(&str, &mut dyn Kernel, Option<DualAveraging>); 3] = [
        ("random-walk MH", &mut rw, None),
        ("MALA", &mut mala, Some(DualAveraging::new(0.1, 0.574))),
        ("HMC", &mut hmc, Some(DualAveraging::new(0.2, 0.8))),
    ];
    for (name, k, adapt) in kernels {
        let r = chains_on(k, &density, d, adapt);
        check_against_ancestral(&r, d, &expected, &quartiles)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let wrong = NoLogDet(FlowDensity::new(&flow, Engine::Fast).unwrap());
    let mut mala = Mala::new(Schedule::Constant { value: 0.1 });
    let r = chains_on(&mut mala, &wrong, d, Some(DualAveraging::new(0.1, 0.574)));
    assert!(
        check_against_ancestral(&r, d, &expected, &quartiles).is_err(),
        "the density without its log-determinant passed"
    );
    let r = chains_on(&mut BrokenMh, &density, d, None);
    assert!(
        check_against_ancestral(&r, d, &expected, &quartiles).is_err(),
        "a kernel with a wrong acceptance ratio passed"
    );
}

/// The temperature on the code prior's card scales the base point before
/// `T` in what `--prior flow` decodes through, and only there: the shipped
/// stack in a folder whose code prior card says 0.5 maps `z` where the
/// card without one maps `0.5 z`. The rule of `ppgn models
/// flow-temperature` keeps the trained flow unless another is more than 5%
/// closer.
#[test]
fn the_cards_temperature_scales_the_flows_base_point() {
    use ppgn::models::fashion::{self as stack, Stack};
    use ppgn::train::flow_temperature::{choose, record, TemperatureRow, METRIC};
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/fashion-mnist");
    let dir = super::tempdir("flow-temperature");
    for name in stack::NETWORKS {
        let (w, c) = stack::paths(&src, name);
        std::fs::copy(&c, dir.join(c.file_name().unwrap())).unwrap();
        std::os::unix::fs::symlink(&w, dir.join(w.file_name().unwrap())).unwrap();
    }
    let load = || Stack::load_for_choosing(&dir, DType::F32, &Device::Cpu).unwrap();
    let plain = load();
    assert_eq!(plain.flow_temperature(), 1.0);
    record(&dir, 0.5, "the test").unwrap();
    let warm = load();
    assert_eq!(warm.flow_temperature(), 0.5);
    let card = warm
        .cards
        .iter()
        .find(|c| c.network == "code-prior")
        .unwrap();
    assert_eq!(card.measured_by[METRIC], "the test");
    let n = 3;
    let z: Vec<f32> = (0..n * 256)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
        .collect();
    let half: Vec<f32> = z.iter().map(|v| v * 0.5).collect();
    let decode = |s: &Stack, z: &[f32]| {
        let mut ws = Workspace::default();
        s.transport()
            .unwrap()
            .forward(z, n, &mut ws)
            .unwrap()
            .to_vec()
    };
    let (at_half, scaled, unscaled) =
        (decode(&warm, &z), decode(&plain, &half), decode(&plain, &z));
    let diff = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max)
    };
    assert!(
        diff(&at_half, &scaled) < 1e-5,
        "{}",
        diff(&at_half, &scaled)
    );
    assert!(diff(&at_half, &unscaled) > 0.1);

    let row = |t: f64, d: f64| TemperatureRow {
        temperature: t,
        validation_draws_frechet: d,
        spread: ppgn::nn::frechet::spread(&[vec![0.0], vec![1.0]], &[vec![0.0], vec![1.0]]),
    };
    // 5% is the margin: 9.6 is not enough below 10, 9.4 is
    assert_eq!(
        choose(&[row(1.0, 10.0), row(0.9, 9.6), row(0.8, 11.0)]),
        1.0
    );
    assert_eq!(choose(&[row(1.0, 10.0), row(0.9, 9.6), row(0.8, 9.4)]), 0.8);
    assert_eq!(choose(&[row(1.0, 10.0)]), 1.0);
}
