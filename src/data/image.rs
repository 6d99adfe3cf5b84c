//! Image grids as PNG. Images come in as NHWC f32 in [0, 1].

use std::path::Path;

use crate::error::{Error, Result};
use crate::fsutil::write_atomic;

/// A grid of `n` images of `h x w x c` (c = 1 or 3) laid out in `cols`
/// columns with `pad` pixels of white between them; returns 8-bit pixels
/// (grey or RGB) and the grid's width and height.
pub fn grid(
    images: &[f32],
    n: usize,
    (h, w, c): (usize, usize, usize),
    cols: usize,
    pad: usize,
) -> Result<(Vec<u8>, usize, usize)> {
    if c != 1 && c != 3 {
        return Err(Error::Invalid(format!(
            "image grid: {c} channels, expected 1 or 3"
        )));
    }
    if images.len() != n * h * w * c {
        return Err(Error::Invalid(format!(
            "image grid: {} values for {n} images of {h}x{w}x{c}",
            images.len()
        )));
    }
    let cols = cols.clamp(1, n.max(1));
    let rows = n.div_ceil(cols);
    let gw = cols * w + (cols + 1) * pad;
    let gh = rows * h + (rows + 1) * pad;
    let mut out = vec![255u8; gw * gh * c];
    for i in 0..n {
        let (r, k) = (i / cols, i % cols);
        let (oy, ox) = (pad + r * (h + pad), pad + k * (w + pad));
        for y in 0..h {
            for x in 0..w {
                for ch in 0..c {
                    let v = images[((i * h + y) * w + x) * c + ch];
                    let v = if v.is_finite() {
                        v.clamp(0.0, 1.0)
                    } else {
                        0.0
                    };
                    out[((oy + y) * gw + ox + x) * c + ch] = (v * 255.0).round() as u8;
                }
            }
        }
    }
    Ok((out, gw, gh))
}

/// Encodes 8-bit grey (`c = 1`) or RGB (`c = 3`) pixels as PNG bytes.
pub fn encode_png(pixels: &[u8], w: usize, h: usize, c: usize) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut buf, w as u32, h as u32);
        enc.set_color(if c == 1 {
            png::ColorType::Grayscale
        } else {
            png::ColorType::Rgb
        });
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc
            .write_header()
            .map_err(|e| Error::Invalid(format!("png: {e}")))?;
        writer
            .write_image_data(pixels)
            .map_err(|e| Error::Invalid(format!("png: {e}")))?;
    }
    Ok(buf)
}

/// Writes a grid of images to `path` as PNG, atomically.
pub fn save_grid(
    path: &Path,
    images: &[f32],
    n: usize,
    hwc: (usize, usize, usize),
    cols: usize,
) -> Result<()> {
    let (px, w, h) = grid(images, n, hwc, cols, 2)?;
    write_atomic(path, &encode_png(&px, w, h, hwc.2)?)
}
