//! The sampling engine (`ppgn::nn::fast`): its ops against finite
//! differences in f64 and against candle's own ops on random shapes, every
//! network it compiles against its candle twin in f64, its density terms
//! against the reference terms in f32, `ppgn sample --engine fast` against
//! `--engine reference` and across thread counts, its errors, and the
//! chaos of PPGN chains that bounds how far samples can be compared.

use candle_core::{DType, Device, Module, Tensor, Var};
use ppgn::models::efficientnet_lite::EfficientNetLite0;
use ppgn::models::fashion::{self as stack, Stack};
use ppgn::models::pretrained;
use ppgn::nn::fast::kernels::Act;
use ppgn::nn::fast::pointwise::Pointwise;
use ppgn::nn::fast::several::Binary;
use ppgn::nn::fast::window::Window;
use ppgn::nn::fast::{build, Net, Op, Workspace};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::gradients::uniform;
use super::{ppgn_into, tempdir, vec_f64};

/// The engine's output of `x [n, ...]` and the gradient of `sum(w * out)`.
fn engine(net: &Net<f64>, x: &[f64], n: usize, w: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let mut ws = Workspace::default();
    let out = net.forward(x, n, &mut ws).unwrap().to_vec();
    let mut g = Vec::new();
    net.backward(w, &mut ws, &mut g).unwrap();
    (out, g)
}

/// candle's output of `f(x)` and the gradient of `sum(w * f(x))`.
fn reference(f: &dyn Fn(&Tensor) -> Tensor, x: &Tensor, w: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let v = Var::from_tensor(x).unwrap();
    let y = f(v.as_tensor());
    let wt = Tensor::from_vec(w.to_vec(), y.shape(), &Device::Cpu).unwrap();
    let grads = (&y * wt).unwrap().sum_all().unwrap().backward().unwrap();
    (vec_f64(&y), vec_f64(grads.get(v.as_tensor()).unwrap()))
}

/// `max |a - b| / max |b|`.
pub fn rel(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let m = b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(m > 0.0, "reference is identically zero");
    a.iter()
        .zip(b)
        .fold(0.0f64, |e, (a, b)| e.max((a - b).abs()))
        / m
}

/// `|a - b|_2 / |b|_2`.
fn rel_l2(a: &[f64], b: &[f64]) -> f64 {
    let d: f64 = a.iter().zip(b).map(|(a, b)| (a - b) * (a - b)).sum();
    (d / b.iter().map(|b| b * b).sum::<f64>()).sqrt()
}

fn weights(seed: u64) -> impl FnMut(&[usize]) -> Tensor {
    let mut s = seed;
    move |shape: &[usize]| {
        s += 1;
        uniform(shape, -0.5, 0.5, s)
    }
}

/// A small network with every op and activation of the engine: an
/// asymmetric-padding strided convolution, a depthwise one, a residual
/// add, a pixel shuffle, a transposed convolution, a resample, max
/// pooling, a local response normalisation, slices and a concatenation,
/// every pointwise function, padding, average pooling, nearest resizing,
/// softmax and log-softmax, elementwise products, differences and
/// quotients with each kind of broadcast.
fn every_op() -> Net<f64> {
    let mut w = weights(10);
    let c = 4;
    let ops: Vec<Op<f64>> = vec![
        build::affine(3, 2.0, -1.0),
        // 9x9x3 -> 5x5x4 (TF same: the odd padding row at the bottom)
        build::conv(
            Window::tf_same(9, 9, 3, 3, 2),
            &w(&[c, 3, 3, 3]),
            Some(&w(&[c])),
            Act::Relu6,
        )
        .unwrap(),
        build::depthwise(
            Window::tf_same(5, 5, c, 3, 1),
            &w(&[c, 1, 3, 3]),
            Some(&w(&[c])),
            Act::Tanh,
        )
        .unwrap(),
        Op::Add, // reads slots 3 and 2: a residual connection
        build::conv(
            Window::symmetric(5, 5, c, 3, 1, 1),
            &w(&[4 * c, c, 3, 3]),
            Some(&w(&[4 * c])),
            Act::Leaky(0.2),
        )
        .unwrap(),
        Op::PixelShuffle2, // 10x10x4
        build::depthwise(
            Window::tf_same(10, 10, c, 5, 2),
            &w(&[c, 1, 5, 5]),
            Some(&w(&[c])),
            Act::Sigmoid,
        )
        .unwrap(),
        build::conv_transpose(
            (5, 5),
            &w(&[c, 3, 4, 4]),
            Some(&w(&[3])),
            2,
            1,
            Act::Identity,
        )
        .unwrap(), // 10x10x3
        build::bilinear((10, 10), 7).unwrap(),
        // padded max pooling (padding never wins), and a local response
        // normalisation over an even window (one channel more after)
        Op::MaxPool {
            window: Window::symmetric(7, 7, 3, 3, 1, 1),
        },
        Op::Lrn {
            size: 2,
            alpha: 0.5,
            beta: 0.75,
            k: 2.0,
        },
        // to one channel (the direct kernel), strided, padding after
        build::conv(
            Window::tf_same(7, 7, 3, 3, 2),
            &w(&[1, 3, 3, 3]),
            Some(&w(&[1])),
            Act::Identity,
        )
        .unwrap(),
        build::conv(
            Window::symmetric(4, 4, 1, 1, 1, 0),
            &w(&[6, 1, 1, 1]),
            Some(&w(&[6])),
            Act::Relu,
        )
        .unwrap(),
        // two slices of slot 13 (a crop with a group of channels), side by
        // side again
        Op::Slice {
            at: (1, 0, 2),
            out: (3, 3, 4),
        },
        Op::Slice {
            at: (0, 1, 0),
            out: (3, 3, 2),
        },
        Op::Concat,
        // the pointwise functions whose gradient reads their input, off
        // their kinks (the shift moves the ReLU's zeros away from them)
        build::affine(6, 1.5, -0.4),
        Op::Pointwise(Pointwise::HardSwish),
        Op::Pointwise(Pointwise::Gelu),
        Op::Pointwise(Pointwise::Elu(0.7)),
        Op::Pointwise(Pointwise::HardSigmoid {
            alpha: 0.3,
            beta: 0.5,
        }),
        Op::Pointwise(Pointwise::Clip { lo: 0.1, hi: 0.95 }),
        Op::Pointwise(Pointwise::Erf),
        Op::Pointwise(Pointwise::Pow(3.0)),
        build::affine(6, 1.0, 1.5),
        Op::Pointwise(Pointwise::Sqrt),
        // zero padding, average pooling counting it, nearest resizing up,
        // a softmax over each pixel's channels, and a log-softmax head
        build::pad((3, 3), (1, 0, 2, 1)),
        build::average_pool(Window::symmetric(4, 6, 6, 3, 1, 1)),
        build::nearest((4, 6), (5, 9)),
        Op::Softmax { log: false }, // slot 30
        // elementwise ops of two values: by a per-channel value (a
        // squeeze-excitation's product), by the same shape, by a scalar
        Op::MeanPool,            // 31: (1, 1, 6)
        Op::Binary(Binary::Mul), // 32 = 30 * 31
        Op::Binary(Binary::Div), // 33 = 32 / 31
        Op::Binary(Binary::Sub), // 34 = 33 - 30
        Op::Slice {
            at: (0, 0, 2),
            out: (1, 1, 1),
        }, // 35: one value of 31
        Op::Binary(Binary::Mul), // 36 = 34 * 35
        // the activations where no op takes them, an affine map with a
        // number per value, a transpose of rows and columns, and a sum
        // with a per-channel value
        Op::Pointwise(Pointwise::Sigmoid),
        Op::Pointwise(Pointwise::Tanh),
        Op::Pointwise(Pointwise::Leaky(0.3)),
        Op::Pointwise(Pointwise::Exp),
        Op::Pointwise(Pointwise::Log),
        Op::Affine {
            scale: (0..270).map(|i| 0.5 + (i % 7) as f64 * 0.2).collect(),
            shift: (0..270).map(|i| (i % 5) as f64 * 0.1 - 0.2).collect(),
        },
        Op::Gather {
            index: (0..270)
                .map(|i| {
                    let (x, y, c) = (i / 30, i / 6 % 5, i % 6);
                    (y * 9 + x) * 6 + c
                })
                .collect(),
            out: (9, 5, 6),
        },
        Op::MeanPool,            // 44
        Op::Binary(Binary::Add), // 45 = 43 + 44
        Op::MeanPool,
        build::linear(&w(&[5, 6]), Some(&w(&[5])), Act::Identity).unwrap(),
        Op::Softmax { log: true },
        Op::Reshape((1, 5, 1)),
    ];
    let inputs = (0..ops.len())
        .map(|i| match i {
            3 => vec![3, 2],
            14 => vec![13],
            15 => vec![14, 15],
            31 => vec![30, 30],
            32 => vec![32, 31],
            33 => vec![33, 31],
            34 => vec![31],
            35 => vec![34, 35],
            44 => vec![43, 44],
            _ => vec![i],
        })
        .collect();
    Net::graph((9, 9, 3), ops, inputs)
        .unwrap()
        .with_tap("residual", Some(4))
        .unwrap()
}

