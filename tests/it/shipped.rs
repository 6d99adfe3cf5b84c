//! The shipped Fashion-MNIST stack: its files match their cards, and the
//! cards' numbers are what the networks measure on the real test set.
//! Needs the Debian package `dataset-fashion-mnist` (.ci/run installs it).

use candle_core::{DType, Device};

use ppgn::data::fashion_mnist::{self, Split};
use ppgn::models::card::sha256_file;
use ppgn::models::fashion::{self as stack, Stack};
use ppgn::train::reconstruction;

fn models_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/fashion-mnist")
}

#[test]
fn shipped_weights_match_their_cards() {
    let dir = models_dir();
    for name in stack::NETWORKS {
        let (w, c) = stack::paths(&dir, name);
        let card = ppgn::models::card::Card::load(&c).unwrap();
        assert_eq!(card.network, name);
        assert_eq!(sha256_file(&w).unwrap(), card.weights_sha256, "{name}");
        assert!(
            card.command.starts_with("ppgn train"),
            "{name}: {}",
            card.command
        );
        // what it was trained against is what ships beside it
        for (dep, hash) in &card.depends_on {
            assert_eq!(
                &sha256_file(&stack::paths(&dir, dep).0).unwrap(),
                hash,
                "{name} -> {dep}"
            );
        }
    }
}

#[test]
fn shipped_stack_reproduces_its_card_numbers() {
    let data_dir = fashion_mnist::resolve_dir(None);
    let test = fashion_mnist::load(&data_dir, Split::Test).unwrap_or_else(|e| {
        panic!("{e}\n(this test needs the real test set: apt-get install dataset-fashion-mnist)")
    });
    let device = Device::Cpu;
    let s = Stack::load(&models_dir(), DType::F32, &device).unwrap();
    assert!(s.h_dae.is_some() && s.x_dae.is_some());
    let r = reconstruction::evaluate(
        &s.classifier,
        &s.generator,
        s.evaluator().unwrap(),
        &test,
        &device,
    )
    .unwrap();
    let card = |n: &str| {
        s.cards
            .iter()
            .find(|c| c.network == n)
            .unwrap()
            .metrics
            .clone()
    };
    // the targets
    assert!(r.classifier_accuracy_originals >= 0.91, "{r:?}");
    assert!(
        r.evaluator_accuracy_reconstructions >= r.evaluator_accuracy_originals - 0.03,
        "{r:?}"
    );
    // and the cards say exactly what is measured
    let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
    assert!(close(
        card("classifier")["test_accuracy"],
        r.classifier_accuracy_originals
    ));
    assert!(close(
        card("evaluator")["test_accuracy"],
        r.evaluator_accuracy_originals
    ));
    for (k, v) in r.metrics() {
        assert!(
            close(card("generator")[&k], v),
            "generator card {k}: {} vs {v}",
            card("generator")[&k]
        );
    }
}

/// The shipped flow prior: its card's held-out numbers are what it
/// measures on the test codes (the Gaussian fit and `N(0, 3^2)` too), the
/// flow beats both, and `T` inverts `T^-1` on real codes.
#[test]
fn shipped_code_prior_reproduces_its_card() {
    use ppgn::train::code_prior::{gaussian_fit_nll, isotropic_nll, pre_relu_codes};
    use ppgn::train::VALIDATION;
    let data_dir = fashion_mnist::resolve_dir(None);
    let test = fashion_mnist::load(&data_dir, Split::Test).unwrap();
    let train = fashion_mnist::load(&data_dir, Split::Train).unwrap();
    let device = Device::Cpu;
    let s = Stack::load(&models_dir(), DType::F32, &device).unwrap();
    let flow = s
        .code_prior
        .as_ref()
        .expect("the shipped stack has a code prior");
    let card = s.cards.iter().find(|c| c.network == "code-prior").unwrap();
    let m = &card.metrics;
    let all: Vec<usize> = (0..test.len()).collect();
    let u = pre_relu_codes(&s.classifier, &test, &all, &device).unwrap();
    let nll: f64 = (0..10)
        .map(|k| {
            let rows = u.narrow(0, k * 1000, 1000).unwrap();
            flow.nll_per_dim(&rows).unwrap().to_scalar::<f32>().unwrap() as f64 / 10.0
        })
        .sum();
    let (flow_nll, fit, iso) = (
        m["test_nll_per_dim"],
        m["test_nll_per_dim_gaussian_fit"],
        m["test_nll_per_dim_isotropic_sigma3"],
    );
    assert!(
        (nll - flow_nll).abs() < 1e-3,
        "flow: {nll} vs card {flow_nll}"
    );
    assert!(
        flow_nll < fit - 0.1 && fit < iso,
        "flow {flow_nll}, Gaussian fit {fit}, N(0, 9) {iso}"
    );
    assert!((isotropic_nll(&u, 3.0).unwrap() - iso).abs() < 1e-5);
    let idx: Vec<usize> = (0..train.len() - VALIDATION).collect();
    let train_u = pre_relu_codes(&s.classifier, &train, &idx, &device).unwrap();
    let g = gaussian_fit_nll(&train_u, &u).unwrap();
    assert!((g - fit).abs() < 1e-4, "Gaussian fit: {g} vs card {fit}");
    let rows = u.narrow(0, 0, 200).unwrap();
    let back = flow.transport(&flow.inverse(&rows).unwrap().0).unwrap();
    let err = (back - &rows)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(err < 1e-3, "T(T^-1(u)) differs from u by {err}");
}

#[test]
fn the_inventory_lists_a_guide_only_where_a_folder_has_one() {
    let src = models_dir();
    let tmp = super::tempdir("inventory");
    for name in stack::NETWORKS {
        let (w, c) = stack::paths(&src, name);
        std::fs::copy(&c, tmp.join(c.file_name().unwrap())).unwrap();
        std::os::unix::fs::symlink(&w, tmp.join(w.file_name().unwrap())).unwrap();
    }
    let without = ppgn::models::inventory(&tmp).unwrap();
    assert!(!without.contains("guide"), "{without}");
    assert!(!without.contains("missing ("), "{without}");
    // a guide is the classifier's architecture: its card and weights will do
    let (w, c) = stack::paths(&src, "classifier");
    let card = std::fs::read_to_string(&c).unwrap();
    let card = card.replace("\"network\": \"classifier\"", "\"network\": \"guide\"");
    std::fs::write(tmp.join("guide.json"), card).unwrap();
    std::os::unix::fs::symlink(&w, tmp.join("guide.safetensors")).unwrap();
    let with = ppgn::models::inventory(&tmp).unwrap();
    let line = with
        .lines()
        .find(|l| l.trim_start().starts_with("guide "))
        .unwrap();
    assert!(line.contains("steps"), "{with}");
    std::fs::remove_file(tmp.join("x-dae.safetensors")).unwrap();
    let missing = ppgn::models::inventory(&tmp).unwrap();
    assert!(
        missing.contains("x-dae") && missing.contains("missing ("),
        "{missing}"
    );
}
