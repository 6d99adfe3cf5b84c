//! A whole training job (`ppgn train NETWORK`): the data, the task of the
//! network asked for, and the training loop with its checkpoints.

use std::path::Path;

use candle_core::Device;
use serde::{Deserialize, Serialize};

use super::classifier::ClassifierTask;
use super::code_prior::CodePriorTask;
use super::dae::DaeTask;
use super::gan::{GanSettings, GanTask};
use super::realness::RealnessTask;
use super::{Data, Task, TrainOptions};
use crate::data::fashion_mnist::{self, Split};
use crate::error::Result;
use crate::models::card::Card;
use crate::run::progress::Progress;

/// The networks `ppgn train` trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Network {
    Classifier,
    Evaluator,
    Generator,
    HDae,
    CodePrior,
    XDae,
    Realness,
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
    let device = Device::Cpu;
    let data = Data {
        train: fashion_mnist::load(data_dir, Split::Train)?,
        test: fashion_mnist::load(data_dir, Split::Test)?,
    };
    let mut task: Box<dyn Task> = match network {
        Network::Classifier | Network::Evaluator => Box::new(ClassifierTask::new(
            network == Network::Evaluator,
            data,
            opts,
            &device,
        )?),
        Network::Generator => Box::new(GanTask::new(data, opts, gan, &device)?),
        Network::HDae => Box::new(DaeTask::new_h(data, opts, &device)?),
        Network::CodePrior => Box::new(CodePriorTask::new(data, opts, &device)?),
        Network::XDae => Box::new(DaeTask::new_x(data, opts, &device)?),
        Network::Realness => Box::new(RealnessTask::new(data, opts, &device)?),
    };
    super::run(task.as_mut(), opts, &device, progress)
}
