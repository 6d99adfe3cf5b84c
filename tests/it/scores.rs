//! The evaluation scores on inputs with known answers.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use ppgn::eval::scores::{accuracy, frechet_distance, inception_score, sqrtm_psd, symmetric_eigen};

fn gaussian_rows(n: usize, mean: &[f64], sd: &[f64], seed: u64) -> Vec<Vec<f64>> {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    let z = Normal::new(0.0, 1.0).unwrap();
    (0..n)
        .map(|_| {
            mean.iter()
                .zip(sd)
                .map(|(m, s)| m + s * z.sample(&mut r))
                .collect()
        })
        .collect()
}

#[test]
fn accuracy_and_inception_score_extremes() {
    let k = 10;
    let one_hot: Vec<Vec<f64>> = (0..50)
        .map(|i| (0..k).map(|j| if j == i % k { 1.0 } else { 0.0 }).collect())
        .collect();
    let labels: Vec<usize> = (0..50).map(|i| i % k).collect();
    assert_eq!(accuracy(&one_hot, &labels), 1.0);
    let shifted: Vec<usize> = labels.iter().map(|l| (l + 1) % k).collect();
    assert_eq!(accuracy(&one_hot, &shifted), 0.0);
    // confident and spread over all classes: the score is the number of classes
    assert!((inception_score(&one_hot) - k as f64).abs() < 1e-9);
    // no information: 1
    let uniform = vec![vec![1.0 / k as f64; k]; 20];
    assert!((inception_score(&uniform) - 1.0).abs() < 1e-12);
    // confident but all the same class: 1
    let same = vec![one_hot[0].clone(); 20];
    assert!((inception_score(&same) - 1.0).abs() < 1e-12);
}

#[test]
fn matrix_square_root_and_eigen() {
    let a = vec![
        vec![4.0, 1.0, 0.5],
        vec![1.0, 3.0, 0.2],
        vec![0.5, 0.2, 2.0],
    ];
    let (w, v) = symmetric_eigen(&a);
    for k in 0..3 {
        for i in 0..3 {
            let av: f64 = (0..3).map(|j| a[i][j] * v[j][k]).sum();
            assert!((av - w[k] * v[i][k]).abs() < 1e-10);
        }
    }
    let r = sqrtm_psd(&a);
    for i in 0..3 {
        for j in 0..3 {
            let rr: f64 = (0..3).map(|k| r[i][k] * r[k][j]).sum();
            assert!(
                (rr - a[i][j]).abs() < 1e-10,
                "({i},{j}) {rr} vs {}",
                a[i][j]
            );
        }
    }
}

#[test]
fn frechet_distance_known_values() {
    let a = gaussian_rows(4000, &[0.0, 1.0, -1.0], &[1.0, 2.0, 0.5], 1);
    assert!(frechet_distance(&a, &a).unwrap() < 1e-9);
    // for diagonal Gaussians: |mu1 - mu2|^2 + sum (s1 - s2)^2
    let b = gaussian_rows(4000, &[1.0, 1.0, -1.0], &[1.0, 1.0, 0.5], 2);
    let expected = 1.0 + 1.0;
    let fd = frechet_distance(&a, &b).unwrap();
    assert!((fd - expected).abs() < 0.15, "{fd} vs {expected}");
    // two samples of the same distribution are close
    let c = gaussian_rows(4000, &[0.0, 1.0, -1.0], &[1.0, 2.0, 0.5], 3);
    assert!(frechet_distance(&a, &c).unwrap() < 0.05);
    assert!(frechet_distance(&a[..1], &c).is_err());
}

#[test]
fn real_images_score_like_the_baseline_and_noise_does_not() {
    use candle_core::{DType, Device, Tensor};
    use ppgn::data::fashion_mnist::{self, Split};
    use ppgn::eval::report::{reference, score};
    use ppgn::models::fashion::{self as stack, Evaluator};
    let dev = Device::Cpu;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/fashion-mnist");
    let (e, card) = stack::load(&dir, "evaluator", DType::F32, &dev, Evaluator::new).unwrap();
    let data = fashion_mnist::resolve_dir(None);
    let test = fashion_mnist::load(&data, Split::Test).unwrap();
    // the test set against itself as reference: its accuracy is the card's
    let refs = reference(&e, &test, &dev).unwrap();
    let idx: Vec<usize> = (0..test.len()).collect();
    let labels: Vec<usize> = test.labels.iter().map(|&l| l as usize).collect();
    let judge = stack::paths(&dir, "realness").0.exists().then(|| {
        stack::load(
            &dir,
            "realness",
            DType::F32,
            &dev,
            ppgn::models::fashion::Discriminator::new,
        )
        .unwrap()
        .0
    });
    let real = score(
        &e,
        judge.as_ref(),
        &test.images_tensor(&idx, &dev).unwrap(),
        &labels,
        &refs,
    )
    .unwrap();
    assert!((real.evaluator_accuracy - card.metrics["test_accuracy"]).abs() < 1e-9);
    assert!(real.frechet_distance < 1e-6, "{}", real.frechet_distance);
    assert!(real.evaluator_score > 5.0);
    // uniform noise images
    let mut r = ppgn::sampler::ChainRngs::new(1, 500);
    let z = Tensor::zeros((500, 28, 28, 1), DType::F32, &dev).unwrap();
    let noise = r
        .normal_like(&z)
        .unwrap()
        .affine(0.3, 0.5)
        .unwrap()
        .clamp(0.0, 1.0)
        .unwrap();
    let noise_labels: Vec<usize> = (0..500).map(|i| i % 10).collect();
    let s = score(&e, judge.as_ref(), &noise, &noise_labels, &refs).unwrap();
    assert!(s.evaluator_accuracy < 0.3, "{}", s.evaluator_accuracy);
    // the realness judge prefers real images to noise
    if let (Some(r), Some(n)) = (real.mean_log_real, s.mean_log_real) {
        assert!(r > n + 1.0, "log p(real): real {r}, noise {n}");
    }
    assert!(
        s.frechet_distance > 100.0 * real.frechet_distance.max(0.1),
        "{}",
        s.frechet_distance
    );
}

