//! Training: same seed, same weights; a run stopped and resumed from its
//! checkpoint ends with exactly the weights of an uninterrupted run.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use ppgn::data::fashion_mnist::Dataset;
use ppgn::models::card::Card;
use ppgn::models::weights::load_tensors;
use ppgn::train::{
    self,
    classifier::{ClassifierTask, Kind},
    code_prior::CodeTraining,
    gan::{GanSettings, GanTask},
    robust::Robust,
    Data, Task, TrainOptions,
};

use super::tempdir;

/// Synthetic 28x28 data: class c is a bright horizontal band at row 2c + noise.
fn synthetic(n: usize, seed: u64) -> Dataset {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut images = Vec::with_capacity(n * 784);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let c = i % 10;
        labels.push(c as u8);
        for y in 0..28 {
            for _ in 0..28 {
                let band = if y / 2 == c + 2 { 200 } else { 0 };
                images.push((band + rng.random_range(0..50)) as u8);
            }
        }
    }
    Dataset { images, labels }
}

fn data() -> Data {
    Data {
        train: synthetic(96, 1),
        test: synthetic(40, 2),
    }
}

fn opts(dir: &Path, seed: u64) -> TrainOptions {
    TrainOptions {
        epochs: 2,
        batch_size: 16,
        lr: 1e-3,
        weight_decay: 0.0,
        seed,
        out_dir: dir.to_path_buf(),
        models_dir: dir.to_path_buf(),
        checkpoint_every: 4,
        max_steps: None,
        stop_at: None,
        restart: false,
        size: None,
        command: "test".into(),
        robust: Default::default(),
        codes: Default::default(),
    }
}

fn same_file_tensors(a: &Path, b: &Path) {
    let ta = load_tensors(a, &Device::Cpu).unwrap();
    let tb = load_tensors(b, &Device::Cpu).unwrap();
    assert_eq!(ta.len(), tb.len());
    for (k, v) in &ta {
        let va: Vec<f32> = v.flatten_all().unwrap().to_vec1().unwrap();
        let vb: Vec<f32> = tb[k].flatten_all().unwrap().to_vec1().unwrap();
        assert!(
            va.iter().zip(&vb).all(|(x, y)| x.to_bits() == y.to_bits()),
            "tensor {k} differs between {} and {}",
            a.display(),
            b.display()
        );
    }
}

fn train_classifier(dir: &Path, kind: Kind, o: &TrainOptions) -> Option<Card> {
    let mut t = ClassifierTask::new(kind, data(), o, &Device::Cpu).unwrap();
    let card = train::run(&mut t, o, &Device::Cpu, &mut ppgn::run::Silent).unwrap();
    if let Some(c) = &card {
        assert_eq!(c.network, t.name());
        assert!(dir.join(format!("{}.json", c.network)).exists());
    }
    card
}

#[test]
fn classifier_training_is_reproducible_and_resumable() {
    let a = tempdir("train-a");
    let b = tempdir("train-b");
    let card = train_classifier(&a, Kind::Classifier, &opts(&a, 5)).unwrap();
    // the last fifth of 96 images is the validation split: 77 train, 4
    // batches of 16 an epoch
    assert_eq!(card.steps, 8);
    assert_eq!(card.seed, 5);
    for m in ["test_accuracy", "validation_accuracy"] {
        assert!((0.0..=1.0).contains(&card.metrics[m]), "{m}");
    }
    assert!(
        !a.join("classifier.ckpt.json").exists(),
        "checkpoint removed at the end"
    );

    // stopped at step 6 (not on a checkpoint boundary of 4), then resumed
    let mut ob = opts(&b, 5);
    ob.stop_at = Some(6);
    assert!(train_classifier(&b, Kind::Classifier, &ob).is_none());
    assert!(b.join("classifier.ckpt.json").exists());
    assert!(!b.join("classifier.safetensors").exists());
    ob.stop_at = None;
    let card_b = train_classifier(&b, Kind::Classifier, &ob).unwrap();
    assert_eq!(card_b.steps, 8);
    same_file_tensors(
        &a.join("classifier.safetensors"),
        &b.join("classifier.safetensors"),
    );

    // a different seed gives different weights
    let c = tempdir("train-c");
    train_classifier(&c, Kind::Classifier, &opts(&c, 6)).unwrap();
    let ta = load_tensors(&a.join("classifier.safetensors"), &Device::Cpu).unwrap();
    let tc = load_tensors(&c.join("classifier.safetensors"), &Device::Cpu).unwrap();
    let diff = (&ta["fc6.weight"] - &tc["fc6.weight"])
        .unwrap()
        .abs()
        .unwrap();
    assert!(diff.max_all().unwrap().to_scalar::<f32>().unwrap() > 0.0);
}

