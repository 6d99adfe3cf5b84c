//! A whole training job (`ppgn train NETWORK`): the data, the task of the
//! network asked for, and the training loop with its checkpoints.

use std::path::Path;

use candle_core::Device;
use serde::{Deserialize, Serialize};

use super::classifier::{ClassifierTask, Kind};
use super::code_prior::CodePriorTask;
use super::code_score::CodeScoreTask;
use super::dae::DaeTask;
use super::gan::{GanSettings, GanTask};
use super::realness::RealnessTask;
use super::{Data, Task, TrainOptions};
use crate::error::Result;
use crate::models::card::Card;
use crate::run::config::preset::Choice;
use crate::run::drive::progress::Progress;

/// The networks `ppgn train` trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Network {
    Classifier,
    Evaluator,
    Guide,
    Generator,
    HDae,
    CodePrior,
    CodeScore,
    XDae,
    Realness,
}

impl Network {
    /// Default (epochs, learning rate, seed): the learning rates of
    /// "Plug & Play Generative Networks" (supplementary), S9.1.
    pub fn defaults(self) -> (usize, f64, u64) {
        match self {
            Network::Classifier => (12, 1e-3, 1),
            Network::Evaluator => (6, 1e-3, 2),
            Network::Guide => (12, 1e-3, 9),
            Network::Generator => (4, 2e-4, 3),
            Network::HDae => (20, 3e-4, 4),
            Network::CodePrior => (120, 1e-3, 7),
            Network::CodeScore => (360, 1e-3, 8),
            Network::XDae => (5, 1e-3, 5),
            Network::Realness => (3, 2e-4, 6),
        }
    }
}

impl Choice for Network {
    const ALL: &'static [Self] = &[
        Self::Classifier,
        Self::Evaluator,
        Self::Guide,
        Self::Generator,
        Self::HDae,
        Self::CodePrior,
        Self::CodeScore,
        Self::XDae,
        Self::Realness,
    ];
    const WHAT: &'static str = "network";

    fn help(self) -> Option<&'static str> {
        Some(match self {
            Network::Classifier => "E/C: the classifier that defines the codes h1 and h (train first)",
            Network::Evaluator => "The independent scoring classifier (different architecture and seed)",
            Network::Guide => "A classifier of E/C's architecture trained only to guide (--classifier fashion-guide), robust with --noise-std and --adversarial",
            Network::Generator => "G against the frozen classifier, with its discriminator D (needs classifier and evaluator)",
            Network::HDae => "The MLP DAE prior on h (needs classifier)",
            Network::CodePrior => "The flow prior on the pre-ReLU code u, a density with a value for MH, MALA and HMC (needs classifier)",
            Network::CodeScore => "The score-based prior: a denoiser of the standardised pre-ReLU code u at every noise level, for ppgn-score and annealed Langevin (needs classifier)",
            Network::XDae => "The convolutional DAE prior on images",
            Network::Realness => "The realness judge (Xu et al. Table 2): a DCGAN-style D trained with its own generator",
        })
    }
}

/// Trains `network` on Fashion-MNIST from `data_dir` (the generator with
/// `gan`'s losses); `None` when stopped by `opts.stop_at` (the checkpoint
/// is kept), else the card; the weights and the card are in `opts.out_dir`.
pub fn train(
    network: Network,
    opts: &TrainOptions,
    gan: &GanSettings,
    data_dir: &Path,
    progress: &mut dyn Progress,
) -> Result<Option<Card>> {
    opts.check()?;
    let classifies = matches!(
        network,
        Network::Classifier | Network::Evaluator | Network::Guide
    );
    if opts.codes.zero_init && !matches!(network, Network::CodeScore) {
        return Err(crate::error::Error::unsupported(
            format!("--zero-init with {}", network.name()),
            "it starts the score model's residual blocks at zero: code-score",
        ));
    }
    if opts.codes.whiten && !matches!(network, Network::CodeScore | Network::CodePrior) {
        return Err(crate::error::Error::unsupported(
            format!("--whiten with {}", network.name()),
            "it whitens the codes of the priors on codes: code-score and code-prior",
        ));
    }
    if opts.robust.is_on() && !classifies {
        return Err(crate::error::Error::unsupported(
            format!("--noise-std or --adversarial with {}", network.name()),
            "they train an image classifier: classifier, evaluator or guide",
        ));
    }
    // the size, checked before any data or network loads
    let size = opts.size.as_deref();
    match (network, size) {
        (Network::Generator, _) => {
            super::gan::channels(size)?;
        }
        (Network::CodeScore, _) => {
            super::code_score::size(size)?;
        }
        (Network::CodePrior, _) => {
            super::code_prior::size(size)?;
        }
        (_, Some(s)) => {
            return Err(crate::error::Error::setting(
                "--size",
                format!("{s:?}"),
                "no size for this network (only the generator, code-prior and code-score take one)",
            ))
        }
        (_, None) => {}
    }
    let device = Device::Cpu;
    let data = Data::load(data_dir)?;
    let mut task: Box<dyn Task> = match network {
        Network::Classifier => {
            Box::new(ClassifierTask::new(Kind::Classifier, data, opts, &device)?)
        }
        Network::Evaluator => Box::new(ClassifierTask::new(Kind::Evaluator, data, opts, &device)?),
        Network::Guide => Box::new(ClassifierTask::new(Kind::Guide, data, opts, &device)?),
        Network::Generator => Box::new(GanTask::new(data, opts, gan, &device)?),
        Network::HDae => Box::new(DaeTask::new_h(data, opts, &device)?),
        Network::CodePrior => Box::new(CodePriorTask::new(data, opts, &device)?),
        Network::CodeScore => Box::new(CodeScoreTask::new(data, opts, &device)?),
        Network::XDae => Box::new(DaeTask::new_x(data, opts, &device)?),
        Network::Realness => Box::new(RealnessTask::new(data, opts, &device)?),
    };
    super::run(task.as_mut(), opts, &device, progress)
}
