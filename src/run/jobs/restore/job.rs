//! A restoration job: the true images (`test:N`, `test:A-B`, `val:...` or
//! a file),
//! and the run folder of their restoration.

use std::path::PathBuf;

use candle_core::{Device, Tensor};

use super::draws::{pixels, restore, Damage, Restored};
use super::paper::{check, Inpainting, PaperInpaint};
use super::summary::{score, summarise, Scores, Summary};
use crate::data::image::hwc_to_chw;
use crate::density::observation::Operator;
use crate::error::{Error, Result};
use crate::run::config::preset::SamplerConfig;
use crate::run::config::restore::{degradations, written};
use crate::run::config::spec::Networks;
use crate::run::drive::progress::Progress;
use crate::run::output::folder::RunFolder;
use crate::run::pairs::pair::Pair;

/// Which true images a restoration damages.
#[derive(Debug, Clone, PartialEq)]
pub enum Truths {
    /// Test images of the pair's data set, `test:N` or `test:A-B` (both
    /// ends included).
    Test(std::ops::RangeInclusive<usize>),
    /// Images of its validation split, `val:N` or `val:A-B`: for choosing
    /// settings before they are measured on test images.
    Validation(std::ops::RangeInclusive<usize>),
    /// Images from a file (`crate::data::images::read`: a `.npy` of
    /// `[n, c, h, w]` in [0, 1], a PNG, or a folder of PNGs).
    File(PathBuf),
}

impl std::fmt::Display for Truths {
    /// As `--image` takes it: `test:N`, `test:A-B`, `val:...` or the file.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (split, r) = match self {
            Truths::Test(r) => ("test", r),
            Truths::Validation(r) => ("val", r),
            Truths::File(p) => return write!(f, "{}", p.display()),
        };
        match r.start() == r.end() {
            true => write!(f, "{split}:{}", r.start()),
            false => write!(f, "{split}:{}-{}", r.start(), r.end()),
        }
    }
}

impl Truths {
    /// `test:N`, `test:A-B`, `val:N`, `val:A-B`, or a file's path.
    pub fn parse(s: &str) -> Result<Self> {
        let (t, split): (&str, fn(_) -> Self) =
            match (s.strip_prefix("test:"), s.strip_prefix("val:")) {
                (Some(t), _) => (t, Truths::Test),
                (_, Some(t)) => (t, Truths::Validation),
                _ => return Ok(Truths::File(s.into())),
            };
        let bad = || {
            Error::setting(
                "image",
                format!("{s:?}"),
                "test:N, test:A-B, val:N, val:A-B (A <= B) or a file",
            )
        };
        let (a, b) = t.split_once('-').unwrap_or((t, t));
        match (a.trim().parse::<usize>(), b.trim().parse::<usize>()) {
            (Ok(a), Ok(b)) if a <= b => Ok(split(a..=b)),
            _ => Err(bad()),
        }
    }

    /// The images of `ppgn restore --eval`: `N` (test images 0 to N-1),
    /// `test:A-B` or `val:A-B` (images whose truth is known).
    pub fn eval(n: &str) -> Result<Self> {
        let want = "a number of test images (1 or more), test:A-B or val:A-B: images of the pair's data set, whose truth is known";
        match n.parse::<usize>() {
            Ok(0) => Err(Error::setting("eval", "0", want)),
            Ok(n) => Ok(Truths::Test(0..=n - 1)),
            Err(_) => match Truths::parse(n)? {
                Truths::File(_) => Err(Error::setting("eval", format!("{n:?}"), want)),
                t => Ok(t),
            },
        }
    }

    /// Image `i` of the pair's data set and its label, for `Test` and
    /// `Validation`.
    fn labelled(&self, pair: &dyn Pair, i: usize) -> Result<(Tensor, usize)> {
        match self {
            Truths::Validation(_) => pair.validation_image(i),
            _ => pair.real_image(i),
        }
    }

    /// The images `[k, h, w, c]` at the pair's image size `image`.
    pub fn load(&self, pair: &dyn Pair, image: (usize, usize, usize)) -> Result<Tensor> {
        match self {
            Truths::Test(r) | Truths::Validation(r) => {
                let rows: Vec<Tensor> = r
                    .clone()
                    .map(|i| Ok(self.labelled(pair, i)?.0))
                    .collect::<Result<_>>()?;
                Ok(Tensor::cat(&rows, 0)?)
            }
            Truths::File(p) => {
                let im = crate::data::images::read(p)?;
                if im.hwc != image {
                    return Err(Error::shape(
                        format!("the images in {}", p.display()),
                        format!("{image:?} (h, w, c), what the generator makes"),
                        format!("{:?}", im.hwc),
                    ));
                }
                Ok(Tensor::from_vec(
                    im.values,
                    (im.n, image.0, image.1, image.2),
                    &Device::Cpu,
                )?)
            }
        }
    }
}

