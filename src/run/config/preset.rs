//! Named sampler settings that reproduce each paper's setting.

use serde::{Deserialize, Serialize};

use super::steer::Change;
use crate::density::condition::ClassGradient;
use crate::error::{Error, Result};
use crate::sampler::schedule::Schedule;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SamplerKind {
    Map,
    MalaApprox,
    Mh,
    Mala,
    Hmc,
    /// One noise level per step down a ladder (`crate::sampler::diffusion`).
    ReverseDiffusion,
    /// Heun's method on the probability-flow ODE down a ladder of noise
    /// levels (`crate::sampler::probability_flow`): deterministic, two
    /// evaluations a level.
    ProbabilityFlow,
    /// The No-U-Turn Sampler (`crate::sampler::nuts`): HMC that chooses
    /// its trajectory's length, with a metric learnt in warm-up.
    Nuts,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PriorKind {
    /// `E(G(h)) - h`, the Noiseless Joint PPGN-h prior (gradient only).
    Joint,
    /// The learned DAE on h (gradient only).
    HDae,
    /// PPGN-x (S9.2, S11): the learned DAE on images; the chains move the
    /// image itself, not a code (gradient only).
    XDae,
    /// `N(0, sigma^2)` (has a value: works with MH, MALA, HMC).
    Gaussian,
    /// The flow density on the pre-ReLU code (`ppgn train code-prior`),
    /// sampled in its base space (neural transport): the chains move `z`
    /// with prior `N(0, I)` and the code is `u = T(z)`, so the target is
    /// the exact posterior over `u` (has a value).
    Flow,
    /// The score-based prior on the standardised pre-ReLU code (`ppgn
    /// train code-score`): the chains move `v`, the generator reads
    /// `relu(v * std + mean)`, and the condition is read on the
    /// denoiser's estimate of the clean code (gradient only).
    Score,
    None,
}

impl SamplerKind {
    /// Whether the sampler walks a ladder of noise levels, one per step,
    /// with the ladder as its only schedule (no step size, no acceptance).
    pub fn walks_ladder(self) -> bool {
        matches!(self, Self::ReverseDiffusion | Self::ProbabilityFlow)
    }
}

impl PriorKind {
    /// What the chains move, for the manifest.
    pub fn space(self) -> &'static str {
        match self {
            PriorKind::XDae => "image x",
            PriorKind::Flow => "flow base z (code u = T(z), h = relu(u))",
            PriorKind::Score => "standardised pre-ReLU code v (h = relu(v * std + mean))",
            _ => "code h",
        }
    }
}

pub use crate::nn::fast::Engine;

pub use super::choice::Choice;

impl Choice for SamplerKind {
    const ALL: &'static [Self] = &[
        Self::Map,
        Self::MalaApprox,
        Self::Mh,
        Self::Mala,
        Self::Hmc,
        Self::ReverseDiffusion,
        Self::ProbabilityFlow,
        Self::Nuts,
    ];
    const WHAT: &'static str = "sampler";
}

impl Choice for PriorKind {
    const ALL: &'static [Self] = &[
        Self::Joint,
        Self::HDae,
        Self::XDae,
        Self::Gaussian,
        Self::Flow,
        Self::Score,
        Self::None,
    ];
    const WHAT: &'static str = "prior";
}

impl Choice for crate::density::condition::ClassGradient {
    const ALL: &'static [Self] = &[Self::Logit, Self::Softmax, Self::LogSoftmax];
    const WHAT: &'static str = "class gradient";
}

impl Choice for Engine {
    const ALL: &'static [Self] = &[Self::Fast, Self::Reference];
    const WHAT: &'static str = "engine";
}

