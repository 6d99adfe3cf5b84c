//! Winograd's convolutions held to the patches' (im2col) ones.

use super::*;
use crate::nn::fast::patches;
use crate::nn::fast::simd::uniform;

/// The largest difference between Winograd's forward pass and input
/// gradient and the patches' (im2col) ones on random values, over the
/// largest value: `n` images `h x w`, `cin` to `cout` channels; the
/// forward pass adds onto what the output held.
fn worst<T: Real>(h: usize, w: usize, cin: usize, cout: usize, n: usize) -> f64 {
    let g = Window::symmetric(h, w, cin, 3, 1, 1);
    assert!(suits(&g, cout));
    let mut r = uniform((h * 1000 + w * 100 + cin * 10 + n) as u64);
    let mut fill = |len: usize| -> Vec<T> {
        (0..len)
            .map(|_| T::from(r()).unwrap_or_else(T::zero))
            .collect()
    };
    let (weights, x) = (fill(9 * cin * cout), fill(n * h * w * cin));
    let (y0, dy) = (fill(n * h * w * cout), fill(n * h * w * cout));
    let plan = Plan::new(cin, cout, &weights);
    let (mut want, mut got) = (y0.clone(), y0);
    patches::conv(&g, n, &weights, cout, &x, &mut want, &mut Vec::new());
    plan.run(false, &g, n, &x, &mut got, &mut Vec::new());
    let (mut want_dx, mut got_dx) = (fill(n * h * w * cin), fill(n * h * w * cin));
    patches::conv_adjoint(&g, n, &weights, cout, &dy, &mut want_dx, &mut Vec::new());
    plan.run(true, &g, n, &dy, &mut got_dx, &mut Vec::new());
    let rel = |a: &[T], b: &[T]| {
        let top = a.iter().fold(0f64, |m, v| m.max(v.to_f64().unwrap().abs()));
        let diff = a.iter().zip(b).fold(0f64, |m, (p, q)| {
            m.max((p.to_f64().unwrap() - q.to_f64().unwrap()).abs())
        });
        diff / top
    };
    rel(&want, &got).max(rel(&want_dx, &got_dx))
}

/// Odd and even sides (a last block row or column of one pixel), one
/// pixel, one image and many (the threaded path and the blocks of
/// images), channels in and out that differ.
const SHAPES: [(usize, usize, usize, usize, usize); 6] = [
    (7, 7, 16, 24, 1),
    (14, 14, 20, 16, 3),
    (5, 6, 17, 19, 250),
    (1, 1, 16, 16, 2),
    (2, 3, 18, 16, 1),
    (6, 5, 16, 33, 9),
];

#[test]
fn winograd_matches_the_patches_in_f64() {
    for (h, w, cin, cout, n) in SHAPES {
        let e = worst::<f64>(h, w, cin, cout, n);
        assert!(e < 1e-13, "{h}x{w}, {cin} -> {cout}, {n} images: {e:e}");
    }
}

#[test]
fn winograd_matches_the_patches_in_f32() {
    for (h, w, cin, cout, n) in SHAPES {
        let e = worst::<f32>(h, w, cin, cout, n);
        assert!(e < 2e-6, "{h}x{w}, {cin} -> {cout}, {n} images: {e:e}");
    }
}

/// W1's two up-convolutions (the Fashion generator's) at 1, 8 and 64
/// images, timed both ways on this machine (a measurement, run by
/// `cargo test --release --lib winograd_times -- --ignored
/// --nocapture`), the results held together as above.
#[test]
#[ignore]
fn winograd_times_against_the_patches_on_w1s_shapes() {
    for (h, cin, cout) in [(7, 128, 256), (14, 64, 128)] {
        for n in [1, 8, 64] {
            let g = Window::symmetric(h, h, cin, 3, 1, 1);
            let mut r = uniform(7);
            let mut fill = |len: usize| (0..len).map(|_| r() as f32).collect::<Vec<f32>>();
            let (weights, x) = (fill(9 * cin * cout), fill(n * h * h * cin));
            let plan = Plan::new(cin, cout, &weights);
            let (mut a, mut b) = (vec![0f32; n * h * h * cout], vec![0f32; n * h * h * cout]);
            let mut cols = Vec::new();
            let reps = 20 + 400 / n;
            let time = |f: &mut (dyn FnMut() + Send)| {
                let t = std::time::Instant::now();
                for _ in 0..reps {
                    rayon::scope(|_| f());
                }
                t.elapsed().as_secs_f64() * 1e3 / reps as f64
            };
            let direct = time(&mut || patches::conv(&g, n, &weights, cout, &x, &mut a, &mut cols));
            let ours = time(&mut || plan.run(false, &g, n, &x, &mut b, &mut cols));
            eprintln!(
                "{h}x{h}, {cin} -> {cout} channels, {n} images: patches {direct:.3} ms, \
                 Winograd {ours:.3} ms ({} blocks: Winograd {})",
                n * h.div_ceil(2) * h.div_ceil(2),
                if Plan::<f32>::pays(&g, n) {
                    "taken"
                } else {
                    "not taken"
                }
            );
            // one pass each from zero, held together
            let (a, b) = (&mut a, &mut b);
            a.fill(0.0);
            b.fill(0.0);
            patches::conv(&g, n, &weights, cout, &x, a, &mut cols);
            plan.run(false, &g, n, &x, b, &mut cols);
            let top = a.iter().fold(0f32, |m, v| m.max(v.abs()));
            let diff = a
                .iter()
                .zip(b.iter())
                .fold(0f32, |m, (p, q)| m.max((p - q).abs()));
            assert!(diff <= 1e-5 * top, "{diff} of {top}");
        }
    }
}
