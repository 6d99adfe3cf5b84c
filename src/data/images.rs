//! A set of real images from a file a user names: a `.npy` of float32
//! `[n, c, h, w]` in [0, 1] (what `ppgn sample` writes), an IDX file of
//! bytes `[n, h, w]` (gzipped or not; MNIST's format), one PNG, or a folder
//! of PNG files (grey or RGB, all of one size, read in name order).

use std::path::Path;

use crate::error::{Error, Result};

/// Images `[n, h, w, c]` in [0, 1], flat, with their shape.
#[derive(Debug, Clone)]
pub struct Images {
    pub n: usize,
    pub hwc: (usize, usize, usize),
    pub values: Vec<f32>,
}

/// Reads the images at `path` (see the module's formats).
pub fn read(path: &Path) -> Result<Images> {
    if path.is_dir() {
        return read_pngs(path);
    }
    let name = path.to_string_lossy();
    if name.to_ascii_lowercase().ends_with(".png") {
        let (hwc, values) = read_png(path)?;
        return Ok(Images { n: 1, hwc, values });
    }
    if name.ends_with(".npy") {
        let (shape, v) = super::npy::read_f32(path)?;
        return match shape.as_slice() {
            &[n, c, h, w] if c == 1 || c == 3 => Ok(Images {
                n,
                hwc: (h, w, c),
                values: super::image::chw_to_hwc(&v, n, (h, w, c)),
            }),
            other => Err(Error::shape(
                format!("images in {}", path.display()),
                "[n, 1 or 3, h, w] float32 in [0, 1]",
                format!("{other:?}"),
            )),
        };
    }
    let a = super::idx::read_idx(path, 3)?;
    let (n, h, w) = (a.dims[0], a.dims[1], a.dims[2]);
    Ok(Images {
        n,
        hwc: (h, w, 1),
        values: a.data.iter().map(|&b| b as f32 / 255.0).collect(),
    })
}

fn read_pngs(dir: &Path) -> Result<Images> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("png")))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::data(dir, "no .png files in the folder"));
    }
    let mut values = Vec::new();
    let mut hwc = None;
    for f in &files {
        let (shape, v) = read_png(f)?;
        match hwc {
            None => hwc = Some(shape),
            Some(s) if s != shape => {
                return Err(Error::shape(
                    format!("image {}", f.display()),
                    format!("{}x{}x{}, as the first image", s.0, s.1, s.2),
                    format!("{}x{}x{}", shape.0, shape.1, shape.2),
                ))
            }
            _ => {}
        }
        values.extend(v);
    }
    Ok(Images {
        n: files.len(),
        hwc: hwc.unwrap_or((0, 0, 0)),
        values,
    })
}

/// One PNG as `[h, w, c]` in [0, 1]: grey stays grey, anything else is RGB
/// (alpha dropped).
fn read_png(path: &Path) -> Result<((usize, usize, usize), Vec<f32>)> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut dec = png::Decoder::new(std::io::BufReader::new(file));
    dec.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = dec
        .read_info()
        .map_err(|e| Error::data(path, format!("not a PNG: {e}")))?;
    let (w, h) = (reader.info().width as usize, reader.info().height as usize);
    if w * h > 4096 * 4096 {
        return Err(Error::data(path, format!("{w}x{h} is too large an image")));
    }
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader
        .next_frame(&mut buf)
        .map_err(|e| Error::data(path, format!("unreadable PNG: {e}")))?;
    let ch = info.color_type.samples();
    let c = if ch <= 2 { 1 } else { 3 };
    let mut v = Vec::with_capacity(h * w * c);
    for p in 0..h * w {
        for k in 0..c {
            v.push(buf[p * ch + k] as f32 / 255.0);
        }
    }
    Ok(((h, w, c), v))
}