/// Ops `from..to` of `net` as a network of their own (from slot `from`).
fn segment(net: &Net<f64>, from: usize, to: usize) -> Net<f64> {
    let ops = net.ops()[from..to].to_vec();
    let inputs = (from..to)
        .map(|i| net.inputs(i).iter().map(|&s| s - from).collect())
        .collect();
    Net::graph(net.shape(from), ops, inputs).unwrap()
}

/// The largest difference between `net`'s input gradient of `sum(w *
/// out)` and central differences (step 1e-6) at 60 random coordinates,
/// over the largest gradient.
pub fn fd_worst(net: &Net<f64>, seed: u64) -> f64 {
    let n = 2;
    let (h, w, c) = net.input();
    let x = vec_f64(&uniform(&[n, h, w, c], 0.05, 1.0, seed));
    let (oh, ow, oc) = net.output();
    let w = vec_f64(&uniform(&[n, oh, ow, oc], -1.0, 1.0, seed + 1));
    let (_, g) = engine(net, &x, n, &w);
    let scalar = |x: &[f64]| -> f64 {
        let mut ws = Workspace::default();
        net.forward(x, n, &mut ws)
            .unwrap()
            .iter()
            .zip(&w)
            .map(|(a, b)| a * b)
            .sum()
    };
    let gmax = g.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(gmax > 0.0);
    let mut rng = ChaCha8Rng::seed_from_u64(seed + 2);
    let mut worst = 0.0f64;
    for _ in 0..60 {
        let i = rng.random_range(0..x.len());
        let (mut a, mut b) = (x.clone(), x.clone());
        a[i] += 1e-6;
        b[i] -= 1e-6;
        let fd = (scalar(&a) - scalar(&b)) / 2e-6;
        worst = worst.max((fd - g[i]).abs() / gmax);
    }
    worst
}

/// [`every_op`] in four parts (the convolutions, pooling and LRN; the
/// slices, pointwise functions, padding, resizing and softmax; the
/// elementwise ops of two values; the activations, the per-value affine
/// map, the gather and the head), each against central
/// differences in f64: over the whole chain the input gradient is too
/// small next to the output for differences to measure it.
#[test]
fn engine_gradients_match_finite_differences_in_f64() {
    let net = every_op();
    for (k, (from, to)) in [(0, 13), (13, 30), (30, 36), (36, net.len())]
        .into_iter()
        .enumerate()
    {
        let worst = fd_worst(&segment(&net, from, to), 1 + 10 * k as u64);
        assert!(
            worst < 1e-6,
            "ops {from}..{to}: engine gradient vs finite differences {worst:e}"
        );
    }
}

