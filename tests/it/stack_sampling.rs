//! Every kernel on the real Fashion-MNIST stack: 20 steps at batch 8 from
//! the codes of T-shirts, conditioned on "Sneaker", must raise the
//! classifier's probability of the target class. Plus the model-based terms'
//! gradients against finite differences.

use candle_core::{DType, Device, Tensor};

use ppgn::data::fashion_mnist::{self, Split};
use std::sync::Arc;

use ppgn::density::backend::Backend;
use ppgn::density::condition::{class_probability, ClassGradient, NetCondition, Neuron};
use ppgn::density::image::{clamp_known, InpaintContext, TotalVariation};
use ppgn::density::prior::{AutoencoderPrior, GaussianPrior};
use ppgn::density::{Sum, Term};
use ppgn::models::fashion::Stack;
use ppgn::nn::fast::Engine;
use ppgn::sampler::clip::Clip;
use ppgn::sampler::hmc::Hmc;
use ppgn::sampler::mala::Mala;
use ppgn::sampler::mala_approx::MalaApprox;
use ppgn::sampler::map::Map;
use ppgn::sampler::rwmh::RandomWalk;
use ppgn::sampler::schedule::Schedule;
use ppgn::sampler::{sample, ChainRngs, Kernel};

const SNEAKER: usize = 7;

fn stack() -> Stack {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/fashion-mnist");
    Stack::load(&dir, DType::F32, &Device::Cpu).unwrap()
}

/// Codes of the first 8 T-shirts of the test set, `[8, 256]`.
fn tshirt_codes(s: &Stack) -> (Tensor, Tensor) {
    let test = fashion_mnist::load(&fashion_mnist::resolve_dir(None), Split::Test).unwrap();
    let idx: Vec<usize> = (0..test.len())
        .filter(|&i| test.labels[i] == 0)
        .take(8)
        .collect();
    let x = test.images_tensor(&idx, &Device::Cpu).unwrap();
    (s.classifier.encode(&x).unwrap(), x)
}

fn condition(s: &Stack, gradient: ClassGradient) -> NetCondition {
    let net = s
        .generator
        .compile::<f32>()
        .unwrap()
        .then(s.classifier.compile().unwrap())
        .unwrap();
    let backend = Backend::new(Arc::new(net), Engine::Fast).unwrap();
    NetCondition::class(backend, vec![SNEAKER; 8], gradient, 1.0, None).unwrap()
}

/// `p(sneaker | G(h))` per chain.
fn probability(s: &Stack, h: &Tensor) -> Vec<f64> {
    let x = (s.generator_net().unwrap())(h).unwrap();
    let logits = (s.classifier_net().unwrap())(&x).unwrap();
    class_probability(&logits, &[SNEAKER; 8]).unwrap()
}

/// `E . G`: the generator, then the classifier up to `h`.
fn encode_decode(s: &Stack) -> ppgn::nn::fast::Net<f32> {
    let e = s.classifier.compile().unwrap().upto("h", false).unwrap();
    s.generator.compile::<f32>().unwrap().then(e).unwrap()
}

/// Mean log-probability over chains (probabilities start near 1e-8, so
/// the log shows the movement).
fn mean(v: &[f64]) -> f64 {
    v.iter().map(|p| p.max(1e-300).ln()).sum::<f64>() / v.len() as f64
}

#[test]
fn every_kernel_raises_the_class_probability_on_the_real_stack() {
    let s = stack();
    let (h0, _) = tshirt_codes(&s);
    let p0 = mean(&probability(&s, &h0));
    let exact = || {
        Sum::new(vec![
            (1.0, Box::new(GaussianPrior::new(5.0)) as Box<dyn Term>),
            (1.0, Box::new(condition(&s, ClassGradient::LogSoftmax))),
        ])
    };
    let ppgn = || {
        Sum::new(vec![
            (
                1e-5,
                Box::new(AutoencoderPrior::joint(
                    Backend::new(Arc::new(encode_decode(&s)), Engine::Fast).unwrap(),
                )) as Box<dyn Term>,
            ),
            (1.0, Box::new(condition(&s, ClassGradient::LogSoftmax))),
        ])
    };
    let clip = Clip::new_box(0.0, 30.0).unwrap();
    let cases: Vec<(Box<dyn Kernel>, Sum)> = vec![
        (
            Box::new(Map {
                lr: Schedule::Linear {
                    start: 0.5,
                    end: 0.1,
                    steps: 20,
                },
                decay: 0.01,
                clip: Some(clip.clone()),
            }),
            exact(),
        ),
        (
            Box::new(MalaApprox {
                step: Schedule::Constant { value: 0.1 },
                eps3: 1e-17,
                normalise: true,
                clip: Some(clip.clone()),
                levels: None,
            }),
            ppgn(),
        ),
        (
            Box::new(RandomWalk {
                scale: Schedule::Constant { value: 0.2 },
            }),
            exact(),
        ),
        (
            Box::new(Mala::new(Schedule::Constant { value: 0.005 })),
            exact(),
        ),
        (
            Box::new(Hmc {
                step: Schedule::Constant { value: 0.02 },
                leapfrog_steps: 5,
                jitter: 0.1,
                clip: None,
            }),
            exact(),
        ),
    ];
    for (mut k, target) in cases {
        let mut rngs = ChainRngs::new(11, 8);
        let r = sample(k.as_mut(), &target, &h0, 0, 20, &mut rngs, None).unwrap();
        let p = mean(&probability(&s, &r.last.position));
        eprintln!(
            "{}: mean log p(sneaker) {p0:.3} -> {p:.3}, accept {:.2}",
            k.name(),
            r.mean_accept(0)
        );
        assert!(
            p > p0 + 1.0,
            "{}: mean log p(sneaker) {p0:.3} -> {p:.3}",
            k.name()
        );
        assert_eq!(r.divergences(), 0, "{}", k.name());
    }
}

