//! Fashion-MNIST: 60k training and 10k test 28x28 grey images in 10 classes,
//! read from the IDX files of the Debian package `dataset-fashion-mnist`.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use super::idx::read_idx;
use crate::error::{Error, Result};

pub const DEFAULT_DIR: &str = "/usr/share/datasets/fashion-mnist";
/// Environment variable that overrides [`DEFAULT_DIR`] (a flag overrides both).
pub const ENV_DIR: &str = "PPGN_FASHION_MNIST";
pub const SIDE: usize = 28;
pub const PIXELS: usize = SIDE * SIDE;
pub const NUM_CLASSES: usize = 10;
pub const CLASS_NAMES: [&str; NUM_CLASSES] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

const INSTALL_HINT: &str = "install the data with `apt-get install dataset-fashion-mnist`, \
     or point --data-dir or $PPGN_FASHION_MNIST at a folder holding the four *-idx?-ubyte.gz files";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
}

impl Split {
    fn prefix(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "t10k",
        }
    }
}

/// One split held in memory as bytes: `images[i * 784 ..][..784]`, row-major.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Images `idx` as a `[n, 28, 28, 1]` f32 tensor in [0, 1] (NHWC, as all our networks).
    pub fn images_tensor(&self, idx: &[usize], device: &Device) -> Result<Tensor> {
        let mut buf = Vec::with_capacity(idx.len() * PIXELS);
        for &i in idx {
            buf.extend(
                self.images[i * PIXELS..(i + 1) * PIXELS]
                    .iter()
                    .map(|&b| b as f32 / 255.0),
            );
        }
        Ok(Tensor::from_vec(buf, (idx.len(), SIDE, SIDE, 1), device)?)
    }

    /// Labels `idx` as a `[n]` u32 tensor.
    pub fn labels_tensor(&self, idx: &[usize], device: &Device) -> Result<Tensor> {
        let v: Vec<u32> = idx.iter().map(|&i| self.labels[i] as u32).collect();
        Ok(Tensor::from_vec(v, idx.len(), device)?)
    }
}

/// The data folder: the flag if given, else `$PPGN_FASHION_MNIST`, else the Debian path.
pub fn resolve_dir(flag: Option<&Path>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    match std::env::var_os(ENV_DIR) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from(DEFAULT_DIR),
    }
}

fn find_file(dir: &Path, stem: &str) -> Result<PathBuf> {
    let gz = dir.join(format!("{stem}.gz"));
    if gz.exists() {
        return Ok(gz);
    }
    let plain = dir.join(stem);
    if plain.exists() {
        return Ok(plain);
    }
    Err(Error::data(gz, format!("missing; {INSTALL_HINT}")))
}

/// Loads one split from `dir`, checking that images are 28x28 and that the
/// label file has one label in 0..10 per image.
pub fn load(dir: &Path, split: Split) -> Result<Dataset> {
    let img_path = find_file(dir, &format!("{}-images-idx3-ubyte", split.prefix()))?;
    let lbl_path = find_file(dir, &format!("{}-labels-idx1-ubyte", split.prefix()))?;
    let hint = |p: &Path, m: String| Error::data(p, format!("{m}; {INSTALL_HINT}"));
    let images = read_idx(&img_path, 3).map_err(|e| match e {
        Error::Data { path, message } => hint(&path, message),
        e => e,
    })?;
    let labels = read_idx(&lbl_path, 1).map_err(|e| match e {
        Error::Data { path, message } => hint(&path, message),
        e => e,
    })?;
    if images.dims[1] != SIDE || images.dims[2] != SIDE {
        return Err(hint(
            &img_path,
            format!(
                "images are {}x{}, expected {SIDE}x{SIDE}",
                images.dims[1], images.dims[2]
            ),
        ));
    }
    if labels.dims[0] != images.dims[0] {
        return Err(hint(
            &lbl_path,
            format!(
                "{} labels for {} images in {}",
                labels.dims[0],
                images.dims[0],
                img_path.display()
            ),
        ));
    }
    if let Some(pos) = labels.data.iter().position(|&l| l as usize >= NUM_CLASSES) {
        return Err(hint(
            &lbl_path,
            format!(
                "label {} at index {pos} is not a class 0..{NUM_CLASSES}",
                labels.data[pos]
            ),
        ));
    }
    Ok(Dataset {
        images: images.data,
        labels: labels.data,
    })
}

fn normalise(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// A class by index (`"7"`) or by name, ignoring case and punctuation
/// (`"sneaker"`, `"Ankle boot"`, `"ankle-boot"`, `"t-shirt"`, `"top"`).
pub fn parse_class(s: &str) -> Result<usize> {
    let t = s.trim();
    if let Ok(i) = t.parse::<usize>() {
        if i < NUM_CLASSES {
            return Ok(i);
        }
    } else {
        let n = normalise(t);
        if !n.is_empty() {
            for (i, name) in CLASS_NAMES.iter().enumerate() {
                let full = normalise(name);
                let parts: Vec<String> = name.split('/').map(normalise).collect();
                if n == full || parts.contains(&n) {
                    return Ok(i);
                }
            }
        }
    }
    Err(Error::UnknownClass {
        what: "class",
        given: s.to_string(),
        count: NUM_CLASSES,
        names: CLASS_NAMES
            .iter()
            .map(|n| format!("{n:?}"))
            .collect::<Vec<_>>()
            .join(", "),
    })
}