/// Everything that decides how chains move.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplerConfig {
    pub preset: String,
    pub sampler: SamplerKind,
    pub prior: PriorKind,
    /// Weight of the prior term (eq. 13's eps1).
    pub eps1: f64,
    /// Weight of the condition term (eps2).
    pub eps2: f64,
    /// MALA-approx noise std (eps3).
    pub eps3: f64,
    pub steps: usize,
    /// Learning rate (MAP), step multiplier (MALA-approx), proposal scale
    /// (MH), tau (MALA), leapfrog step (HMC).
    pub step: Schedule,
    /// MALA proposal noise variance; `None` is the exact `2 tau`.
    pub noise: Option<Schedule>,
    /// Standard deviation of the Gaussian prior.
    pub prior_sigma: f64,
    /// MAP's L2 decay.
    pub decay: f64,
    pub leapfrog_steps: usize,
    /// HMC: each chain's leapfrog step is drawn from `step * [1 - j, 1 + j]`
    /// at every iteration (avoids periodic trajectories).
    #[serde(default = "default_jitter")]
    pub jitter: f64,
    /// MALA-approx: divide the update by the mean absolute gradient.
    pub normalise: bool,
    /// Clip `h` to `[lo, hi]` after each step.
    pub clip: Option<(f64, f64)>,
    pub gradient: ClassGradient,
    /// Tune the step by dual averaging toward this mean acceptance during
    /// the first half of the steps (not in the papers; MH kernels only).
    #[serde(default)]
    pub adapt: Option<f64>,
    /// Gradients by the sampling engine or by candle's autograd; the same
    /// seed gives the same samples to float rounding.
    #[serde(default)]
    pub engine: Engine,
    /// Start each chain from one of this many draws of the flow prior,
    /// picked with probability proportional to `target / prior`
    /// (sampling-importance resampling, `crate::run::drive::starts`); 1 is a plain prior
    /// draw. Each candidate costs a forward pass of the target, counted
    /// as one gradient evaluation.
    #[serde(default = "one_candidate")]
    pub start_candidates: usize,
    /// Changes of eps1, eps2, eps3 and the step keyed by step, and where
    /// the chains stop (`super::steer`; what `ppgn serve`'s sliders record).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<Change>,
    /// Reverse diffusion's largest and smallest noise levels: a ladder of
    /// one level per step between them (Karras et al. 2022's spacing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise_levels: Option<(f64, f64)>,
    /// With the score prior, whether the condition's gradient goes back
    /// through the denoiser (the exact gradient of `log p(y | G(D(v)))`)
    /// or is taken at the denoiser's estimate as is.
    #[serde(default = "yes")]
    pub through_denoiser: bool,
}

fn yes() -> bool {
    true
}

/// A plain prior draw per chain unless a setting says otherwise.
pub fn one_candidate() -> usize {
    1
}

/// HMC's step jitter unless a setting says otherwise.
pub fn default_jitter() -> f64 {
    0.1
}

