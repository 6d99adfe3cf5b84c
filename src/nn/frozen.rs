//! Matrix products with a constant right-hand side (a frozen network's
//! weights while sampling). candle's backward of `matmul` always computes
//! the right-hand side's gradient too, a second product as large as the
//! forward one, and accumulates it into a buffer nobody reads; here the
//! product is computed outside the graph and attached to the input by an
//! op whose backward is only `dL/dx = dL/dy w^T`.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};

/// Passes `y` through, with the backward of `y = x w` for `x` only.
struct InputGradOnly {
    /// `w^T` (a view)
    wt: Tensor,
}

impl CustomOp2 for InputGradOnly {
    fn name(&self) -> &'static str {
        "matmul-input-grad-only"
    }
    fn cpu_fwd(
        &self,
        _x: &CpuStorage,
        _lx: &Layout,
        y: &CpuStorage,
        ly: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let Some((a, b)) = ly.contiguous_offsets() else {
            candle_core::bail!("matmul-input-grad-only: the product must be contiguous")
        };
        let out = match y {
            CpuStorage::F32(v) => CpuStorage::F32(v[a..b].to_vec()),
            CpuStorage::F64(v) => CpuStorage::F64(v[a..b].to_vec()),
            _ => candle_core::bail!("matmul-input-grad-only: f32 or f64 only"),
        };
        Ok((out, ly.shape().clone()))
    }
    fn bwd(
        &self,
        _x: &Tensor,
        _y: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(grad.matmul(&self.wt)?), None))
    }
}

/// `x w` for `x [m, k]` and `w [k, n]`. When `w` is a constant (no
/// gradient flows to it) and `x` needs a gradient, the backward computes
/// only `x`'s; otherwise this is candle's `matmul`.
pub fn matmul(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    if w.track_op() || !x.track_op() {
        return x.matmul(w);
    }
    let y = x.detach().matmul(w)?;
    // the same view candle's own backward multiplies by, so the same bits
    let wt = w.t()?;
    x.apply_op2(&y, InputGradOnly { wt })
}

/// A fully connected layer `x W^T + b` (weights `[out, in]` as in PyTorch)
/// whose backward skips the weights' gradient when they are constants.
#[derive(Debug, Clone)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

impl candle_core::Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = matmul(x, &self.weight.t()?)?;
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}
