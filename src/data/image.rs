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
        return Err(Error::shape("image grid", "1 or 3 channels", c));
    }
    if images.len() != n * h * w * c {
        return Err(Error::shape(
            "image grid",
            format!("{} values ({n} images of {h}x{w}x{c})", n * h * w * c),
            images.len(),
        ));
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

/// Cells this many pixels tall at least, by default (`--scale`).
pub const MIN_CELL: usize = 96;

/// The smallest integer factor that makes an image `h` pixels tall at
/// least [`MIN_CELL`] pixels tall (1 for images that already are).
pub fn default_scale(h: usize) -> usize {
    MIN_CELL.div_ceil(h.max(1)).max(1)
}

/// Images `[n, h, w, c]` enlarged `s` times by repeating each pixel
/// (nearest neighbour: the pixels stay as they are, only bigger).
pub fn upscale(images: &[f32], n: usize, (h, w, c): (usize, usize, usize), s: usize) -> Vec<f32> {
    if s <= 1 {
        return images.to_vec();
    }
    let (hs, ws) = (h * s, w * s);
    let mut out = Vec::with_capacity(images.len() * s * s);
    for i in 0..n {
        for y in 0..hs {
            let row = &images[((i * h + y / s) * w) * c..((i * h + y / s) * w + w) * c];
            for x in 0..ws {
                out.extend_from_slice(&row[(x / s) * c..(x / s + 1) * c]);
            }
        }
    }
    out
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
        let mut writer = enc.write_header().map_err(|e| Error::external("png", e))?;
        writer
            .write_image_data(pixels)
            .map_err(|e| Error::external("png", e))?;
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

/// 3x5 pixel glyphs for labels: digits, '.', '-' (rows top to bottom,
/// 3 bits each, most significant bit on the left).
fn glyph(c: char) -> Option<[u8; 5]> {
    Some(match c {
        '0' => [7, 5, 5, 5, 7],
        '1' => [2, 6, 2, 2, 7],
        '2' => [7, 1, 7, 4, 7],
        '3' => [7, 1, 7, 1, 7],
        '4' => [5, 5, 7, 1, 1],
        '5' => [7, 4, 7, 1, 7],
        '6' => [7, 4, 7, 5, 7],
        '7' => [7, 1, 1, 1, 1],
        '8' => [7, 5, 7, 5, 7],
        '9' => [7, 5, 7, 1, 7],
        '.' => [0, 0, 0, 0, 2],
        '-' => [0, 0, 7, 0, 0],
        _ => return None,
    })
}

/// Height added under each image for its label.
pub const LABEL_HEIGHT: usize = 7;

/// Like [`grid`], with a text label under each image (digits, '.', '-';
/// other characters are left blank), every tile and its label enlarged
/// `scale` times.
pub fn labelled_grid(
    images: &[f32],
    n: usize,
    (h, w, c): (usize, usize, usize),
    cols: usize,
    labels: &[String],
    scale: usize,
) -> Result<(Vec<u8>, usize, usize)> {
    if labels.len() != n {
        return Err(Error::shape(
            "labelled grid",
            format!("{n} labels, one per image"),
            labels.len(),
        ));
    }
    if images.len() != n * h * w * c {
        return Err(Error::shape(
            "labelled grid",
            format!("{n} images of {h}x{w}x{c}"),
            images.len(),
        ));
    }
    // each tile: the image, then a white strip with the label in black
    let th = h + LABEL_HEIGHT;
    let per = h * w * c;
    let mut tiles = vec![1.0f32; n * th * w * c];
    for i in 0..n {
        let tile = &mut tiles[i * th * w * c..(i + 1) * th * w * c];
        tile[..per].copy_from_slice(&images[i * per..(i + 1) * per]);
        let mut x0 = 1;
        for ch in labels[i].chars() {
            if x0 + 3 > w {
                break;
            }
            if let Some(g) = glyph(ch) {
                for (r, bits) in g.iter().enumerate() {
                    for b in 0..3 {
                        if bits & (4 >> b) != 0 {
                            let at = ((h + 1 + r) * w + x0 + b) * c;
                            tile[at..at + c].fill(0.0);
                        }
                    }
                }
            }
            x0 += 4;
        }
    }
    let s = scale.max(1);
    grid(
        &upscale(&tiles, n, (th, w, c), s),
        n,
        (th * s, w * s, c),
        cols,
        2,
    )
}

/// Writes an animated grey GIF of `frames` (each already a grid of `w x h`
/// 8-bit pixels), `delay_cs` hundredths of a second per frame, looping.
pub fn save_gif(path: &Path, frames: &[Vec<u8>], w: usize, h: usize, delay_cs: u16) -> Result<()> {
    save_gif_channels(path, frames, (w, h, 1), delay_cs)
}

/// [`save_gif`] of grey (`c = 1`) or RGB (`c = 3`, each frame quantised
/// to its own palette) frames.
pub fn save_gif_channels(
    path: &Path,
    frames: &[Vec<u8>],
    (w, h, c): (usize, usize, usize),
    delay_cs: u16,
) -> Result<()> {
    let palette: Vec<u8> = (0..=255u8).flat_map(|v| [v, v, v]).collect();
    let mut buf = Vec::new();
    {
        let mut enc = gif::Encoder::new(&mut buf, w as u16, h as u16, &palette)
            .map_err(|e| Error::external("gif", e))?;
        enc.set_repeat(gif::Repeat::Infinite)
            .map_err(|e| Error::external("gif", e))?;
        for f in frames {
            let mut frame = match c {
                3 => gif::Frame::from_rgb_speed(w as u16, h as u16, f, 10),
                _ => gif::Frame::from_indexed_pixels(w as u16, h as u16, f.clone(), None),
            };
            frame.delay = delay_cs;
            enc.write_frame(&frame)
                .map_err(|e| Error::external("gif", e))?;
        }
    }
    write_atomic(path, &buf)
}

/// `n` images from `[n, c, h, w]` order to `[n, h, w, c]`.
pub fn chw_to_hwc(v: &[f32], n: usize, (h, w, c): (usize, usize, usize)) -> Vec<f32> {
    transpose_blocks(v, n, c, h * w)
}

/// `n` images from `[n, h, w, c]` order to `[n, c, h, w]`.
pub fn hwc_to_chw(v: &[f32], n: usize, (h, w, c): (usize, usize, usize)) -> Vec<f32> {
    transpose_blocks(v, n, h * w, c)
}

/// `n` row-major `a x b` blocks, each transposed to `b x a`.
fn transpose_blocks(v: &[f32], n: usize, a: usize, b: usize) -> Vec<f32> {
    if a == 1 || b == 1 {
        return v.to_vec();
    }
    let mut out = vec![0f32; v.len()];
    for k in 0..n {
        let (src, dst) = (
            &v[k * a * b..(k + 1) * a * b],
            &mut out[k * a * b..(k + 1) * a * b],
        );
        for i in 0..a {
            for j in 0..b {
                dst[j * a + i] = src[i * b + j];
            }
        }
    }
    out
}