/// `(name, description)` of every preset.
pub const PRESETS: [(&str, &str); 15] = [
    ("ppgn", "Noiseless Joint PPGN-h: MALA-approx, prior E(G(h)) - h, eps1=1e-5, eps2=1, eps3=1e-17, step 0.5 normalised by mean |grad| (picked on the validation split, docs/tuning.md), h clipped to [0, 30] (S9.4, eq. 13)"),
    ("dgn-am-chain", "DGN-AM as a PPGN chain (Fig. S13b): MALA-approx as ppgn, with the Gaussian prior of an L2 decay of 0.01 (eq. 10) in place of the joint prior"),
    ("dgn-am", "DGN-AM: MAP on h with L2 decay, a decaying learning rate and clipping (Nguyen et al. 2016; Xu et al. Alg. 1)"),
    ("xu-map", "Xu et al.: MAP with the Gaussian prior, no clipping, many iterations"),
    ("xu-mala", "Xu et al. Alg. 2: MALA with the Gaussian prior, annealed noise and decaying step, Metropolis-Hastings"),
    ("xu-mala-clip", "Xu et al.: MALA as xu-mala, with h clipped to [0, 30] (not exact)"),
    ("faces", "Plug and play with pretrained networks (--generator dcgan-faces --classifier efficientnet-lite0): MALA-approx on the GAN's code z with its N(0, I) prior, eps1=0.01, eps2=1, eps3=0.01, step 0.05 normalised by mean |grad|"),
    ("xu-hmc", "Xu et al.: HMC with the Gaussian prior, 10 leapfrog steps, decaying step"),
    ("exact-mala", "MALA with Metropolis-Hastings on the exact posterior p(u) p(y|G(relu(u)))^eps2 over the code u, eps2=10 (picked on the validation split, docs/tuning.md), the flow prior (ppgn train code-prior), moving the flow's base point z (u = T(z), neural transport); each chain starts from its pick of 100 prior draws by p(y|x)^eps2 (100 forward passes, counted as 100 gradient evaluations); step tuned by dual averaging to acceptance 0.574 over the first half of the steps"),
    ("exact-hmc", "HMC on the same target and starts as exact-mala, 10 leapfrog steps, step tuned by dual averaging to acceptance 0.65 over the first half of the steps"),
    ("exact-nuts", "NUTS (the No-U-Turn Sampler, as Stan runs it) on the same target and starts as exact-mala: trees up to depth 10, a diagonal metric learnt in Stan's warm-up windows and the step tuned by dual averaging to acceptance 0.8 over the first half of the steps; 200 steps (chosen over 40 on validation images, docs/restore.md)"),
    ("ppgn-flow", "MALA-approx (no accept/reject) in the flow's base space from exact-mala's starts: the flow prior in place of the joint prior, eps1=1, eps2=10, step 0.01 unnormalised, eps3=sqrt(2 * 0.01) (unadjusted Langevin)"),
    ("ppgn-score", "Reverse diffusion on the score-based prior (ppgn train code-score): 200 noise levels from 10 to 0.01 of the standardised code, one per step, the class term read on the denoiser's estimate of the clean code with its gradient through the denoiser, eps2=5 (picked on the validation split, docs/tuning.md)"),
    ("ppgn-score-langevin", "Annealed Langevin on the score-based prior: MALA-approx (eq. 13) with the denoiser's score as the prior term, 200 noise levels from 10 to 0.01, one per step, the update scaled by (level / 0.01)^2 and the noise by level / 0.01; at the last level eps1=1, eps2=3, step 2e-5, eps3=sqrt(2 * 2e-5) (eps2 and step picked on the validation split, docs/tuning.md), the class term read as ppgn-score's"),
    ("ppgn-x", "PPGN-x (S11): MALA-approx on the image itself with the pixel DAE's prior, x' = R(x) + eps2 * dlog p(y|x)/dx + N(0, sigma^2): eps1 = sigma^2 = 0.01 (one whole denoising step, the paper's eps1 = 1 on R(x) - x), eps3 = sigma = 0.1, eps2 = 0.3, step 1 unnormalised, pixels clipped to [0, 1]"),
];

/// The `ppgn` preset's values, which every other preset changes.
fn ppgn_base(name: &str) -> SamplerConfig {
    SamplerConfig {
        preset: name.to_string(),
        sampler: SamplerKind::MalaApprox,
        prior: PriorKind::Joint,
        eps1: 1e-5,
        eps2: 1.0,
        eps3: 1e-17,
        steps: 200,
        // picked by the rule of `super::tuning` (`scripts/tune-presets`,
        // docs/tuning.md), the largest value of its grid
        step: Schedule::Constant { value: 0.5 },
        noise: None,
        prior_sigma: 3.0,
        decay: 0.0,
        leapfrog_steps: 10,
        jitter: default_jitter(),
        normalise: true,
        clip: Some((0.0, 30.0)),
        gradient: ClassGradient::LogSoftmax,
        adapt: None,
        engine: Engine::Fast,
        start_candidates: 1,
        changes: Vec::new(),
        noise_levels: None,
        through_denoiser: true,
    }
}