/// A restoration job: what `ppgn restore` asks for.
#[derive(Debug, Clone)]
pub struct RestoreSpec {
    pub networks: Networks,
    /// Fashion-MNIST folder (for `test:N` on the shipped stack).
    pub data_dir: Option<PathBuf>,
    pub truths: Truths,
    pub damage: Damage,
    /// The first paper's inpainting in place of the likelihood
    /// (`--preset paper-inpaint`).
    pub paper: Option<PaperInpaint>,
    pub settings: SamplerConfig,
    /// Chains per image.
    pub chains: usize,
    /// Record a draw every this many steps (those of the second half are
    /// the draws).
    pub record_every: usize,
    pub seed: u64,
    pub out: PathBuf,
    pub force: bool,
    /// Enlarge each image of `restore.png` this many times.
    pub scale: Option<usize>,
    /// The command line, for the manifest.
    pub command: String,
}

/// Runs `spec`: loads the pair and the images, restores them, and writes
/// the run folder (`truth.npy`, `observed.npy`, `mean.npy`, `std.npy`,
/// `q05.npy`, `q95.npy`, `samples.npy`, `restore.png`, `manifest.json`);
/// returns the summary line.
pub fn job(spec: &RestoreSpec, progress: &mut dyn Progress) -> Result<String> {
    RunFolder::check(&spec.out, spec.force, false)?;
    if spec.paper.is_some() {
        check(&spec.damage.operator)?;
    }
    let pair = crate::run::pairs::load::pair(&spec.networks, spec.data_dir.as_deref())?;
    let image = pixels(&*pair)?;
    let tau = spec.damage.tau(&*pair)?;
    let noise = spec.damage.draw_noise(&*pair, &tau)?;
    let truths = spec.truths.load(&*pair, image)?;
    let paper = match &spec.paper {
        Some(p) => Some(inpainting(p, &*pair, &spec.truths, truths.dim(0)?)?),
        None => None,
    };
    let cfg = &spec.settings;
    let run = (cfg, spec.chains, spec.record_every, spec.seed);
    let r = restore(&*pair, &truths, &spec.damage, paper.as_ref(), run, progress)?;
    let s = summarise(&r, &noise, spec.seed);
    let truth: Vec<f32> = truths.flatten_all()?.to_vec1()?;
    let operator = Operator::new(
        degradations(&spec.damage.operator, (image.0, image.1), spec.seed)?,
        image,
    )?;
    let ones = vec![1.0; image.0 * image.1 * image.2];
    let unseen: Vec<bool> = operator
        .adjoint(&operator.apply(&ones))
        .iter()
        .map(|&v| v == 0.0)
        .collect();
    let scores = score(&truth, &s, &unseen);
    let folder = RunFolder::open(&spec.out, spec.force, false)?.with_scale(spec.scale);
    write(&folder, &r, &s, &truth)?;
    let mean = |f: &dyn Fn(&Scores) -> f64| scores.iter().map(f).sum::<f64>() / scores.len() as f64;
    let manifest = serde_json::json!({
        "command": spec.command,
        "networks": spec.networks,
        "images": spec.truths.to_string(),
        "operator": written(&spec.damage.operator),
        "noise_std": spec.damage.noise_std,
        "tau": super::draws::tau_rms(&tau),
        "tau_per_pixel": (tau.len() > 1).then_some(&tau),
        "draw_error": noise.kind(),
        "sampler": cfg,
        "paper_inpaint": paper.as_ref().map(|p| serde_json::json!({
            "classes": p.classes.iter().map(|&c| pair.class_names()[c].clone()).collect::<Vec<_>>(),
            "context_weight": p.context_weight,
        })),
        "chains_per_image": spec.chains,
        "draws_per_image": r.draws_per_image,
        "grad_evals_per_chain": r.grad_evals,
        "acceptance": r.acceptance,
        "seed": spec.seed,
        "per_image": scores,
        "mean_psnr": mean(&|s| s.psnr),
        "mean_coverage": mean(&|s| s.coverage),
        "models": pair.models(),
    });
    folder.json("manifest.json", &manifest)?;
    let dir = folder.finish()?;
    Ok(format!(
        "{} images restored, {} draws each: mean PSNR {:.2} dB, 90% intervals cover {:.3} of true pixels (acceptance {:.3}); wrote {}",
        scores.len(),
        r.draws_per_image,
        mean(&|s| s.psnr),
        mean(&|s| s.coverage),
        r.acceptance,
        dir.display()
    ))
}