/// Relative error of the term's gradient along a random direction, by
/// central differences of step `eps` of its value in f64.
fn directional_error(term: &dyn Term, x: &Tensor, eps: f64) -> f64 {
    let x = x.to_dtype(DType::F64).unwrap();
    let mut r = ChainRngs::new(3, x.dim(0).unwrap());
    let d = r.normal_like(&x).unwrap();
    let g = term.value_and_grad(&x).unwrap().grad;
    let analytic: f64 = (g * &d).unwrap().sum_all().unwrap().to_scalar().unwrap();
    let v = |t: &Tensor| -> f64 {
        term.value_and_grad(t)
            .unwrap()
            .log_density
            .unwrap()
            .iter()
            .sum()
    };
    let fd = (v(&(&x + (&d * eps).unwrap()).unwrap()) - v(&(&x - (&d * eps).unwrap()).unwrap()))
        / (2.0 * eps);
    (analytic - fd).abs() / analytic.abs().max(fd.abs())
}

#[test]
fn model_terms_have_exact_gradients_in_f64() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/fashion-mnist");
    let s = Stack::load(&dir, DType::F64, &Device::Cpu).unwrap();
    let s32 = stack();
    let (h0, x0) = tshirt_codes(&s32);
    // G's input gradient (the stack converted to f64) through a smooth
    // term, the sum of the squared pixels. Its leaky ReLUs have kinks,
    // which a step of 1e-5 crossed at these codes with the generator of
    // twice the channels; 1e-6 keeps the difference's rounding far below
    // the bound.
    struct SquaredPixels(ppgn::nn::Func);
    impl Term for SquaredPixels {
        fn name(&self) -> String {
            "squared pixels".into()
        }
        fn has_value(&self) -> bool {
            true
        }
        fn value_and_grad(&self, p: &Tensor) -> ppgn::error::Result<ppgn::density::Eval> {
            ppgn::density::autodiff(p, |p| (self.0)(p)?.sqr()?.flatten_from(1)?.sum(1))
        }
    }
    let sq = SquaredPixels(s.generator_net().unwrap());
    let err = directional_error(&sq, &h0, 1e-6);
    assert!(err < 1e-6, "G's input gradient: relative error {err:.2e}");
    // The total variation term on images whose neighbours all differ:
    // |x_i - x_j| has a kink where they are equal, and a generator's flat
    // background holds pairs close enough for the steps tried (1e-5 to
    // 1e-7) to cross, so its gradient is checked with the identity as the
    // decoder, on random pixels.
    let identity: ppgn::nn::Func = Arc::new(|p: &Tensor| p.reshape((p.dim(0)?, 28, 28, 1)));
    let tv = TotalVariation { decode: identity };
    let pixels = ChainRngs::new(5, 4)
        .normal_like(&Tensor::zeros((4, 784), DType::F64, &Device::Cpu).unwrap())
        .unwrap();
    let err = directional_error(&tv, &pixels, 1e-7);
    assert!(err < 1e-6, "total variation: relative error {err:.2e}");
    let mut mask = vec![0f64; 28 * 28];
    for y in 8..20 {
        for x in 8..20 {
            mask[y * 28 + x] = 1.0;
        }
    }
    let mask = Tensor::from_vec(mask, (1, 28, 28, 1), &Device::Cpu).unwrap();
    // the inpainting context on either backend: its value and gradient
    // against candle's autograd of the formula through G
    let mask = mask.to_dtype(DType::F32).unwrap();
    let real = x0.to_dtype(DType::F32).unwrap();
    let g = s32.generator_net().unwrap();
    let known = mask.affine(-1.0, 1.0).unwrap();
    let want = ppgn::density::autodiff(&h0, |h| {
        let d = (&real - g(h)?)?.broadcast_mul(&known)?;
        d.sqr()?.flatten_from(1)?.sum(1)?.neg()
    })
    .unwrap();
    let want_g: Vec<f32> = want.grad.flatten_all().unwrap().to_vec1().unwrap();
    let gmax = want_g.iter().fold(0f32, |m, v| m.max(v.abs()));
    for engine in [Engine::Fast, Engine::Reference] {
        let net = Arc::new(s32.generator.compile::<f32>().unwrap());
        let backend = Backend::new(net, engine).unwrap();
        let ctx = InpaintContext::new(backend, real.clone(), mask.clone()).unwrap();
        let e = ctx.value_and_grad(&h0).unwrap();
        let got: Vec<f32> = e.grad.flatten_all().unwrap().to_vec1().unwrap();
        let err = got
            .iter()
            .zip(&want_g)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            err < 1e-4 * gmax,
            "{engine:?}: context gradient {err} of {gmax}"
        );
        for (a, b) in e
            .log_density
            .unwrap()
            .iter()
            .zip(want.log_density.as_ref().unwrap())
        {
            assert!(
                (a - b).abs() < 1e-4 * b.abs().max(1.0),
                "{engine:?}: {a} vs {b}"
            );
        }
    }
    let mask = mask.to_dtype(DType::F64).unwrap();
    // clamping keeps the known pixels exactly and the unknown ones from x
    let x0 = x0.to_dtype(DType::F64).unwrap();
    let filled = clamp_known(&Tensor::ones_like(&x0).unwrap(), &x0, &mask).unwrap();
    let f: Vec<f64> = filled.flatten_all().unwrap().to_vec1().unwrap();
    let o: Vec<f64> = x0.flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(f[0], o[0]);
    assert_eq!(f[10 * 28 + 10], 1.0);
}