pub fn preset(name: &str) -> Result<SamplerConfig> {
    let base = ppgn_base(name);
    Ok(match name {
        "ppgn" => base,
        "dgn-am-chain" => SamplerConfig {
            prior: PriorKind::Gaussian,
            // L2 decay lambda = 0.01 is sigma = 10 (eq. 10's (lambda, 1, 0))
            prior_sigma: 10.0,
            eps1: 1.0,
            ..base
        },
        // tuned on sunglasses, wig and cowboy hat, 2 chains each, 40 steps:
        // eps1 = 1 let the prior's pull toward 0 drown the class gradient
        // (p(y) stayed below 0.01), step 0.1 was noisier than 0.05
        "faces" => SamplerConfig {
            prior: PriorKind::Gaussian,
            prior_sigma: 1.0,
            eps1: 0.01,
            eps3: 0.01,
            step: Schedule::Constant { value: 0.05 },
            clip: None,
            ..base
        },
        "dgn-am" => SamplerConfig {
            sampler: SamplerKind::Map,
            prior: PriorKind::None,
            eps1: 0.0,
            eps3: 0.0,
            step: Schedule::Linear {
                start: 0.5,
                end: 0.05,
                steps: 200,
            },
            decay: 0.01,
            normalise: false,
            ..base
        },
        // eps2 picked by the rule of `super::tuning` (docs/tuning.md)
        "ppgn-x" => SamplerConfig {
            prior: PriorKind::XDae,
            eps1: 0.01,
            eps2: 0.3,
            eps3: 0.1,
            step: Schedule::Constant { value: 1.0 },
            normalise: false,
            clip: Some((0.0, 1.0)),
            ..base
        },
        name if SCORE_PRESETS.contains(&name) => score_preset(name, base),
        "xu-map" | "xu-mala" | "xu-mala-clip" | "xu-hmc" => xu_preset(name, base),
        name if FLOW_PRESETS.contains(&name) => flow_preset(name, base),
        // exact-mala's target and starts (tuned with the flow presets),
        // sampled by NUTS
        "exact-nuts" => flow_preset(name, base),
        other => {
            let names: Vec<&str> = PRESETS.iter().map(|p| p.0).collect();
            return Err(Error::unknown("preset", other, &names));
        }
    })
}

/// The presets on the score-based prior (`ppgn train code-score`).
pub const SCORE_PRESETS: [&str; 2] = ["ppgn-score", "ppgn-score-langevin"];

/// The presets on the score prior: the chains move the standardised code
/// down a ladder of noise levels from 10 (ten times the codes' spread) to
/// 0.01 (below the h-DAE's 0.1 of an active unit), one level per step, and
/// the class term is read on the denoiser's estimate. eps2 and the
/// Langevin step are picked by the rule of `super::tuning`
/// (`scripts/tune-presets`, docs/tuning.md).
fn score_preset(name: &str, base: SamplerConfig) -> SamplerConfig {
    let score = SamplerConfig {
        prior: PriorKind::Score,
        // the prior's score at its own weight
        eps1: 1.0,
        eps2: 5.0,
        normalise: false,
        clip: None,
        noise_levels: Some((10.0, 0.01)),
        ..base
    };
    match name {
        // picked from 1e-5, 2e-5 (Song & Ermon's at their smallest level
        // of 0.01) and 5e-5, with its eps2
        "ppgn-score-langevin" => SamplerConfig {
            eps2: 3.0,
            eps3: (2.0f64 * 2e-5).sqrt(),
            step: Schedule::Constant { value: 2e-5 },
            ..score
        },
        _ => SamplerConfig {
            sampler: SamplerKind::ReverseDiffusion,
            eps3: 0.0,
            step: Schedule::Constant { value: 1.0 },
            ..score
        },
    }
}