/// A guide trained on noised and adversarial images: its card has the
/// accuracies under both perturbations and the settings, the robust
/// training resumes bit for bit from a stop (the noise's draws come from
/// the checkpointed stream), and the perturbations change what it learns.
#[test]
fn a_robust_guide_trains_resumably_with_its_robust_accuracy_on_the_card() {
    let robust = Robust::parse(Some(0.2), Some("l2:1.0")).unwrap();
    let (a, b, c) = (tempdir("guide-a"), tempdir("guide-b"), tempdir("guide-c"));
    let oa = TrainOptions {
        robust,
        ..opts(&a, 5)
    };
    let card = train_classifier(&a, Kind::Guide, &oa).unwrap();
    assert_eq!(card.network, "guide");
    for m in [
        "validation_accuracy",
        "validation_accuracy_noise_0.2",
        "validation_accuracy_pgd_l2_1",
    ] {
        assert!(
            (0.0..=1.0).contains(&card.metrics[m]),
            "{m}: {:?}",
            card.metrics
        );
    }
    assert_eq!(card.config["robust"]["l2_eps"], 1.0);
    let mut ob = TrainOptions {
        robust,
        stop_at: Some(6),
        ..opts(&b, 5)
    };
    assert!(train_classifier(&b, Kind::Guide, &ob).is_none());
    ob.stop_at = None;
    train_classifier(&b, Kind::Guide, &ob).unwrap();
    same_file_tensors(&a.join("guide.safetensors"), &b.join("guide.safetensors"));
    train_classifier(&c, Kind::Guide, &opts(&c, 5)).unwrap();
    let ta = load_tensors(&a.join("guide.safetensors"), &Device::Cpu).unwrap();
    let tc = load_tensors(&c.join("guide.safetensors"), &Device::Cpu).unwrap();
    let diff = (&ta["fc6.weight"] - &tc["fc6.weight"])
        .unwrap()
        .abs()
        .unwrap();
    assert!(diff.max_all().unwrap().to_scalar::<f32>().unwrap() > 0.0);
}

#[test]
fn resume_refuses_other_settings() {
    let d = tempdir("train-mismatch");
    let mut o = opts(&d, 5);
    o.stop_at = Some(4);
    assert!(train_classifier(&d, Kind::Evaluator, &o).is_none());
    o.stop_at = None;
    o.lr = 5e-4;
    let mut t = ClassifierTask::new(Kind::Evaluator, data(), &o, &Device::Cpu).unwrap();
    let e = train::run(&mut t, &o, &Device::Cpu, &mut ppgn::run::Silent)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("--restart") && e.contains("evaluator.ckpt.json"),
        "{e}"
    );
}

fn joint() -> GanSettings {
    GanSettings {
        joint: true,
        ..Default::default()
    }
}

