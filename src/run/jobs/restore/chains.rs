//! What one drive of a restoration's chains leaves: their decoded images
//! at the records of the second half of the steps.

use candle_core::DType;

use crate::error::Result;
use crate::run::drive::chains::ChainsOutput;

/// One drive's chains: their decoded images at the records of the second
/// half (`[n * h * w * c]` each), gradient evaluations per chain and the
/// sum over steps of the chains' mean acceptance.
pub struct Chains {
    pub snaps: Vec<Vec<f32>>,
    pub grad_evals: usize,
    pub accept_sum: f64,
}

/// The decoded images of `out`'s records in the second half of `steps`.
pub fn kept(out: ChainsOutput, steps: usize, every: usize) -> Result<Chains> {
    let snaps = out
        .snapshots
        .iter()
        .enumerate()
        .filter(|(j, _)| (j * every).min(steps) * 2 > steps)
        .map(|(_, t)| Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?))
        .collect::<Result<_>>()?;
    Ok(Chains {
        snaps,
        grad_evals: out.grad_evals,
        accept_sum: out.accept_sum,
    })
}
