//! Chains that start near their target: sampling-importance resampling
//! (SIR, Rubin 1987) of the prior's draws. Chains on the flow prior move
//! its base point `z`, whose prior is `N(0, I)`, and so do chains on a
//! generator's declared Gaussian prior (its `sigma` scales the code the
//! generator reads, so in the chains' coordinates the prior is `N(0, I)`
//! too); their random starts are draws of `N(0, I)`, the distribution the
//! candidates below are drawn from. With `start_candidates = K`, each chain
//! draws `K - 1` more and keeps one of the `K` with probability
//! proportional to `pi(z) / N(z; 0, I)`, its target over the distribution
//! the candidates come from. The target is `eps1 log N(z; 0, I) + eps2 log
//! p(y | x)`, so the weight is `N(z; 0, I)^(eps1 - 1) p(y | x)^eps2`: for
//! the exact presets (eps1 = 1) that is `p(y | G(relu(T(z))))^eps2`, and
//! the chain starts on an image of its class rather than spending its
//! first steps finding one. As `K`
//! grows the kept point becomes a draw of the target itself; at any `K` it
//! is only a start, and the kernel leaves the target invariant whatever it
//! starts from, so what the chains sample is the stated target still.
//! Each candidate costs one forward evaluation of the target
//! ([`Term::value`], no gradient), counted as a whole gradient
//! evaluation in the budget (`SamplerConfig::start_evals`), which
//! overstates its cost: on `exact-mala` a candidate took about 0.4 of a
//! step's time (`ppgn sample --preset exact-mala --class all --chains 2
//! --seed 3`: 100 candidates and 200 steps in 10.9 s, against 13.6 s when
//! the candidates ran the backward pass too).

use candle_core::Tensor;

use super::chains::Streams;
use crate::density::{require_value, Term};
use crate::error::Result;
use crate::sampler::{select_rows, ChainRngs};

/// Seeds the candidates' and the choice's streams apart from the chains'
/// own and from their first start.
const CANDIDATES: u64 = 0x5eed_0c4d;
const CHOICE: u64 = 0x5eed_c401;

/// The starts of chains `streams.first..` given their plain starts
/// `first_draws` (draws of `N(0, I)`, the first candidate): each chain's
/// pick of `candidates` draws by its target over `N(0, I)`, the
/// distribution every candidate is drawn from.
pub fn resampled_starts(
    target: &dyn Term,
    candidates: usize,
    first_draws: &Tensor,
    streams: Streams,
) -> Result<Tensor> {
    require_value(
        target,
        "choosing the chains' starts by importance resampling",
    )?;
    let n = first_draws.dim(0)?;
    let mut draws = ChainRngs::from_chain(streams.seed ^ CANDIDATES, streams.first, n);
    let mut choice = ChainRngs::from_chain(streams.seed ^ CHOICE, streams.first, n);
    let mut kept = first_draws.clone();
    let mut total = log_weights(target, &kept)?;
    for _ in 1..candidates {
        let z = draws.normal_like(first_draws)?;
        let w = log_weights(target, &z)?;
        let u = choice.uniform();
        let take = reservoir(&mut total, &w, &u);
        kept = select_rows(&take, &z, &kept)?;
    }
    Ok(kept)
}

/// One round of weighted reservoir sampling: each chain's new candidate
/// of log-weight `w` replaces its kept one with probability
/// `exp(w) / (exp(total) + exp(w))`, so that after every round the kept
/// candidate is each one seen with probability proportional to its weight;
/// `total` becomes the log of the weights' sum. A candidate of zero weight
/// (a non-finite log-weight) is never taken.
fn reservoir(total: &mut [f64], w: &[f64], u: &[f64]) -> Vec<bool> {
    let mut take = vec![false; w.len()];
    for i in 0..w.len() {
        if !w[i].is_finite() {
            continue;
        }
        if !total[i].is_finite() {
            (total[i], take[i]) = (w[i], true);
            continue;
        }
        let hi = total[i].max(w[i]);
        let sum = hi + ((total[i] - hi).exp() + (w[i] - hi).exp()).ln();
        take[i] = u[i] < (w[i] - sum).exp();
        total[i] = sum;
    }
    take
}

/// `log pi(z) - log N(z; 0, I)` per chain, up to one constant (the chains'
/// weights are compared only with their own); not finite where `pi` is not.
fn log_weights(target: &dyn Term, z: &Tensor) -> Result<Vec<f64>> {
    let values = target.value(z)?.unwrap_or_default();
    let sq = crate::density::per_chain_sum(&z.sqr()?)?;
    Ok(values
        .iter()
        .zip(sq)
        .map(|(v, s)| match v.is_finite() {
            true => v + 0.5 * s,
            false => f64::NEG_INFINITY,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reservoir keeps each candidate with probability proportional to
    /// its weight: over many uniforms, the frequencies match the weights.
    #[test]
    fn reservoir_picks_in_proportion_to_the_weights() {
        let weights = [1.0f64, 3.0, 0.0, 6.0];
        let trials = 40_000;
        let mut counts = [0usize; 4];
        let mut rngs = ChainRngs::new(5, trials);
        let mut total = vec![weights[0].ln(); trials];
        let mut kept = vec![0usize; trials];
        for (k, w) in weights.iter().enumerate().skip(1) {
            let take = reservoir(&mut total, &vec![w.ln(); trials], &rngs.uniform());
            for (t, &yes) in take.iter().enumerate() {
                if yes {
                    kept[t] = k;
                }
            }
        }
        for k in kept {
            counts[k] += 1;
        }
        let sum: f64 = weights.iter().sum();
        for (k, w) in weights.iter().enumerate() {
            let p = w / sum;
            let sd = (p * (1.0 - p) / trials as f64).sqrt();
            let f = counts[k] as f64 / trials as f64;
            assert!(
                (f - p).abs() <= 5.0 * sd + 1e-12,
                "candidate {k}: {f} vs {p}"
            );
        }
        assert_eq!(counts[2], 0, "a zero weight is never kept");
    }
}
