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

/// The `.npy` header NumPy writes (format 1.0) for `descr` and `shape`,
/// padded to 64 bytes, so that the loader is checked against files it did
/// not write itself.
fn npy_header(descr: &str, fortran: bool, shape: &str) -> Vec<u8> {
    let order = if fortran { "True" } else { "False" };
    let mut h = format!("{{'descr': '{descr}', 'fortran_order': {order}, 'shape': {shape}, }}");
    while (10 + h.len() + 1) % 64 != 0 {
        h.push(' ');
    }
    h.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(h.len() as u16).to_le_bytes());
    out.extend_from_slice(h.as_bytes());
    out
}

#[test]
fn npy_round_trip_and_numpy_layout() {
    use ppgn::data::npy::{read_f32, read_i64, write_f32, write_i64};
    let d = tempdir("npy-round-trip");
    let v: Vec<f32> = (0..24).map(|i| i as f32 * 0.5 - 3.0).collect();
    write_f32(&d.join("a.npy"), &[2, 3, 4], &v).unwrap();
    assert_eq!(
        read_f32(&d.join("a.npy")).unwrap(),
        (vec![2, 3, 4], v.clone())
    );
    // the data follows a 64-byte-aligned header, little-endian, C order
    let bytes = std::fs::read(d.join("a.npy")).unwrap();
    let body = &bytes[bytes.len() - 96..];
    assert_eq!((bytes.len() - 96) % 64, 0);
    assert_eq!(&body[4..8], &(-2.5f32).to_le_bytes());
    let l: Vec<i64> = vec![3, -1, 7];
    write_i64(&d.join("l.npy"), &[3], &l).unwrap();
    assert_eq!(read_i64(&d.join("l.npy")).unwrap(), (vec![3], l));
    // a file laid out as NumPy writes it (a 1-d shape is "(n,)")
    let mut f = npy_header("<f4", false, "(2,)");
    f.extend_from_slice(&1.5f32.to_le_bytes());
    f.extend_from_slice(&(-4f32).to_le_bytes());
    std::fs::write(d.join("np.npy"), &f).unwrap();
    assert_eq!(
        read_f32(&d.join("np.npy")).unwrap(),
        (vec![2], vec![1.5, -4.0])
    );
    // a shape that does not match the data is refused before writing
    let e = write_f32(&d.join("b.npy"), &[5], &v)
        .unwrap_err()
        .to_string();
    assert!(e.contains("5 values"), "{e}");
    assert!(!d.join("b.npy").exists());
}

#[test]
fn npy_loader_names_what_is_wrong_with_a_file() {
    use ppgn::data::npy::{read_f32, read_i64};
    let d = tempdir("npy-broken");
    let err = |name: &str, bytes: &[u8]| {
        let p = d.join(name);
        std::fs::write(&p, bytes).unwrap();
        let e = read_f32(&p).unwrap_err().to_string();
        assert!(e.contains(name), "{e} does not name the file");
        e
    };
    let mut full = npy_header("<f4", false, "(2, 3)");
    full.extend(std::iter::repeat_n(0u8, 24));
    // truncated data: the shape's byte count and the file's
    let e = err("short.npy", &full[..full.len() - 5]);
    assert!(
        e.contains("24") && e.contains("19") && e.contains("truncated"),
        "{e}"
    );
    // truncated inside the header, and not an .npy at all
    let e = err("cut.npy", &full[..30]);
    assert!(e.contains("not a readable .npy"), "{e}");
    let e = err("text.npy", b"samples, not numpy\n");
    assert!(e.contains("not a readable .npy"), "{e}");
    // another dtype, with the right number of bytes for it
    let mut f8 = npy_header("<f8", false, "(3,)");
    f8.extend(std::iter::repeat_n(0u8, 24));
    let e = err("f8.npy", &f8);
    assert!(e.contains("<f8") && e.contains("<f4"), "{e}");
    // Fortran order is refused rather than read transposed
    let mut fo = npy_header("<f4", true, "(2, 3)");
    fo.extend(std::iter::repeat_n(0u8, 24));
    let e = err("fortran.npy", &fo);
    assert!(e.contains("Fortran"), "{e}");
    // a header whose shape asks for far more than the file holds is refused
    // by size, not by allocating it
    let mut huge = npy_header("<f4", false, "(1000000000000, 1000000)");
    huge.extend(std::iter::repeat_n(0u8, 8));
    let e = err("huge.npy", &huge);
    assert!(
        e.contains("4000000000000000000") && e.contains("truncated"),
        "{e}"
    );
    let mut over = npy_header("<f4", false, "(1000000000000, 1000000000000)");
    over.extend(std::iter::repeat_n(0u8, 8));
    let e = err("overflow.npy", &over);
    assert!(e.contains("more than any file can hold"), "{e}");
    // int64 labels read as float are refused by dtype
    let mut i8 = npy_header("<i8", false, "(1,)");
    i8.extend(7i64.to_le_bytes());
    std::fs::write(d.join("labels.npy"), &i8).unwrap();
    assert_eq!(read_i64(&d.join("labels.npy")).unwrap().1, vec![7]);
    let e = read_f32(&d.join("labels.npy")).unwrap_err().to_string();
    assert!(e.contains("<i8"), "{e}");
}

/// The `.npy` header's dictionary is checked against what NumPy writes
/// before `npyz`'s general Python-literal parser sees it (that parser
/// backtracked for over 10 minutes on a header `cargo fuzz run npy` made).
#[test]
fn npy_headers_are_only_what_numpy_writes() {
    use ppgn::data::npy::check_header_text;
    let ok = |h: &str| check_header_text(h.as_bytes()).map_err(|e| format!("{h}: {e}"));
    for h in [
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }      \n",
        "{'descr': '|u1', 'fortran_order': True, 'shape': (), }\n",
        "{'shape': (5,), 'descr': '<i8', 'fortran_order': False}",
        "{\"descr\": \"<f8\", \"fortran_order\": False, \"shape\": (3L, 4L)}",
    ] {
        ok(h).unwrap();
    }
    // a header longer than any NumPy writes is refused before it is read
    let d = tempdir("npy-long-header");
    let mut long = b"\x93NUMPY\x02\x00".to_vec();
    long.extend_from_slice(&(2u32 << 20).to_le_bytes());
    long.resize(3 << 20, b' ');
    std::fs::write(d.join("long.npy"), &long).unwrap();
    let e = ppgn::data::npy::read_f32(&d.join("long.npy"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("NumPy's are under 1 MiB"), "{e}");
    for (h, needle) in [
        ("{'descr': '<f4', 'fortran_order': False}", "without"),
        (
            "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': ()}",
            "twice",
        ),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': (), 'x': 1}",
            "unknown header key",
        ),
        (
            "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': ()}",
            "structured",
        ),
        (
            "{'descr': '<f4', 'fortran_order': 0, 'shape': ()}",
            "True or False",
        ),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2.5,)}",
            "lacks",
        ),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': ((2,),)}",
            "malformed shape",
        ),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,)}",
            "malformed shape",
        ),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': ()} x",
            "after the header",
        ),
        (
            "{'descr': '<f4\\'', 'fortran_order': False, 'shape': ()}",
            "malformed name",
        ),
        ("'descr': '<f4'", "lacks '{'"),
    ] {
        let e = ok(h).unwrap_err();
        assert!(e.contains(needle), "{e}");
    }
}
