//! Our custom ops against candle's own ops on random shapes, and their
//! gradients against finite differences in f64.

use candle_core::{DType, Device, Tensor};
use ppgn::nn::{
    conv2d_nhwc, conv_transpose2d_nhwc, depthwise_conv2d_nhwc, depthwise_conv2d_padded,
};

use super::gradients::{max_gradient_error, uniform};
use super::max_diff;

fn nhwc(t: &Tensor) -> Tensor {
    t.permute((0, 2, 3, 1)).unwrap().contiguous().unwrap()
}
fn nchw(t: &Tensor) -> Tensor {
    t.permute((0, 3, 1, 2)).unwrap().contiguous().unwrap()
}

#[test]
fn depthwise_matches_candles_grouped_conv_and_differentiates_exactly() {
    // (b, h, w, c, k, stride, pad)
    for (i, &(b, h, w, c, k, s, p)) in [
        (2, 9, 7, 5, 3, 1, 1),
        (1, 12, 12, 8, 5, 2, 2),
        (3, 6, 8, 4, 3, 2, 0),
        (1, 5, 5, 3, 5, 1, 2),
    ]
    .iter()
    .enumerate()
    {
        let seed = 10 * i as u64;
        let x = uniform(&[b, h, w, c], -1.0, 1.0, seed);
        let wt = uniform(&[c, 1, k, k], -1.0, 1.0, seed + 1);
        let bias = uniform(&[c], -1.0, 1.0, seed + 2);
        let ours = depthwise_conv2d_nhwc(&x, &wt, Some(&bias), s, p).unwrap();
        let theirs = nchw(&x).conv2d(&wt, p, s, 1, c).unwrap();
        let theirs = nhwc(&theirs).broadcast_add(&bias).unwrap();
        assert_eq!(ours.dims(), theirs.dims());
        assert!(max_diff(&ours, &theirs) < 1e-12, "case {i}");
        let f = |x: &Tensor| depthwise_conv2d_nhwc(x, &wt, None, s, p);
        let err = max_gradient_error(&f, &x, 8);
        assert!(err < 1e-6, "case {i}: input gradient error {err:e}");
        // the weight gradient too (the op returns both)
        let fw = |wt: &Tensor| depthwise_conv2d_nhwc(&x, wt, None, s, p);
        let err = max_gradient_error(&fw, &wt, 8);
        assert!(err < 1e-6, "case {i}: weight gradient error {err:e}");
    }
    // asymmetric ("same") padding: one row/column before, the rest after
    let x = uniform(&[2, 8, 8, 3], -1.0, 1.0, 7);
    let wt = uniform(&[3, 1, 3, 3], -1.0, 1.0, 8);
    let ours = depthwise_conv2d_padded(&x, &wt, None, 2, (0, 0), (4, 4)).unwrap();
    let padded = x
        .pad_with_zeros(1, 0, 1)
        .unwrap()
        .pad_with_zeros(2, 0, 1)
        .unwrap();
    let theirs = nhwc(&nchw(&padded).conv2d(&wt, 0, 2, 1, 3).unwrap());
    assert!(max_diff(&ours, &theirs) < 1e-12);
    let f = |x: &Tensor| depthwise_conv2d_padded(x, &wt, None, 2, (0, 0), (4, 4));
    assert!(max_gradient_error(&f, &x, 8) < 1e-6);
}

#[test]
fn transposed_and_pointwise_convolutions_match_candle() {
    for (i, &(b, h, cin, cout, k, s, p)) in [
        (2, 1, 6, 4, 4, 1, 0),
        (1, 4, 3, 5, 4, 2, 1),
        (2, 3, 4, 2, 3, 2, 1),
    ]
    .iter()
    .enumerate()
    {
        let seed = 100 + 10 * i as u64;
        let x = uniform(&[b, h, h, cin], -1.0, 1.0, seed);
        let wt = uniform(&[cin, cout, k, k], -1.0, 1.0, seed + 1);
        let ours = conv_transpose2d_nhwc(&x, &wt, None, s, p).unwrap();
        let theirs = nhwc(&nchw(&x).conv_transpose2d(&wt, p, 0, s, 1).unwrap());
        assert_eq!(ours.dims(), theirs.dims(), "case {i}");
        assert!(max_diff(&ours, &theirs) < 1e-12, "case {i}");
        let f = |x: &Tensor| conv_transpose2d_nhwc(x, &wt, None, s, p);
        assert!(max_gradient_error(&f, &x, 8) < 1e-6, "case {i}");
    }
    // the 1x1 shortcut against candle's conv2d
    let x = uniform(&[2, 5, 4, 6], -1.0, 1.0, 200);
    let wt = uniform(&[3, 6, 1, 1], -1.0, 1.0, 201);
    let ours = conv2d_nhwc(&x, &wt, None, 1, 0).unwrap();
    let theirs = nhwc(&nchw(&x).conv2d(&wt, 0, 1, 1, 1).unwrap());
    assert!(max_diff(&ours, &theirs) < 1e-12);
    assert!(max_gradient_error(&|x| conv2d_nhwc(x, &wt, None, 1, 0), &x, 8) < 1e-6);
}

