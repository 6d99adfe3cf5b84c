//! Every network's input gradient against central finite differences in f64.
//!
//! The scalar is `sum(w * f(x))` for a fixed random `w`, so every output
//! coordinate contributes. Coordinates are drawn at random among those with
//! a non-negligible gradient plus a few anywhere; the relative error must be
//! below 1e-4. The last test shows the checker catches a wrong backward:
//! candle's own `max_pool2d`, whose gradient is known to be scaled wrongly.

use candle_core::{DType, Device, Module, Result, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use ppgn::models::fashion::*;
use ppgn::nn::init::init_seeded;

const EPS: f64 = 1e-6;
const TOL: f64 = 1e-4;

pub fn uniform(shape: &[usize], lo: f64, hi: f64, seed: u64) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| rng.random_range(lo..hi)).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// Largest relative error between the autodiff gradient of `sum(w * f(x))`
/// and central differences, over `k` coordinates.
pub fn max_gradient_error(f: &dyn Fn(&Tensor) -> Result<Tensor>, x0: &Tensor, k: usize) -> f64 {
    let x = Var::from_tensor(x0).unwrap();
    let y = f(x.as_tensor()).unwrap();
    let w = uniform(y.dims(), -1.0, 1.0, 99);
    let scalar = |t: &Tensor| -> f64 {
        (f(t).unwrap() * &w)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    };
    let s = (y * &w).unwrap().sum_all().unwrap();
    let grads = s.backward().unwrap();
    let g: Vec<f64> = grads
        .get(x.as_tensor())
        .expect("input has a gradient")
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let gmax = g.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(gmax > 0.0, "gradient is identically zero");
    let big: Vec<usize> = (0..g.len()).filter(|&i| g[i].abs() > 1e-3 * gmax).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut coords: Vec<usize> = (0..k)
        .map(|_| big[rng.random_range(0..big.len())])
        .collect();
    coords.extend((0..3).map(|_| rng.random_range(0..g.len())));
    let flat: Vec<f64> = x0.flatten_all().unwrap().to_vec1().unwrap();
    let mut worst = 0.0f64;
    for &i in &coords {
        let at = |d: f64| {
            let mut v = flat.clone();
            v[i] += d;
            scalar(&Tensor::from_vec(v, x0.shape(), &Device::Cpu).unwrap())
        };
        let fd = (at(EPS) - at(-EPS)) / (2.0 * EPS);
        let err = (g[i] - fd).abs() / g[i].abs().max(fd.abs()).max(1e-6 * gmax);
        worst = worst.max(err);
    }
    worst
}

/// A variable map in f64 and a builder over it; `init_seeded` fills it once the network exists.
fn f64_builder() -> (VarMap, VarBuilder<'static>) {
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F64, &Device::Cpu);
    (vm, vb)
}

fn images() -> Tensor {
    uniform(&[2, 28, 28, 1], 0.0, 1.0, 1)
}

fn assert_small(name: &str, err: f64) {
    assert!(
        err < TOL,
        "{name}: relative gradient error {err:e} >= {TOL:e}"
    );
}

#[test]
fn classifier_input_gradient() {
    let (vm, vb) = f64_builder();
    let net = Classifier::new(&ClassifierConfig::default(), vb).unwrap();
    init_seeded(&vm, 1).unwrap();
    // every code the sampler uses: h1, h and the logits, in one scalar
    let f = |x: &Tensor| {
        let o = net.forward_all(x)?;
        Tensor::cat(&[o.h1.flatten_from(1)?, o.h, o.logits], 1)
    };
    assert_small("classifier", max_gradient_error(&f, &images(), 8));
}

#[test]
fn evaluator_input_gradient() {
    let (vm, vb) = f64_builder();
    let net = Evaluator::new(&EvaluatorConfig::default(), vb).unwrap();
    init_seeded(&vm, 2).unwrap();
    let f = |x: &Tensor| Tensor::cat(&[net.features(x)?, net.forward(x)?], 1);
    assert_small("evaluator", max_gradient_error(&f, &images(), 8));
}

#[test]
fn generator_input_gradient() {
    let (vm, vb) = f64_builder();
    let net = Generator::new(&GeneratorConfig::default(), vb).unwrap();
    init_seeded(&vm, 3).unwrap();
    let h = uniform(&[2, 256], 0.0, 2.0, 3);
    assert_small("generator", max_gradient_error(&|x| net.forward(x), &h, 8));
}

#[test]
fn discriminator_input_gradient() {
    let (vm, vb) = f64_builder();
    let net = Discriminator::new(&DiscriminatorConfig::default(), vb).unwrap();
    init_seeded(&vm, 4).unwrap();
    let f = |x: &Tensor| ppgn::nn::log_sigmoid(&net.forward(x)?);
    assert_small("discriminator", max_gradient_error(&f, &images(), 8));
}

#[test]
fn h_dae_input_gradient() {
    let (vm, vb) = f64_builder();
    let net = HDae::new(&HDaeConfig::default(), vb).unwrap();
    init_seeded(&vm, 5).unwrap();
    let h = uniform(&[2, 256], 0.0, 2.0, 5);
    assert_small("h-dae", max_gradient_error(&|x| net.score(x), &h, 8));
}