#[test]
fn ms_ssim_matches_the_reference_fixture() {
    use ppgn::eval::ms_ssim::{mean_pairwise, ms_ssim};
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ms_ssim.json");
    let f: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let img = |v: &serde_json::Value| -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_f64().unwrap() / 255.0)
            .collect()
    };
    let cases = f["cases"].as_array().unwrap();
    assert!(cases.len() >= 5);
    for (i, c) in cases.iter().enumerate() {
        let (a, b) = (img(&c["a"]), img(&c["b"]));
        let want = c["ms_ssim"].as_f64().unwrap();
        let got = ms_ssim(&a, &b);
        assert!(
            (got - want).abs() < 1e-9,
            "case {i}: {got} vs reference {want}"
        );
        assert!((ms_ssim(&b, &a) - got).abs() < 1e-12, "symmetric");
    }
    let a = img(&cases[0]["a"]);
    assert!((ms_ssim(&a, &a) - 1.0).abs() < 1e-12);
    // identical images are the least diverse set possible
    assert!((mean_pairwise(&[a.clone(), a.clone(), a], 20, 1).unwrap() - 1.0).abs() < 1e-12);
}

/// Moments added block by block give the Gaussian of all rows at once
/// (what lets `ppgn eval` stream any number of samples).
#[test]
fn moments_added_in_blocks_equal_one_fit() {
    use ppgn::nn::frechet::{FeatureGaussian, Moments};
    use rand::{Rng, SeedableRng};
    let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let rows: Vec<Vec<f64>> = (0..2500)
        .map(|i| {
            (0..6)
                .map(|j| r.random::<f64>() * (j + 1) as f64 + (i % 7) as f64 * 0.1 + 5.0)
                .collect()
        })
        .collect();
    let whole = FeatureGaussian::fit(&rows).unwrap();
    let mut m = Moments::default();
    for block in [&rows[..1], &rows[1..999], &rows[999..2000], &rows[2000..]] {
        m.add(block);
    }
    m.add(&[]);
    let g = m.gaussian().unwrap();
    assert_eq!(g.rows, 2500);
    for j in 0..6 {
        assert!((g.mean[j] - whole.mean[j]).abs() < 1e-12);
        for k in 0..6 {
            assert!(
                (g.cov[(j, k)] - whole.cov[(j, k)]).abs() < 1e-10 * (1.0 + whole.cov[(j, k)].abs())
            );
        }
    }
    assert!(whole.frechet_distance(&g).unwrap() < 1e-9);
    assert!(Moments::default().gaussian().is_err());
}

/// The spread of a set against another: rows scaled by 2 about their mean
/// and shifted by 0.5 in every one of 20 dimensions have four times the
/// variance along every axis and means 20 x 0.25 = 5 apart (squared);
/// scaled only along the largest axis, the first tenth of the axes alone
/// shows it.
#[test]
fn spread_names_the_mean_and_the_variance_along_each_axis() {
    use ppgn::nn::frechet::spread;
    use rand::{Rng, SeedableRng};
    let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let b: Vec<Vec<f64>> = (0..3000)
        .map(|_| {
            (0..20)
                .map(|j| r.random::<f64>() * (20 - j) as f64)
                .collect()
        })
        .collect();
    let mean: Vec<f64> = (0..20)
        .map(|j| b.iter().map(|x| x[j]).sum::<f64>() / b.len() as f64)
        .collect();
    let a: Vec<Vec<f64>> = b
        .iter()
        .map(|x| {
            x.iter()
                .zip(&mean)
                .map(|(v, m)| m + 2.0 * (v - m) + 0.5)
                .collect()
        })
        .collect();
    let s = spread(&a, &b);
    assert!((s.mean_term - 5.0).abs() < 1e-9, "{s:?}");
    assert!((s.total_variance_ratio - 4.0).abs() < 1e-9, "{s:?}");
    assert_eq!(s.variance_ratio_by_axis_decile.len(), 10);
    assert!(s
        .variance_ratio_by_axis_decile
        .iter()
        .all(|v| (v - 4.0).abs() < 1e-6));
    // only the first coordinate (the widest) doubled
    let c: Vec<Vec<f64>> = b
        .iter()
        .map(|x| {
            let mut y = x.clone();
            y[0] = mean[0] + 2.0 * (x[0] - mean[0]);
            y
        })
        .collect();
    let s = spread(&c, &b);
    assert!(s.variance_ratio_by_axis_decile[0] > 1.5, "{s:?}");
    assert!(
        s.variance_ratio_by_axis_decile[5..]
            .iter()
            .all(|v| (v - 1.0).abs() < 0.05),
        "{s:?}"
    );
}
