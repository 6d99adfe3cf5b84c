//! The two sides of a plug-and-play pair, described the same way whether
//! ppgn built the network in or the user brought it as an ONNX file with a
//! sidecar TOML (`docs/onnx.md`): a generator (code -> image, its output
//! range and its code's prior) and a classifier (image in a given range
//! and size -> logits, its class names).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::onnx::{self, Imported};
use crate::error::{Error, Result};
use crate::nn::fast::pointwise::Pointwise;
use crate::nn::fast::{build, Net, Op};

/// A generator: codes `(1, 1, code)` to images `(side, side, channels)`.
#[derive(Debug, Clone)]
pub struct GeneratorSide {
    pub name: String,
    pub net: Net<f32>,
    pub code: usize,
    /// The pixel range of its output.
    pub range: (f64, f64),
    /// The standard deviation of its codes' Gaussian prior, or `None` for
    /// no prior.
    pub sigma: Option<f64>,
    pub provenance: serde_json::Value,
}

/// A classifier: images `(h, w, channels)` in `range` to logits.
#[derive(Debug, Clone)]
pub struct ClassifierSide {
    pub name: String,
    /// Normalisation included; gives logits (log-probabilities for a file
    /// that ends in a softmax).
    pub net: Net<f32>,
    /// Channels, height, width it reads.
    pub image: (usize, usize, usize),
    pub range: (f64, f64),
    pub class_names: Vec<String>,
    pub provenance: serde_json::Value,
}

impl ClassifierSide {
    /// This classifier on images `(h, w, channels)` in [0, 1]: resized
    /// (bilinear) to what it reads, converted between grey and RGB (RGB to
    /// grey by the luma weights), mapped to its range.
    pub fn reading(&self, (h, w, gc): (usize, usize, usize)) -> Result<Net<f32>> {
        use crate::nn::fast::kernels::Act;
        use crate::nn::fast::window::Window;
        let (cc, ch, cw) = self.image;
        let dev = candle_core::Device::Cpu;
        let mut adapt: Vec<Op<f32>> = Vec::new();
        if (h, w) != (ch, cw) {
            adapt.push(build::bilinear_to((h, w), (ch, cw))?);
        }
        let weights = match (gc, cc) {
            (a, b) if a == b => None,
            (1, 3) => Some(candle_core::Tensor::ones(
                (3, 1, 1, 1),
                candle_core::DType::F32,
                &dev,
            )?),
            (3, 1) => Some(candle_core::Tensor::new(
                &[[[[0.299f32]], [[0.587]], [[0.114]]]],
                &dev,
            )?),
            (a, b) => {
                return Err(Error::unsupported(
                    format!("images of {a} channels for a classifier of {b}"),
                    "use grey (1) or RGB (3) images",
                ))
            }
        };
        if let Some(wt) = weights {
            adapt.push(build::conv(
                Window::symmetric(ch, cw, gc, 1, 1, 0),
                &wt,
                None,
                Act::Identity,
            )?);
        }
        if self.range != (0.0, 1.0) {
            adapt.push(build::affine(cc, self.range.1 - self.range.0, self.range.0));
        }
        if adapt.is_empty() {
            return Ok(self.net.clone());
        }
        build::net((h, w, gc), adapt)?.then(self.net.clone())
    }
}

/// A sidecar file: `[network]` and its fields (`docs/onnx.md`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sidecar {
    pub network: Spec,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Classifier,
    Generator,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputKind {
    Logits,
    Probabilities,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CodePrior {
    Gaussian,
    None,
}

/// The `[network]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub onnx: PathBuf,
    pub kind: Kind,
    pub input: Option<String>,
    pub output: Option<String>,
    // a classifier's
    pub image: Option<[usize; 3]>,
    pub range: Option<[f64; 2]>,
    pub mean: Option<Vec<f64>>,
    pub std: Option<Vec<f64>>,
    pub classes: Option<PathBuf>,
    pub output_kind: Option<OutputKind>,
    // a generator's
    pub code: Option<usize>,
    pub prior: Option<CodePrior>,
    pub sigma: Option<f64>,
    pub output_range: Option<[f64; 2]>,
}

