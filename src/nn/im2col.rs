//! im2col and col2im for NHWC convolutions, as a pair of candle custom ops
//! that are each other's adjoint (so each is the other's backward).
//!
//! `im2col` turns `x [b, h, w, c]` into the patch matrix
//! `[b*ho*wo, kh*kw*c]` (column order `(dy, dx, c)`), so a convolution is one
//! matrix product with the reshaped kernel; `col2im` scatters-adds a patch
//! matrix back to image shape. Written here because building the patches
//! from candle slices costs about ten full copies of the input per step in
//! the backward pass (candle's own conv backward is slower still, measured).
//! Work is split over images, so each output element is summed in a fixed
//! order: results do not depend on the number of threads.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor, WithDType};

use super::fast::real::Real;
use super::fast::window::{self, Batched};

fn contiguous<'a, T: WithDType>(v: &'a [T], layout: &Layout, op: &str) -> Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => candle_core::bail!("{op}: input must be contiguous"),
    }
}

// The kernels are the sampling engine's (one implementation of patches);
// both sum each element in the same order as before, so results keep their bits.
fn im2col_typed<T: Real>(x: &[T], g: &Batched) -> Vec<T> {
    let (ho, wo) = (g.window.ho, g.window.wo);
    let mut out = vec![T::zero(); g.b * ho * wo * g.window.kh * g.window.kw * g.window.c];
    window::im2col(&g.window, g.b, x, &mut out, true);
    out
}

fn col2im_typed<T: Real>(cols: &[T], g: &Batched) -> Vec<T> {
    let mut out = vec![T::zero(); g.b * g.window.h * g.window.w * g.window.c];
    window::col2im(&g.window, g.b, cols, &mut out, true);
    out
}

struct Im2Col(Batched);
struct Col2Im(Batched);

impl CustomOp1 for Im2Col {
    fn name(&self) -> &'static str {
        "im2col-nhwc"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = &self.0;
        let (ho, wo) = (g.window.ho, g.window.wo);
        let shape = Shape::from((g.b * ho * wo, g.window.kh * g.window.kw * g.window.c));
        let out = match s {
            CpuStorage::F32(v) => CpuStorage::F32(im2col_typed(contiguous(v, l, self.name())?, g)),
            CpuStorage::F64(v) => CpuStorage::F64(im2col_typed(contiguous(v, l, self.name())?, g)),
            _ => candle_core::bail!("im2col: only f32 and f64 are supported"),
        };
        Ok((out, shape))
    }
    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(col2im(grad, self.0)?))
    }
}

impl CustomOp1 for Col2Im {
    fn name(&self) -> &'static str {
        "col2im-nhwc"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = &self.0;
        let shape = Shape::from((g.b, g.window.h, g.window.w, g.window.c));
        let out = match s {
            CpuStorage::F32(v) => CpuStorage::F32(col2im_typed(contiguous(v, l, self.name())?, g)),
            CpuStorage::F64(v) => CpuStorage::F64(col2im_typed(contiguous(v, l, self.name())?, g)),
            _ => candle_core::bail!("col2im: only f32 and f64 are supported"),
        };
        Ok((out, shape))
    }
    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(im2col(grad, self.0)?))
    }
}

/// `x [b, h, w, c]` -> patches `[b*ho*wo, kh*kw*c]`.
pub fn im2col(x: &Tensor, g: Batched) -> Result<Tensor> {
    let (b, h, w, c) = x.dims4()?;
    if (b, h, w, c) != (g.b, g.window.h, g.window.w, g.window.c) {
        candle_core::bail!("im2col: input {:?} does not match geometry {g:?}", x.dims());
    }
    x.contiguous()?.apply_op1(Im2Col(g))
}

/// Patches `[b*ho*wo, kh*kw*c]` -> `[b, h, w, c]`, summing overlapping taps.
pub fn col2im(cols: &Tensor, g: Batched) -> Result<Tensor> {
    let (ho, wo) = (g.window.ho, g.window.wo);
    if cols.dims() != [g.b * ho * wo, g.window.kh * g.window.kw * g.window.c] {
        candle_core::bail!(
            "col2im: input {:?} does not match geometry {g:?}",
            cols.dims()
        );
    }
    cols.contiguous()?.apply_op1(Col2Im(g))
}