/// The operations `ppgn bench` divides by a step's time: a convolution
/// counts two per weight per output pixel, a transposed one two per weight
/// per input pixel, a depthwise one two per tap per output pixel, any
/// other op one per output value; a counted forward and backward pass adds
/// that count twice per image (at least: other tests' passes may land in
/// the same process-wide count), and the machine's measured peak is a
/// positive rate.
#[test]
fn the_engine_counts_its_operations() {
    use ppgn::nn::fast::flops;
    let mut w = weights(3);
    let ops: Vec<Op<f64>> = vec![
        // 6x6x2 -> 6x6x5: 2 * (5 * 2 * 9) * 36
        build::conv(
            Window::symmetric(6, 6, 2, 3, 1, 1),
            &w(&[5, 2, 3, 3]),
            Some(&w(&[5])),
            Act::Relu,
        )
        .unwrap(),
        // -> 3x3x5: 2 * (5 * 9) * 9
        build::depthwise(
            Window::symmetric(6, 6, 5, 3, 2, 1),
            &w(&[5, 1, 3, 3]),
            None,
            Act::Identity,
        )
        .unwrap(),
        // -> 6x6x2: 2 * (5 * 2 * 16) * 9 input pixels
        build::conv_transpose((3, 3), &w(&[5, 2, 4, 4]), Some(&w(&[2])), 2, 1, Act::Tanh).unwrap(),
        // -> 1x1x2: 2
        Op::MeanPool,
    ];
    let net = Net::new((6, 6, 2), ops).unwrap();
    assert_eq!(net.output(), (1, 1, 2));
    let per_image = 6480 + 810 + 2880 + 2;
    assert_eq!(net.flops_per_image(), per_image);
    let n = 3;
    let x: Vec<f64> = (0..n * 72).map(|i| (i as f64 * 0.37).sin()).collect();
    let mut ws = Workspace::default();
    let mut dx = Vec::new();
    flops::start();
    net.forward(&x, n, &mut ws).unwrap();
    net.backward(&[1.0; 6], &mut ws, &mut dx).unwrap();
    let counted = flops::stop();
    assert!(counted >= 2 * n as u64 * per_image, "{counted}");
    let (peak, vector) = flops::peak_gflops();
    assert!(
        peak.is_finite() && peak > 0.0,
        "{peak} GFLOP/s with {vector}"
    );
}

/// The reference path runs the engine's own description through candle's
/// autograd (`nn::fast::reference`): on a graph with every op and
/// activation (a residual add, asymmetric padding, a transposed
/// convolution, a resample) its outputs and input gradients equal the
/// engine's in f64, and a tap's value is the engine's slot.
#[test]
fn reference_interpreter_matches_the_engine_on_every_op_in_f64() {
    use ppgn::nn::fast::reference;
    let net = every_op();
    let n = 3;
    let x = uniform(&[n, 9, 9, 3], 0.0, 1.0, 31);
    let w = vec_f64(&uniform(&[n, 1, 5, 1], -1.0, 1.0, 32));
    let (out, grad) = engine(&net, &vec_f64(&x), n, &w);
    let (out_ref, grad_ref) = reference(&|t| reference::forward(&net, t).unwrap(), &x, &w);
    assert!(
        rel(&out, &out_ref) < 1e-12,
        "outputs {}",
        rel(&out, &out_ref)
    );
    assert!(
        rel(&grad, &grad_ref) < 1e-10,
        "gradients {}",
        rel(&grad, &grad_ref)
    );
    let slot = net.tap("residual").unwrap();
    let mut ws = Workspace::default();
    net.forward(&vec_f64(&x), n, &mut ws).unwrap();
    let at_tap = vec_f64(&reference::forward_to(&net, &x, slot).unwrap());
    assert!(rel(ws.activation(slot), &at_tap) < 1e-12);
}

#[test]
fn engine_rejects_ops_that_do_not_chain() {
    let mut w = weights(20);
    let err = build::net::<f64>(
        (8, 8, 3),
        vec![build::conv(
            Window::symmetric(8, 8, 4, 3, 1, 1),
            &w(&[2, 4, 3, 3]),
            None,
            Act::Relu,
        )
        .unwrap()],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("op 0") && err.contains("(8, 8, 4)"), "{err}");
    let err = Net::<f64>::graph((4, 4, 3), vec![Op::Add], vec![vec![0, 7]])
        .unwrap_err()
        .to_string();
    assert!(err.contains("op 0") && err.contains("slots 0..=0"), "{err}");
    let err = build::net::<f64>((4, 4, 3), vec![Op::Add])
        .unwrap_err()
        .to_string();
    assert!(err.contains("2 or more"), "{err}");
    // taps: an unknown name lists the known ones; `upto` ends at a tap
    let net = every_op();
    let err = net.upto("nope", false).unwrap_err().to_string();
    assert!(
        err.contains("unknown layer") && err.contains("residual"),
        "{err}"
    );
    let head = net.upto("residual", false).unwrap();
    assert_eq!((head.len(), head.output()), (4, (5, 5, 4)));
}

#[test]
fn engine_matches_candle_on_the_fashion_stack_in_f64() {
    let s = Stack::load(&stack::resolve_dir(None), DType::F64, &Device::Cpu).unwrap();
    let net = s
        .generator
        .compile::<f64>()
        .unwrap()
        .then(s.classifier.compile().unwrap())
        .unwrap();
    // enough chains that convolutions go a few images at a time per thread
    let n = 40;
    let h = (uniform(&[n, 256], -1.0, 3.0, 5).relu()).unwrap();
    let w = vec_f64(&uniform(&[n, 10], -1.0, 1.0, 6));
    let (out, g) = engine(&net, &vec_f64(&h), n, &w);
    let f = |h: &Tensor| {
        s.classifier
            .forward(&s.generator.forward(h).unwrap())
            .unwrap()
    };
    let (out_ref, g_ref) = reference(&f, &h, &w);
    assert!(
        rel(&out, &out_ref) < 1e-12,
        "logits {:e}",
        rel(&out, &out_ref)
    );
    assert!(rel(&g, &g_ref) < 1e-10, "gradient {:e}", rel(&g, &g_ref));
}

