//! Depthwise 2-D convolution on NHWC input as a custom op with its own
//! backward: one `kh x kw` filter per channel, with separate top/left
//! padding so TensorFlow's asymmetric "same" padding needs no padded copy.
//! (candle's grouped convolution runs one convolution per channel; our
//! im2col path multiplies the memory by `kh * kw`.)
//!
//! `y[b, oy, ox, c] = sum_{dy, dx} x[b, oy*s + dy - pt, ox*s + dx - pl, c] * w[dy, dx, c]`,
//! out-of-range pixels being zero. The forward pass and the input gradient
//! (a gather: each input pixel sums the outputs that read it) are the
//! sampling engine's kernels (`fast::depthwise`); the taps' gradient, which
//! only training needs, is here.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor, WithDType};
use rayon::prelude::*;

use super::fast::{
    self,
    real::Real,
    window::{Batched, Window},
};

fn slice<'a, T: WithDType>(v: &'a [T], l: &Layout, what: &str) -> Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => candle_core::bail!("depthwise conv: {what} must be contiguous"),
    }
}

// The forward pass and the input gradient are the sampling engine's
// kernels (one implementation of the depthwise window).
fn forward<T: Real>(x: &[T], w: &[T], g: &Batched) -> Vec<T> {
    let mut y = vec![T::zero(); g.b * g.window.ho * g.window.wo * g.window.c];
    fast::depthwise::depthwise(&g.window, g.b, w, x, &mut y, false);
    y
}

/// `dx[b, iy, ix, c] = sum over (oy, dy), (ox, dx) reading it of dy[b, oy, ox, c] * w[dy, dx, c]`.
fn input_grad<T: Real>(gy: &[T], w: &[T], g: &Batched) -> Vec<T> {
    let mut gx = vec![T::zero(); g.b * g.window.h * g.window.w * g.window.c];
    fast::depthwise::depthwise(&g.window, g.b, w, gy, &mut gx, true);
    gx
}

/// `dw[dy, dx, c] = sum_{b, oy, ox} dy[b, oy, ox, c] * x[b, iy, ix, c]`:
/// partial sums per output row, added in row order.
fn weight_grad<T: WithDType + Send + Sync>(x: &[T], gy: &[T], g: &Batched) -> Vec<T> {
    let (c, taps) = (g.window.c, g.window.kh * g.window.kw);
    let partial: Vec<Vec<T>> = (0..g.b * g.window.ho)
        .into_par_iter()
        .map(|r| {
            let (bi, oy) = (r / g.window.ho, r % g.window.ho);
            let mut acc = vec![T::zero(); taps * c];
            let grow = &gy[r * g.window.wo * c..][..g.window.wo * c];
            for dy in 0..g.window.kh {
                let Some(iy) =
                    Window::source(oy, dy, g.window.stride, g.window.pad_top, g.window.h)
                else {
                    continue;
                };
                let xrow = &x[((bi * g.window.h) + iy) * g.window.w * c..][..g.window.w * c];
                for dx in 0..g.window.kw {
                    let a = &mut acc[(dy * g.window.kw + dx) * c..][..c];
                    for ox in 0..g.window.wo {
                        let Some(ix) =
                            Window::source(ox, dx, g.window.stride, g.window.pad_left, g.window.w)
                        else {
                            continue;
                        };
                        for ((a, &gv), &xv) in a
                            .iter_mut()
                            .zip(&grow[ox * c..][..c])
                            .zip(&xrow[ix * c..][..c])
                        {
                            *a += gv * xv;
                        }
                    }
                }
            }
            acc
        })
        .collect();
    let mut dw = vec![T::zero(); taps * c];
    for p in partial {
        for (d, v) in dw.iter_mut().zip(p) {
            *d += v;
        }
    }
    dw
}

struct Depthwise(Batched);
struct InputGrad(Batched);
struct WeightGrad(Batched);

macro_rules! dispatch {
    ($a:expr, $la:expr, $b:expr, $lb:expr, $f:expr, $g:expr) => {
        match ($a, $b) {
            (CpuStorage::F32(a), CpuStorage::F32(b)) => {
                CpuStorage::F32($f(slice(a, $la, "input")?, slice(b, $lb, "input")?, $g))
            }
            (CpuStorage::F64(a), CpuStorage::F64(b)) => {
                CpuStorage::F64($f(slice(a, $la, "input")?, slice(b, $lb, "input")?, $g))
            }
            _ => candle_core::bail!("depthwise conv: f32 or f64 inputs of one dtype"),
        }
    };
}

impl CustomOp2 for Depthwise {
    fn name(&self) -> &'static str {
        "depthwise-conv2d-nhwc"
    }
    fn cpu_fwd(
        &self,
        a: &CpuStorage,
        la: &Layout,
        b: &CpuStorage,
        lb: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = &self.0;
        Ok((
            dispatch!(a, la, b, lb, forward, g),
            Shape::from((g.b, g.window.ho, g.window.wo, g.window.c)),
        ))
    }
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        gy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let gy = gy.contiguous()?;
        let gx = gy.apply_op2_no_bwd(w, &InputGrad(self.0))?;
        // constant taps (a sampler's frozen network) need no gradient
        let gw = if w.track_op() {
            Some(x.apply_op2_no_bwd(&gy, &WeightGrad(self.0))?)
        } else {
            None
        };
        Ok((Some(gx), gw))
    }
}

impl CustomOp2 for InputGrad {
    fn name(&self) -> &'static str {
        "depthwise-conv2d-nhwc-input-grad"
    }
    fn cpu_fwd(
        &self,
        a: &CpuStorage,
        la: &Layout,
        b: &CpuStorage,
        lb: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = &self.0;
        Ok((
            dispatch!(a, la, b, lb, input_grad, g),
            Shape::from((g.b, g.window.h, g.window.w, g.window.c)),
        ))
    }
}

impl CustomOp2 for WeightGrad {
    fn name(&self) -> &'static str {
        "depthwise-conv2d-nhwc-weight-grad"
    }
    fn cpu_fwd(
        &self,
        a: &CpuStorage,
        la: &Layout,
        b: &CpuStorage,
        lb: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = &self.0;
        Ok((
            dispatch!(a, la, b, lb, weight_grad, g),
            Shape::from((g.window.kh * g.window.kw, g.window.c)),
        ))
    }
}

/// Depthwise convolution of `x [b, h, w, c]` with taps `w [kh*kw, c]`
/// (row-major over `(dy, dx)`), padding `pad_top`/`pad_left` zeros before
/// the input and as many after as the output side `(ho, wo)` needs.
pub fn depthwise_conv2d(x: &Tensor, w: &Tensor, g: Batched) -> Result<Tensor> {
    if x.dims() != [g.b, g.window.h, g.window.w, g.window.c]
        || w.dims() != [g.window.kh * g.window.kw, g.window.c]
    {
        candle_core::bail!(
            "depthwise conv: input {:?} and taps {:?} do not match {g:?}",
            x.dims(),
            w.dims()
        );
    }
    x.contiguous()?.apply_op2(&w.contiguous()?, Depthwise(g))
}
