//! The observation model of `ppgn restore` (`density::observation`): each
//! degradation and their chains against their adjoints, what they do to
//! known images, the log-likelihood's gradient against central finite
//! differences in f64, and the term through a generator's backend.

use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use ppgn::density::backend::Backend;
use ppgn::density::observation::{log_likelihood, Degradation, Observation, Operator};
use ppgn::density::Term;
use ppgn::nn::fast::kernels::Act;
use ppgn::nn::fast::{build, Engine, Net, Op};
use rand::{Rng, SeedableRng};

fn uniform(n: usize, seed: u64) -> Vec<f64> {
    let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| r.random_range(-1.0..1.0)).collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// A 12x8 patch hidden on an `h x w` image.
fn hole(h: usize, w: usize) -> Degradation {
    let mut known = vec![1.0; h * w];
    for r in 2..10.min(h) {
        for c in 1..13.min(w) {
            known[r * w + c] = 0.0;
        }
    }
    Degradation::Mask { known }
}

fn operators(h: usize, w: usize, c: usize) -> Vec<(&'static str, Operator)> {
    let op = |steps| Operator::new(steps, (h, w, c)).unwrap();
    vec![
        ("mask", op(vec![hole(h, w)])),
        ("blur:1.5", op(vec![Degradation::Blur { sigma: 1.5 }])),
        ("blur:0.4", op(vec![Degradation::Blur { sigma: 0.4 }])),
        ("down:2", op(vec![Degradation::Down { k: 2 }])),
        ("down:4", op(vec![Degradation::Down { k: 4 }])),
        ("noise", op(vec![Degradation::Noise])),
        (
            "blur:1+down:2",
            op(vec![
                Degradation::Blur { sigma: 1.0 },
                Degradation::Down { k: 2 },
            ]),
        ),
        (
            "mask+blur:1+down:2",
            op(vec![
                hole(h, w),
                Degradation::Blur { sigma: 1.0 },
                Degradation::Down { k: 2 },
            ]),
        ),
    ]
}

/// `<A x, r> = <x, A^T r>` for every operator, on grey and colour images
/// of a batch of three (a wrong adjoint, say the blur's renormalisation on
/// the wrong side, breaks it far beyond rounding).
#[test]
fn every_operator_matches_its_adjoint() {
    for (h, w, c) in [(28, 28, 1), (8, 12, 3)] {
        for (name, a) in operators(h, w, c) {
            let (oh, ow, oc) = a.output();
            let x = uniform(3 * h * w * c, 1);
            let r = uniform(3 * oh * ow * oc, 2);
            let (ax, atr) = (a.apply(&x), a.adjoint(&r));
            assert_eq!(ax.len(), r.len(), "{name}");
            assert_eq!(atr.len(), x.len(), "{name}");
            let (lhs, rhs) = (dot(&ax, &r), dot(&x, &atr));
            assert!(
                (lhs - rhs).abs() < 1e-12 * lhs.abs().max(1.0),
                "{name} on {h}x{w}x{c}: {lhs} vs {rhs}"
            );
        }
    }
}

/// What the degradations do to images whose result is known.
#[test]
fn degradations_do_what_they_say() {
    let (h, w) = (8, 12);
    // a blur keeps a flat image flat, at the edges too
    let blur = Operator::new(vec![Degradation::Blur { sigma: 2.0 }], (h, w, 1)).unwrap();
    assert!(blur
        .apply(&vec![0.7; h * w])
        .iter()
        .all(|v| (v - 0.7).abs() < 1e-12));
    // and spreads a point over its neighbours, keeping its centre highest
    let mut point = vec![0.0; h * w];
    point[4 * w + 6] = 1.0;
    let b = blur.apply(&point);
    assert!(b[4 * w + 6] > b[4 * w + 7] && b[4 * w + 7] > b[4 * w + 9] && b[4 * w + 9] > 0.0);
    // average pooling by 2: each output is its block's mean
    let down = Operator::new(vec![Degradation::Down { k: 2 }], (h, w, 1)).unwrap();
    assert_eq!(down.output(), (4, 6, 1));
    let x: Vec<f64> = (0..h * w).map(|i| i as f64).collect();
    let y = down.apply(&x);
    assert_eq!(y[0], (0.0 + 1.0 + 12.0 + 13.0) / 4.0);
    assert_eq!(y[6 + 1], (26.0 + 27.0 + 38.0 + 39.0) / 4.0);
    // a mask zeroes the hidden pixels on every channel, keeps the others
    let mask = Operator::new(vec![hole(h, w)], (h, w, 3)).unwrap();
    let y = mask.apply(&vec![1.0; h * w * 3]);
    assert_eq!(&y[(3 * w + 2) * 3..(3 * w + 3) * 3], &[0.0; 3]);
    assert_eq!(&y[0..3], &[1.0; 3]);
}

