//! What `ppgn inpaint` adds to a run ("Plug & Play Generative Networks"
//! (supplementary), S10): the real image (a test image of the pair's data
//! set, or a PNG file of the generator's size) and the mask over the
//! generator's output, made at the generator's size from how it was given.

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::data::fashion_mnist::SIDE;
use crate::error::{Error, Result};

/// What `ppgn inpaint` adds to a run: a real image with a hole to fill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inpaint {
    /// Test image index of the pair's data set (when `file` is `None`).
    pub image: usize,
    /// A PNG file of the generator's image size in place of a test image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// `h * w` values of the generator's image, 1 where the pixel is to be
    /// filled; empty when the mask is made from `mask_spec` at the
    /// generator's size ([`Inpaint::mask_for`]).
    pub mask: Vec<f32>,
    /// How the mask was given, for the manifest.
    pub mask_spec: String,
    /// Weight of the context term `|(1 - M) * (x_real - x)|^2`.
    pub context_weight: f64,
}

impl Inpaint {
    /// What `ppgn inpaint` asks: `image` is `test:INDEX` or a PNG file,
    /// `mask` how the mask is given (made at the generator's size when the
    /// run starts, [`Inpaint::mask_for`]).
    pub fn asked(image: &str, mask: &str, context_weight: f64) -> Result<Self> {
        let (image, file) = match image.strip_prefix("test:") {
            Some(i) => {
                let i = i.parse().map_err(|_| {
                    Error::setting("image", format!("{image:?}"), "test:INDEX or a PNG file")
                })?;
                (i, None)
            }
            None => (0, Some(PathBuf::from(image))),
        };
        Ok(Self {
            image,
            file,
            mask: Vec::new(),
            mask_spec: mask.to_string(),
            context_weight,
        })
    }

    /// The name of the real image: `test:N` or the file.
    pub fn image_name(&self) -> String {
        match &self.file {
            Some(f) => f.display().to_string(),
            None => format!("test:{}", self.image),
        }
    }

    /// The mask of `spec` on a 28x28 image ([`Inpaint::mask_sized`]).
    pub fn mask(spec: &str, seed: u64) -> Result<Vec<f32>> {
        Self::mask_sized(spec, seed, (SIDE, SIDE))
    }

    /// The mask of `spec` on an `h x w` image: `WxH@X,Y` (a patch with its
    /// top-left corner at column X, row Y), `random` (a patch of 12/28 of
    /// the side placed by `seed`), or the path of an `h x w` PNG whose white
    /// pixels are filled.
    pub fn mask_sized(spec: &str, seed: u64, hw: (usize, usize)) -> Result<Vec<f32>> {
        let mask = if spec == "random" {
            let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x3a5c);
            let (ph, pw) = ((hw.0 * 12).div_ceil(28), (hw.1 * 12).div_ceil(28));
            let (y, x) = (r.random_range(0..=hw.0 - ph), r.random_range(0..=hw.1 - pw));
            patch(pw, ph, x, y, hw)?
        } else if let Some((wh, xy)) = spec.split_once('@') {
            let num = |s: &str| s.trim().parse::<usize>().ok();
            let dims = wh.split_once('x').zip(xy.split_once(','));
            match dims.map(|((w, h), (x, y))| (num(w), num(h), num(x), num(y))) {
                Some((Some(w), Some(h), Some(x), Some(y))) => patch(w, h, x, y, hw)?,
                _ => {
                    return Err(Error::setting(
                        "mask",
                        format!("{spec:?}"),
                        "WxH@X,Y, random, or a PNG file",
                    ))
                }
            }
        } else {
            png_mask(&PathBuf::from(spec), hw)?
        };
        if mask.iter().all(|&m| m == 0.0) {
            return Err(Error::setting(
                "mask",
                format!("{spec:?}"),
                "a mask that covers at least one pixel (nothing to fill)",
            ));
        }
        Ok(mask)
    }

    /// The mask on an image of shape `(h, w, c)`, `[1, h, w, c]` (the
    /// same on every channel): the given values, or `mask_spec`'s.
    pub fn mask_for(&self, seed: u64, (h, w, c): (usize, usize, usize)) -> Result<Tensor> {
        let m = match self.mask.len() {
            0 => Self::mask_sized(&self.mask_spec, seed, (h, w))?,
            n if n == h * w => self.mask.clone(),
            n => {
                return Err(Error::shape(
                    "inpainting mask",
                    format!("{h}x{w} values, the generator's image"),
                    n,
                ))
            }
        };
        let t = Tensor::from_vec(m, (1, h, w, 1), &Device::Cpu)?.to_dtype(DType::F32)?;
        Ok(t.repeat((1, 1, 1, c))?)
    }
}

fn patch(w: usize, h: usize, x: usize, y: usize, (ih, iw): (usize, usize)) -> Result<Vec<f32>> {
    let inside =
        |at: usize, len: usize, side: usize| at.checked_add(len).is_some_and(|end| end <= side);
    if w == 0 || h == 0 || !inside(x, w, iw) || !inside(y, h, ih) {
        return Err(Error::setting(
            "mask",
            format!("{w}x{h}@{x},{y}"),
            format!("a patch inside the {iw}x{ih} image"),
        ));
    }
    let mut m = vec![0f32; ih * iw];
    for r in y..y + h {
        m[r * iw + x..r * iw + x + w].fill(1.0);
    }
    Ok(m)
}

fn png_mask(path: &std::path::Path, (ih, iw): (usize, usize)) -> Result<Vec<f32>> {
    let file = std::fs::File::open(path).map_err(|e| {
        Error::data(
            path,
            format!("not WxH@X,Y or random, and not a readable PNG file ({e})"),
        )
    })?;
    let mut dec = png::Decoder::new(std::io::BufReader::new(file));
    dec.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = dec
        .read_info()
        .map_err(|e| Error::data(path, format!("not a PNG: {e}")))?;
    // the size is checked before the pixels are allocated
    let (w, h) = (reader.info().width, reader.info().height);
    if (w as usize, h as usize) != (iw, ih) {
        return Err(Error::shape(
            format!("mask {}", path.display()),
            format!("{iw}x{ih}, the generator's image"),
            format!("{w}x{h}"),
        ));
    }
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader
        .next_frame(&mut buf)
        .map_err(|e| Error::data(path, format!("unreadable PNG: {e}")))?;
    let ch = info.color_type.samples();
    Ok((0..ih * iw)
        .map(|i| if buf[i * ch] >= 128 { 1.0 } else { 0.0 })
        .collect())
}
