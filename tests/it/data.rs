//! The IDX reader and the Fashion-MNIST loader on files the tests write.

use std::io::Write;
use std::path::Path;

use ppgn::data::fashion_mnist::{self, parse_class, Split, CLASS_NAMES};
use ppgn::data::idx::{parse_idx, read_idx, to_idx_bytes};

use super::tempdir;

fn write_gz(path: &Path, bytes: &[u8]) {
    let f = std::fs::File::create(path).unwrap();
    let mut enc = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap();
}

/// Writes a small Fashion-MNIST-shaped split: image i has every pixel = i, label i % 10.
fn write_split(dir: &Path, prefix: &str, n: usize) {
    let images: Vec<u8> = (0..n).flat_map(|i| vec![i as u8; 784]).collect();
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    write_gz(
        &dir.join(format!("{prefix}-images-idx3-ubyte.gz")),
        &to_idx_bytes(&[n, 28, 28], &images),
    );
    write_gz(
        &dir.join(format!("{prefix}-labels-idx1-ubyte.gz")),
        &to_idx_bytes(&[n], &labels),
    );
}

#[test]
fn idx_round_trip_and_loader() {
    let dir = tempdir("idx-ok");
    write_split(&dir, "train", 12);
    write_split(&dir, "t10k", 5);
    let train = fashion_mnist::load(&dir, Split::Train).unwrap();
    assert_eq!(train.len(), 12);
    assert_eq!(train.labels[11], 1);
    assert!(train.images[7 * 784..8 * 784].iter().all(|&p| p == 7));
    let test = fashion_mnist::load(&dir, Split::Test).unwrap();
    assert_eq!(test.len(), 5);
    let t = train
        .images_tensor(&[3, 4], &candle_core::Device::Cpu)
        .unwrap();
    assert_eq!(t.dims(), &[2, 28, 28, 1]);
    let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
    assert!((v[0] - 3.0 / 255.0).abs() < 1e-7 && (v[784] - 4.0 / 255.0).abs() < 1e-7);
}

#[test]
fn idx_rejects_bad_headers_and_lengths() {
    let good = to_idx_bytes(&[2, 28, 28], &[0u8; 2 * 784]);
    assert!(parse_idx(&good, 3).is_ok());
    let e = parse_idx(&good[..good.len() - 1], 3).unwrap_err();
    assert!(e.contains("truncated"), "{e}");
    let e = parse_idx(&good, 1).unwrap_err();
    assert!(e.contains("3 dimensions, expected 1"), "{e}");
    let mut bad = good.clone();
    bad[0] = 0x1f;
    assert!(parse_idx(&bad, 3).unwrap_err().contains("magic"));
    let mut bad = good.clone();
    bad[2] = 0x0d; // float elements
    assert!(parse_idx(&bad, 3).unwrap_err().contains("element type"));
    assert!(parse_idx(&good[..6], 3).unwrap_err().contains("header"));
}

#[test]
fn truncated_gzip_file_names_the_file_and_the_package() {
    let dir = tempdir("idx-trunc");
    write_split(&dir, "train", 20);
    write_split(&dir, "t10k", 3);
    let p = dir.join("train-images-idx3-ubyte.gz");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let e = fashion_mnist::load(&dir, Split::Train)
        .unwrap_err()
        .to_string();
    assert!(e.contains("train-images-idx3-ubyte.gz"), "{e}");
    assert!(e.contains("apt-get install dataset-fashion-mnist"), "{e}");
    assert!(!e.contains('\n'), "one line: {e}");
    assert!(read_idx(&p, 3).is_err());
}

#[test]
fn missing_files_and_mismatched_labels_are_reported() {
    let dir = tempdir("idx-missing");
    let e = fashion_mnist::load(&dir, Split::Test)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("t10k-images-idx3-ubyte.gz") && e.contains("missing"),
        "{e}"
    );
    // 4 labels for 5 images
    write_split(&dir, "t10k", 5);
    write_gz(
        &dir.join("t10k-labels-idx1-ubyte.gz"),
        &to_idx_bytes(&[4], &[0, 1, 2, 3]),
    );
    let e = fashion_mnist::load(&dir, Split::Test)
        .unwrap_err()
        .to_string();
    assert!(e.contains("4 labels for 5 images"), "{e}");
    // a label outside 0..10
    write_gz(
        &dir.join("t10k-labels-idx1-ubyte.gz"),
        &to_idx_bytes(&[5], &[0, 1, 2, 3, 10]),
    );
    let e = fashion_mnist::load(&dir, Split::Test)
        .unwrap_err()
        .to_string();
    assert!(e.contains("label 10 at index 4"), "{e}");
}

#[test]
fn classes_by_name_or_index() {
    for (i, name) in CLASS_NAMES.iter().enumerate() {
        assert_eq!(parse_class(name).unwrap(), i);
        assert_eq!(parse_class(&i.to_string()).unwrap(), i);
        assert_eq!(parse_class(&name.to_uppercase()).unwrap(), i);
    }
    assert_eq!(parse_class("sneaker").unwrap(), 7);
    assert_eq!(parse_class("ankle-boot").unwrap(), 9);
    assert_eq!(parse_class("t-shirt").unwrap(), 0);
    assert_eq!(parse_class("top").unwrap(), 0);
    for bad in ["10", "-1", "sock", "", "  "] {
        let e = parse_class(bad).unwrap_err().to_string();
        assert!(e.contains("unknown class") && e.contains("Sneaker"), "{e}");
    }
}
