//! Convolutions to one output channel (a grey generator's last layer),
//! done directly: one dot product per output pixel and kernel row, where
//! patches would copy every pixel `taps` times to feed a product with a
//! dimension of 1.

use rayon::prelude::*;

use super::real::Real;
use super::simd::{axpy, dispatch, dot, Kernel};
use super::window::Window;

/// Whether [`conv`] handles a convolution: one output channel (a grey
/// generator's last layer), where patches would copy every pixel `taps`
/// times to feed a product with a dimension of 1 (measured on W1 at 64
/// chains: 7.6 of 47 ms through im2col and `gemm`, 3.4 ms here). One
/// input channel is left to im2col: its short dot products in the
/// backward pass made the direct form slower (4.8 -> 5.9 ms).
pub(crate) fn conv_suits(g: &Window, cout: usize) -> bool {
    cout == 1 && !g.is_pointwise()
}

struct ConvArgs<'a, T> {
    g: &'a Window,
    /// `[taps*c]`: the one output channel's weights
    w: &'a [T],
    /// `g`'s runs (`Window::runs`), looped over inside the kernel (a
    /// closure given to `for_each_run` was compiled without FMA: on W1 at
    /// 8 chains a fifth of the step's samples were this layer's closure
    /// and the `fmaf` calls it made).
    runs: Vec<(usize, usize, usize, usize)>,
}

impl<T: Real> ConvArgs<'_, T> {
    /// One image: `y [ho*wo] += conv(x)`: per output pixel and kernel
    /// row, one dot product over the adjacent taps' pixels and channels.
    #[inline(always)]
    fn forward<const FMA: bool>(&self, x: &[T], y: &mut [T]) {
        let c = self.g.c;
        for &(o, t, p, run) in &self.runs {
            y[o] += dot::<T, FMA>(&x[p * c..(p + run) * c], &self.w[t * c..(t + run) * c]);
        }
    }

    /// One image: `dx [h*w, c] = conv^T(dy)` (overwritten).
    #[inline(always)]
    fn adjoint<const FMA: bool>(&self, dy: &[T], dx: &mut [T]) {
        let c = self.g.c;
        dx.fill(T::zero());
        for &(o, t, p, run) in &self.runs {
            axpy::<T, FMA>(
                &mut dx[p * c..(p + run) * c],
                dy[o],
                &self.w[t * c..(t + run) * c],
            );
        }
    }
}

/// A convolution to one channel ([`conv_suits`]), `w [taps*c]` as
/// [`super::Op::Conv`]'s: `y += conv(x)` for `n` images (`y` holds the
/// bias), or with `adjoint` `x`-shaped `dx = conv^T(dy)` from `y`-shaped
/// `dy`. Work is split over images.
pub(crate) fn conv<T: Real>(
    g: &Window,
    n: usize,
    w: &[T],
    src: &[T],
    dst: &mut [T],
    adjoint: bool,
) {
    let (img, out) = (g.h * g.w * g.c, g.ho * g.wo);
    let (src_len, dst_len) = if adjoint { (out, img) } else { (img, out) };
    struct Image<'a, T>(&'a ConvArgs<'a, T>, &'a [T], &'a mut [T], bool);
    impl<T: Real> Kernel for Image<'_, T> {
        #[inline(always)]
        fn run<const FMA: bool>(self) {
            if self.3 {
                self.0.adjoint::<FMA>(self.1, self.2)
            } else {
                self.0.forward::<FMA>(self.1, self.2)
            }
        }
    }
    let a = ConvArgs {
        g,
        w,
        runs: g.runs(),
    };
    dst[..n * dst_len]
        .par_chunks_mut(dst_len)
        .zip(src[..n * src_len].par_chunks(src_len))
        .for_each(|(d, s)| dispatch(Image(&a, s, d, adjoint)));
}
