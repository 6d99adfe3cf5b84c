//! `ppgn models ...`: what is installed, and the evaluation of the shipped stack.

use std::path::PathBuf;

use clap::Subcommand;

use crate::models::fashion as stack;

#[derive(Subcommand, Debug)]
pub enum ModelsCommand {
    /// List the Fashion-MNIST networks, their cards and headline metrics.
    List {
        /// Model folder [default: $PPGN_MODELS or models/fashion-mnist].
        #[arg(long)]
        models: Option<PathBuf>,
    },
}

pub fn run(c: ModelsCommand) -> anyhow::Result<()> {
    match c {
        ModelsCommand::List { models } => {
            let dir = stack::resolve_dir(models.as_deref());
            println!("Fashion-MNIST stack in {}", dir.display());
            for name in stack::NETWORKS {
                let (w, c) = stack::paths(&dir, name);
                if !w.exists() {
                    println!("  {name:<14} missing ({})", w.display());
                    continue;
                }
                let card = crate::models::card::Card::load(&c)?;
                let metrics: Vec<String> = card
                    .metrics
                    .iter()
                    .filter(|(k, _)| !k.starts_with("final_epoch"))
                    .map(|(k, v)| format!("{k} {v:.4}"))
                    .collect();
                println!("  {name:<14} {} steps, {}", card.steps, metrics.join(", "));
            }
            Ok(())
        }
    }
}