/// Shapes a degradation cannot read are refused when the operator is
/// made, each in one line naming what would fit.
#[test]
fn operators_that_do_not_fit_the_image_are_refused() {
    let err = |steps, shape| Operator::new(steps, shape).unwrap_err().to_string();
    let e = err(vec![Degradation::Down { k: 3 }], (28, 28, 1));
    assert!(e.contains("divisor") && e.contains("28"), "{e}");
    let e = err(vec![Degradation::Down { k: 0 }], (28, 28, 1));
    assert!(e.contains("down:0"), "{e}");
    let e = err(vec![Degradation::Blur { sigma: -1.0 }], (28, 28, 1));
    assert!(e.contains("positive"), "{e}");
    let e = err(vec![Degradation::Blur { sigma: f64::NAN }], (28, 28, 1));
    assert!(e.contains("positive"), "{e}");
    // the mask is checked at the size it reads: after down:2, 14x14
    let e = err(vec![Degradation::Down { k: 2 }, hole(28, 28)], (28, 28, 1));
    assert!(e.contains("14x14"), "{e}");
    for e in [
        err(vec![Degradation::Down { k: 3 }], (28, 28, 1)),
        err(vec![Degradation::Down { k: 2 }, hole(28, 28)], (28, 28, 1)),
    ] {
        assert_eq!(e.lines().count(), 1, "{e}");
    }
}

/// The log-likelihood's gradient in `x` against central differences, in
/// f64, for every operator, with one observation for the batch and with one
/// per image.
#[test]
fn the_log_likelihood_gradient_matches_finite_differences() {
    let (h, w, c) = (8, 12, 3);
    for (name, a) in operators(h, w, c) {
        let (oh, ow, oc) = a.output();
        let m = oh * ow * oc;
        let x = uniform(2 * h * w * c, 3);
        // one variance, and one per observed value
        let each: Vec<f64> = (0..m).map(|j| 0.1 + 0.01 * (j % 7) as f64).collect();
        for (y, var) in [(uniform(m, 4), vec![0.3]), (uniform(2 * m, 5), each)] {
            let var = &var[..];
            let (values, grad) = log_likelihood(&a, &x, &y, var);
            assert_eq!(values.len(), 2);
            let d = uniform(x.len(), 6);
            let at = |t: f64| -> f64 {
                let xt: Vec<f64> = x.iter().zip(&d).map(|(a, b)| a + t * b).collect();
                log_likelihood(&a, &xt, &y, var).0.iter().sum()
            };
            let eps = 1e-5;
            let fd = (at(eps) - at(-eps)) / (2.0 * eps);
            let analytic = dot(&grad, &d);
            assert!(
                (fd - analytic).abs() < 1e-7 * analytic.abs().max(1.0),
                "{name}: {analytic} vs {fd}"
            );
            // the value is -sum (A x - y)^2 / (2 var), zero at y = A x
            let exact = log_likelihood(&a, &x, &a.apply(&x), var).0;
            assert!(exact.iter().all(|v| *v == 0.0), "{name}");
        }
    }
}

/// The term through a generator on its backend: a linear generator
/// `G(h) = W h + b` whose images are 8x12x3, so `d/dh log p(y | G(h)) =
/// W^T grad_x` can be computed here in f64 and compared with the term's
/// f32 gradient and value, on both engines.
#[test]
fn the_observation_term_pulls_back_through_the_generator() {
    let (d, h, w, c) = (5, 8, 12, 3);
    let size = h * w * c;
    let wv = uniform(size * d, 7);
    let bv = uniform(size, 8);
    let dev = Device::Cpu;
    let wt = Tensor::from_vec(wv.clone(), (size, d), &dev)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap();
    let bt = Tensor::from_vec(bv.clone(), size, &dev)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap();
    let ops = vec![
        build::linear(&wt, Some(&bt), Act::Identity).unwrap(),
        Op::Reshape((h, w, c)),
    ];
    let net = Arc::new(Net::<f32>::new((1, 1, d), ops).unwrap());
    let steps = vec![
        hole(h, w),
        Degradation::Blur { sigma: 1.0 },
        Degradation::Down { k: 2 },
    ];
    let a = Operator::new(steps, (h, w, c)).unwrap();
    let (oh, ow, oc) = a.output();
    let y = uniform(oh * ow * oc, 9);
    let codes = uniform(2 * d, 10);
    // in f64: x = W h + b (as f32 weights, which the net holds), then W^T
    let w32: Vec<f64> = wv.iter().map(|&v| v as f32 as f64).collect();
    let b32: Vec<f64> = bv.iter().map(|&v| v as f32 as f64).collect();
    let h32: Vec<f64> = codes.iter().map(|&v| v as f32 as f64).collect();
    let x: Vec<f64> = (0..2 * size)
        .map(|i| {
            let (n, o) = (i / size, i % size);
            b32[o] + (0..d).map(|k| w32[o * d + k] * h32[n * d + k]).sum::<f64>()
        })
        .collect();
    let var: Vec<f64> = (0..oh * ow * oc).map(|j| 0.05 + 0.001 * j as f64).collect();
    let (want_v, gx) = log_likelihood(&a, &x, &y, &var);
    let want_g: Vec<f64> = (0..2 * d)
        .map(|i| {
            let (n, k) = (i / d, i % d);
            (0..size).map(|o| w32[o * d + k] * gx[n * size + o]).sum()
        })
        .collect();
    let gmax = want_g.iter().fold(0f64, |m, v| m.max(v.abs()));
    let observed = Tensor::from_vec(y, (1, oh, ow, oc), &dev).unwrap();
    let p = Tensor::from_vec(codes, (2, 1, 1, d), &dev)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap();
    for engine in [Engine::Fast, Engine::Reference] {
        let backend = Backend::new(net.clone(), engine).unwrap();
        let term = Observation::new(backend, a.clone(), &observed, var.clone()).unwrap();
        let e = term.value_and_grad(&p).unwrap();
        let got: Vec<f32> = e.grad.flatten_all().unwrap().to_vec1().unwrap();
        for (g, want) in got.iter().zip(&want_g) {
            assert!(
                (*g as f64 - want).abs() < 1e-4 * gmax,
                "{engine:?}: {g} vs {want}"
            );
        }
        for (v, want) in e.log_density.unwrap().iter().zip(&want_v) {
            assert!(
                (v - want).abs() < 1e-4 * want.abs().max(1.0),
                "{engine:?}: {v} vs {want}"
            );
        }
    }
    // an observation of another size, or a variance that is not positive
    let backend = || Backend::new(net.clone(), Engine::Fast).unwrap();
    let wrong = Tensor::zeros((1, h, w, c), DType::F32, &dev).unwrap();
    let e = Observation::new(backend(), a.clone(), &wrong, var.clone())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("observation"), "{e}");
    for bad in [vec![0.0], vec![0.05; 5], vec![0.05, f64::NAN]] {
        let e = Observation::new(backend(), a.clone(), &observed, bad)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("positive"), "{e}");
    }
}

