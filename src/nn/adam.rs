//! Adam with decoupled weight decay (S9.1: beta1 0.9, beta2 0.999, lr 2e-4;
//! the paper's "L2 regularization" becomes the decay). Written here rather
//! than using candle-nn's optimiser because a resumable training run must
//! save and restore the moment estimates, which candle-nn keeps private.

use std::collections::HashMap;

use candle_core::{backprop::GradStore, Result, Tensor, Var};

#[derive(Debug, Clone, Copy)]
pub struct AdamParams {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamParams {
    fn default() -> Self {
        Self {
            lr: 2e-4,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

pub struct Adam {
    pub params: AdamParams,
    vars: Vec<(String, Var)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    pub step: u64,
}

impl Adam {
    /// `vars` are named so the state can be saved; they are sorted by name.
    pub fn new(mut vars: Vec<(String, Var)>, params: AdamParams) -> Result<Self> {
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let m = vars
            .iter()
            .map(|(_, v)| v.zeros_like())
            .collect::<Result<Vec<_>>>()?;
        let v = m.clone();
        Ok(Self {
            params,
            vars,
            m,
            v,
            step: 0,
        })
    }

    pub fn backward_step(&mut self, loss: &Tensor) -> Result<()> {
        let grads = loss.backward()?;
        self.apply(&grads)
    }

    pub fn apply(&mut self, grads: &GradStore) -> Result<()> {
        self.step += 1;
        let p = self.params;
        let t = self.step as i32;
        let c1 = 1.0 / (1.0 - p.beta1.powi(t));
        let c2 = 1.0 / (1.0 - p.beta2.powi(t));
        for (i, (_, var)) in self.vars.iter().enumerate() {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let m = ((&self.m[i] * p.beta1)? + (g * (1.0 - p.beta1))?)?;
            let v = ((&self.v[i] * p.beta2)? + (g.sqr()? * (1.0 - p.beta2))?)?;
            let update = ((&m * c1)? / ((&v * c2)?.sqrt()? + p.eps)?)?;
            let decay = (var.as_tensor() * p.weight_decay)?;
            let next = (var.as_tensor() - ((update + decay)? * p.lr)?)?;
            var.set(&next)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(())
    }

    /// Moment estimates keyed `"{prefix}m.{name}"` / `"{prefix}v.{name}"`.
    pub fn state(&self, prefix: &str) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        for (i, (name, _)) in self.vars.iter().enumerate() {
            out.insert(format!("{prefix}m.{name}"), self.m[i].clone());
            out.insert(format!("{prefix}v.{name}"), self.v[i].clone());
        }
        out
    }

    /// Restores moments saved by [`Adam::state`]; `step` comes from the checkpoint's JSON.
    pub fn load_state(
        &mut self,
        tensors: &HashMap<String, Tensor>,
        prefix: &str,
        step: u64,
    ) -> Result<()> {
        for (i, (name, var)) in self.vars.iter().enumerate() {
            for (key, slot) in [("m", &mut self.m[i]), ("v", &mut self.v[i])] {
                let k = format!("{prefix}{key}.{name}");
                let t = tensors
                    .get(&k)
                    .ok_or_else(|| candle_core::Error::Msg(format!("checkpoint lacks {k}")))?;
                if t.dims() != var.dims() {
                    candle_core::bail!(
                        "checkpoint tensor {k} has shape {:?}, expected {:?}",
                        t.dims(),
                        var.dims()
                    );
                }
                *slot = t.clone();
            }
        }
        self.step = step;
        Ok(())
    }
}
