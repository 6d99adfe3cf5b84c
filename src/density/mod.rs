//! Log-density terms over a batch of chains. A term maps positions
//! `[chains, ...]` to the gradient of its log-density (same shape) and, when
//! it has one, the per-chain value. Samplers see only this interface, never
//! a model (`docs/architecture.md`: data flows `models -> density -> sampler`).

pub mod analytic;
pub mod backend;
pub mod condition;
pub mod image;
pub mod observation;
pub mod prior;
pub mod score;

use candle_core::{DType, Tensor, Var};

use crate::error::{Error, Result};

/// One evaluation of a term at a batch of positions.
#[derive(Debug, Clone)]
pub struct Eval {
    /// `log p` per chain, when the term has a value.
    pub log_density: Option<Vec<f64>>,
    /// `d log p / d position`, shaped like the position.
    pub grad: Tensor,
}

pub trait Term: Send + Sync {
    fn name(&self) -> String;
    /// Whether [`Term::value_and_grad`] returns values (MH needs them).
    fn has_value(&self) -> bool;
    fn value_and_grad(&self, position: &Tensor) -> Result<Eval>;
    /// The term at noise level `level` where it depends on one (a
    /// score-based prior and what reads its denoised estimate,
    /// [`score`]); the others ignore the level.
    fn value_and_grad_at(&self, position: &Tensor, level: Option<f64>) -> Result<Eval> {
        let _ = level;
        self.value_and_grad(position)
    }
    /// The per-chain value alone (`None` without one), for callers that
    /// need no gradient. The same numbers as [`Term::value_and_grad`]'s;
    /// terms that run a network override it with a forward pass only,
    /// well under half the time of a forward and backward pass.
    fn value(&self, position: &Tensor) -> Result<Option<Vec<f64>>> {
        Ok(self.value_and_grad(position)?.log_density)
    }
    /// What to use instead when a sampler needs a value this term lacks.
    fn value_hint(&self) -> String {
        "use a term with a log-density value".into()
    }
}

/// Per-chain sum over all but the first dimension, as f64.
pub fn per_chain_sum(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.to_dtype(DType::F64)?.flatten_from(1)?.sum(1)?.to_vec1()?)
}

/// Evaluates `f` (per-chain log-density `[chains]`) and its gradient by autodiff.
pub fn autodiff(
    position: &Tensor,
    f: impl FnOnce(&Tensor) -> candle_core::Result<Tensor>,
) -> Result<Eval> {
    let var = Var::from_tensor(&position.detach())?;
    let value = f(var.as_tensor())?;
    let grads = value.sum_all()?.backward()?;
    let grad = match grads.get(var.as_tensor()) {
        Some(g) => g.clone(),
        None => var.as_tensor().zeros_like()?,
    };
    let log_density = value.to_dtype(candle_core::DType::F64)?.to_vec1::<f64>()?;
    Ok(Eval {
        log_density: Some(log_density),
        grad,
    })
}

/// A weighted sum of terms, `sum_i w_i log p_i` (PPGN eq. 13: eps1 on the
/// prior, eps2 on the condition, more weights for more terms).
pub struct Sum {
    pub terms: Vec<(f64, Box<dyn Term>)>,
}

impl Sum {
    pub fn new(terms: Vec<(f64, Box<dyn Term>)>) -> Self {
        Self { terms }
    }
}

impl Term for Sum {
    fn name(&self) -> String {
        self.terms
            .iter()
            .map(|(w, t)| format!("{w} * {}", t.name()))
            .collect::<Vec<_>>()
            .join(" + ")
    }
    fn has_value(&self) -> bool {
        self.terms.iter().all(|(w, t)| *w == 0.0 || t.has_value())
    }
    fn value_hint(&self) -> String {
        self.terms
            .iter()
            .find(|(w, t)| *w != 0.0 && !t.has_value())
            .map(|(_, t)| format!("{}: {}", t.name(), t.value_hint()))
            .unwrap_or_default()
    }
    fn value_and_grad(&self, position: &Tensor) -> Result<Eval> {
        self.value_and_grad_at(position, None)
    }
    fn value_and_grad_at(&self, position: &Tensor, level: Option<f64>) -> Result<Eval> {
        let n = position.dim(0)?;
        let mut grad = position.zeros_like()?;
        let mut value = self.has_value().then(|| vec![0.0; n]);
        for (w, t) in &self.terms {
            if *w == 0.0 {
                continue;
            }
            let e = t.value_and_grad_at(position, level)?;
            grad = (grad + (e.grad * *w)?)?;
            if let (Some(v), Some(ev)) = (value.as_mut(), e.log_density) {
                for (a, b) in v.iter_mut().zip(ev) {
                    *a += w * b;
                }
            }
        }
        Ok(Eval {
            log_density: value,
            grad,
        })
    }
    fn value(&self, position: &Tensor) -> Result<Option<Vec<f64>>> {
        if !self.has_value() {
            return Ok(None);
        }
        let mut value = vec![0.0; position.dim(0)?];
        for (w, t) in self.terms.iter().filter(|(w, _)| *w != 0.0) {
            for (a, b) in value.iter_mut().zip(t.value(position)?.unwrap_or_default()) {
                *a += w * b;
            }
        }
        Ok(Some(value))
    }
}

/// The error a sampler gives when asked for Metropolis-Hastings on a term
/// without a value.
pub fn require_value(term: &dyn Term, sampler: &str) -> Result<()> {
    if term.has_value() {
        Ok(())
    } else {
        Err(Error::unsupported(
            format!(
                "{sampler} needs log-density values for its accept/reject step, but {} has only a gradient",
                term.name()
            ),
            term.value_hint(),
        ))
    }
}