/// The likelihood's variances from tau: `s^2 + tau^2` for one tau; for
/// one per pixel, `s^2 + (A tau)^2` (a mask's known pixels keep theirs, a
/// 2x2 mean takes its block's mean tau); refused for a tau of the wrong
/// length, a negative one, or a variance of 0 where a value is observed.
#[test]
fn the_variances_push_tau_through_the_operator() {
    use ppgn::density::observation::variances;
    let (h, w) = (4, 4);
    let down = Operator::new(vec![Degradation::Down { k: 2 }], (h, w, 1)).unwrap();
    assert_eq!(variances(&down, 0.5, &[0.1]).unwrap(), vec![0.25 + 0.01]);
    // tau 0.1 on the left half, 0.3 on the right: the blocks' means
    let tau: Vec<f64> = (0..h * w)
        .map(|i| if i % w < 2 { 0.1 } else { 0.3 })
        .collect();
    let v = variances(&down, 0.5, &tau).unwrap();
    for (j, v) in v.iter().enumerate() {
        let t = if j % 2 == 0 { 0.1 } else { 0.3 };
        assert!((v - (0.25 + t * t)).abs() < 1e-12, "{j}: {v}");
    }
    // 0.1 and 0.3 in alternate columns: every block's mean tau is 0.2, so
    // (A tau)^2 = 0.04 (not the mean of tau^2, 0.05)
    let tau: Vec<f64> = (0..h * w).map(|i| [0.1, 0.3][i % 2]).collect();
    for v in variances(&down, 0.5, &tau).unwrap() {
        assert!((v - (0.25 + 0.04)).abs() < 1e-12, "{v}");
    }
    // a mask hiding the top-left pixel: every known pixel keeps its tau
    // (the hidden one's value is 0 in A x and y alike: its variance is any)
    let mut known = vec![1.0; h * w];
    known[0] = 0.0;
    let mask = Operator::new(vec![Degradation::Mask { known }], (h, w, 1)).unwrap();
    let tau: Vec<f64> = (0..h * w).map(|i| 0.01 * i as f64).collect();
    let v = variances(&mask, 0.0, &tau).unwrap();
    for (i, v) in v.iter().enumerate().skip(1) {
        assert!((v - tau[i] * tau[i]).abs() < 1e-15, "{i}: {v}");
    }
    // a tau of 0 on a known pixel without noise leaves it no spread
    let e = variances(&mask, 0.0, &[&[0.5, 0.0][..], &tau[2..]].concat()).unwrap_err();
    assert!(e.to_string().contains("a tau above 0"), "{e}");
    for bad in [vec![0.1; 3], vec![-0.1], vec![f64::NAN]] {
        let e = variances(&down, 0.1, &bad).unwrap_err().to_string();
        assert!(e.contains("one value or one per pixel (16)"), "{e}");
    }
}

