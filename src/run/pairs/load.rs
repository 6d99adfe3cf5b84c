//! The one place a run's [`Networks`] become a [`Pair`]: the shipped
//! stack (with its own classifier or another), any generator side with any
//! classifier side, or the papers' Caffe pair.

use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device};

use super::fashion_pair::FashionPair;
use super::pair::Pair;
use super::pretrained::PlugPair;
use crate::error::Result;
use crate::models::caffe::{CaffeNetConfig, DgnConfig};
use crate::models::fashion::{self as stack, resolve_dir, Stack};
use crate::models::plug::{ClassifierSide, GeneratorSide};
use crate::models::pretrained;
use crate::run::config::spec::Networks;

/// Loads the networks of a run (`data_dir`: where the Fashion-MNIST test
/// images are, for the stack's data set).
pub fn pair(networks: &Networks, data_dir: Option<&Path>) -> Result<Arc<dyn Pair>> {
    let data_dir = data_dir.map(Path::to_path_buf);
    Ok(match networks {
        Networks::Fashion { models, guide } => {
            let dir = resolve_dir(models.as_deref());
            // sampling never reads the evaluator; without one in the
            // folder the manifest has no evaluator's verdicts
            let stack = match stack::paths(&dir, "evaluator").0.exists() {
                true => Stack::load(&dir, DType::F32, &Device::Cpu)?,
                false => Stack::load_for_choosing(&dir, DType::F32, &Device::Cpu)?,
            };
            let stack = Arc::new(stack);
            let guide = match guide {
                Some(c) => Some(ClassifierSide::named(c, &pretrained::home(), &dir)?),
                None => None,
            };
            Arc::new(FashionPair::new(stack, dir, guide, data_dir)?)
        }
        Networks::Plug {
            generator,
            classifier,
            models,
        } => {
            let home = pretrained::home();
            let models = resolve_dir(models.as_deref());
            Arc::new(PlugPair::compose(
                GeneratorSide::named(generator, &home)?,
                ClassifierSide::named(classifier, &home, &models)?,
            )?)
        }
        Networks::Caffe { weights } => Arc::new(PlugPair::caffe(
            weights,
            DgnConfig::fc6(),
            CaffeNetConfig::caffenet(),
        )?),
    })
}