#[test]
fn generator_training_resumes_exactly() {
    // G needs a trained classifier and evaluator in the same folder.
    let a = tempdir("gan-a");
    let b = tempdir("gan-b");
    for d in [&a, &b] {
        train_classifier(d, Kind::Classifier, &opts(d, 1)).unwrap();
        train_classifier(d, Kind::Evaluator, &opts(d, 2)).unwrap();
    }
    let o = opts(&a, 3);
    let mut t = GanTask::new(data(), &o, &joint(), &Device::Cpu).unwrap();
    let card = train::run(&mut t, &o, &Device::Cpu, &mut ppgn::run::Silent)
        .unwrap()
        .unwrap();
    for k in [
        "evaluator_accuracy_reconstructions",
        "test_reconstruction_mse",
        "validation_reconstruction_frechet_h",
        "validation_reconstruction_frechet_h1_pooled",
    ] {
        assert!(card.metrics.contains_key(k), "card lacks {k}");
    }
    assert!(a.join("discriminator.json").exists());
    assert!(card.depends_on.contains_key("classifier"));

    let mut ob = opts(&b, 3);
    ob.stop_at = Some(5);
    let mut t = GanTask::new(data(), &ob, &joint(), &Device::Cpu).unwrap();
    assert!(
        train::run(&mut t, &ob, &Device::Cpu, &mut ppgn::run::Silent)
            .unwrap()
            .is_none()
    );
    ob.stop_at = None;
    let mut t = GanTask::new(data(), &ob, &joint(), &Device::Cpu).unwrap();
    train::run(&mut t, &ob, &Device::Cpu, &mut ppgn::run::Silent)
        .unwrap()
        .unwrap();
    same_file_tensors(
        &a.join("generator.safetensors"),
        &b.join("generator.safetensors"),
    );
    same_file_tensors(
        &a.join("discriminator.safetensors"),
        &b.join("discriminator.safetensors"),
    );
    choosing_generators(&a, &b);
}

/// `ppgn models generators`: the same generator in two folders measures
/// the same; the choice is marked once; a folder without a generator and a
/// generator trained against another classifier are refused by name.
fn choosing_generators(a: &Path, b: &Path) {
    use ppgn::data::idx::to_idx_bytes;
    use ppgn::eval::generators;
    let data_dir = tempdir("gen-data");
    let d = data();
    for (prefix, set) in [("train", &d.train), ("t10k", &d.test)] {
        let n = set.len();
        std::fs::write(
            data_dir.join(format!("{prefix}-images-idx3-ubyte")),
            to_idx_bytes(&[n, 28, 28], &set.images),
        )
        .unwrap();
        std::fs::write(
            data_dir.join(format!("{prefix}-labels-idx1-ubyte")),
            to_idx_bytes(&[n], &set.labels),
        )
        .unwrap();
    }
    let dirs = [a.to_path_buf(), b.to_path_buf()];
    let c = generators::measure(&dirs, Some(a), Some(&data_dir)).unwrap();
    let v = c[0].validation_frechet_h;
    assert!(v.is_finite() && v > 0.0, "{v}");
    assert_eq!(v, c[1].validation_frechet_h);
    let v1 = c[0].validation_frechet_h1;
    assert!(v1.is_finite() && v1 > 0.0 && v1 != v, "{v1}");
    assert_eq!(
        c[0].card.metrics["validation_reconstruction_frechet_h1_pooled"],
        v1
    );
    assert_eq!(v1, c[1].validation_frechet_h1);
    assert_eq!(generators::choose(&c), Some(0));
    let c = generators::compare(&dirs, Some(a), Some(&data_dir)).unwrap();
    assert_eq!(c.chosen, Some(0));
    // both folders hold the generator the models folder `a` ships
    assert_eq!(c.shipped, Some(0));
    assert!(c.candidates.iter().all(|c| c.evaluator_frechet.is_some()));
    let table = generators::markdown(&c);
    assert_eq!(table.matches("(chosen)").count(), 1, "{table}");
    assert_eq!(table.matches("(shipped)").count(), 1, "{table}");
    assert!(
        table.contains("1 L_img + 1 L_h1 + 1 L_h + 0.01 L_GAN"),
        "{table}"
    );
    // a folder of runs: the finished ones, an unfinished one left out
    let study = tempdir("gen-study");
    for (name, from) in [("x", a), ("y", b)] {
        std::fs::create_dir_all(study.join(name)).unwrap();
        for f in ["generator.safetensors", "generator.json"] {
            std::fs::copy(from.join(f), study.join(name).join(f)).unwrap();
        }
    }
    std::fs::write(study.join("y/generator.ckpt.json"), "{}").unwrap();
    let found = generators::candidates_in(&study).unwrap();
    assert_eq!(found, vec![study.join("x")]);
    let e = generators::candidates_in(&study.join("y")).unwrap_err();
    assert!(e.to_string().contains("no finished generators"), "{e}");

    let empty = tempdir("gen-empty");
    let e =
        generators::measure(std::slice::from_ref(&empty), Some(a), Some(&data_dir)).unwrap_err();
    assert!(e.to_string().contains("no generator.safetensors"), "{e}");
    let other = tempdir("gen-other");
    train_classifier(&other, Kind::Classifier, &opts(&other, 7)).unwrap();
    let e = generators::measure(&dirs[..1], Some(&other), Some(&data_dir)).unwrap_err();
    assert!(e.to_string().contains("another classifier"), "{e}");
}