#[test]
fn bilinear_resize_follows_pytorchs_rule_and_differentiates_exactly() {
    use ppgn::nn::resize::{bilinear_matrix, resize_bilinear};
    // rows sum to one, so a constant image stays constant
    let m = bilinear_matrix(64, 224, DType::F64, &Device::Cpu).unwrap();
    let rows = m.sum(1).unwrap().to_vec1::<f64>().unwrap();
    assert!(rows.iter().all(|r| (r - 1.0).abs() < 1e-12));
    // 2 -> 4 with half-pixel centres: [a, .75a + .25b, .25a + .75b, b]
    let m = bilinear_matrix(2, 4, DType::F64, &Device::Cpu)
        .unwrap()
        .to_vec2::<f64>()
        .unwrap();
    assert_eq!(
        m,
        vec![
            vec![1.0, 0.0],
            vec![0.75, 0.25],
            vec![0.25, 0.75],
            vec![0.0, 1.0]
        ]
    );
    let x = uniform(&[2, 5, 5, 3], 0.0, 1.0, 300);
    let y = resize_bilinear(&x, 9).unwrap();
    assert_eq!(y.dims(), &[2, 9, 9, 3]);
    assert!(max_gradient_error(&|x| resize_bilinear(x, 9), &x, 8) < 1e-6);
}

#[test]
fn image_priors_and_parameterisations_behave() {
    use ppgn::density::image::{fourier_decoder, gaussian_blur, jittered};
    // a blur keeps a constant image constant (edges renormalised) and
    // smooths a checkerboard
    let flat = Tensor::full(0.3f64, (1, 9, 9, 2), &Device::Cpu).unwrap();
    assert!(max_diff(&gaussian_blur(&flat, 1.5).unwrap(), &flat) < 1e-12);
    let v: Vec<f64> = (0..81).map(|i| ((i / 9 + i % 9) % 2) as f64).collect();
    let checker = Tensor::from_vec(v, (1, 9, 9, 1), &Device::Cpu).unwrap();
    let b = gaussian_blur(&checker, 1.0).unwrap();
    let spread = |t: &Tensor| {
        let v = t.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        v.iter().cloned().fold(f64::MIN, f64::max) - v.iter().cloned().fold(f64::MAX, f64::min)
    };
    assert!(
        spread(&b) < 0.3 * spread(&checker),
        "blur spread {}",
        spread(&b)
    );
    let x = uniform(&[1, 7, 7, 2], 0.0, 1.0, 400);
    assert!(max_gradient_error(&|x| gaussian_blur(x, 1.0), &x, 8) < 1e-6);

    // the cosine basis is orthonormal: with decay 0 the decoder is
    // sigmoid(B^T c B), so zero coefficients give mid-grey and the
    // pre-sigmoid image has the coefficients' energy (Parseval)
    let dec = fourier_decoder(8, 0.0);
    let zero = Tensor::zeros((1, 8, 8, 3), DType::F32, &Device::Cpu).unwrap();
    let grey = dec(&zero)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert!(grey.iter().all(|g| (g - 0.5).abs() < 1e-6));
    let c = uniform(&[1, 8, 8, 3], -0.5, 0.5, 401)
        .to_dtype(DType::F32)
        .unwrap();
    let img = dec(&c).unwrap();
    // logit of the output recovers the pre-sigmoid image
    let pre = ((&img / (1.0 - &img).unwrap()).unwrap()).log().unwrap();
    let (e_img, e_c) = (super::sum_sq(&pre), super::sum_sq(&c));
    assert!(
        (e_img - e_c).abs() < 1e-3 * e_c,
        "Parseval: {e_img} vs {e_c}"
    );
    let dec64 = fourier_decoder(8, 1.0);
    let c64 = uniform(&[1, 8, 8, 3], -0.5, 0.5, 402);
    assert!(max_gradient_error(&|c| dec64(c), &c64, 8) < 1e-6);

    // jitter: seeded shifts, the same sequence for the same seed
    let ident: ppgn::nn::Func = std::sync::Arc::new(|x: &Tensor| Ok(x.clone()));
    let (j1, j2, j3) = (
        jittered(ident.clone(), 2, 9),
        jittered(ident.clone(), 2, 9),
        jittered(ident, 2, 10),
    );
    let x = uniform(&[1, 6, 6, 1], 0.0, 1.0, 403);
    let seq = |j: &ppgn::nn::Func| -> Vec<Vec<f64>> {
        (0..5)
            .map(|_| j(&x).unwrap().flatten_all().unwrap().to_vec1().unwrap())
            .collect()
    };
    let (a, b, c) = (seq(&j1), seq(&j2), seq(&j3));
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn frozen_matmul_gives_candles_input_gradient_bit_for_bit() {
    use candle_core::Var;
    use ppgn::nn::frozen::matmul;
    let x = Var::from_tensor(
        &uniform(&[5, 7], -1.0, 1.0, 500)
            .to_dtype(DType::F32)
            .unwrap(),
    )
    .unwrap();
    let w = uniform(&[3, 7], -1.0, 1.0, 501)
        .to_dtype(DType::F32)
        .unwrap()
        .t()
        .unwrap();
    let r = uniform(&[5, 3], -1.0, 1.0, 502)
        .to_dtype(DType::F32)
        .unwrap();
    let grad = |y: Tensor| {
        let g = (y * &r).unwrap().sum_all().unwrap().backward().unwrap();
        g.get(x.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    let ours = matmul(x.as_tensor(), &w).unwrap();
    let theirs = x.as_tensor().matmul(&w).unwrap();
    assert_eq!(
        ours.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        theirs.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    );
    assert_eq!(grad(ours), grad(theirs));
    // a weight that is a variable still gets its gradient (training)
    let wv = Var::from_tensor(&w.contiguous().unwrap()).unwrap();
    let g = matmul(x.as_tensor(), wv.as_tensor())
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert!(g.get(wv.as_tensor()).is_some());
}