/// `summarise`: draws that all equal one image give it back with no
/// spread; with `tau` the 5%-95% interval is `tau`'s normal interval; the
/// quantile interpolates as numpy's default does.
#[test]
fn summaries_of_known_draws() {
    use ppgn::run::jobs::restore::DrawNoise::{ByValue, Gaussian};
    use ppgn::run::jobs::restore::{quantile, summarise, Restored};
    assert!((quantile(&[1.0, 2.0, 3.0, 4.0], 0.05) - 1.15).abs() < 1e-12);
    assert!((quantile(&[1.0, 2.0, 3.0, 4.0], 0.95) - 3.85).abs() < 1e-12);
    let (k, d, per) = (2, 4000, 3);
    let draws: Vec<f32> = (0..k * d * per)
        .map(|i| ((i % per) as f32) * 0.25)
        .collect();
    let r = Restored {
        image: (1, 3, 1),
        observation: (1, 3, 1),
        observed: vec![0.0; k * per],
        draws,
        draws_per_image: d,
        grad_evals: 0,
        acceptance: 1.0,
    };
    let s = summarise(&r, &Gaussian(vec![0.0]), 0);
    assert_eq!(s.mean, vec![0.0, 0.25, 0.5, 0.0, 0.25, 0.5]);
    assert!(s.std.iter().all(|&v| v == 0.0));
    assert_eq!(s.q05, s.mean);
    assert_eq!(s.q95, s.mean);
    // one tau for every pixel, and one per pixel
    for taus in [vec![0.1], vec![0.1, 0.0, 0.05]] {
        let s = summarise(&r, &Gaussian(taus.clone()), 0);
        assert_eq!(s.mean, vec![0.0, 0.25, 0.5, 0.0, 0.25, 0.5]);
        for i in 0..k * per {
            let tau = taus[i % per % taus.len()];
            // 1.645 tau each side; the quantiles of 4,000 draws are within
            // about 0.05 tau of the normal's
            let (lo, hi) = (s.q05[i] - s.mean[i], s.q95[i] - s.mean[i]);
            assert!((lo as f64 + 1.645 * tau).abs() < 0.01, "{lo}");
            assert!((hi as f64 - 1.645 * tau).abs() < 0.01, "{hi}");
            assert!((s.std[i] as f64 - tau).abs() < 0.005, "{}", s.std[i]);
        }
    }
    // the error by the drawn value: pixels drawn at 0 and 0.25 (the first
    // half of [0, 1]) get the first bin's error, those at 0.5 the
    // second's; each interval is the drawn value plus the bin's 5% and
    // 95% errors
    let table = ppgn::models::generator_error::ErrorByValue {
        range: [0.0, 1.0],
        quantiles: vec![vec![-0.01, 0.0, 0.04], vec![-0.3, 0.0, 0.1]],
        counts: vec![1, 1],
    };
    let s = summarise(&r, &ByValue(table.clone()), 0);
    assert_eq!(s.mean, vec![0.0, 0.25, 0.5, 0.0, 0.25, 0.5]);
    for i in 0..k * per {
        let g = s.mean[i] as f64;
        let (lo, hi) = (s.q05[i] as f64 - g, s.q95[i] as f64 - g);
        // the error's quantiles at 5% and 95%, within what 4,000 draws
        // of it vary by (at least 3.7 standard errors)
        let tol = 0.02 * (table.error(g, 1.0) - table.error(g, 0.0));
        assert!((lo - table.error(g, 0.05)).abs() < tol, "{i}: {lo}");
        assert!((hi - table.error(g, 0.95)).abs() < tol, "{i}: {hi}");
    }
    assert!(s.q95[0] - s.q05[0] < 0.15 * (s.q95[2] - s.q05[2]));
}

/// Restoring two Fashion-MNIST test images from `down:2` on the shipped
/// stack with `exact-mala`: the draws' mean is closer to the true images
/// than the chains' prior starts are, the observation is the pooled image
/// plus its noise, and every interval is ordered.
#[test]
fn restoring_test_images_on_the_shipped_stack() {
    use ppgn::run::config::preset::preset;
    use ppgn::run::config::restore::parse;
    use ppgn::run::config::spec::Networks;
    use ppgn::run::drive::progress::Silent;
    use ppgn::run::jobs::restore::{restore, summarise, Damage};
    let networks = Networks::Fashion {
        models: None,
        guide: None,
    };
    let pair = ppgn::run::pairs::load::pair(&networks, None).unwrap();
    let truths = Tensor::cat(
        &[pair.real_image(0).unwrap().0, pair.real_image(1).unwrap().0],
        0,
    )
    .unwrap();
    let mut cfg = preset("exact-mala").unwrap();
    cfg.steps = 40;
    let damage = Damage {
        operator: parse("down:2").unwrap(),
        noise_std: 0.05,
        tau: Some(vec![0.1]),
        draw_error: None,
    };
    let r = restore(&*pair, &truths, &damage, None, (&cfg, 3, 4, 0), &mut Silent).unwrap();
    assert_eq!(r.observation, (14, 14, 1));
    assert_eq!(r.observed.len(), 2 * 14 * 14);
    // records at steps 24, 28, .., 40 of 40: 5 a chain, 3 chains
    assert_eq!(r.draws_per_image, 15);
    // the mean acceptance over steps and chains, the step adapting
    // toward 0.574
    assert!(
        r.acceptance > 0.2 && r.acceptance <= 1.0,
        "acceptance {}",
        r.acceptance
    );
    let truth: Vec<f32> = truths.flatten_all().unwrap().to_vec1().unwrap();
    // the observation: 2x2 means of the truth, plus noise of std 0.05
    let pooled: Vec<f32> = (0..2 * 14 * 14)
        .map(|i| {
            let (img, r, c) = (i / 196, (i % 196) / 14, i % 14);
            let at = |y: usize, x: usize| truth[img * 784 + y * 28 + x];
            (at(2 * r, 2 * c)
                + at(2 * r, 2 * c + 1)
                + at(2 * r + 1, 2 * c)
                + at(2 * r + 1, 2 * c + 1))
                / 4.0
        })
        .collect();
    let noise: Vec<f64> = r
        .observed
        .iter()
        .zip(&pooled)
        .map(|(a, b)| (a - b) as f64)
        .collect();
    let sd = (noise.iter().map(|v| v * v).sum::<f64>() / noise.len() as f64).sqrt();
    assert!((sd - 0.05).abs() < 0.01, "observation noise {sd}");
    let s = summarise(
        &r,
        &ppgn::run::jobs::restore::DrawNoise::Gaussian(vec![0.1]),
        0,
    );
    let rms = |a: &[f32]| {
        (a.iter()
            .zip(&truth)
            .map(|(x, t)| ((x - t) as f64).powi(2))
            .sum::<f64>()
            / a.len() as f64)
            .sqrt()
    };
    // the chains' starts: the exact preset's prior draws, resampled by
    // the likelihood; a prior draw alone is far from the truth
    let prior = ppgn::run::drive::init::Starts::new(
        &ppgn::run::config::spec::Init::Random,
        &*pair,
        &cfg,
        0,
        None,
        6,
    )
    .unwrap()
    .of(&cfg, 0..6)
    .unwrap();
    let decoded = pair
        .pipeline(
            &cfg,
            &ppgn::run::pairs::pair::Condition::Classes(vec![0; 6]),
        )
        .unwrap()
        .decode;
    let x0: Vec<f32> = decoded(&prior)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let prior_rms = (0..6)
        .map(|j| {
            let img = j / 3;
            (0..784)
                .map(|p| ((x0[j * 784 + p] - truth[img * 784 + p]) as f64).powi(2))
                .sum::<f64>()
                / 784.0
        })
        .sum::<f64>()
        .sqrt()
        / 6f64.sqrt();
    let mean_rms = rms(&s.mean);
    assert!(
        mean_rms < 0.5 * prior_rms,
        "mean {mean_rms} against prior draws {prior_rms}"
    );
    for i in 0..s.mean.len() {
        assert!(s.q05[i] <= s.q95[i] && s.std[i] > 0.0);
    }
}

