//! How much arithmetic the engine does, and how much the machine could:
//! a process-wide count of the floating-point operations of every
//! [`super::Net`] pass while counting is on, and the machine's peak
//! measured by a loop of fused multiply-adds at the widest vector the CPU
//! has. `ppgn bench` divides the first by a step's time and the result by
//! the second.
//!
//! A multiply-add counts two operations. A convolution or fully connected
//! layer counts its weights times the output pixels it computes (padding
//! taps included, as the patches compute them; the direct sum's count also
//! where [`super::winograd`] does fewer multiplications, so that the rate
//! compares with a peer that sums directly), a transposed convolution
//! its weights times its input pixels, a depthwise one its taps times the
//! output pixels; every other op one operation per output value. The
//! backward pass (the input gradient only: sampling needs no weight
//! gradients) counts the same per op.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use super::op::Op;
use super::{len, Shape};

static COUNTING: AtomicBool = AtomicBool::new(false);
static COUNT: AtomicU64 = AtomicU64::new(0);

/// Starts counting from zero.
pub fn start() {
    COUNT.store(0, Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
}

/// Stops counting and returns the operations counted since [`start`].
pub fn stop() -> u64 {
    COUNTING.store(false, Ordering::SeqCst);
    COUNT.load(Ordering::SeqCst)
}

/// Whether passes are being counted.
pub(crate) fn counting() -> bool {
    COUNTING.load(Ordering::Relaxed)
}

/// Adds `ops` to the count.
pub(crate) fn add(ops: u64) {
    COUNT.fetch_add(ops, Ordering::Relaxed);
}

/// The operations of `op` on one image, from its input shapes to `out`.
pub(crate) fn of_op<T>(op: &Op<T>, ins: &[Shape], out: Shape) -> u64 {
    let pixels = |(h, w, _): Shape| (h * w) as u64;
    match op {
        Op::Conv { weight, .. } => 2 * weight.len() as u64 * pixels(out),
        Op::ConvTranspose { weight, .. } => 2 * weight.len() as u64 * pixels(ins[0]),
        Op::Depthwise { taps, .. } => 2 * taps.len() as u64 * pixels(out),
        _ => len(out) as u64,
    }
}

/// The machine's peak in GFLOP/s on every thread of rayon's pool at once
/// (the threads the engine runs on), and the vector it was measured with.
pub fn peak_gflops() -> (f64, &'static str) {
    let (per_thread, width): (fn(u64) -> f32, &'static str) = widest();
    // about 0.2 s per thread on a 3 GHz core with two FMA ports
    let iters: u64 = 100_000_000;
    let lanes_ops = match width {
        "AVX-512" => 16.0 * 2.0,
        "AVX2+FMA" => 8.0 * 2.0,
        _ => 4.0 * 2.0,
    };
    // one short round to wake the cores, then the timed one
    let _ = rayon::broadcast(|_| per_thread(iters / 20));
    let t0 = Instant::now();
    let sums = rayon::broadcast(|_| per_thread(iters));
    let seconds = t0.elapsed().as_secs_f64();
    black_box(sums);
    let ops = rayon::current_num_threads() as f64 * iters as f64 * ACCUMULATORS as f64 * lanes_ops;
    (ops / seconds / 1e9, width)
}

/// Independent accumulators: enough to hide the latency of the fused
/// multiply-add on every port.
const ACCUMULATORS: usize = 12;

/// The loop at the widest vector this CPU runs.
fn widest() -> (fn(u64) -> f32, &'static str) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // Safety: the CPU has the feature the loop was compiled for.
            return (|n| unsafe { x86::fma512(n) }, "AVX-512");
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // Safety: as above.
            return (|n| unsafe { x86::fma256(n) }, "AVX2+FMA");
        }
    }
    (scalar_sse, "SSE")
}

/// Multiply then add, four lanes wide as baseline x86-64 compiles it.
fn scalar_sse(n: u64) -> f32 {
    let (a, b) = (black_box([0.999_999f32; 4]), black_box([1e-7f32; 4]));
    let mut acc = [[1.0f32; 4]; ACCUMULATORS];
    for _ in 0..n {
        for v in acc.iter_mut() {
            for ((x, a), b) in v.iter_mut().zip(a).zip(b) {
                *x = *x * a + b;
            }
        }
    }
    acc.iter().flatten().sum()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{black_box, ACCUMULATORS};
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx512f")]
    pub unsafe fn fma512(n: u64) -> f32 {
        let a = _mm512_set1_ps(black_box(0.999_999));
        let b = _mm512_set1_ps(black_box(1e-7));
        let mut acc = [_mm512_set1_ps(1.0); ACCUMULATORS];
        for _ in 0..n {
            for v in acc.iter_mut() {
                *v = _mm512_fmadd_ps(*v, a, b);
            }
        }
        acc.iter().map(|&v| _mm512_reduce_add_ps(v)).sum()
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn fma256(n: u64) -> f32 {
        let a = _mm256_set1_ps(black_box(0.999_999));
        let b = _mm256_set1_ps(black_box(1e-7));
        let mut acc = [_mm256_set1_ps(1.0); ACCUMULATORS];
        for _ in 0..n {
            for v in acc.iter_mut() {
                *v = _mm256_fmadd_ps(*v, a, b);
            }
        }
        let mut out = [0.0f32; 8];
        let mut total = 0.0;
        for v in acc {
            _mm256_storeu_ps(out.as_mut_ptr(), v);
            total += out.iter().sum::<f32>();
        }
        total
    }
}