#[test]
fn realness_training_resumes_exactly() {
    use ppgn::train::realness::RealnessTask;
    let a = tempdir("real-a");
    let b = tempdir("real-b");
    let o = opts(&a, 9);
    let mut t = RealnessTask::new(data(), &o, &Device::Cpu).unwrap();
    let card = train::run(&mut t, &o, &Device::Cpu, &mut ppgn::run::Silent)
        .unwrap()
        .unwrap();
    assert!(card.metrics.contains_key("test_mean_log_real"));
    assert!(a.join("realness-generator.json").exists());
    let mut ob = opts(&b, 9);
    ob.stop_at = Some(7);
    let mut t = RealnessTask::new(data(), &ob, &Device::Cpu).unwrap();
    assert!(
        train::run(&mut t, &ob, &Device::Cpu, &mut ppgn::run::Silent)
            .unwrap()
            .is_none()
    );
    ob.stop_at = None;
    let mut t = RealnessTask::new(data(), &ob, &Device::Cpu).unwrap();
    train::run(&mut t, &ob, &Device::Cpu, &mut ppgn::run::Silent)
        .unwrap()
        .unwrap();
    same_file_tensors(
        &a.join("realness.safetensors"),
        &b.join("realness.safetensors"),
    );
}

/// The score prior on codes: trained on the classifier's codes of the
/// training images before the validation split, its card has the
/// validation error at every card level, the weights it ships are the
/// moving average (not the last step's), and a run stopped between
/// checkpoints and resumed ships the same bits.
#[test]
fn code_score_training_ships_its_average_and_resumes_exactly() {
    use ppgn::train::code_score::{CodeScoreTask, CARD_LEVELS};
    let a = tempdir("score-a");
    let b = tempdir("score-b");
    for d in [&a, &b] {
        train_classifier(d, Kind::Classifier, &opts(d, 1)).unwrap();
    }
    let o = opts(&a, 8);
    let mut t = CodeScoreTask::new(data(), &o, &Device::Cpu).unwrap();
    let card = train::run(&mut t, &o, &Device::Cpu, &mut ppgn::run::Silent)
        .unwrap()
        .unwrap();
    for s in CARD_LEVELS {
        let k = format!("validation_denoise_mse_sigma_{s}");
        assert!(card.metrics[&k].is_finite(), "card lacks {k}");
    }
    // the rule's distance and its floor: finite and positive
    for k in ["validation_draws_frechet", "training_codes_frechet"] {
        let v = card.metrics[k];
        assert!(v.is_finite() && v > 0.0, "{k} = {v}");
    }
    assert!(card.depends_on.contains_key("classifier"));
    let shipped = load_tensors(&a.join("code-score.safetensors"), &Device::Cpu).unwrap();
    let last = ppgn::models::weights::varmap_tensors(t.varmaps()[0].1, "");
    let moved = (&shipped["fc_out.weight"] - &last["fc_out.weight"])
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(moved > 0.0, "the shipped weights are the last step's");

    let mut ob = opts(&b, 8);
    ob.stop_at = Some(6);
    let mut t = CodeScoreTask::new(data(), &ob, &Device::Cpu).unwrap();
    assert!(
        train::run(&mut t, &ob, &Device::Cpu, &mut ppgn::run::Silent)
            .unwrap()
            .is_none()
    );
    ob.stop_at = None;
    let mut t = CodeScoreTask::new(data(), &ob, &Device::Cpu).unwrap();
    train::run(&mut t, &ob, &Device::Cpu, &mut ppgn::run::Silent)
        .unwrap()
        .unwrap();
    same_file_tensors(
        &a.join("code-score.safetensors"),
        &b.join("code-score.safetensors"),
    );
}