/// Xu et al.'s settings: the Gaussian prior, no clipping, and their
/// samplers' schedules.
fn xu_preset(name: &str, base: SamplerConfig) -> SamplerConfig {
    let gaussian = SamplerConfig {
        prior: PriorKind::Gaussian,
        eps1: 1.0,
        eps3: 0.0,
        normalise: false,
        clip: None,
        ..base.clone()
    };
    match name {
        "xu-map" => SamplerConfig {
            sampler: SamplerKind::Map,
            steps: 400,
            step: Schedule::Linear {
                start: 0.5,
                end: 0.05,
                steps: 400,
            },
            ..gaussian
        },
        // The scales a and eta were tuned on the shipped stack so that the
        // acceptance is near MALA's optimal 0.574 (`ppgn sample --preset
        // xu-mala --class all --chains 4 --seed 0`: 0.59; a = 0.05 with
        // eta = 0.2 accepted 0.78 and moved too little).
        "xu-mala" | "xu-mala-clip" => SamplerConfig {
            sampler: SamplerKind::Mala,
            step: Schedule::Polynomial {
                a: 0.1,
                b: 10.0,
                gamma: 0.55,
            },
            noise: Some(Schedule::Annealed { eta: 0.5 }),
            clip: (name == "xu-mala-clip").then_some((0.0, 30.0)),
            ..gaussian
        },
        // a tuned as for MALA, to HMC's usual 0.65-0.8 acceptance (0.81 at
        // 20 steps; a = 0.1 accepted 0.98 and barely moved)
        "xu-hmc" => SamplerConfig {
            sampler: SamplerKind::Hmc,
            steps: 100,
            step: Schedule::Polynomial {
                a: 0.7,
                b: 10.0,
                gamma: 0.55,
            },
            leapfrog_steps: 10,
            ..gaussian
        },
        _ => gaussian,
    }
}

/// The presets on the flow prior (which share `exact-mala`'s tuned eps2
/// and start candidates, `super::tuning`).
pub const FLOW_PRESETS: [&str; 3] = ["exact-mala", "exact-hmc", "ppgn-flow"];

/// The presets on the flow prior's base space: the target is `log N(z; 0,
/// I) + eps2 log p(y | G(relu(T(z))))`, exact for the posterior over the
/// code `u = T(z)` (with `eps2` a guidance scale: the posterior of the
/// sharpened likelihood `p(y|x)^eps2`). Each chain starts from its pick of
/// 100 prior draws by `p(y|x)^eps2` (`crate::run::drive::starts`). eps2
/// and the number of candidates are tuned by `super::tuning`'s rule
/// (`ppgn presets choose`).
fn flow_preset(name: &str, base: SamplerConfig) -> SamplerConfig {
    let flow = SamplerConfig {
        prior: PriorKind::Flow,
        eps1: 1.0,
        // the largest value of its grid (`super::tuning`)
        eps2: 10.0,
        start_candidates: 100,
        eps3: 0.0,
        normalise: false,
        clip: None,
        ..base
    };
    match name {
        "exact-mala" => SamplerConfig {
            sampler: SamplerKind::Mala,
            step: Schedule::Constant { value: 0.05 },
            adapt: Some(0.574),
            ..flow
        },
        "exact-hmc" => SamplerConfig {
            sampler: SamplerKind::Hmc,
            steps: 20,
            step: Schedule::Constant { value: 0.1 },
            leapfrog_steps: 10,
            adapt: Some(0.65),
            ..flow
        },
        // 200 iterations, 100 of warm-up: chosen over 40 on validation
        // images by scripts/restore-validation (docs/restore.md)
        "exact-nuts" => SamplerConfig {
            sampler: SamplerKind::Nuts,
            steps: 200,
            step: Schedule::Constant { value: 0.1 },
            adapt: Some(0.8),
            ..flow
        },
        _ => SamplerConfig {
            step: Schedule::Constant { value: 0.01 },
            eps3: (2.0f64 * 0.01).sqrt(),
            ..flow
        },
    }
}

/// Every preset: its name, what it is, and its values as JSON (`ppgn presets`).
pub fn listing() -> Result<String> {
    let mut out = String::new();
    for (name, what) in PRESETS {
        let cfg = serde_json::to_string(&preset(name)?).expect("serialises");
        out += &format!("{name}\n  {what}\n  {cfg}\n");
    }
    Ok(out)
}
