//! The Fashion-MNIST model stack of the Noiseless Joint PPGN-h
//! ("Plug & Play Generative Networks" (supplementary), S9.4), trained by `ppgn train` and shipped
//! under `models/fashion-mnist/`: one `<name>.safetensors` + `<name>.json`
//! card per network.

pub mod classifier;
pub mod code_prior;
pub mod code_score;
pub mod discriminator;
pub mod evaluator;
pub mod generator;
pub mod h_dae;
pub mod x_dae;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};

pub use classifier::{Classifier, ClassifierConfig};
pub use code_prior::{CodePrior, CodePriorConfig};
pub use code_score::{CodeScore, CodeScoreConfig};
pub use discriminator::{Discriminator, DiscriminatorConfig};
pub use evaluator::{Evaluator, EvaluatorConfig};
pub use generator::{Generator, GeneratorConfig};
pub use h_dae::{HDae, HDaeConfig};
pub use x_dae::{XDae, XDaeConfig};

use super::card::Card;
use super::weights;
use crate::error::{Error, Result};
use crate::nn::fast::reference::func as reference;

/// Environment variable that overrides the model folder (a flag overrides both).
pub const ENV_MODELS: &str = "PPGN_MODELS";

/// The names of the shipped networks, in training order.
/// (`ppgn train realness` also writes `realness-generator`, its judge's own
/// generator, which is not shipped: only the judge scores.)
pub const NETWORKS: [&str; 9] = [
    "classifier",
    "evaluator",
    "generator",
    "discriminator",
    "h-dae",
    "code-prior",
    "code-score",
    "x-dae",
    "realness",
];

/// Networks a model folder may hold beside [`NETWORKS`] that no job needs:
/// `guide` (`ppgn train guide`, read by `--classifier fashion-guide`).
pub const OPTIONAL: [&str; 1] = ["guide"];

/// The model folder: the flag, else `$PPGN_MODELS`, else `models/fashion-mnist`
/// in the working directory, else the one in the source tree this binary was built from.
pub fn resolve_dir(flag: Option<&Path>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    if let Some(v) = std::env::var_os(ENV_MODELS).filter(|v| !v.is_empty()) {
        return PathBuf::from(v);
    }
    let local = PathBuf::from("models/fashion-mnist");
    if local.is_dir() {
        return local;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/fashion-mnist")
}

/// A network's weights and card paths in `dir`.
pub fn paths(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{name}.safetensors")),
        dir.join(format!("{name}.json")),
    )
}

