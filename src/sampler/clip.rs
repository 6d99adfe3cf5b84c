//! Clipping of positions to bounds: DGN-AM's box on `h` (post-ReLU fc6 in
//! [0, 30] in the original code) or per-unit bounds `[0, k * sigma_j]`
//! estimated from the training codes. Clipping after a Metropolis-Hastings
//! step breaks exactness: the kernel no longer leaves the target invariant
//! (Xu et al.'s "MALA with clipping" trades that for fewer iterations).

use candle_core::Tensor;

use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub enum Clip {
    /// The same `[lo, hi]` for every coordinate.
    Box { lo: f64, hi: f64 },
    /// Per-coordinate bounds, each shaped like one chain's position (`[1, ...]`).
    PerUnit { lo: Tensor, hi: Tensor },
}

impl Clip {
    pub fn new_box(lo: f64, hi: f64) -> Result<Self> {
        if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
            return Err(Error::setting(
                "clip bounds",
                format!("[{lo}, {hi}]"),
                "finite lo <= hi",
            ));
        }
        Ok(Clip::Box { lo, hi })
    }

    /// Per-unit `[0, k * std_j]` from sample codes `[n, d]` (the original code's rule).
    pub fn per_unit_from_codes(codes: &Tensor, k: f64) -> Result<Self> {
        let mean = codes.mean_keepdim(0)?;
        let std = codes.broadcast_sub(&mean)?.sqr()?.mean_keepdim(0)?.sqrt()?;
        Ok(Clip::PerUnit {
            lo: std.zeros_like()?,
            hi: (std * k)?,
        })
    }

    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Clip::Box { lo, hi } => x.clamp(*lo, *hi)?,
            Clip::PerUnit { lo, hi } => x
                .broadcast_maximum(&lo.to_dtype(x.dtype())?)?
                .broadcast_minimum(&hi.to_dtype(x.dtype())?)?,
        })
    }
}