/// A sidecar read and its network imported (checked against each other).
pub struct Loaded {
    pub path: PathBuf,
    pub spec: Spec,
    pub imported: Imported<f32>,
}

/// Reads the sidecar at `path` and imports the network it names.
pub fn load(path: &Path) -> Result<Loaded> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let side: Sidecar = toml::from_str(&text).map_err(|e| {
        Error::data(
            path,
            format!(
                "not a ppgn sidecar ({}); see docs/onnx.md",
                one_line(&e.to_string())
            ),
        )
    })?;
    let spec = side.network;
    let onnx_path = path.parent().unwrap_or(Path::new(".")).join(&spec.onnx);
    let imported = onnx::load::<f32>(&onnx_path, spec.input.as_deref(), spec.output.as_deref())?;
    let misplaced: &[(&str, bool)] = match spec.kind {
        Kind::Classifier => &[
            ("code", spec.code.is_some()),
            ("prior", spec.prior.is_some()),
            ("sigma", spec.sigma.is_some()),
            ("output_range", spec.output_range.is_some()),
        ],
        Kind::Generator => &[
            ("image", spec.image.is_some()),
            ("range", spec.range.is_some()),
            ("mean", spec.mean.is_some()),
            ("std", spec.std.is_some()),
            ("classes", spec.classes.is_some()),
            ("output_kind", spec.output_kind.is_some()),
        ],
    };
    if let Some((field, _)) = misplaced.iter().find(|(_, given)| *given) {
        return Err(Error::data(
            path,
            format!(
                "`{field}` does not belong to a network of kind {:?}",
                spec.kind
            ),
        ));
    }
    Ok(Loaded {
        path: path.to_path_buf(),
        spec,
        imported,
    })
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl Loaded {
    fn bad(&self, message: String) -> Error {
        Error::data(&self.path, message)
    }

    fn provenance(&self) -> Result<serde_json::Value> {
        let onnx = self
            .path
            .parent()
            .unwrap_or(Path::new("."))
            .join(&self.spec.onnx);
        Ok(serde_json::json!({
            "sidecar": self.path.display().to_string(),
            "onnx": onnx.display().to_string(),
            "sha256": super::card::sha256_file(&onnx)?,
        }))
    }

    /// The generator this sidecar describes.
    pub fn generator(self) -> Result<GeneratorSide> {
        if self.spec.kind != Kind::Generator {
            return Err(self.bad("a classifier's sidecar where a generator's is expected".into()));
        }
        let m = &self.imported;
        let code: usize = m.input.1.iter().product();
        if self.spec.code.is_some_and(|c| c != code) {
            return Err(self.bad(format!(
                "code = {:?}, the network's input is {:?}",
                self.spec.code, m.input.1
            )));
        }
        match m.output.1.as_slice() {
            &[c, h, w] if h == w && (c == 1 || c == 3) => {}
            other => {
                return Err(self.bad(format!(
                    "the generator's output is [batch, {other:?}]; ppgn takes square grey or RGB images [batch, 1 or 3, side, side]"
                )))
            }
        };
        let Some([lo, hi]) = self
            .spec
            .output_range
            .filter(|[a, b]| a < b && a.is_finite() && b.is_finite())
        else {
            return Err(self.bad("a generator needs output_range = [low, high], the pixel range of its output (e.g. [-1.0, 1.0] after a tanh)".into()));
        };
        let sigma = match self.spec.prior.unwrap_or(CodePrior::Gaussian) {
            CodePrior::Gaussian => Some(self.spec.sigma.unwrap_or(1.0)),
            CodePrior::None => None,
        };
        if sigma.is_some_and(|s| !(s > 0.0 && s.is_finite())) {
            return Err(self.bad(format!("sigma = {sigma:?}: expected a positive number")));
        }
        let net = self.imported.net.clone();
        let net = match net.input() {
            (1, 1, n) if n == code => net,
            _ => build::net((1, 1, code), vec![Op::Reshape(net.input())])?.then(net)?,
        };
        Ok(GeneratorSide {
            name: self.path.display().to_string(),
            code,
            range: (lo, hi),
            sigma,
            provenance: self.provenance()?,
            net,
        })
    }

    /// The classifier's input normalisation for `c` channels: the
    /// sidecar's per-channel `mean` and `std` (0 and 1 when not given) and
    /// the pixel range its images come in (`[0, 1]` when not given),
    /// checked.
    fn normalisation(&self, c: usize) -> Result<Normalisation> {
        let [lo, hi] = self.spec.range.unwrap_or([0.0, 1.0]);
        let norm = |v: &Option<Vec<f64>>, name: &str, d: f64| -> Result<Vec<f64>> {
            match v {
                None => Ok(vec![d; c]),
                Some(v) if v.len() == c && v.iter().all(|x| x.is_finite()) => Ok(v.clone()),
                Some(v) => Err(self.bad(format!(
                    "{name} has {} values; the network reads {c} channels",
                    v.len()
                ))),
            }
        };
        let (mean, std) = (
            norm(&self.spec.mean, "mean", 0.0)?,
            norm(&self.spec.std, "std", 1.0)?,
        );
        if std.contains(&0.0) || !(lo < hi && lo.is_finite() && hi.is_finite()) {
            return Err(self.bad("std must not be 0 and range must be [low, high]".into()));
        }
        Ok((mean, std, (lo, hi)))
    }

    /// The classifier this sidecar describes.
    pub fn classifier(self) -> Result<ClassifierSide> {
        if self.spec.kind != Kind::Classifier {
            return Err(self.bad("a generator's sidecar where a classifier's is expected".into()));
        }
        let m = &self.imported;
        let (c, h, w) = match m.input.1.as_slice() {
            &[c, h, w] if c == 1 || c == 3 => (c, h, w),
            other => {
                return Err(self.bad(format!(
                    "the classifier's input is [batch, {other:?}]; ppgn takes grey or RGB images [batch, 1 or 3, height, width]"
                )))
            }
        };
        if self.spec.image.is_some_and(|i| i != [c, h, w]) {
            return Err(self.bad(format!(
                "image = {:?}, the network's input is [{c}, {h}, {w}]",
                self.spec.image
            )));
        }
        let classes: usize = m.output.1.iter().product();
        if m.output.1.iter().filter(|&&d| d > 1).count() > 1 {
            return Err(self.bad(format!(
                "the classifier's output is [batch, {:?}]; ppgn takes [batch, classes]",
                m.output.1
            )));
        }
        let (mean, std, (lo, hi)) = self.normalisation(c)?;
        let class_names = self.class_names(classes)?;
        // (x - mean) / std before the network, log after a softmax
        let mut pre = vec![Op::Affine {
            scale: std.iter().map(|s| (1.0 / s) as f32).collect(),
            shift: mean
                .iter()
                .zip(&std)
                .map(|(m, s)| (-m / s) as f32)
                .collect(),
        }];
        if m.input.1 != [c, h, w] {
            pre.push(Op::Reshape(m.net.input()));
        }
        let mut net = build::net((h, w, c), pre)?.then(m.net.clone())?;
        if m.net.output() != (1, 1, classes) {
            net = net.then(build::net(
                m.net.output(),
                vec![Op::Reshape((1, 1, classes))],
            )?)?;
        }
        if self.spec.output_kind == Some(OutputKind::Probabilities) {
            net = net.then(build::net(
                (1, 1, classes),
                vec![Op::Pointwise(Pointwise::Log)],
            )?)?;
        }
        Ok(ClassifierSide {
            name: self.path.display().to_string(),
            net,
            image: (c, h, w),
            range: (lo, hi),
            class_names,
            provenance: self.provenance()?,
        })
    }

    /// The names of the classes: the `classes` file (one per line), or
    /// their indices.
    fn class_names(&self, classes: usize) -> Result<Vec<String>> {
        let Some(file) = &self.spec.classes else {
            return Ok((0..classes).map(|i| i.to_string()).collect());
        };
        let p = self.path.parent().unwrap_or(Path::new(".")).join(file);
        let text = std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
        let names: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
        if names.len() != classes {
            return Err(Error::data(
                &p,
                format!(
                    "{} class names for a classifier of {classes} classes",
                    names.len()
                ),
            ));
        }
        Ok(names)
    }
}

