//! `ppgn presets`: the presets and their values; `ppgn presets choose`
//! applies the tuned presets' written rules on the validation split.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::progress::Bar;
use ppgn::eval::choose::{choose, markdown, write, ChooseSpec};

#[derive(Args, Debug)]
pub struct PresetsArgs {
    #[command(subcommand)]
    pub command: Option<PresetsCommand>,
}

#[derive(Subcommand, Debug)]
pub enum PresetsCommand {
    /// Run each tuned preset's candidate values and pick one by the preset's written rule (src/run/config/tuning.rs):
    /// the guiding classifier judges the samples against the validation split; the evaluator is never loaded.
    Choose(ChooseArgs),
}

#[derive(Args, Debug)]
pub struct ChooseArgs {
    /// Tuned presets to choose for [default: all of them].
    #[arg(long = "preset")]
    pub presets: Vec<String>,
    /// Chains of every class per candidate.
    #[arg(long, default_value_t = 20)]
    pub per_class: usize,
    /// Gradient evaluations per chain [default: each preset's tuning budget].
    #[arg(long)]
    pub budget: Option<usize>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Folder for choices.json and choices.md.
    #[arg(long, default_value = "runs/choose")]
    pub out: PathBuf,
    #[command(flatten)]
    pub folders: super::Folders,
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn run(a: PresetsArgs) -> anyhow::Result<()> {
    let Some(PresetsCommand::Choose(a)) = a.command else {
        print!("{}", ppgn::run::config::preset::listing()?);
        return Ok(());
    };
    let spec = ChooseSpec {
        presets: a.presets,
        per_class: a.per_class,
        seed: a.seed,
        budget: a.budget,
        models: a.folders.models,
        data_dir: a.folders.data_dir,
    };
    let c = choose(&spec, &super::command_line(), &mut Bar::new(a.quiet, None))?;
    write(&c, &a.out)?;
    println!(
        "{}wrote {}",
        markdown(&c),
        a.out.join("choices.json").display()
    );
    Ok(())
}
