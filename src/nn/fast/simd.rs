//! Vectorisable inner loops and the runtime switch to AVX2/FMA code.
//!
//! The crate is built for baseline x86-64 (SSE2, no fused multiply-add);
//! a kernel implements [`Kernel::run`] over these `#[inline(always)]`
//! loops, and [`dispatch`] calls the copy of it compiled with AVX2 and FMA
//! when the CPU has them (as `gemm` and PyTorch choose their kernels).

use super::real::Real;

/// A piece of work whose loops are compiled twice: `FMA` true for the
/// AVX2/FMA copy. `run` must be `#[inline(always)]` so the copy inherits
/// the target features.
pub trait Kernel {
    fn run<const FMA: bool>(self);
}

/// Runs `k`, with AVX2 and FMA when the CPU has them.
pub fn dispatch<K: Kernel>(k: K) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2<K: Kernel>(k: K) {
            k.run::<true>()
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // Safety: the CPU has the features the copy was compiled for.
            return unsafe { avx2(k) };
        }
    }
    k.run::<false>()
}

/// `a b + c`, fused when compiled with FMA.
#[inline(always)]
pub fn madd<T: Real, const FMA: bool>(a: T, b: T, c: T) -> T {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// `sum a_i b_i` with 16 independent accumulators (so it vectorises).
#[inline(always)]
pub fn dot<T: Real, const FMA: bool>(a: &[T], b: &[T]) -> T {
    let mut acc = [T::zero(); 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..16 {
            acc[l] = madd::<T, FMA>(x[l], y[l], acc[l]);
        }
    }
    let mut s = T::zero();
    for (x, y) in ra.iter().zip(rb) {
        s = madd::<T, FMA>(*x, *y, s);
    }
    acc.iter().fold(s, |t, &v| t + v)
}

/// `y += a x`.
#[inline(always)]
pub fn axpy<T: Real, const FMA: bool>(y: &mut [T], a: T, x: &[T]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y = madd::<T, FMA>(a, x, *y);
    }
}

/// `y += a * b` elementwise.
#[inline(always)]
pub fn mul_acc<T: Real, const FMA: bool>(y: &mut [T], a: &[T], b: &[T]) {
    for ((y, &a), &b) in y.iter_mut().zip(a).zip(b) {
        *y = madd::<T, FMA>(a, b, *y);
    }
}

/// Uniform numbers in [-0.5, 0.5) from a linear congruential generator,
/// for the kernels' unit tests.
#[cfg(test)]
pub(crate) fn uniform(mut seed: u64) -> impl FnMut() -> f64 {
    move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((seed >> 11) as f64 / (1u64 << 53) as f64) - 0.5
    }
}
