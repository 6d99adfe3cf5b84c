//! Differentiable bilinear resizing as two matrix products, so its backward
//! is exact (candle's `upsample_bilinear2d` has none, and the gradient-check tests
//! in `tests/it/gradients.rs` would catch one that is wrong).

use candle_core::{DType, Device, Result, Tensor};

/// `[to, from]` interpolation weights of PyTorch's
/// `F.interpolate(mode="bilinear", align_corners=False)` along one axis:
/// output pixel `i` samples the source at `(i + 0.5) * from / to - 0.5`,
/// clamped to the first and last pixel.
pub fn bilinear_matrix(from: usize, to: usize, dtype: DType, dev: &Device) -> Result<Tensor> {
    let mut m = vec![0f64; to * from];
    let scale = from as f64 / to as f64;
    for i in 0..to {
        let src = ((i as f64 + 0.5) * scale - 0.5).max(0.0);
        let i0 = (src.floor() as usize).min(from - 1);
        let i1 = (i0 + 1).min(from - 1);
        let w1 = src - i0 as f64;
        m[i * from + i0] += 1.0 - w1;
        m[i * from + i1] += w1;
    }
    Tensor::from_vec(m, (to, from), dev)?.to_dtype(dtype)
}

/// Resizes NHWC images `[n, h, w, c]` to `[n, to, to, c]`:
/// `y = R_h x R_w^T` per image and channel.
pub fn resize_bilinear(x: &Tensor, to: usize) -> Result<Tensor> {
    let (_, h, w, _) = x.dims4()?;
    BilinearResize::new((h, w), to, x.dtype(), x.device())?.forward(x)
}

/// [`resize_bilinear`] with its two matrices built once, for a resize that
/// runs every sampler step.
#[derive(Debug, Clone)]
pub struct BilinearResize {
    /// `[to, h]`
    rh: Tensor,
    /// `[w, to]`, `R_w` transposed
    rw_t: Tensor,
}

impl BilinearResize {
    pub fn new(from: (usize, usize), to: usize, dtype: DType, dev: &Device) -> Result<Self> {
        Ok(Self {
            rh: bilinear_matrix(from.0, to, dtype, dev)?,
            rw_t: bilinear_matrix(from.1, to, dtype, dev)?.t()?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let xc = x.permute((0, 3, 1, 2))?.contiguous()?; // [n, c, h, w]
        let y = self.rh.broadcast_matmul(&xc)?; // [n, c, to, w]
        let y = y.broadcast_matmul(&self.rw_t)?; // [n, c, to, to]
        y.permute((0, 2, 3, 1))?.contiguous()
    }
}
