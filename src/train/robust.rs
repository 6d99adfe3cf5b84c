//! Robust training of an image classifier: Gaussian noise on the training
//! images and/or adversarial images within an L2 ball found by projected
//! gradient ascent (PGD; Madry et al. 2018). Robust classifiers have input
//! gradients that look like images (Santurkar et al. 2019, "Image
//! synthesis with a single (robust) classifier"; Kaur et al. 2019, which
//! finds the same for classifiers trained on Gaussian noise), which is
//! what a guide's gradient `d log p(y | x) / dx` is asked to be.

use candle_core::{Tensor, Var};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::nn::gaussian_like;

/// Gradient-ascent steps of the attack during training.
pub const TRAIN_PGD_STEPS: usize = 3;
/// Steps of the attack that measures robust accuracy for the card.
pub const EVAL_PGD_STEPS: usize = 10;

/// How a classifier's training images are perturbed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Robust {
    /// Standard deviation of Gaussian noise added to every training image
    /// (pixels in [0, 1]); 0: none.
    pub noise_std: f64,
    /// Radius of the L2 ball of the adversarial images; `None`: clean.
    pub l2_eps: Option<f64>,
}

impl Robust {
    /// From `--noise-std S` and `--adversarial l2:EPS`, checked.
    pub fn parse(noise_std: Option<f64>, adversarial: Option<&str>) -> Result<Self> {
        let noise_std = noise_std.unwrap_or(0.0);
        if !(noise_std.is_finite() && noise_std >= 0.0) {
            return Err(Error::setting(
                "--noise-std",
                noise_std,
                "a finite standard deviation, 0 or more",
            ));
        }
        let l2_eps = adversarial
            .map(|a| {
                let eps = a
                    .strip_prefix("l2:")
                    .and_then(|e| e.parse::<f64>().ok())
                    .filter(|e| e.is_finite() && *e > 0.0);
                eps.ok_or_else(|| {
                    Error::setting(
                        "--adversarial",
                        a,
                        "l2:EPS with EPS > 0, the L2 radius in pixels of [0, 1] (e.g. l2:0.5)",
                    )
                })
            })
            .transpose()?;
        Ok(Self { noise_std, l2_eps })
    }

    /// Whether the images are perturbed at all.
    pub fn is_on(&self) -> bool {
        self.noise_std > 0.0 || self.l2_eps.is_some()
    }

    /// The training images `x` (`[n, ...]`, labels `y`) as this training
    /// sees them: moved by [`TRAIN_PGD_STEPS`] steps of PGD within the L2
    /// ball against `logits` (the network without dropout), then noised.
    pub fn perturb(
        &self,
        x: &Tensor,
        y: &Tensor,
        logits: impl Fn(&Tensor) -> candle_core::Result<Tensor>,
        rng: &mut ChaCha8Rng,
    ) -> Result<Tensor> {
        let mut x = match self.l2_eps {
            Some(eps) => pgd_l2(x, y, eps, TRAIN_PGD_STEPS, logits)?,
            None => x.clone(),
        };
        if self.noise_std > 0.0 {
            x = (&x + gaussian_like(&x, self.noise_std, rng)?)?;
        }
        Ok(x)
    }
}

/// Each row's L2 norm over all its other dimensions, `[n, 1, ...]` to
/// broadcast against the rows.
fn row_norms(t: &Tensor) -> candle_core::Result<Tensor> {
    let n = t.dim(0)?;
    let mut keep = vec![n];
    keep.extend(std::iter::repeat_n(1, t.rank() - 1));
    t.flatten_from(1)?
        .sqr()?
        .sum_keepdim(1)?
        .sqrt()?
        .reshape(keep)
}

