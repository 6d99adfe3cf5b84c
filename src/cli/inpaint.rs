//! `ppgn inpaint`: fill the masked region of a real test image conditioned
//! on a class ("Plug & Play Generative Networks" (supplementary), S10): the sampler's usual
//! target plus the context term on the known pixels, which are clamped to
//! the real ones in the output.

use std::path::PathBuf;

use anyhow::{bail, Context};
use candle_core::{DType, Device, Tensor};
use clap::Args;
use rand::{Rng, SeedableRng};

use super::sample::{run_with, InpaintSpec, SampleArgs};
use ppgn::data::fashion_mnist::{self, Split, SIDE};

#[derive(Args, Debug)]
#[command(
    after_help = "Example: ppgn inpaint --class dress --image test:123 --mask 12x12@8,8\n\
Writes inpaint.png (original, masked input, then each chain's fill) beside the files of \
`ppgn sample`."
)]
pub struct InpaintArgs {
    /// The image to complete: `test:INDEX` from the Fashion-MNIST test set.
    #[arg(long)]
    pub image: String,
    /// What to fill: `WxH@X,Y` (a patch with its top-left corner at X,Y),
    /// `random` (a 12x12 patch placed by --seed), or a 28x28 PNG whose white pixels are filled.
    #[arg(long, default_value = "random")]
    pub mask: String,
    /// Weight of the context term `|(1 - M) * (x_real - x)|^2`.
    #[arg(long, default_value_t = 1.0)]
    pub context_weight: f64,
    #[command(flatten)]
    pub sample: SampleArgs,
}

fn patch(w: usize, h: usize, x: usize, y: usize) -> anyhow::Result<Vec<f32>> {
    if w == 0 || h == 0 || x + w > SIDE || y + h > SIDE {
        bail!("mask {w}x{h}@{x},{y} does not fit in a {SIDE}x{SIDE} image");
    }
    let mut m = vec![0f32; SIDE * SIDE];
    for r in y..y + h {
        for c in x..x + w {
            m[r * SIDE + c] = 1.0;
        }
    }
    Ok(m)
}

fn parse_mask(spec: &str, seed: u64) -> anyhow::Result<Vec<f32>> {
    if spec == "random" {
        let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x3a5c);
        return patch(12, 12, r.random_range(0..=16), r.random_range(0..=16));
    }
    if let Some((wh, xy)) = spec.split_once('@') {
        let num = |s: &str| s.trim().parse::<usize>().ok();
        if let (Some((w, h)), Some((x, y))) = (wh.split_once('x'), xy.split_once(',')) {
            if let (Some(w), Some(h), Some(x), Some(y)) = (num(w), num(h), num(x), num(y)) {
                return patch(w, h, x, y);
            }
        }
        bail!("--mask {spec:?}: expected WxH@X,Y, random, or a PNG file");
    }
    let path = PathBuf::from(spec);
    let file = std::fs::File::open(&path).with_context(|| {
        format!("--mask {spec:?}: not WxH@X,Y or random, and not a readable PNG file")
    })?;
    let mut dec = png::Decoder::new(std::io::BufReader::new(file));
    dec.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = dec
        .read_info()
        .with_context(|| format!("{}: not a PNG", path.display()))?;
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader
        .next_frame(&mut buf)
        .with_context(|| format!("{}: unreadable PNG", path.display()))?;
    if (info.width as usize, info.height as usize) != (SIDE, SIDE) {
        bail!(
            "{}: mask is {}x{}, expected {SIDE}x{SIDE}",
            path.display(),
            info.width,
            info.height
        );
    }
    let ch = info.color_type.samples();
    Ok((0..SIDE * SIDE)
        .map(|i| if buf[i * ch] >= 128 { 1.0 } else { 0.0 })
        .collect())
}

pub fn run(a: InpaintArgs) -> anyhow::Result<()> {
    let device = Device::Cpu;
    let index: usize = a
        .image
        .strip_prefix("test:")
        .and_then(|i| i.parse().ok())
        .with_context(|| format!("--image {:?}: expected test:INDEX", a.image))?;
    if !(a.context_weight.is_finite() && a.context_weight >= 0.0) {
        bail!("--context-weight must be a finite non-negative number");
    }
    let test = fashion_mnist::load(
        &fashion_mnist::resolve_dir(a.sample.data_dir.as_deref()),
        Split::Test,
    )?;
    if index >= test.len() {
        bail!(
            "--image test:{index}: the test set has images 0..{}",
            test.len()
        );
    }
    let mask = parse_mask(&a.mask, a.sample.seed)?;
    if mask.iter().all(|&m| m == 0.0) {
        bail!("--mask {:?} covers no pixel: nothing to fill", a.mask);
    }
    let spec = InpaintSpec {
        real: test.images_tensor(&[index], &device)?,
        mask: Tensor::from_vec(mask, (1, SIDE, SIDE, 1), &device)?.to_dtype(DType::F32)?,
        context_weight: a.context_weight,
        describe: serde_json::json!({
            "image": a.image, "true_class": test.labels[index], "mask": a.mask,
            "context_weight": a.context_weight,
        }),
    };
    run_with(a.sample, Some(spec))
}