/// The h-DAE's compiled graph (a residual MLP: an `Op::Add` of the input
/// and the MLP's output) equals its training module in f64, on the engine
/// and through the reference interpreter, outputs and input gradients.
#[test]
fn h_dae_graph_matches_its_training_module_in_f64() {
    use candle_core::Module;
    let s = Stack::load(&stack::resolve_dir(None), DType::F64, &Device::Cpu).unwrap();
    let dae = s.h_dae.as_ref().expect("the shipped stack has an h-DAE");
    let net = dae.compile::<f64>().unwrap();
    let n = 5;
    let h = (uniform(&[n, 256], -1.0, 3.0, 15).relu()).unwrap();
    let w = vec_f64(&uniform(&[n, 256], -1.0, 1.0, 16));
    graph_matches_module(&net, &|h| dae.forward(h).unwrap(), &h, &w);
}

/// `net` equals `module` in f64 at `x` (outputs to 1e-12, the input
/// gradient of `w . output` to 1e-10), on the engine and through the
/// reference interpreter.
pub fn graph_matches_module(
    net: &Net<f64>,
    module: &dyn Fn(&Tensor) -> Tensor,
    x: &Tensor,
    w: &[f64],
) {
    let n = x.dim(0).unwrap();
    let (out, g) = engine(net, &vec_f64(x), n, w);
    let (out_ref, g_ref) = reference(module, x, w);
    assert!(
        rel(&out, &out_ref) < 1e-12,
        "engine {:e}",
        rel(&out, &out_ref)
    );
    assert!(
        rel(&g, &g_ref) < 1e-10,
        "engine gradient {:e}",
        rel(&g, &g_ref)
    );
    let interp = |x: &Tensor| ppgn::nn::fast::reference::forward(net, x).unwrap();
    let (out_i, g_i) = reference(&interp, x, w);
    assert!(
        rel(&out_i, &out_ref) < 1e-12,
        "interpreter {:e}",
        rel(&out_i, &out_ref)
    );
    assert!(
        rel(&g_i, &g_ref) < 1e-12,
        "interpreter gradient {:e}",
        rel(&g_i, &g_ref)
    );
}

/// The x-DAE's compiled graph (PPGN-x's prior: convolutions, a strided
/// one, a pixel shuffle) equals its training module in f64, on the engine
/// and through the reference interpreter.
#[test]
fn x_dae_graph_matches_its_training_module_in_f64() {
    use candle_core::Module;
    let s = Stack::load(&stack::resolve_dir(None), DType::F64, &Device::Cpu).unwrap();
    let dae = s.x_dae.as_ref().expect("the shipped stack has an x-DAE");
    let net = dae.compile::<f64>().unwrap();
    let x = uniform(&[3, 28, 28, 1], 0.0, 1.0, 17);
    let w = vec_f64(&uniform(&[3, 28, 28, 1], -1.0, 1.0, 18));
    graph_matches_module(&net, &|x| dae.forward(x).unwrap(), &x, &w);
}

#[test]
fn engine_matches_the_reference_path_on_the_pretrained_pair_in_f64() {
    let home = pretrained::home();
    let g = pretrained::dcgan_faces(&home, DType::F64).unwrap();
    let c = pretrained::efficientnet_lite0(&home, DType::F64).unwrap();
    // the generator alone, then generator + resize + classifier as PlugPair compiles them
    let gnet = g.compile::<f64>().unwrap();
    let n = 8; // transposed convolutions a few images at a time per thread
    let z = uniform(&[n, 100], -1.5, 1.5, 8);
    let w = vec_f64(&uniform(&[n, 64, 64, 3], -1.0, 1.0, 9));
    let (out, grad) = engine(&gnet, &vec_f64(&z), n, &w);
    let (out_ref, grad_ref) = reference(
        &|z| ppgn::nn::fast::reference::forward(&gnet, z).unwrap(),
        &z,
        &w,
    );
    assert!(
        rel(&out, &out_ref) < 1e-12,
        "dcgan images {:e}",
        rel(&out, &out_ref)
    );
    assert!(
        rel(&grad, &grad_ref) < 1e-10,
        "dcgan gradient {:e}",
        rel(&grad, &grad_ref)
    );

    let cnet = build::net(
        (64, 64, 3),
        vec![
            build::bilinear((64, 64), 224).unwrap(),
            EfficientNetLite0::normalise_op(),
        ],
    )
    .unwrap()
    .then(c.compile(224).unwrap())
    .unwrap();
    let n = 1;
    let x = uniform(&[n, 64, 64, 3], 0.0, 1.0, 10);
    let w = vec_f64(&uniform(&[n, 1000], -1.0, 1.0, 11));
    let (out, grad) = engine(&cnet, &vec_f64(&x), n, &w);
    let f = |x: &Tensor| ppgn::nn::fast::reference::forward(&cnet, x).unwrap();
    let (out_ref, grad_ref) = reference(&f, &x, &w);
    assert!(
        rel(&out, &out_ref) < 1e-10,
        "efficientnet logits {:e}",
        rel(&out, &out_ref)
    );
    assert!(
        rel(&grad, &grad_ref) < 1e-8,
        "efficientnet gradient {:e}",
        rel(&grad, &grad_ref)
    );
}