/// The whole job on the shipped stack: a 12x12 hole in two test images,
/// the arrays at their shapes, the manifest's scores (coverage over the
/// hidden pixels for a mask, none unseen for down:2), and images that do
/// not fit refused before any sampling.
#[test]
fn the_restore_job_writes_its_arrays_and_scores() {
    use ppgn::data::npy::read_f32;
    use ppgn::run::config::preset::preset;
    use ppgn::run::config::restore::parse;
    use ppgn::run::config::spec::Networks;
    use ppgn::run::drive::progress::Silent;
    use ppgn::run::jobs::restore::{job, Damage, RestoreSpec, Truths};
    let d = crate::tempdir("restore-job");
    assert_eq!(Truths::parse("test:3").unwrap(), Truths::Test(3..=3));
    assert_eq!(Truths::parse("test:0-9").unwrap(), Truths::Test(0..=9));
    assert_eq!(Truths::Test(0..=9).to_string(), "test:0-9");
    assert_eq!(Truths::Test(3..=3).to_string(), "test:3");
    for bad in ["test:5-2", "test:x", "test:"] {
        let e = Truths::parse(bad).unwrap_err().to_string();
        assert!(e.contains("test:A-B"), "{bad}: {e}");
    }
    let mut settings = preset("exact-mala").unwrap();
    settings.steps = 20;
    let spec = |operator: &str, out: &str| RestoreSpec {
        networks: Networks::Fashion {
            models: None,
            guide: None,
        },
        data_dir: None,
        truths: Truths::Test(0..=1),
        damage: Damage {
            operator: parse(operator).unwrap(),
            noise_std: 0.02,
            tau: Some(vec![0.1]),
            draw_error: None,
        },
        paper: None,
        settings: settings.clone(),
        chains: 2,
        record_every: 2,
        seed: 0,
        out: d.join(out),
        force: false,
        scale: Some(1),
        command: "test".into(),
    };
    let line = job(&spec("mask:12x12@8,8", "mask"), &mut Silent).unwrap();
    assert!(line.contains("2 images restored"), "{line}");
    let run = d.join("mask");
    for (name, shape) in [
        ("truth", vec![2, 1, 28, 28]),
        ("observed", vec![2, 1, 28, 28]),
        ("mean", vec![2, 1, 28, 28]),
        ("std", vec![2, 1, 28, 28]),
        ("q05", vec![2, 1, 28, 28]),
        ("q95", vec![2, 1, 28, 28]),
        // records at steps 12, 14, .., 20: 5 a chain, 2 chains
        ("samples", vec![2, 10, 1, 28, 28]),
    ] {
        let (s, _) = read_f32(&run.join(format!("{name}.npy"))).unwrap();
        assert_eq!(s, shape, "{name}");
    }
    assert!(run.join("restore.png").exists());
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("manifest.json")).unwrap()).unwrap();
    let per = m["per_image"].as_array().unwrap();
    assert_eq!(per.len(), 2);
    for p in per {
        let c = p["coverage"].as_f64().unwrap();
        let u = p["coverage_unseen"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&c) && (0.0..=1.0).contains(&u), "{p}");
        assert!(p["psnr"].as_f64().unwrap() > 5.0, "{p}");
    }
    // the observed image: the truth outside the hole (plus noise), 0 inside
    let (_, obs) = read_f32(&run.join("observed.npy")).unwrap();
    let (_, truth) = read_f32(&run.join("truth.npy")).unwrap();
    assert_eq!(obs[10 * 28 + 10], 0.0);
    assert!((obs[2 * 28 + 2] - truth[2 * 28 + 2]).abs() < 0.1);
    job(&spec("down:2", "down"), &mut Silent).unwrap();
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("down/manifest.json")).unwrap())
            .unwrap();
    assert!(m["per_image"][0]["coverage_unseen"].is_null(), "{m}");
    // an existing folder, images of another size: refused, nothing written
    let e = job(&spec("down:2", "down"), &mut Silent)
        .unwrap_err()
        .to_string();
    assert!(e.contains("exists") || e.contains("--force"), "{e}");
    let small = d.join("small.npy");
    ppgn::data::npy::write_f32(&small, &[1, 1, 14, 14], &vec![0.5; 196]).unwrap();
    let mut s = spec("down:2", "small-run");
    s.truths = Truths::File(small);
    let e = job(&s, &mut Silent).unwrap_err().to_string();
    assert!(e.contains("28") && e.contains("14"), "{e}");
    assert!(!d.join("small-run").exists());
}