/// The generators ppgn has built in, by `--generator` name.
pub const GENERATORS: &[&str] = &["dcgan-faces"];
/// The classifiers ppgn has built in, by `--classifier` name.
/// `fashion-guide` is the stack folder's `guide` (`ppgn train guide`), a
/// classifier trained only to guide.
pub const CLASSIFIERS: &[&str] = &["efficientnet-lite0", "fashion", "fashion-guide"];

/// Whether a `--generator` / `--classifier` value names a sidecar file.
pub fn is_sidecar(name: &str) -> bool {
    name.ends_with(".toml")
}

impl GeneratorSide {
    /// A built-in generator (weights from `home`, the cache of `ppgn models
    /// fetch`) or a sidecar file.
    pub fn named(name: &str, home: &Path) -> Result<Self> {
        if is_sidecar(name) {
            return load(Path::new(name))?.generator();
        }
        match name {
            "dcgan-faces" => {
                let g = super::pretrained::dcgan_faces(home, candle_core::DType::F32)?;
                let pkg = &super::pretrained::DCGAN_FACES;
                Ok(Self {
                    name: name.into(),
                    net: g.compile()?,
                    code: super::dcgan::NZ,
                    range: (-1.0, 1.0),
                    sigma: Some(1.0),
                    provenance: package(pkg),
                })
            }
            other => Err(Error::unknown(
                "generator for a plug-and-play pair",
                other,
                &[GENERATORS, &["FILE.toml (a sidecar, docs/onnx.md)"]].concat(),
            )),
        }
    }
}