/// `--zero-init` starts the score model's residual blocks' last layers and
/// its output layer at zero: after a few steps their moving averages are
/// still near zero (a step of Adam moves a weight by about the learning
/// rate, 1e-3, and the average keeps a thousandth of that), while the other
/// layers, and the same layers without the flag, keep He's normal (about
/// 0.25 at a fan-in of 32). The card says which, and the training noise
/// levels' mean (`--noise-mean`, given with the flag here) beside it.
#[test]
fn zero_init_starts_the_score_models_residual_branches_at_zero() {
    use ppgn::train::code_score::CodeScoreTask;
    let a = tempdir("score-zero");
    train_classifier(&a, Kind::Classifier, &opts(&a, 1)).unwrap();
    let max_abs = |w: &HashMap<String, Tensor>, name: &str| {
        let t = &w[name];
        t.abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    };
    for zero_init in [true, false] {
        let mut o = opts(&a, 8);
        o.codes.zero_init = zero_init;
        o.codes.noise_mean = zero_init.then_some(-0.5);
        o.size = Some(vec![32, 2]);
        o.restart = true;
        let mut t = CodeScoreTask::new(data(), &o, &Device::Cpu).unwrap();
        let card = train::run(&mut t, &o, &Device::Cpu, &mut ppgn::run::Silent)
            .unwrap()
            .unwrap();
        assert_eq!(card.config["zero_init"], zero_init);
        assert_eq!(card.config["p_mean"], if zero_init { -0.5 } else { -1.2 });
        let w = load_tensors(&a.join("code-score.safetensors"), &Device::Cpu).unwrap();
        for name in ["b0.fc2.weight", "b1.fc2.weight", "fc_out.weight"] {
            let m = max_abs(&w, name);
            match zero_init {
                true => assert!(m < 1e-3, "{name}: {m} with --zero-init"),
                false => assert!(m > 0.05, "{name}: {m} without --zero-init"),
            }
        }
        for name in ["fc_in.weight", "b0.fc1.weight"] {
            let m = max_abs(&w, name);
            assert!(m > 0.05, "{name}: {m}, zero_init {zero_init}");
        }
    }
}

