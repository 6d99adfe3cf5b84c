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
    let r = reconstruction::evaluate(&s.classifier, &s.generator, &s.evaluator, &test, &device)
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
