//! The one place where a density term's network runs: on the sampling
//! engine (`crate::nn::fast`: forward once, backward once, buffers reused
//! from step to step) or through candle's autograd on the same graph
//! (`--engine reference`, [`crate::nn::fast::reference`]). Terms hold a
//! [`Backend`] and compute the same way whichever it is; the manifest
//! records [`Backend::engine`].

use std::sync::{Arc, Mutex};

use candle_core::{Tensor, Var};

use crate::error::{Error, Result};
use crate::nn::fast::reference::Interpreter;
use crate::nn::fast::{Engine, Net, Workspace};

/// A network and what runs it.
pub struct Backend {
    net: Arc<Net<f32>>,
    how: How,
}

enum How {
    Fast(Mutex<Workspace<f32>>),
    Reference(Interpreter),
}

/// One pass of [`Backend::vjp`]: what the seed function returned, the
/// input as the network read it (flat), the values of the asked-for
/// slots, and the gradient at the input.
pub struct Pass<R> {
    pub seeded: R,
    pub input: Vec<f32>,
    pub slots: Vec<Vec<f32>>,
    pub grad: Vec<f32>,
}

impl Backend {
    pub fn new(net: Arc<Net<f32>>, engine: Engine) -> Result<Self> {
        let how = match engine {
            Engine::Fast => How::Fast(Mutex::new(Workspace::default())),
            Engine::Reference => How::Reference(Interpreter::new(net.clone())?),
        };
        Ok(Self { net, how })
    }

    pub fn net(&self) -> &Net<f32> {
        &self.net
    }

    pub fn engine(&self) -> Engine {
        match self.how {
            How::Fast(_) => Engine::Fast,
            How::Reference(_) => Engine::Reference,
        }
    }

    /// The network as a function, forward only: `[n, h, w, c]` out, or
    /// `[n, c]` for a vector, as [`crate::nn::fast::reference::func`]
    /// gives (the snapshots and measurements of a run, on its engine).
    pub fn func(self) -> crate::nn::Func {
        let last = self.net.len();
        let (h, w, c) = self.net.output();
        Arc::new(move |x: &Tensor| {
            let n = x.dim(0)?;
            let v = self
                .values(x, &[last])
                .map_err(candle_core::Error::wrap)?
                .remove(0);
            match (h, w) {
                (1, 1) => Tensor::from_vec(v, (n, c), x.device()),
                _ => Tensor::from_vec(v, (n, h, w, c), x.device()),
            }
        })
    }

    /// `x` as `n` flat inputs, or what is wrong with its shape.
    fn input(&self, x: &Tensor) -> Result<(usize, Vec<f32>)> {
        let n = x.dim(0)?;
        let per = x.elem_count() / n.max(1);
        let (ih, iw, ic) = self.net.input();
        if per != ih * iw * ic {
            return Err(Error::shape(
                "positions per chain",
                format!("{ih}x{iw}x{ic} values, what the network reads"),
                format!("{per} values"),
            ));
        }
        Ok((n, x.detach().flatten_all()?.to_vec1()?))
    }

    /// The values of `slots` on inputs `x [n, ...]`, forward only.
    pub fn values(&self, x: &Tensor, slots: &[usize]) -> Result<Vec<Vec<f32>>> {
        let (n, xv) = self.input(x)?;
        match &self.how {
            How::Fast(ws) => {
                let mut ws = ws.lock().unwrap_or_else(|e| e.into_inner());
                self.net.forward(&xv, n, &mut ws)?;
                Ok(slots.iter().map(|&s| ws.activation(s).to_vec()).collect())
            }
            How::Reference(interp) => {
                let x = Tensor::from_vec(xv, x.shape(), x.device())?;
                let ts = interp.forward_slots(&x, slots)?;
                ts.iter().map(|t| Ok(t.flatten_all()?.to_vec1()?)).collect()
            }
        }
    }

    /// One forward pass on `x [n, ...]` and the vector-Jacobian product
    /// back to `x`: `seed(output, d_output)` fills the gradient of the
    /// output (and returns what the term wants from it); `slots` are read
    /// off the same pass.
    pub fn vjp<R>(
        &self,
        x: &Tensor,
        slots: &[usize],
        seed: impl FnOnce(&[f32], &mut [f32]) -> Result<R>,
    ) -> Result<Pass<R>> {
        let (n, xv) = self.input(x)?;
        match &self.how {
            How::Fast(ws) => {
                let mut ws = ws.lock().unwrap_or_else(|e| e.into_inner());
                let out = self.net.forward(&xv, n, &mut ws)?;
                let mut d_out = vec![0f32; out.len()];
                let seeded = seed(out, &mut d_out)?;
                let mut grad = Vec::new();
                self.net.backward(&d_out, &mut ws, &mut grad)?;
                let slots = slots.iter().map(|&s| ws.activation(s).to_vec()).collect();
                Ok(Pass {
                    seeded,
                    input: xv,
                    slots,
                    grad,
                })
            }
            How::Reference(interp) => {
                let var = Var::from_tensor(&Tensor::from_slice(&xv, x.shape(), x.device())?)?;
                let mut want = vec![self.net.len()];
                want.extend_from_slice(slots);
                let ts = interp.forward_slots(var.as_tensor(), &want)?;
                let out: Vec<f32> = ts[0].flatten_all()?.to_vec1()?;
                let mut d_out = vec![0f32; out.len()];
                let seeded = seed(&out, &mut d_out)?;
                let d = Tensor::from_vec(d_out, ts[0].shape(), x.device())?;
                let grads = (&ts[0] * d)?.sum_all()?.backward()?;
                let grad = match grads.get(var.as_tensor()) {
                    Some(g) => g.flatten_all()?.to_vec1()?,
                    None => vec![0f32; x.elem_count()],
                };
                let slots = ts[1..]
                    .iter()
                    .map(|t| Ok(t.flatten_all()?.to_vec1()?))
                    .collect::<Result<_>>()?;
                Ok(Pass {
                    seeded,
                    input: xv,
                    slots,
                    grad,
                })
            }
        }
    }
}