/// A score model trained on whitened codes (`--whiten`): its colouring
/// undoes its whitening, the training codes in its code have unit variance
/// along every axis they vary along (and no more along any), its card
/// measures the draws, and its engine graph to the generator's code is
/// `relu((v C) * std + mean)` as candle computes it.
#[test]
fn a_whitened_score_model_has_unit_spread_and_maps_back_to_the_code() {
    use candle_core::DType;
    use ppgn::models::fashion::{self as stack, CodeScore};
    use ppgn::nn::fast::Workspace;
    use ppgn::train::code_prior::SplitCodes;
    use ppgn::train::code_score::CodeScoreTask;
    let a = tempdir("score-white");
    train_classifier(&a, Kind::Classifier, &opts(&a, 1)).unwrap();
    let o = TrainOptions {
        codes: CodeTraining {
            whiten: true,
            ..Default::default()
        },
        ..opts(&a, 8)
    };
    let mut t = CodeScoreTask::new(data(), &o, &Device::Cpu).unwrap();
    let card = train::run(&mut t, &o, &Device::Cpu, &mut ppgn::run::Silent)
        .unwrap()
        .unwrap();
    assert_eq!(card.config["whiten"], true);
    assert!(card.metrics["validation_draws_frechet"].is_finite());
    let (net, _) = stack::load(&a, "code-score", DType::F32, &Device::Cpu, CodeScore::new).unwrap();
    let w = load_tensors(&a.join("code-score.safetensors"), &Device::Cpu).unwrap();
    let eye = w["norm.white"].matmul(&w["norm.colour"]).unwrap();
    let d = eye.dim(0).unwrap();
    let eye: Vec<Vec<f32>> = eye.to_vec2().unwrap();
    for (i, row) in eye.iter().enumerate() {
        for (j, v) in row.iter().enumerate() {
            let want = if i == j { 1.0 } else { 0.0 };
            assert!((v - want).abs() < 1e-3, "W C at ({i}, {j}) = {v}");
        }
    }
    // 77 training codes span at most 76 axes: those have variance 1 in
    // the model's code, the others (below the floor) less
    let codes = SplitCodes::new(&data(), &a, &Device::Cpu, "test").unwrap();
    // the standardisation is the training codes' own, untouched by the
    // optimiser (it is no part of the loss's graph; the moving average
    // leaves a few units in the last place, the optimiser's steps of 1e-3
    // far more)
    let mean: Vec<f32> = codes.train.mean(0).unwrap().to_vec1().unwrap();
    let stored: Vec<f32> = w["norm.mean"].to_vec1().unwrap();
    for (m, s) in mean.iter().zip(&stored) {
        assert!(
            (m - s).abs() <= 2e-6 * (1.0 + m.abs()),
            "norm.mean {s}, the codes' {m}"
        );
    }
    let v = net
        .standardise(&codes.train)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap();
    let centred = v.broadcast_sub(&v.mean_keepdim(0).unwrap()).unwrap();
    let n = v.dim(0).unwrap() as f64;
    let var: Vec<f64> = (centred.sqr().unwrap().sum(0).unwrap() / (n - 1.0))
        .unwrap()
        .to_vec1()
        .unwrap();
    let unit = var.iter().filter(|x| (*x - 1.0).abs() < 1e-3).count();
    assert!(unit >= 60, "{unit} of {d} axes at variance 1: {var:?}");
    assert!(var.iter().all(|x| *x < 1.0 + 1e-3), "{var:?}");
    // the engine's map to the generator's code against candle's
    let mut r = ChaCha8Rng::seed_from_u64(2);
    let x: Vec<f32> = (0..3 * d).map(|_| r.random::<f32>() * 4.0 - 2.0).collect();
    let vt = Tensor::from_vec(x.clone(), (3, d), &Device::Cpu).unwrap();
    let (mean, std) = net.norm().unwrap();
    let want: Vec<f32> = net
        .unwhiten(&vt)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let graph = net.to_code::<f32>().unwrap();
    let mut ws = Workspace::default();
    let got = graph.forward(&x, 3, &mut ws).unwrap();
    for (k, (g, z)) in got.iter().zip(&want).enumerate() {
        let u = (*z as f64 * std[k % d] + mean[k % d]).max(0.0);
        assert!(
            (*g as f64 - u).abs() < 1e-3 * (1.0 + u.abs()),
            "{k}: {g} against {u}"
        );
    }
}