#[test]
fn x_dae_input_gradient() {
    let (vm, vb) = f64_builder();
    let net = XDae::new(&XDaeConfig::default(), vb).unwrap();
    init_seeded(&vm, 6).unwrap();
    assert_small("x-dae", max_gradient_error(&|x| net.score(x), &images(), 8));
}

#[test]
fn layers_with_stride_padding_and_pooling() {
    // odd sizes, stride 2 and 3, no padding: the slicing im2col's edge cases
    let x = uniform(&[2, 9, 7, 3], -1.0, 1.0, 8);
    for (k, s, p) in [(3, 1, 1), (3, 2, 1), (2, 3, 0), (5, 2, 2), (1, 1, 0)] {
        let w = uniform(&[4, 3, k, k], -1.0, 1.0, 9);
        let b = uniform(&[4], -1.0, 1.0, 10);
        let f = |t: &Tensor| ppgn::nn::conv2d_nhwc(t, &w, Some(&b), s, p);
        assert_small(
            &format!("conv k{k} s{s} p{p}"),
            max_gradient_error(&f, &x, 6),
        );
    }
    let x = uniform(&[2, 8, 6, 3], -1.0, 1.0, 11);
    assert_small(
        "avg_pool2",
        max_gradient_error(&|t| ppgn::nn::avg_pool2(t), &x, 6),
    );
    assert_small(
        "leaky_relu",
        max_gradient_error(&|t| ppgn::nn::leaky_relu(t, 0.2), &x, 6),
    );
    let big = uniform(&[50], -15.0, 15.0, 12);
    assert_small(
        "log_sigmoid",
        max_gradient_error(&|t| ppgn::nn::log_sigmoid(t), &big, 6),
    );
    assert_small(
        "sigmoid",
        max_gradient_error(&|t| ppgn::nn::sigmoid(t), &big, 6),
    );
}

#[test]
fn conv_matches_candle_conv2d() {
    // Our NHWC convolution computes the same values as candle's NCHW conv2d.
    let x = uniform(&[2, 9, 7, 3], -1.0, 1.0, 13);
    for (k, s, p) in [(3, 1, 1), (3, 2, 1), (5, 2, 2), (2, 3, 0)] {
        let w = uniform(&[4, 3, k, k], -1.0, 1.0, 14);
        let ours = ppgn::nn::conv2d_nhwc(&x, &w, None, s, p).unwrap();
        let theirs = x
            .permute((0, 3, 1, 2))
            .unwrap()
            .conv2d(&w, p, s, 1, 1)
            .unwrap()
            .permute((0, 2, 3, 1))
            .unwrap();
        assert_eq!(ours.dims(), theirs.dims());
        let d = super::max_diff(&ours, &theirs);
        assert!(d < 1e-12, "k{k} s{s} p{p}: max difference {d}");
    }
}

#[test]
fn checker_catches_a_wrong_backward() {
    // candle 0.11's max_pool2d backward is wrong (this test measures it): the checker
    // must say so, otherwise it could not catch a broken network either.
    let x = uniform(&[1, 2, 6, 6], -1.0, 1.0, 15);
    let err = max_gradient_error(&|t| t.max_pool2d(2), &x, 6);
    assert!(
        err > 0.1,
        "max_pool2d's gradient error {err} went unnoticed"
    );
    // a deliberately broken gradient: f(x) = x^2 + x, but detach hides one
    let broken = |t: &Tensor| (t.detach() * t)? + t; // autodiff: x + 1; true: 2x + 1
    let x = uniform(&[10], 0.5, 1.0, 16);
    assert!(max_gradient_error(&broken, &x, 4) > 0.1);
}

#[test]
fn im2col_and_col2im_are_adjoint() {
    // <im2col(x), y> = <x, col2im(y)> for every geometry, which is what
    // makes each the exact backward of the other.
    use ppgn::nn::fast::window::{Batched, Window};
    use ppgn::nn::im2col::{col2im, im2col};
    for (k, s, p) in [(3, 1, 1), (3, 2, 1), (2, 3, 0), (5, 1, 2)] {
        let g = Batched {
            b: 2,
            window: Window::symmetric(9, 7, 3, k, s, p),
        };
        let (ho, wo) = (g.window.ho, g.window.wo);
        let x = uniform(&[2, 9, 7, 3], -1.0, 1.0, 17);
        let y = uniform(&[2 * ho * wo, k * k * 3], -1.0, 1.0, 18);
        let lhs = (im2col(&x, g).unwrap() * &y).unwrap().sum_all().unwrap();
        let rhs = (x * col2im(&y, g).unwrap()).unwrap().sum_all().unwrap();
        let (l, r) = (
            lhs.to_scalar::<f64>().unwrap(),
            rhs.to_scalar::<f64>().unwrap(),
        );
        assert!(
            (l - r).abs() < 1e-10 * l.abs().max(1.0),
            "k{k} s{s} p{p}: {l} vs {r}"
        );
    }
}