/// Projected gradient ascent on the cross-entropy within the L2 ball of
/// radius `eps` around each image, `steps` steps of `2.5 eps / steps`
/// along the normalised gradient (Madry et al.'s step), each projected
/// back into the ball and into the pixel range [0, 1]; from the image
/// itself. Returns the adversarial images, detached.
pub fn pgd_l2(
    x: &Tensor,
    y: &Tensor,
    eps: f64,
    steps: usize,
    logits: impl Fn(&Tensor) -> candle_core::Result<Tensor>,
) -> Result<Tensor> {
    let x = x.detach();
    let alpha = 2.5 * eps / steps.max(1) as f64;
    let mut delta = x.zeros_like()?;
    for _ in 0..steps {
        let d = Var::from_tensor(&delta)?;
        let loss = candle_nn::loss::cross_entropy(&logits(&(&x + d.as_tensor())?)?, y)?;
        let grads = loss.backward()?;
        let Some(g) = grads.get(d.as_tensor()) else {
            return Err(Error::unsupported(
                "adversarial training of a network whose loss does not reach its input",
                "a classifier of images",
            ));
        };
        let step = g.broadcast_div(&(row_norms(g)? + 1e-12)?)?;
        let moved = (&delta + (step * alpha)?)?;
        let norms = row_norms(&moved)?;
        // scale rows outside the ball back onto it: min(1, eps / |d|)
        let shrink = (norms.clamp(eps, f64::INFINITY)?.recip()? * eps)?;
        let inside = moved.broadcast_mul(&shrink)?;
        delta = ((&x + inside)?.clamp(0.0, 1.0)? - &x)?.detach();
    }
    Ok((&x + delta)?.detach())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Module};
    use candle_nn::{linear, VarBuilder, VarMap};

    /// On a linear classifier of 2 classes the worst L2 perturbation moves
    /// along the difference of the two weight rows; PGD stays in the ball
    /// and the pixel range, and lowers the true class's margin by about
    /// `eps |w1 - w0|` where the range does not bind.
    #[test]
    fn pgd_stays_in_the_ball_and_lowers_the_margin() {
        let dev = Device::Cpu;
        let vm = VarMap::new();
        let lin = linear(16, 2, VarBuilder::from_varmap(&vm, DType::F32, &dev)).unwrap();
        let x = (Tensor::ones((4, 4, 4, 1), DType::F32, &dev).unwrap() * 0.5).unwrap();
        let y = Tensor::new(&[0u32, 1, 0, 1], &dev).unwrap();
        let f = |t: &Tensor| lin.forward(&t.flatten_from(1)?);
        let eps = 0.3;
        let adv = pgd_l2(&x, &y, eps, 10, f).unwrap();
        let d = (&adv - &x).unwrap();
        let norms: Vec<f32> = row_norms(&d)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!(
            norms
                .iter()
                .all(|n| *n <= eps as f32 + 1e-5 && *n > 0.9 * eps as f32),
            "{norms:?}"
        );
        let pixels: Vec<f32> = adv.flatten_all().unwrap().to_vec1().unwrap();
        assert!(pixels.iter().all(|p| (0.0..=1.0).contains(p)));
        let margin = |t: &Tensor| -> Vec<f32> {
            let l: Vec<Vec<f32>> = f(t).unwrap().to_vec2().unwrap();
            l.iter()
                .zip([0, 1, 0, 1])
                .map(|(r, c)| r[c] - r[1 - c])
                .collect()
        };
        let w: Vec<Vec<f32>> = lin.weight().to_vec2().unwrap();
        let dw = w[0]
            .iter()
            .zip(&w[1])
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f32>()
            .sqrt();
        for (before, after) in margin(&x).iter().zip(margin(&adv)) {
            let drop = before - after;
            assert!(
                (drop - eps as f32 * dw).abs() < 0.02 * eps as f32 * dw,
                "drop {drop}, expected {}",
                eps as f32 * dw
            );
        }
    }

    #[test]
    fn the_flags_parse_and_refuse_nonsense() {
        let r = Robust::parse(Some(0.25), Some("l2:0.5")).unwrap();
        assert_eq!((r.noise_std, r.l2_eps), (0.25, Some(0.5)));
        assert!(!Robust::parse(None, None).unwrap().is_on());
        for bad in ["linf:0.1", "l2:-1", "l2:x", "l2:nan"] {
            let e = Robust::parse(None, Some(bad)).unwrap_err().to_string();
            assert!(e.contains("l2:EPS with EPS > 0"), "{e}");
        }
        assert!(Robust::parse(Some(-0.1), None).is_err());
    }
}