/// The flow prior on codes takes its size from `--size COUPLINGS HIDDEN`,
/// and its card has the rule's distance (its exact draws against the
/// validation codes) beside the floor of as many training codes.
#[test]
fn code_prior_training_takes_its_size_and_measures_its_draws() {
    use ppgn::train::code_prior::CodePriorTask;
    let a = tempdir("flow-size");
    train_classifier(&a, Kind::Classifier, &opts(&a, 1)).unwrap();
    let mut o = opts(&a, 7);
    o.size = Some(vec![2, 24]);
    let mut t = CodePriorTask::new(data(), &o, &Device::Cpu).unwrap();
    let card = train::run(&mut t, &o, &Device::Cpu, &mut ppgn::run::Silent)
        .unwrap()
        .unwrap();
    assert_eq!(card.config["couplings"], 2);
    assert_eq!(card.config["hidden"], 24);
    let shipped = load_tensors(&a.join("code-prior.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(
        shipped["c1.fc1.weight"].dims(),
        &[24, card.config["dim"].as_u64().unwrap() as usize]
    );
    assert!(!shipped.contains_key("c2.fc1.weight"));
    let (fd, floor) = (
        card.metrics["validation_draws_frechet"],
        card.metrics["training_codes_frechet"],
    );
    assert!(
        fd.is_finite() && floor.is_finite() && floor > 0.0,
        "{fd} {floor}"
    );
    // a flow barely trained draws farther from the codes than real codes are
    assert!(fd > floor, "draws {fd} against the floor {floor}");
}

/// A whitened flow (`ppgn train code-prior --whiten`) keeps its colouring
/// fixed at the training codes' principal axes and spreads: its inverse
/// undoes it, its centre is the codes' mean, its stored log-determinant is
/// the colouring's, and its card's distance is measured.
#[test]
fn a_whitened_flow_keeps_the_codes_colouring() {
    use ppgn::train::code_prior::{CodePriorTask, SplitCodes};
    let a = tempdir("flow-white");
    train_classifier(&a, Kind::Classifier, &opts(&a, 1)).unwrap();
    let mut o = TrainOptions {
        codes: CodeTraining {
            whiten: true,
            ..Default::default()
        },
        ..opts(&a, 7)
    };
    o.size = Some(vec![2, 24]);
    let mut t = CodePriorTask::new(data(), &o, &Device::Cpu).unwrap();
    let card = train::run(&mut t, &o, &Device::Cpu, &mut ppgn::run::Silent)
        .unwrap()
        .unwrap();
    assert_eq!(card.config["whiten"], true);
    assert!(card.metrics["validation_draws_frechet"].is_finite());
    let w = load_tensors(&a.join("code-prior.safetensors"), &Device::Cpu).unwrap();
    let f64s = super::vec_f64;
    let d = w["norm.colour"].dim(0).unwrap();
    let c = nalgebra::DMatrix::from_row_slice(d, d, &f64s(&w["norm.colour"]));
    let wh = nalgebra::DMatrix::from_row_slice(d, d, &f64s(&w["norm.white"]));
    let eye = &wh * &c;
    let off = (eye - nalgebra::DMatrix::<f64>::identity(d, d)).abs().max();
    assert!(off < 1e-3, "W C is off the identity by {off}");
    let log_det = c
        .clone()
        .lu()
        .u()
        .diagonal()
        .iter()
        .map(|v| v.abs().ln())
        .sum::<f64>();
    let stored = f64s(&w["norm.colour_log_det"])[0];
    assert!(
        (log_det - stored).abs() < 1e-3 * (1.0 + log_det.abs()),
        "log |det C| {log_det}, stored {stored}"
    );
    // fixed while the couplings trained: the centre is the codes' mean
    let codes = SplitCodes::new(&data(), &a, &Device::Cpu, "test").unwrap();
    let mean = f64s(&codes.train.mean(0).unwrap());
    for (m, s) in mean.iter().zip(f64s(&w["norm.centre"])) {
        assert!(
            (m - s).abs() <= 2e-6 * (1.0 + m.abs()),
            "centre {s}, mean {m}"
        );
    }
}

/// `--size` is checked before any data loads: a size for a network
/// without one, or of the wrong arity for the generator (three channels)
/// or code-score (width and blocks), names the flag and what it takes.
#[test]
fn a_wrong_size_is_refused_before_the_data_loads() {
    use ppgn::train::gan::GanSettings;
    use ppgn::train::job::{self, Network};
    let dir = tempdir("size");
    let missing_data = dir.join("no-such-data");
    for (network, size, says) in [
        (
            Network::Classifier,
            vec![8, 8],
            "only the generator, code-prior and code-score",
        ),
        (Network::Generator, vec![8, 8], "C7 C14 C28"),
        (Network::CodeScore, vec![8, 8, 8], "WIDTH BLOCKS"),
        (Network::CodeScore, vec![0, 2], "WIDTH BLOCKS"),
        (Network::CodePrior, vec![0, 256], "COUPLINGS HIDDEN"),
        (Network::CodePrior, vec![8, 256, 2], "COUPLINGS HIDDEN"),
    ] {
        let mut o = opts(&dir, 1);
        o.size = Some(size.clone());
        let e = job::train(
            network,
            &o,
            &GanSettings::default(),
            &missing_data,
            &mut ppgn::run::Silent,
        )
        .err()
        .unwrap_or_else(|| panic!("{network:?} with --size {size:?} trained"))
        .to_string();
        assert!(e.contains("--size") && e.contains(says), "{network:?}: {e}");
    }
}