#[test]
fn gradient_only_terms_and_neurons() {
    let s = stack();
    let (h0, _) = tshirt_codes(&s);
    let d = s.h_dae.as_ref().unwrap();
    let sigma = d.cfg.sigma;
    let dae = AutoencoderPrior {
        reconstruct: Backend::new(Arc::new(d.compile().unwrap()), Engine::Fast).unwrap(),
        sigma,
        label: "h-dae",
    };
    let e = dae.value_and_grad(&h0).unwrap();
    assert!(e.log_density.is_none() && e.grad.dims() == h0.dims());
    // the DAE's score points from noisy codes back toward the data
    let noisy = (&h0
        + ChainRngs::new(1, 8)
            .normal_like(&h0)
            .unwrap()
            .affine(sigma, 0.0)
            .unwrap())
    .unwrap();
    let score = dae.value_and_grad(&noisy).unwrap().grad;
    let back: f64 = (score * (&h0 - &noisy).unwrap())
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap() as f64;
    assert!(back > 0.0, "score . (clean - noisy) = {back}");

    // a neuron is checked against its layer before any step
    use ppgn::run::pairs::fashion::{target, Condition};
    let validate =
        |s: &ppgn::models::fashion::Stack,
         cfg: &ppgn::run::config::preset::SamplerConfig,
         c: &Condition| { target(s, cfg, c).and_then(|t| cfg.kernel()?.check(&t)) };
    let cfg = ppgn::run::config::preset::preset("ppgn").unwrap();
    let neuron = |unit| Condition::Neuron {
        layer: "h1".into(),
        neuron: Neuron {
            unit,
            at: Some((3, 3)),
        },
    };
    validate(&s, &cfg, &neuron(3)).unwrap();
    let msg = validate(&s, &cfg, &neuron(999)).unwrap_err().to_string();
    assert!(
        msg.contains("does not exist") && msg.contains("h1"),
        "{msg}"
    );
    assert!(s.layer_net("pool9").is_err());
}

/// A term's value alone (a forward pass, what the chains' start
/// candidates are weighed by) is the value its gradient pass gives, on
/// both engines; a target without a value has none either way.
#[test]
fn values_alone_are_the_values_of_the_gradient_pass() {
    use ppgn::run::pairs::fashion::{target, Condition};
    let s = stack();
    let z = ChainRngs::new(4, 8)
        .normal_like(&Tensor::zeros((8, 256), DType::F32, &Device::Cpu).unwrap())
        .unwrap();
    let classes = Condition::Classes((0..8).collect());
    for engine in [Engine::Fast, Engine::Reference] {
        let mut cfg = ppgn::run::config::preset::preset("exact-mala").unwrap();
        cfg.engine = engine;
        let t = target(&s, &cfg, &classes).unwrap();
        let alone = t.value(&z).unwrap().unwrap();
        let with_grad = t.value_and_grad(&z).unwrap().log_density.unwrap();
        assert_eq!(alone, with_grad, "{engine:?}");
        // and the value is the class term's: it moves with the class
        let other = target(&s, &cfg, &Condition::Classes(vec![1; 8])).unwrap();
        assert_ne!(other.value(&z).unwrap().unwrap(), alone);
    }
    let cfg = ppgn::run::config::preset::preset("ppgn").unwrap();
    let h = z.relu().unwrap();
    assert!(target(&s, &cfg, &classes)
        .unwrap()
        .value(&h)
        .unwrap()
        .is_none());
}
