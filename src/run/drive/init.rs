//! Where a run's chains start, on any pair ([`Starts`]): random draws of
//! the prior, the codes of real images (the pair's data set or a `.npy` of
//! images, through its encoder), positions from a `.npy`, or for
//! inpainting the code of the image with its hole blacked out. Files are
//! read and checked when the run is set up, before any chain runs.

use std::ops::Range;

use candle_core::{Device, Tensor};

use super::chains::Streams;
use crate::error::{Error, Result};
use crate::run::config::preset::SamplerConfig;
use crate::run::config::spec::Init;
use crate::run::pairs::pair::{Pair, Part};

/// Rows read from an `--init` file: their shape after the row count, and
/// their values.
struct Rows {
    rows: usize,
    shape: Vec<usize>,
    values: Vec<f32>,
}

impl Rows {
    /// Rows `chains` (one each; the one row for every chain when the file
    /// has one), as a tensor `[n, shape...]`.
    fn take(&self, chains: Range<usize>) -> Result<Tensor> {
        let per: usize = self.shape.iter().product();
        let mut v = Vec::with_capacity(chains.len() * per);
        for c in chains.clone() {
            let r = if self.rows == 1 { 0 } else { c };
            v.extend_from_slice(&self.values[r * per..(r + 1) * per]);
        }
        let mut dims = vec![chains.len()];
        dims.extend(&self.shape);
        Ok(Tensor::from_vec(v, dims, &Device::Cpu)?)
    }
}

/// The starts of a run: what `init` asks, on `pair`, for chains of `total`.
pub struct Starts<'a> {
    pub init: &'a Init,
    pub pair: &'a dyn Pair,
    pub seed: u64,
    /// Inpainting's real image `[1, h, w, c]` and mask, when inpainting.
    pub hole: Option<(&'a Tensor, &'a Tensor)>,
    file: Option<Rows>,
}

impl<'a> Starts<'a> {
    /// Checks `init` against the pair and the settings and reads its file
    /// (`total`: the run's chains, of every shard).
    pub fn new(
        init: &'a Init,
        pair: &'a dyn Pair,
        cfg: &SamplerConfig,
        seed: u64,
        hole: Option<(&'a Tensor, &'a Tensor)>,
        total: usize,
    ) -> Result<Self> {
        let k = cfg.start_candidates;
        if k > 1 && (*init != Init::Random || hole.is_some()) {
            return Err(Error::setting(
                "start_candidates",
                k,
                "1 when the chains start from an image or a file (--init, inpainting): only random starts are draws of the prior to resample",
            ));
        }
        let file = match init {
            Init::Codes(path) => {
                let code: Vec<usize> = {
                    let (h, w, c) = pair.cost_net(cfg)?.input();
                    match (h, w) {
                        (1, 1) => vec![c],
                        _ => vec![h, w, c],
                    }
                };
                Some(read_rows(path, &code, "codes", total)?)
            }
            Init::Images(path) => {
                let (h, w, c) = pair.image();
                let mut rows = read_rows(path, &[c, h, w], "images", total)?;
                rows.values = crate::data::image::chw_to_hwc(&rows.values, rows.rows, (h, w, c));
                rows.shape = vec![h, w, c];
                Some(rows)
            }
            _ => None,
        };
        Ok(Self {
            init,
            pair,
            seed,
            hole,
            file,
        })
    }

    /// The starting positions of chains `chains` (global ids).
    pub fn of(&self, cfg: &SamplerConfig, chains: Range<usize>) -> Result<Tensor> {
        let n = chains.len();
        let pair = self.pair;
        let images = match (self.init, self.hole) {
            (Init::Random, Some((real, mask))) if pair.has(Part::Encoder) => {
                let known = mask.affine(-1.0, 1.0)?;
                (real * known)?
            }
            (Init::Random, _) => {
                let streams = Streams {
                    seed: self.seed,
                    first: chains.start,
                };
                return pair.random_starts(cfg, streams, n);
            }
            (Init::Test(i), _) => pair.real_image(*i)?.0,
            (Init::Codes(_), _) => return self.rows().take(chains),
            (Init::Images(_), _) => return pair.encode(cfg, &self.rows().take(chains)?),
        };
        pair.encode(cfg, &images.repeat((n, 1, 1, 1))?)
    }

    fn rows(&self) -> &Rows {
        self.file.as_ref().expect("read by Starts::new")
    }
}

/// A `.npy` of rows of `shape`, one per chain of `total` or one for all.
fn read_rows(path: &std::path::Path, shape: &[usize], what: &str, total: usize) -> Result<Rows> {
    let (dims, values) = crate::data::npy::read_f32(path)?;
    let rows = dims.first().copied().unwrap_or(0);
    if dims.len() != shape.len() + 1 || dims[1..] != *shape || rows == 0 {
        return Err(Error::shape(
            format!("--init {what}:{}", path.display()),
            format!("[rows, {}] float32 {what} of this pair", join(shape)),
            format!("{dims:?}"),
        ));
    }
    if rows != 1 && rows < total {
        return Err(Error::setting(
            "init",
            format!("{} ({rows} rows)", path.display()),
            format!("one row for every chain, or a row per chain (at least {total})"),
        ));
    }
    if values.iter().any(|v| !v.is_finite()) {
        return Err(Error::data(
            path,
            format!("{what} hold a NaN or an infinity"),
        ));
    }
    Ok(Rows {
        rows,
        shape: shape.to_vec(),
        values,
    })
}

fn join(shape: &[usize]) -> String {
    shape
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
