//! Weights files: saving, loading, and clear errors for bad files.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};

use ppgn::models::card::{sha256_file, Card};
use ppgn::models::fashion::{self as stack, Generator, GeneratorConfig};
use ppgn::models::weights::{load_tensors, save_tensors, varmap_tensors};
use ppgn::nn::init::init_seeded;

use super::tempdir;

fn write_generator(dir: &std::path::Path) -> VarMap {
    let vm = VarMap::new();
    let cfg = GeneratorConfig::default();
    Generator::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
    init_seeded(&vm, 11).unwrap();
    let (w, c) = stack::paths(dir, "generator");
    save_tensors(&w, &varmap_tensors(&vm, "")).unwrap();
    Card {
        network: "generator".into(),
        config: serde_json::to_value(&cfg).unwrap(),
        command: "test".into(),
        seed: 11,
        epochs: 0,
        steps: 0,
        batch_size: 1,
        learning_rate: 0.0,
        wall_time_s: 0.0,
        metrics: Default::default(),
        weights: "generator.safetensors".into(),
        weights_sha256: sha256_file(&w).unwrap(),
        depends_on: Default::default(),
        measured_by: Default::default(),
        error_by_value: None,
    }
    .save(&c)
    .unwrap();
    vm
}

#[test]
fn saved_network_loads_back_identically() {
    let dir = tempdir("weights-ok");
    let vm = write_generator(&dir);
    let (g, card) =
        stack::load(&dir, "generator", DType::F32, &Device::Cpu, Generator::new).unwrap();
    assert_eq!(card.seed, 11);
    let h = Tensor::ones((1, 256), DType::F32, &Device::Cpu).unwrap();
    let a = candle_core::Module::forward(&g, &h).unwrap();
    let g2 = Generator::new(
        &GeneratorConfig::default(),
        VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu),
    )
    .unwrap();
    let b = candle_core::Module::forward(&g2, &h).unwrap();
    let d = (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert_eq!(d, 0.0);
}

#[test]
fn truncated_safetensors_gives_one_clear_line() {
    let dir = tempdir("weights-trunc");
    write_generator(&dir);
    let (w, _) = stack::paths(&dir, "generator");
    let bytes = std::fs::read(&w).unwrap();
    std::fs::write(&w, &bytes[..bytes.len() - 1000]).unwrap();
    let e = stack::load(&dir, "generator", DType::F32, &Device::Cpu, Generator::new)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("generator.safetensors") && e.contains("truncated"),
        "{e}"
    );
    assert!(!e.contains('\n'), "{e}");
    // a header cut in the middle, too
    std::fs::write(&w, &bytes[..20]).unwrap();
    assert!(load_tensors(&w, &Device::Cpu).is_err());
}

#[test]
fn wrong_shape_or_missing_tensor_is_named() {
    let dir = tempdir("weights-shape");
    write_generator(&dir);
    let (w, _) = stack::paths(&dir, "generator");
    let mut t: HashMap<String, Tensor> = load_tensors(&w, &Device::Cpu).unwrap();
    t.insert(
        "fc1.weight".into(),
        Tensor::zeros((3, 3), DType::F32, &Device::Cpu).unwrap(),
    );
    save_tensors(&w, &t).unwrap();
    let e = stack::load(&dir, "generator", DType::F32, &Device::Cpu, Generator::new)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("fc1.weight") && e.contains("generator.safetensors"),
        "{e}"
    );
    t.remove("fc1.weight");
    save_tensors(&w, &t).unwrap();
    let e = stack::load(&dir, "generator", DType::F32, &Device::Cpu, Generator::new)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("fc1.weight"), "{e}");
}

#[test]
fn missing_model_names_the_file_and_the_fix() {
    let dir = tempdir("weights-missing");
    let e = stack::load(&dir, "generator", DType::F32, &Device::Cpu, Generator::new)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("generator.safetensors") && e.contains("ppgn train generator"),
        "{e}"
    );
}