/// Loads network `name` from `dir`: reads its card for the config, checks
/// the card's network name, then builds the network from the weights.
pub fn load<C, T>(
    dir: &Path,
    name: &str,
    dtype: DType,
    device: &Device,
    make: impl FnOnce(&C, candle_nn::VarBuilder<'static>) -> candle_core::Result<T>,
) -> Result<(T, Card)>
where
    C: serde::de::DeserializeOwned,
{
    let (w, c) = paths(dir, name);
    if !w.exists() {
        return Err(Error::Weights {
            path: w,
            message: format!(
                "missing; the shipped stack lives in models/fashion-mnist of the repository, \
                 or train it with `ppgn train {name}`"
            ),
        });
    }
    let card = Card::load(&c)?;
    if card.network != name {
        return Err(Error::data(
            &c,
            format!("card is for network {:?}, expected {name:?}", card.network),
        ));
    }
    let cfg: C = card.config(&c)?;
    let net = weights::build(&w, dtype, device, |vb| make(&cfg, vb))?;
    Ok((net, card))
}

/// Network `name` from `dir` if its weights are there (its card joins
/// `cards`), else `None`.
fn optional<C, T>(
    dir: &Path,
    name: &str,
    dtype: DType,
    device: &Device,
    make: impl FnOnce(&C, candle_nn::VarBuilder<'static>) -> candle_core::Result<T>,
    cards: &mut Vec<Card>,
) -> Result<Option<T>>
where
    C: serde::de::DeserializeOwned,
{
    if !paths(dir, name).0.exists() {
        return Ok(None);
    }
    let (net, card) = load(dir, name, dtype, device, make)?;
    cards.push(card);
    Ok(Some(net))
}

/// The networks used for sampling and scoring.
pub struct Stack {
    pub classifier: Classifier,
    pub generator: Generator,
    /// `None` when loaded by [`Stack::load_for_choosing`].
    pub evaluator: Option<Evaluator>,
    pub h_dae: Option<HDae>,
    pub x_dae: Option<XDae>,
    pub code_prior: Option<CodePrior>,
    pub code_score: Option<CodeScore>,
    pub cards: Vec<Card>,
}

impl Stack {
    /// Loads the classifier, generator and evaluator (required) and the two
    /// DAEs and the code priors (optional: absent files give `None`).
    pub fn load(dir: &Path, dtype: DType, device: &Device) -> Result<Stack> {
        let mut stack = Self::load_for_choosing(dir, dtype, device)?;
        let (evaluator, card) = load(dir, "evaluator", dtype, device, Evaluator::new)?;
        stack.evaluator = Some(evaluator);
        stack.cards.insert(2, card);
        Ok(stack)
    }

    /// The stack without its evaluator, whose weights are never read: what
    /// choosing a preset's settings may use (`crate::eval::choose`).
    pub fn load_for_choosing(dir: &Path, dtype: DType, device: &Device) -> Result<Stack> {
        let (classifier, c1) = load(dir, "classifier", dtype, device, Classifier::new)?;
        let (generator, c2) = load(dir, "generator", dtype, device, Generator::new)?;
        let mut cards = vec![c1, c2];
        let h_dae = optional(dir, "h-dae", dtype, device, HDae::new, &mut cards)?;
        let x_dae = optional(dir, "x-dae", dtype, device, XDae::new, &mut cards)?;
        let code_prior = optional(dir, "code-prior", dtype, device, CodePrior::new, &mut cards)?;
        let code_score = optional(dir, "code-score", dtype, device, CodeScore::new, &mut cards)?;
        Ok(Stack {
            classifier,
            generator,
            evaluator: None,
            h_dae,
            x_dae,
            code_prior,
            code_score,
            cards,
        })
    }
}

/// The stack's networks as candle functions (the reference path), for
/// decoding snapshots and measuring chains.
impl Stack {
    /// `G`: codes `[n, h_dim]` -> images `[n, 28, 28, 1]`.
    pub fn generator_net(&self) -> Result<crate::nn::Func> {
        Ok(reference(self.generator.compile()?)?)
    }
    /// `relu(T(z))`: the flow prior's base points to codes `h`, as an
    /// engine graph (what `--prior flow` puts before `G`).
    pub fn transport(&self) -> Result<crate::nn::fast::Net<f32>> {
        use crate::nn::fast::{build, pointwise::Pointwise, Net, Op};
        let flow = self
            .code_prior
            .as_ref()
            .ok_or_else(|| Error::NotInstalled {
                what: "the flow prior on codes".into(),
                missing: "models/fashion-mnist/code-prior.safetensors".into(),
                hint: "train it with `ppgn train code-prior` or choose another --prior".into(),
            })?;
        let mut t = flow.compile::<f32>()?;
        let temperature = self.flow_temperature();
        if temperature != 1.0 {
            let dim = flow.cfg.dim;
            t = build::net((1, 1, dim), vec![build::affine(dim, temperature, 0.0)])?.then(t)?;
        }
        let relu = Net::new(t.output(), vec![Op::Pointwise(Pointwise::Relu)])?;
        t.then(relu)
    }
    /// The temperature the flow prior's draws are taken at: its card's
    /// [`super::card::FLOW_TEMPERATURE`], 1 (the flow as trained) without one.
    pub fn flow_temperature(&self) -> f64 {
        self.cards
            .iter()
            .find(|c| c.network == "code-prior")
            .and_then(|c| c.metrics.get(crate::models::card::FLOW_TEMPERATURE))
            .copied()
            .unwrap_or(1.0)
    }
    /// The independent evaluator, or that this stack was loaded without it.
    /// Whether the stack was loaded with its evaluator.
    pub fn has_evaluator(&self) -> bool {
        self.evaluator.is_some()
    }

    pub fn evaluator(&self) -> Result<&Evaluator> {
        self.evaluator.as_ref().ok_or_else(|| {
            Error::unsupported(
                "the evaluator in a stack loaded for choosing settings",
                "choosing reads the guide only; score with `ppgn eval`",
            )
        })
    }
    /// The score-based prior on codes, or what is missing.
    pub fn code_score(&self) -> Result<&CodeScore> {
        self.code_score.as_ref().ok_or_else(|| Error::NotInstalled {
            what: "the score-based prior on codes".into(),
            missing: "models/fashion-mnist/code-score.safetensors".into(),
            hint: "train it with `ppgn train code-score` or choose another --prior".into(),
        })
    }
    /// `C`: images -> class logits.
    pub fn classifier_net(&self) -> Result<crate::nn::Func> {
        Ok(reference(self.classifier.compile()?)?)
    }
    /// A layer of the classifier by name: `h1` (`[n, 7, 7, c]`), `h` (or
    /// `fc6`), or `logits` (or `fc8`), each before its ReLU (what
    /// hidden-neuron conditions maximise).
    pub fn layer_net(&self, name: &str) -> Result<crate::nn::Func> {
        Ok(reference(self.classifier.compile_to(name)?)?)
    }
}
