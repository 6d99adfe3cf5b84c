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

use super::fast::{self, real::Real, window::Window};

/// The geometry of one depthwise convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub b: usize,
    pub h: usize,
    pub w: usize,
    pub c: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    /// Zero rows above and columns left of the input.
    pub pad_top: usize,
    pub pad_left: usize,
    /// Output side (rows past the input's bottom/right edge read zeros).
    pub ho: usize,
    pub wo: usize,
}

impl Geometry {
    /// The same window as the sampling engine's kernels take.
    fn window(&self) -> Window {
        Window {
            h: self.h,
            w: self.w,
            c: self.c,
            kh: self.kh,
            kw: self.kw,
            stride: self.stride,
            pad_top: self.pad_top,
            pad_left: self.pad_left,
            ho: self.ho,
            wo: self.wo,
        }
    }
}

fn slice<'a, T: WithDType>(v: &'a [T], l: &Layout, what: &str) -> Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => candle_core::bail!("depthwise conv: {what} must be contiguous"),
    }
}

// The forward pass and the input gradient are the sampling engine's
// kernels (one implementation of the depthwise window).
fn forward<T: Real>(x: &[T], w: &[T], g: &Geometry) -> Vec<T> {
    let mut y = vec![T::zero(); g.b * g.ho * g.wo * g.c];
    fast::depthwise::depthwise(&g.window(), g.b, w, x, &mut y, false);
    y
}

/// `dx[b, iy, ix, c] = sum over (oy, dy), (ox, dx) reading it of dy[b, oy, ox, c] * w[dy, dx, c]`.
fn input_grad<T: Real>(gy: &[T], w: &[T], g: &Geometry) -> Vec<T> {
    let mut gx = vec![T::zero(); g.b * g.h * g.w * g.c];
    fast::depthwise::depthwise(&g.window(), g.b, w, gy, &mut gx, true);
    gx
}

/// `dw[dy, dx, c] = sum_{b, oy, ox} dy[b, oy, ox, c] * x[b, iy, ix, c]`:
/// partial sums per output row, added in row order.
fn weight_grad<T: WithDType + Send + Sync>(x: &[T], gy: &[T], g: &Geometry) -> Vec<T> {
    let (c, taps) = (g.c, g.kh * g.kw);
    let partial: Vec<Vec<T>> = (0..g.b * g.ho)
        .into_par_iter()
        .map(|r| {
            let (bi, oy) = (r / g.ho, r % g.ho);
            let mut acc = vec![T::zero(); taps * c];
            let grow = &gy[r * g.wo * c..][..g.wo * c];
            for dy in 0..g.kh {
                let Some(iy) = Window::source(oy, dy, g.stride, g.pad_top, g.h) else {
                    continue;
                };
                let xrow = &x[((bi * g.h) + iy) * g.w * c..][..g.w * c];
                for dx in 0..g.kw {
                    let a = &mut acc[(dy * g.kw + dx) * c..][..c];
                    for ox in 0..g.wo {
                        let Some(ix) = Window::source(ox, dx, g.stride, g.pad_left, g.w) else {
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

struct Depthwise(Geometry);
struct InputGrad(Geometry);
struct WeightGrad(Geometry);

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
            Shape::from((g.b, g.ho, g.wo, g.c)),
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
            Shape::from((g.b, g.h, g.w, g.c)),
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
            Shape::from((g.kh * g.kw, g.c)),
        ))
    }
}

/// Depthwise convolution of `x [b, h, w, c]` with taps `w [kh*kw, c]`
/// (row-major over `(dy, dx)`), padding `pad_top`/`pad_left` zeros before
/// the input and as many after as the output side `(ho, wo)` needs.
pub fn depthwise_conv2d(x: &Tensor, w: &Tensor, g: Geometry) -> Result<Tensor> {
    if x.dims() != [g.b, g.h, g.w, g.c] || w.dims() != [g.kh * g.kw, g.c] {
        candle_core::bail!(
            "depthwise conv: input {:?} and taps {:?} do not match {g:?}",
            x.dims(),
            w.dims()
        );
    }
    x.contiguous()?.apply_op2(&w.contiguous()?, Depthwise(g))
}