/// Runs `ppgn sample ARGS --engine E --out DIR/E` for both engines and
/// returns, per chain, the largest difference of their samples.npy.
fn engines_differ(args: &[&str], name: &str) -> Vec<f64> {
    let d = tempdir(name);
    let read = |e: &str| {
        let out = d.join(e);
        let o = ppgn_into(args, &out, &["--engine", e, "--quiet"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let (shape, v) = ppgn::data::npy::read_f32(&out.join("samples.npy")).unwrap();
        Tensor::from_vec(v, shape, &Device::Cpu)
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap()
    };
    let (fast, reference) = (read("fast"), read("reference"));
    let _ = std::fs::remove_dir_all(&d);
    per_chain_diff(&fast, &reference)
}

/// `max |a_i - b_i|` over each chain `i` (the first dimension).
fn per_chain_diff(a: &Tensor, b: &Tensor) -> Vec<f64> {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_from(1)
        .unwrap()
        .max(1)
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// The fraction of `diffs` at most `tol`.
fn fraction_within(diffs: &[f64], tol: f64) -> f64 {
    diffs.iter().filter(|&&d| d <= tol).count() as f64 / diffs.len() as f64
}

#[test]
fn fast_engine_samples_match_the_reference_path() {
    // Whole chains are compared by the fraction that agree: the PPGN chains
    // are chaotic (ReLU kinks, the clip, the step normalised by mean
    // |grad|), so a discrete event tipped by one rounding step (a summation
    // order that differs with the CPU's vector width) parts one chain from
    // its twin while the others agree to rounding. Measured: of 10 chains
    // after 3 steps, 9 agreed to 1e-6 on a machine with AVX-512 and one
    // differed by 0.31; the gradients themselves agree to 1e-4 (the
    // targets test), which is what a single step compares.
    let w1 = engines_differ(
        &[
            "sample",
            "--class",
            "all",
            "--chains",
            "2",
            "--steps",
            "3",
            "--seed",
            "4",
            "--record-every",
            "1",
        ],
        "engine-w1",
    );
    assert_eq!(w1.len(), 20);
    let agree = fraction_within(&w1, 1e-4);
    assert!(agree >= 0.8, "only {agree} of fashion chains agree: {w1:?}");
    let w2 = engines_differ(
        &[
            "sample",
            "--generator",
            "dcgan-faces",
            "--classifier",
            "efficientnet-lite0",
            "--class",
            "sunglasses",
            "--chains",
            "2",
            "--steps",
            "1",
            "--seed",
            "4",
            "--record-every",
            "1",
        ],
        "engine-w2",
    );
    // one step from the same start: the gradients' rounding only
    assert!(
        w2.iter().all(|&d| d < 1e-3),
        "faces samples differ by {w2:?} after one step"
    );
}

#[test]
fn fast_engine_samples_do_not_depend_on_the_thread_count() {
    // work is split over images, channel or row blocks and cache-sized
    // image blocks depending on the threads; no output element's sum is
    let d = tempdir("engine-threads");
    let run = |threads: &str| {
        let out = d.join(threads);
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_ppgn"))
            .args([
                "sample", "--class", "all", "--chains", "6", "--steps", "4", "--seed", "2",
                "--quiet",
            ])
            .arg("--out")
            .arg(&out)
            .env("RAYON_NUM_THREADS", threads)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        std::fs::read(out.join("samples.npy")).unwrap()
    };
    let one = run("1");
    assert!(one == run("3"), "1 and 3 threads give different samples");
    let _ = std::fs::remove_dir_all(&d);
}

/// The engine's targets against the reference ones on the shipped stack,
/// in f32: the joint prior plus class term (`ppgn`), the Gaussian prior
/// plus log-softmax with its log-density values (`xu-mala`), hidden
/// units before their ReLU with either prior, and inpainting.
#[test]
fn engine_targets_match_the_reference_targets() {
    use ppgn::density::Term;
    use ppgn::run::config::preset::{preset, Engine, SamplerConfig};
    use ppgn::run::drive::chains::random_codes;
    use ppgn::run::pairs::fashion::{target, Condition};
    let s = Stack::load(&stack::resolve_dir(None), DType::F32, &Device::Cpu).unwrap();
    let n = 10;
    let h = random_codes(n, 256, 3).unwrap();
    let classes = Condition::Classes((0..n).collect());
    let classes_again = || Condition::Classes((0..n).collect());
    // a 10x8 hole at (9, 6) in random "real" images, context weight 0.5
    let mut hole = vec![0f32; 28 * 28];
    for y in 6..14 {
        for x in 9..19 {
            hole[y * 28 + x] = 1.0;
        }
    }
    let inpainting = |seed, weight| Condition::Inpaint {
        classes: (0..n).collect(),
        real: uniform(&[1, 28, 28, 1], 0.0, 1.0, seed)
            .to_dtype(DType::F32)
            .unwrap(),
        mask: Tensor::from_vec(hole.clone(), (1, 28, 28, 1), &Device::Cpu).unwrap(),
        weight,
    };
    let inpaint = inpainting(4, 0.5);
    // S10's clamp is inside every pass: with no context term, the class
    // term's gradient still depends on the known pixels
    for engine in [Engine::Fast, Engine::Reference] {
        let cfg = SamplerConfig {
            engine,
            ..preset("ppgn").unwrap()
        };
        let grad = |seed| {
            let g = target(&s, &cfg, &inpainting(seed, 0.0))
                .unwrap()
                .value_and_grad(&h)
                .unwrap()
                .grad;
            vec_f64(&g.to_dtype(DType::F64).unwrap())
        };
        let (a, b) = (grad(4), grad(5));
        assert!(rel(&a, &b) > 1e-2, "{engine:?}: {:e}", rel(&a, &b));
    }
    let neuron = |layer: &str, unit, at| Condition::Neuron {
        layer: layer.into(),
        neuron: ppgn::density::condition::Neuron { unit, at },
    };
    for (name, condition) in [
        ("ppgn", classes.clone()),
        ("xu-mala", classes.clone()),
        ("dgn-am", classes),
        ("ppgn", neuron("h1", 5, Some((2, 3)))),
        ("ppgn", neuron("h", 17, None)),
        ("ppgn", neuron("logits", 3, None)),
        ("dgn-am", neuron("h1", 9, None)),
        ("ppgn", inpaint.clone()),
        ("xu-mala", inpaint),
        ("h-dae", neuron("h1", 2, None)),
        // eps2 != 1 weighs the condition alike on both paths, with the
        // joint prior in the engine's term and without it
        ("ppgn eps2", classes_again()),
        ("xu-mala eps2", classes_again()),
    ] {
        let eval = |engine| {
            let cfg = match name {
                // the ppgn preset with the h-DAE prior in place of the joint
                "h-dae" => SamplerConfig {
                    engine,
                    prior: ppgn::run::config::preset::PriorKind::HDae,
                    ..preset("ppgn").unwrap()
                },
                "ppgn eps2" | "xu-mala eps2" => SamplerConfig {
                    engine,
                    eps2: 0.37,
                    ..preset(name.trim_end_matches(" eps2")).unwrap()
                },
                _ => SamplerConfig {
                    engine,
                    ..preset(name).unwrap()
                },
            };
            target(&s, &cfg, &condition)
                .unwrap()
                .value_and_grad(&h)
                .unwrap()
        };
        let (fast, reference) = (eval(Engine::Fast), eval(Engine::Reference));
        let (g, g_ref) = (
            vec_f64(&fast.grad.to_dtype(DType::F64).unwrap()),
            vec_f64(&reference.grad.to_dtype(DType::F64).unwrap()),
        );
        assert!(
            rel(&g, &g_ref) < 1e-4,
            "{name} {condition:?}: gradient {:e}",
            rel(&g, &g_ref)
        );
        match (fast.log_density, reference.log_density) {
            (Some(a), Some(b)) => assert!(rel(&a, &b) < 1e-5, "{name}: values {:e}", rel(&a, &b)),
            (None, None) => {}
            other => panic!("{name}: values {other:?}"),
        }
    }
}

#[test]
fn engine_term_rejects_what_does_not_fit() {
    use ppgn::density::backend::Backend;
    use ppgn::density::condition::ClassGradient;
    use ppgn::density::condition::NetCondition;
    use ppgn::density::Term;
    use ppgn::nn::fast::Engine;
    use std::sync::Arc;
    let mut w = weights(30);
    let net = Arc::new(
        build::net::<f32>(
            (1, 1, 3),
            vec![build::linear(
                &w(&[4, 3]).to_dtype(DType::F32).unwrap(),
                None,
                Act::Identity,
            )
            .unwrap()],
        )
        .unwrap(),
    );
    let lsm = ClassGradient::LogSoftmax;
    let err = NetCondition::class(
        Backend::new(net.clone(), Engine::Fast).unwrap(),
        vec![4],
        lsm,
        1.0,
        None,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("unknown class \"4 (out of range)\"") && err.contains("4 classes"),
        "{err}"
    );
    let err = NetCondition::class(
        Backend::new(net.clone(), Engine::Fast).unwrap(),
        vec![0],
        lsm,
        1.0,
        Some((1, 1e-5)),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("joint prior"), "{err}");
    let term = NetCondition::class(
        Backend::new(net, Engine::Reference).unwrap(),
        vec![1, 2],
        lsm,
        1.0,
        None,
    )
    .unwrap();
    let bad = Tensor::zeros((2, 5), DType::F32, &Device::Cpu).unwrap();
    let err = term.value_and_grad(&bad).unwrap_err().to_string();
    assert!(
        err.contains("positions per chain")
            && err.contains("got 5 values")
            && err.contains("1x1x3"),
        "{err}"
    );
    let wrong_n = Tensor::zeros((3, 3), DType::F32, &Device::Cpu).unwrap();
    let err = term.value_and_grad(&wrong_n).unwrap_err().to_string();
    assert!(
        err.contains("one class per chain (3)") && err.contains("got 2 classes"),
        "{err}"
    );
}

/// The one condition type's objectives on both backends against their
/// closed forms, on a linear network `logits = W x` (so `d/dx = W^T
/// d/dlogits`): the log-softmax (value and gradient), the softmax
/// probability, the logit, a unit, the weight, and the joint prior read at
/// a tap of the code's shape.
#[test]
fn conditions_match_their_closed_forms_on_both_backends() {
    use ppgn::density::backend::Backend;
    use ppgn::density::condition::{ClassGradient, NetCondition, Neuron, Objective};
    use ppgn::density::Term;
    use ppgn::nn::fast::Engine;
    use std::sync::Arc;
    let w = uniform(&[4, 3], -1.0, 1.0, 40)
        .to_dtype(DType::F32)
        .unwrap();
    let wv: Vec<f64> = vec_f64(&w.to_dtype(DType::F64).unwrap());
    // slot 1: a copy of the code (the joint prior's "E(G(h))" is h + 0.5)
    let net = Arc::new(
        Net::<f32>::new(
            (1, 1, 3),
            vec![
                build::affine(3, 1.0, 0.5),
                build::affine(3, 1.0, -0.5),
                build::linear(&w, None, Act::Identity).unwrap(),
            ],
        )
        .unwrap(),
    );
    let x = uniform(&[2, 3], -1.0, 1.0, 41)
        .to_dtype(DType::F32)
        .unwrap();
    let xv = vec_f64(&x.to_dtype(DType::F64).unwrap());
    let classes = [2usize, 0];
    for engine in [Engine::Fast, Engine::Reference] {
        for gradient in [
            ClassGradient::LogSoftmax,
            ClassGradient::Softmax,
            ClassGradient::Logit,
        ] {
            let term = NetCondition::class(
                Backend::new(net.clone(), engine).unwrap(),
                classes.to_vec(),
                gradient,
                0.7,
                None,
            )
            .unwrap();
            let e = term.value_and_grad(&x).unwrap();
            let g = vec_f64(&e.grad.to_dtype(DType::F64).unwrap());
            for (i, &y) in classes.iter().enumerate() {
                let xi = &xv[i * 3..i * 3 + 3];
                let a: Vec<f64> = (0..4)
                    .map(|k| (0..3).map(|j| wv[k * 3 + j] * xi[j]).sum())
                    .collect();
                let z: f64 = a.iter().map(|v| v.exp()).sum();
                let p: Vec<f64> = a.iter().map(|v| v.exp() / z).collect();
                let d: Vec<f64> = (0..4)
                    .map(|k| {
                        let onehot = f64::from(k == y);
                        match gradient {
                            ClassGradient::LogSoftmax => onehot - p[k],
                            ClassGradient::Softmax => p[y] * (onehot - p[k]),
                            ClassGradient::Logit => onehot,
                        }
                    })
                    .collect();
                for j in 0..3 {
                    let want = 0.7 * (0..4).map(|k| wv[k * 3 + j] * d[k]).sum::<f64>();
                    assert!(
                        (g[i * 3 + j] - want).abs() < 1e-5,
                        "{engine:?} {gradient:?} chain {i}: {} vs {want}",
                        g[i * 3 + j]
                    );
                }
                match (&e.log_density, gradient) {
                    (Some(v), ClassGradient::LogSoftmax) => {
                        assert!((v[i] - 0.7 * p[y].ln()).abs() < 1e-5, "{engine:?} value")
                    }
                    (None, ClassGradient::Softmax | ClassGradient::Logit) => {}
                    (v, _) => panic!("{engine:?} {gradient:?}: value {v:?}"),
                }
            }
        }
        // unit 1 of the output: d/dx = W[1, :]; the joint prior adds
        // eps1 * (slot 1 - x) = eps1 * 0.5 per coordinate
        let term = NetCondition::new(
            Backend::new(net.clone(), engine).unwrap(),
            Objective::Unit(Neuron { unit: 1, at: None }),
            2.0,
            Some((1, 0.1)),
        )
        .unwrap();
        assert!(!term.has_value());
        let g = vec_f64(
            &term
                .value_and_grad(&x)
                .unwrap()
                .grad
                .to_dtype(DType::F64)
                .unwrap(),
        );
        for (i, v) in g.iter().enumerate() {
            let want = 2.0 * wv[3 + i % 3] + 0.1 * 0.5;
            assert!(
                (v - want).abs() < 1e-5,
                "{engine:?} unit + joint: {v} vs {want}"
            );
        }
    }
}

/// The engine's output and input gradient of `op` on `x [n, h, w, c]`
/// against candle's own NCHW op `f` (forward and autograd backward).
fn against_candle(op: Op<f64>, x: &Tensor, f: &dyn Fn(&Tensor) -> Tensor, what: &str) {
    let (n, h, w, c) = x.dims4().unwrap();
    let net = build::net((h, w, c), vec![op]).unwrap();
    let (oh, ow, oc) = net.output();
    let dy = vec_f64(&uniform(&[n, oh, ow, oc], -1.0, 1.0, 77));
    let (out, grad) = engine(&net, &vec_f64(x), n, &dy);
    // candle in NCHW: permute in, op, permute out
    let nchw = |t: &Tensor| {
        f(&t.permute((0, 3, 1, 2)).unwrap())
            .permute((0, 2, 3, 1))
            .unwrap()
    };
    let (out_ref, grad_ref) = reference(&nchw, x, &dy);
    assert!(
        rel(&out, &out_ref) < 1e-12,
        "{what}: output {:e}",
        rel(&out, &out_ref)
    );
    assert!(
        rel(&grad, &grad_ref) < 1e-12,
        "{what}: gradient {:e}",
        rel(&grad, &grad_ref)
    );
}

#[test]
fn engine_ops_match_candles_own_ops_on_random_shapes() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut w = weights(40);
    for case in 0..12 {
        let n = rng.random_range(1..4);
        let (h, wd) = (rng.random_range(5..12), rng.random_range(5..12));
        let (cin, cout) = (rng.random_range(1..6), rng.random_range(1..6));
        let k = [1, 3, 5][rng.random_range(0..3)].min(h).min(wd);
        let stride = rng.random_range(1..3);
        let x = uniform(&[n, h, wd, cin], -1.0, 1.0, 100 + case);
        // convolution, TensorFlow "same" (asymmetric) padding
        let g = Window::tf_same(h, wd, cin, k, stride);
        let wt = w(&[cout, cin, k, k]);
        let pads = (
            g.pad_top,
            ((g.ho - 1) * stride + k).saturating_sub(h + g.pad_top),
            g.pad_left,
            ((g.wo - 1) * stride + k).saturating_sub(wd + g.pad_left),
        );
        // rows and columns the windows reach (candle's backward needs the
        // input covered exactly: the rest is cut off, its gradient zero)
        let used = |n: usize, o: usize, pad: usize| n.min((o - 1) * stride + k - pad);
        let (uh, uw) = (used(h, g.ho, g.pad_top), used(wd, g.wo, g.pad_left));
        let conv = |x: &Tensor, wt: &Tensor, groups: usize| {
            x.narrow(2, 0, uh)
                .unwrap()
                .narrow(3, 0, uw)
                .unwrap()
                .pad_with_zeros(2, pads.0, pads.1)
                .unwrap()
                .pad_with_zeros(3, pads.2, pads.3)
                .unwrap()
                .conv2d(wt, 0, stride, 1, groups)
                .unwrap()
        };
        let what = format!("conv {g:?} cout {cout}");
        against_candle(
            build::conv(g, &wt, None, Act::Identity).unwrap(),
            &x,
            &|x| conv(x, &wt, 1),
            &what,
        );
        // depthwise: candle's grouped convolution
        let dw = w(&[cin, 1, k, k]);
        let what = format!("depthwise {g:?}");
        against_candle(
            build::depthwise(g, &dw, None, Act::Identity).unwrap(),
            &x,
            &|x| conv(x, &dw, cin),
            &what,
        );
        // transposed convolution, symmetric padding below the kernel size
        let pad = rng.random_range(0..k);
        let wt = w(&[cin, cout, k, k]);
        let what = format!("conv transpose {h}x{wd}x{cin} k {k} stride {stride} pad {pad}");
        against_candle(
            build::conv_transpose((h, wd), &wt, None, stride, pad, Act::Identity).unwrap(),
            &x,
            &|x| x.conv_transpose2d(&wt, pad, 0, stride, 1).unwrap(),
            &what,
        );
    }
}

/// PPGN-x on the engine: EfficientNet's class and unit gradients pulled
/// back through a candle decode (the cosine basis and the jitter of
/// `ppgn visualize`) against the reference terms, in f32.
#[test]
fn engine_conditions_behind_a_candle_decode_match_the_reference() {
    use ppgn::density::backend::Backend;
    use ppgn::density::condition::{ClassGradient, NetCondition, Neuron, Objective};
    use ppgn::density::image::{fourier_decoder, jittered};
    use ppgn::density::Term;
    use ppgn::models::efficientnet_lite::Layer;
    use ppgn::nn::fast::Engine;
    use ppgn::nn::{identity, Func as CandleNet};
    use std::sync::Arc;
    let c = Arc::new(pretrained::efficientnet_lite0(&pretrained::home(), DType::F32).unwrap());
    let (side, n) = (64, 2);
    let decode = fourier_decoder(side, 1.0);
    let pos = uniform(&[n, side, side, 3], -0.3, 0.3, 12)
        .to_dtype(DType::F32)
        .unwrap();
    let body = |layer: Option<Layer>| {
        let b = match layer {
            None => c.compile(side).unwrap(),
            Some(l) => c.compile_features(side, l).unwrap(),
        };
        let norm = build::net((side, side, 3), vec![EfficientNetLite0::normalise_op()]).unwrap();
        Arc::new(norm.then(b).unwrap())
    };
    // the networks' input: decoded, then jittered by a stream seeded
    // alike for both backends
    let seen_decode = |seed| -> CandleNet {
        let (d, j) = (decode.clone(), jittered(identity(), 4, seed));
        Arc::new(move |p: &Tensor| j(&d(p)?))
    };
    let grad = |t: &dyn Term| {
        let g = t.value_and_grad(&pos).unwrap().grad;
        vec_f64(&g.to_dtype(DType::F64).unwrap())
    };
    let lsm = ClassGradient::LogSoftmax;
    let class = |engine| {
        let backend = Backend::new(body(None), engine).unwrap();
        NetCondition::class(backend, vec![1, 88], lsm, 1.0, None)
            .unwrap()
            .with_decode(seen_decode(5))
            .unwrap()
    };
    let (g, g_ref) = (grad(&class(Engine::Fast)), grad(&class(Engine::Reference)));
    // A loose bound: in f32, a ReLU6 unit a rounding away from its kink
    // switches in one implementation and not the other. Measured at 12
    // points 1e-6 apart: both f32 paths are within 6e-6 (L2) of the f64
    // gradient at most points and up to 5e-3 at some (engine 5 of 12,
    // candle 3 of 12); here 1.6e-3. A wrong pull-back (a missed shift, a
    // dropped basis) is off by O(1).
    assert!(
        rel_l2(&g, &g_ref) < 1e-2,
        "class gradient {:e}",
        rel_l2(&g, &g_ref)
    );

    let layer = Layer::Block(10);
    let neuron = Neuron { unit: 5, at: None };
    let unit = |engine| {
        let backend = Backend::new(body(Some(layer)), engine).unwrap();
        NetCondition::new(backend, Objective::Unit(neuron), 1.0, None)
            .unwrap()
            .with_decode(seen_decode(6))
            .unwrap()
    };
    let (g, g_ref) = (grad(&unit(Engine::Fast)), grad(&unit(Engine::Reference)));
    assert!(
        rel(&g, &g_ref) < 1e-3,
        "unit gradient {:e}",
        rel(&g, &g_ref)
    );
}

/// Why the engines are compared over a few steps only: the PPGN chain is
/// chaotic. A relative change of 1e-6 in the start codes moves the
/// reference path's own images further than the engine's rounding does.
#[test]
fn ppgn_chains_amplify_rounding_while_most_agree_between_engines() {
    use ppgn::run::config::preset::{preset, Engine, SamplerConfig};
    use ppgn::run::drive::chains::{random_codes, Outcome, Pipeline};
    use ppgn::run::drive::driver::run_chains;
    use ppgn::run::pairs::fashion::Condition;
    let s = Stack::load(&stack::resolve_dir(None), DType::F32, &Device::Cpu).unwrap();
    let n = 10;
    let h = random_codes(n, 256, 0).unwrap();
    let condition = Condition::Classes((0..n).collect());
    let images = |engine, h: &Tensor, steps| {
        let cfg = SamplerConfig {
            engine,
            steps,
            ..preset("ppgn").unwrap()
        };
        let p = Pipeline::fashion(&s, &cfg, &condition).unwrap();
        let stop = std::sync::atomic::AtomicBool::new(false);
        let out = run_chains(
            &p,
            &cfg,
            h,
            0,
            1000,
            None,
            &stop,
            |_| Vec::new(),
            |_| Ok(()),
        );
        match out.unwrap() {
            Outcome::Finished(o) => o.images.to_dtype(DType::F64).unwrap(),
            Outcome::Interrupted(_) => unreachable!("not stopped"),
        }
    };
    let nudged = (&h * (1.0 + 1e-6)).unwrap();
    let mut moved = Vec::new();
    for steps in [3, 10] {
        let reference = images(Engine::Reference, &h, steps);
        let own = per_chain_diff(&reference, &images(Engine::Reference, &nudged, steps));
        let engines = per_chain_diff(&reference, &images(Engine::Fast, &h, steps));
        let max = |v: &[f64]| v.iter().cloned().fold(0.0, f64::max);
        eprintln!(
            "{steps} steps: reference moved by a 1e-6 nudge {:.2e}, fast vs reference {:.2e} \
             (largest over chains); chains within 1e-4: nudged {:.1}, engines {:.1}",
            max(&own),
            max(&engines),
            fraction_within(&own, 1e-4),
            fraction_within(&engines, 1e-4),
        );
        moved.push(max(&own));
        if steps == 3 {
            let agree = fraction_within(&engines, 1e-4);
            assert!(
                agree >= 0.8,
                "3 steps: only {agree} of chains agree: {engines:?}"
            );
        }
    }
    // the chaos that limits whole-chain comparisons: a relative nudge of
    // 1e-6 (about ten f32 rounding steps) grows by four orders of magnitude
    // within 10 steps in some chain
    assert!(
        moved[1] > 1e-2,
        "a 1e-6 nudge moved the chains by only {} after 10 steps",
        moved[1]
    );
}