/// What the paper's inpainting conditions the `k` images on: `--class`
/// for every image, else each data-set image's label (as the paper's figures
/// condition on the class of the real image); images from a file need
/// `--class`.
fn inpainting(p: &PaperInpaint, pair: &dyn Pair, truths: &Truths, k: usize) -> Result<Inpainting> {
    let classes = match (&p.class, truths) {
        (Some(c), _) => vec![pair.parse_class(c)?; k],
        (None, Truths::Test(r) | Truths::Validation(r)) => r
            .clone()
            .map(|i| Ok(truths.labelled(pair, i)?.1))
            .collect::<Result<_>>()?,
        (None, Truths::File(f)) => {
            return Err(Error::setting(
                "class",
                format!("none for the images of {}", f.display()),
                "--class NAME: the paper's inpainting conditions on a class, and only the data set's images (test:N, val:N) have a label",
            ))
        }
    };
    Ok(Inpainting {
        classes,
        context_weight: p.context_weight,
    })
}

/// The arrays (`[k, c, h, w]`; draws `[k, d, c, h, w]`) and `restore.png`:
/// a row per image of the truth, the observation (blown up to the image's
/// size), the mean, the spread (x4), the 5% and 95% images and the first
/// draws.
fn write(folder: &RunFolder, r: &Restored, s: &Summary, truth: &[f32]) -> Result<()> {
    let (h, w, c) = r.image;
    let (oh, ow, oc) = r.observation;
    let per = h * w * c;
    let k = truth.len() / per;
    let chw = |v: &[f32], n: usize| hwc_to_chw(v, n, r.image);
    folder.npy_f32("truth.npy", &[k, c, h, w], &chw(truth, k))?;
    let observed = hwc_to_chw(&r.observed, k, r.observation);
    folder.npy_f32("observed.npy", &[k, oc, oh, ow], &observed)?;
    for (name, v) in [
        ("mean", &s.mean),
        ("std", &s.std),
        ("q05", &s.q05),
        ("q95", &s.q95),
    ] {
        folder.npy_f32(&format!("{name}.npy"), &[k, c, h, w], &chw(v, k))?;
    }
    let d = r.draws_per_image;
    folder.npy_f32("samples.npy", &[k, d, c, h, w], &chw(&r.draws, k * d))?;
    let shown = d.min(4);
    let mut rows = Vec::new();
    for i in 0..k {
        let at = |v: &[f32]| v[i * per..(i + 1) * per].to_vec();
        rows.extend(at(truth));
        rows.extend(blown_up(
            &r.observed[i * oh * ow * oc..(i + 1) * oh * ow * oc],
            r.observation,
            r.image,
        ));
        rows.extend(at(&s.mean));
        rows.extend(at(&s.std).iter().map(|v| (4.0 * v).min(1.0)));
        rows.extend(at(&s.q05));
        rows.extend(at(&s.q95));
        rows.extend_from_slice(&r.draws[i * d * per..(i * d + shown) * per]);
    }
    let cols = 6 + shown;
    let clamped: Vec<f32> = rows.iter().map(|v| v.clamp(0.0, 1.0)).collect();
    folder.grid("restore.png", &clamped, k * cols, r.image, cols)
}

/// An observation `(oh, ow, oc)` shown at the image's size by repeating
/// each value over its block (channels: the image's, the observation's
/// repeated when it has one).
fn blown_up(
    y: &[f32],
    (oh, ow, oc): (usize, usize, usize),
    (h, w, c): (usize, usize, usize),
) -> Vec<f32> {
    let mut x = Vec::with_capacity(h * w * c);
    for row in 0..h {
        for col in 0..w {
            for ch in 0..c {
                let (r, q) = (row * oh / h, col * ow / w);
                x.push(y[(r * ow + q) * oc + ch.min(oc - 1)]);
            }
        }
    }
    x
}