impl ClassifierSide {
    /// A built-in classifier (`fashion` from `models`, the shipped stack's
    /// folder; the others from `home`) or a sidecar file.
    pub fn named(name: &str, home: &Path, models: &Path) -> Result<Self> {
        if is_sidecar(name) {
            return load(Path::new(name))?.classifier();
        }
        match name {
            "efficientnet-lite0" => {
                use super::efficientnet_lite::{EfficientNetLite0, IMAGE_SIZE, NUM_CLASSES};
                let c = super::pretrained::efficientnet_lite0(home, candle_core::DType::F32)?;
                let side = IMAGE_SIZE;
                let norm = build::net((side, side, 3), vec![EfficientNetLite0::normalise_op()])?;
                let names = crate::data::imagenet::class_names();
                debug_assert_eq!(names.len(), NUM_CLASSES);
                Ok(Self {
                    name: name.into(),
                    net: norm.then(c.compile(side)?)?,
                    image: (3, side, side),
                    range: (0.0, 1.0),
                    class_names: names.into_iter().map(String::from).collect(),
                    provenance: package(&super::pretrained::EFFICIENTNET_LITE0),
                })
            }
            "fashion" | "fashion-guide" => {
                use crate::data::fashion_mnist::{CLASS_NAMES, SIDE};
                let dev = candle_core::Device::Cpu;
                let network = match name {
                    "fashion" => "classifier",
                    _ => "guide",
                };
                let (c, card) = super::fashion::load(
                    models,
                    network,
                    candle_core::DType::F32,
                    &dev,
                    super::fashion::Classifier::new,
                )?;
                Ok(Self {
                    name: name.into(),
                    net: c.compile()?,
                    image: (1, SIDE, SIDE),
                    range: (0.0, 1.0),
                    class_names: CLASS_NAMES.iter().map(|s| s.to_string()).collect(),
                    provenance: serde_json::json!({"name": format!("fashion {network}"), "weights_sha256": card.weights_sha256}),
                })
            }
            other => Err(Error::unknown(
                "classifier for a plug-and-play pair",
                other,
                &[CLASSIFIERS, &["FILE.toml (a sidecar, docs/onnx.md)"]].concat(),
            )),
        }
    }
}

fn package(pkg: &super::pretrained::Package) -> serde_json::Value {
    serde_json::json!({"name": pkg.name, "package": pkg.requirement, "sha256": pkg.file_sha256})
}

/// Per-channel mean and std of a classifier's input, and its pixel range.
type Normalisation = (Vec<f64>, Vec<f64>, (f64, f64));