/// `ppgn restore` from the command line: tau read off the generator's
/// card when not given, exact-mala with eps2 1 by default, the arrays
/// written; `--eval` runs each sampler on the same test images into a
/// folder of its own and tabulates the manifests' scores with the SSIM of
/// each mean.
#[test]
fn the_restore_command_and_its_calibration_table() {
    use ppgn::data::npy::read_f32;
    let d = crate::tempdir("restore-cli");
    let out = d.join("one");
    let r = crate::ppgn_into(
        &["restore", "--image", "test:0-1", "--operator", "down:2"],
        &out,
        &[
            "--noise-std",
            "0.05",
            "--chains",
            "2",
            "--steps",
            "20",
            "--record-every",
            "2",
            "-q",
        ],
    );
    let m = crate::manifest(&r, &out);
    let card: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string("models/fashion-mnist/generator.json").unwrap(),
    )
    .unwrap();
    let tau = card["metrics"]["validation_reconstruction_rmse"]
        .as_f64()
        .unwrap();
    assert!(tau > 0.0 && tau < 0.5, "{tau}");
    assert_eq!(m["tau"].as_f64().unwrap(), tau);
    assert_eq!(m["sampler"]["preset"], "exact-mala");
    assert_eq!(m["sampler"]["eps2"].as_f64().unwrap(), 1.0);
    let (shape, _) = read_f32(&out.join("q95.npy")).unwrap();
    assert_eq!(shape, vec![2, 1, 28, 28]);

    let cal = d.join("cal");
    let r = crate::ppgn_into(
        &["restore", "--eval", "2", "--operator", "mask:12x12@8,8"],
        &cal,
        &["--samplers", "map,exact-mala", "-q"],
    );
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let rows: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cal.join("calibration.json")).unwrap())
            .unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for (row, name) in rows.iter().zip(["map", "exact-mala"]) {
        assert_eq!(row["sampler"], name);
        assert_eq!(row["images"], 2);
        // 200 steps: 20 draws a chain, 5 chains
        assert_eq!(row["draws_per_image"], 100);
        let m: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(cal.join(name).join("manifest.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(row["coverage"], m["mean_coverage"]);
        assert_eq!(m["sampler"]["eps2"].as_f64().unwrap(), 1.0);
        let ssim = row["ssim"].as_f64().unwrap();
        assert!(ssim > 0.0 && ssim < 1.0, "{row}");
        assert!(row["coverage_unseen"].as_f64().is_some(), "{row}");
    }
    let table = std::fs::read_to_string(cal.join("calibration.md")).unwrap();
    assert!(table.contains("| exact-mala | 100 |"), "{table}");

    // val:N is image N of the validation split: the training set's last 5,000
    let val = d.join("val");
    let r = crate::ppgn_into(
        &[
            "restore", "--image", "val:7", "--steps", "2", "--chains", "1",
        ],
        &val,
        &["-q"],
    );
    assert_eq!(crate::manifest(&r, &val)["images"], "val:7");
    use ppgn::data::fashion_mnist::{load, resolve_dir, Split};
    let train = load(&resolve_dir(None), Split::Train).unwrap();
    let i = ppgn::train::validation_start(train.len()) + 7;
    let want: Vec<f32> = train
        .images_tensor(&[i], &candle_core::Device::Cpu)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!(read_f32(&val.join("truth.npy")).unwrap().1, want);
}

/// The paper's inpainting as a restoration (`--preset paper-inpaint`) is
/// `ppgn inpaint` itself: image `i` of the run, conditioned on its label
/// with seed `seed + i`, ends where `ppgn inpaint` of that image, class
/// and seed ends, bit for bit; every draw shows the observation's known
/// pixels as they are (eq. 25's clamp).
#[test]
fn the_paper_inpainting_is_a_restore_preset() {
    use ppgn::data::npy::read_f32;
    let d = crate::tempdir("restore-paper");
    let (restored, inpainted) = (d.join("restore"), d.join("inpaint"));
    let common = [
        "--chains",
        "2",
        "--steps",
        "20",
        "--record-every",
        "1",
        "-q",
    ];
    let r = crate::ppgn_into(
        &[
            "restore",
            "--preset",
            "paper-inpaint",
            "--image",
            "test:0-1",
        ],
        &restored,
        &[
            &common[..],
            &["--seed", "3", "--operator", "mask:12x12@8,8"],
        ]
        .concat(),
    );
    let m = crate::manifest(&r, &restored);
    let classes = m["paper_inpaint"]["classes"].as_array().unwrap();
    assert_eq!(classes.len(), 2, "{m}");
    let class = classes[1].as_str().unwrap();
    let r = crate::ppgn_into(
        &["inpaint", "--image", "test:1", "--mask", "12x12@8,8"],
        &inpainted,
        &[&common[..], &["--seed", "4", "--class", class]].concat(),
    );
    crate::manifest(&r, &inpainted);
    let (shape, draws) = read_f32(&restored.join("samples.npy")).unwrap();
    assert_eq!(shape, vec![2, 20, 1, 28, 28]);
    let (_, last) = read_f32(&inpainted.join("samples.npy")).unwrap();
    let per = 28 * 28;
    // image 1's chain c's last draw is its record 10 * c + 9
    for c in 0..2 {
        let at = (20 + 10 * c + 9) * per;
        assert_eq!(
            draws[at..at + per],
            last[c * per..(c + 1) * per],
            "chain {c}"
        );
    }
    let (_, observed) = read_f32(&restored.join("observed.npy")).unwrap();
    for i in 0..2 {
        for j in 0..20 {
            for p in 0..per {
                let (row, col) = (p / 28, p % 28);
                let hidden = (8..20).contains(&row) && (8..20).contains(&col);
                let v = draws[(i * 20 + j) * per + p];
                assert!(
                    hidden || v == observed[i * per + p],
                    "image {i} draw {j} pixel {p}"
                );
            }
        }
    }
}

/// SSIM of constant images has a closed form: the structure term is 1 and
/// the luminance term `(2ab + C1) / (a^2 + b^2 + C1)`; an image against
/// itself is 1, and noise lowers it.
#[test]
fn ssim_of_known_images() {
    use ppgn::eval::ms_ssim::ssim;
    let (a, b) = (vec![0.2; 28 * 28], vec![0.6; 28 * 28]);
    let c1 = 1e-4;
    let want = (2.0 * 0.2 * 0.6 + c1) / (0.04 + 0.36 + c1);
    assert!((ssim(&a, &b, 28, 28) - want).abs() < 1e-9);
    let x = uniform(28 * 28, 3);
    assert!((ssim(&x, &x, 28, 28) - 1.0).abs() < 1e-12);
    let noisy: Vec<f64> = x
        .iter()
        .zip(uniform(28 * 28, 4))
        .map(|(p, q)| p + 0.2 * (q - 0.5))
        .collect();
    let s = ssim(&x, &noisy, 28, 28);
    assert!(s < 0.99 && s > 0.3, "{s}");
    assert_eq!(ppgn::eval::restore::draws(200), (5, 5));
    assert_eq!(ppgn::eval::restore::draws(20), (1, 10));
    assert_eq!(ppgn::eval::restore::draws(1), (1, 100));
}

/// The mixing measure on chains of known autocorrelation: independent
/// draws give an ESS near their number, an AR(1) of coefficient 0.9 about
/// `(1 - 0.9) / (1 + 0.9)` of it; the minimum is over the coordinates and
/// each image reads its own chains, the same whether the images' chains
/// ran in one drive or one drive an image.
#[test]
fn the_minimum_ess_of_known_chains() {
    use ppgn::eval::mixing::Trace;
    use ppgn::run::drive::progress::Silent;
    use rand_distr::{Distribution, StandardNormal};
    let (images, chains, dim, steps) = (2, 4, 3, 500);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let mut silent = Silent;
    let mut trace = Trace::new(&mut silent, 0);
    trace.drives = vec![Vec::new()];
    // image 0: independent; image 1: coordinate 2 is an AR(1) of 0.9
    let mut ar = vec![0.0f64; chains];
    for _ in 0..steps {
        let mut row = vec![0f32; images * chains * dim];
        for j in 0..images * chains {
            for d in 0..dim {
                let e: f64 = StandardNormal.sample(&mut rng);
                row[j * dim + d] = e as f32;
            }
        }
        for (c, a) in ar.iter_mut().enumerate() {
            let e: f64 = StandardNormal.sample(&mut rng);
            *a = 0.9 * *a + (1.0f64 - 0.81).sqrt() * e;
            row[(chains + c) * dim + 2] = *a as f32;
        }
        trace.drives[0].push(row);
    }
    let ess = trace.min_ess(images, chains).unwrap();
    let half = chains * dim;
    let one_drive = trace.drives[0].clone();
    let split = |r: std::ops::Range<usize>| {
        one_drive
            .iter()
            .map(|row| row[r.clone()].to_vec())
            .collect()
    };
    trace.drives = vec![split(0..half), split(half..2 * half)];
    assert_eq!(trace.min_ess(images, chains).unwrap(), ess);
    let n = (chains * steps) as f64;
    assert!(ess[0] > 0.7 * n && ess[0] < 1.3 * n, "{ess:?}");
    let want = n * 0.1 / 1.9;
    assert!(
        ess[1] > 0.6 * want && ess[1] < 1.6 * want,
        "{ess:?} against {want}"
    );
    trace.drives[1].truncate(3);
    assert!(
        trace.min_ess(images, chains).is_none(),
        "drives of unequal length"
    );
    trace.drives[0].truncate(3);
    assert!(trace.min_ess(images, chains).is_none(), "3 steps");
}

/// `--tau FILE.npy`: a map of one tau per pixel that is the same
/// everywhere restores a mask's hole bit for bit as that one number does
/// (the known pixels keep their tau, the hidden ones are not observed),
/// and the manifest records the map; a map twice as large on the right
/// half widens the intervals there only.
#[test]
fn a_tau_per_pixel_from_a_file() {
    use ppgn::data::npy::{read_f32, write_f64};
    let d = crate::tempdir("restore-tau-map");
    let run = |tau: &str, name: &str| {
        let out = d.join(name);
        let r = crate::ppgn_into(
            &[
                "restore",
                "--image",
                "test:3",
                "--operator",
                "mask:12x12@8,8",
            ],
            &out,
            &[
                "--tau",
                tau,
                "--chains",
                "2",
                "--steps",
                "10",
                "--record-every",
                "1",
                "-q",
            ],
        );
        (crate::manifest(&r, &out), out)
    };
    let t = 0.125;
    let flat = d.join("flat.npy");
    write_f64(&flat, &[28, 28, 1], &[t; 784]).unwrap();
    let right = d.join("right.npy");
    let map: Vec<f64> = (0..784)
        .map(|i| if i % 28 >= 14 { 2.0 * t } else { t })
        .collect();
    write_f64(&right, &[28, 28, 1], &map).unwrap();
    let (m1, one) = run(&t.to_string(), "one");
    let (m2, flat) = run(flat.to_str().unwrap(), "flat");
    let (_, right) = run(right.to_str().unwrap(), "right");
    assert_eq!(m1["tau"].as_f64().unwrap(), t);
    assert!(m1["tau_per_pixel"].is_null());
    assert_eq!(m2["tau_per_pixel"].as_array().unwrap().len(), 784);
    let read = |dir: &std::path::Path, f: &str| read_f32(&dir.join(f)).unwrap().1;
    for f in ["samples.npy", "q05.npy", "q95.npy"] {
        assert!(read(&one, f) == read(&flat, f), "{f}");
    }
    // widths on the left half of rows the hole does not reach: the same
    // tau there, so close to the one number's; on the right, wider
    let width = |dir: &std::path::Path| -> (f64, f64) {
        let (lo, hi) = (read(dir, "q05.npy"), read(dir, "q95.npy"));
        let side = |right: bool| {
            let idx: Vec<usize> = (0..784)
                .filter(|i| (i / 28 < 6 || i / 28 >= 22) && (i % 28 >= 14) == right)
                .collect();
            idx.iter().map(|&i| (hi[i] - lo[i]) as f64).sum::<f64>() / idx.len() as f64
        };
        (side(false), side(true))
    };
    let (l1, r1) = width(&one);
    let (l2, r2) = width(&right);
    assert!((l2 - l1).abs() < 0.15 * l1, "left {l1} vs {l2}");
    assert!(r2 > 1.5 * r1, "right {r1} vs {r2}");
}

/// `--draw-error by-value` on the shipped stack: the same chains as the
/// Gaussian tau's (the error is added after them), and where every draw
/// of a pixel is in the generator's first tenth of [0, 1] (the
/// background, drawn nearly exactly, validation error 5-95% about 0.05
/// wide) intervals far narrower than tau's 2 x 1.645 x 0.14.
#[test]
fn the_error_by_value_narrows_the_backgrounds_intervals() {
    use ppgn::data::npy::read_f32;
    let d = crate::tempdir("restore-by-value");
    let run = |error: &str| {
        let out = d.join(error);
        let r = crate::ppgn_into(
            &["restore", "--image", "test:3", "--operator", "down:2"],
            &out,
            &[
                "--noise-std",
                "0.05",
                "--draw-error",
                error,
                "--chains",
                "4",
                "--steps",
                "40",
                "--record-every",
                "1",
                "-q",
            ],
        );
        assert_eq!(crate::manifest(&r, &out)["draw_error"], error);
        out
    };
    let (gauss, by) = (run("gaussian"), run("by-value"));
    let read = |dir: &std::path::Path, f: &str| read_f32(&dir.join(f)).unwrap().1;
    assert!(read(&gauss, "samples.npy") == read(&by, "samples.npy"));
    assert!(read(&gauss, "mean.npy") == read(&by, "mean.npy"));
    let draws = read(&by, "samples.npy");
    let n = draws.len() / 784;
    let background: Vec<usize> = (0..784)
        .filter(|&p| (0..n).all(|j| draws[j * 784 + p] < 0.1))
        .collect();
    assert!(
        background.len() > 100,
        "{} background pixels",
        background.len()
    );
    let width = |dir: &std::path::Path| {
        let (lo, hi) = (read(dir, "q05.npy"), read(dir, "q95.npy"));
        background
            .iter()
            .map(|&p| (hi[p] - lo[p]) as f64)
            .sum::<f64>()
            / background.len() as f64
    };
    let (wg, wb) = (width(&gauss), width(&by));
    // (80 draws: tau's 90% interval comes out a little under its 0.46)
    assert!(
        wg > 0.35 && wb < 0.3 * wg,
        "background widths: gaussian {wg}, by value {wb}"
    );
}
