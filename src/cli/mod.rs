//! The command line: one file per subcommand. `main.rs` only calls [`main`].

pub mod bench;
pub mod classes;
pub mod eval;
pub mod inpaint;
pub mod models;
pub mod onnx;
pub mod presets;
pub mod progress;
pub mod report;
pub mod restore;
pub mod sample;
pub mod serve;
pub mod train;
pub mod visualize;
pub mod viz;

use clap::{Parser, Subcommand};
use ppgn::run::config::preset::Choice;

#[derive(Parser, Debug)]
#[command(
    name = "ppgn",
    version,
    about = "Plug & Play Generative Networks: conditional image generation by gradient-based inference",
    long_about = "ppgn samples images x = G(h) from a pretrained generator by moving the code h \
with gradients of a learned prior log p(h) and a condition log p(y|x) (a class, a hidden neuron, \
or the known pixels of an image). It ships a Fashion-MNIST model stack trained by its own \
`ppgn train`."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train one network of the Fashion-MNIST stack (resumes from its checkpoint).
    Train(train::TrainArgs),
    /// Inspect and evaluate the model stack.
    #[command(subcommand)]
    Models(models::ModelsCommand),
    /// Sample images of a class from the shipped stack (PPGN by default).
    Sample(sample::SampleArgs),
    /// Fill the masked region of a real image, conditioned on a class (S10).
    Inpaint(inpaint::InpaintArgs),
    /// Sample the images a damaged observation leaves open (mask, blur, downsampling, noise), with per-pixel intervals.
    Restore(restore::RestoreArgs),
    /// Join the shard folders of one run (`ppgn sample --shard K/N`) into its run folder.
    Merge(sample::MergeArgs),
    /// Score a run's samples with the independent evaluator (accuracy, score, Frechet distance).
    Eval(eval::EvalArgs),
    /// Run the samplers at equal gradient budgets and the papers' studies; write docs/results.md.
    Report(report::ReportArgs),
    /// Pixel-space images of an ImageNet class or hidden unit of EfficientNet-Lite0 with hand-designed priors (S7, Figs. S19-S20).
    Visualize(visualize::VisualizeArgs),
    /// Visualisations of a run (t-SNE grid, Fig. S11).
    #[command(subcommand)]
    Viz(viz::VizCommand),
    /// A web page to start runs, watch and steer their chains live, and download the results.
    Serve(serve::ServeArgs),
    /// Time one sampler step on fixed workloads (with --compare, beside the PyTorch peer).
    Bench(bench::BenchArgs),
    /// Check or run a network brought as an ONNX file (docs/onnx.md).
    #[command(subcommand)]
    Onnx(onnx::OnnxCommand),
    /// List the sampler presets and their values; `presets choose` picks the tuned ones' values by their rules.
    Presets(presets::PresetsArgs),
    /// List the Fashion-MNIST classes, or with --imagenet the ImageNet ones (accepted by index or name wherever a class is asked for).
    Classes(classes::ClassesArgs),
}

/// Help and version as clap prints them; a command-line mistake as one
/// line (clap's message without its usage hint), exit code 2.
fn parse_error(e: clap::Error) -> ! {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        e.exit()
    }
    let text = e.to_string();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty() && !l.starts_with("For more information") && !l.starts_with("Usage:")
        })
        .collect();
    eprintln!("{}", lines.join(" "));
    std::process::exit(2)
}

pub fn main() -> anyhow::Result<()> {
    let cli = Cli::try_parse().unwrap_or_else(|e| parse_error(e));
    match cli.command {
        Command::Train(a) => train::run(a),
        Command::Models(c) => models::run(c),
        Command::Onnx(c) => onnx::run(c),
        Command::Classes(a) => classes::run(a),
        Command::Sample(a) => sample::run(a),
        Command::Presets(a) => presets::run(a),
        Command::Inpaint(a) => inpaint::run(a),
        Command::Restore(a) => restore::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Merge(a) => sample::merge(a),
        Command::Report(a) => report::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Viz(c) => viz::run(c),
        Command::Visualize(a) => visualize::run(a),
    }
}

/// A clap parser for a library setting with named values ([`Choice`]):
/// the names (and their help) are listed in `--help` and checked by clap.
pub fn choice<T: Choice + Send + Sync + Clone>() -> impl clap::builder::TypedValueParser<Value = T>
{
    use clap::builder::{PossibleValue, TypedValueParser};
    let values = T::ALL.iter().map(|v| {
        let p = PossibleValue::new(v.name());
        match v.help() {
            Some(h) => p.help(h),
            None => p,
        }
    });
    clap::builder::PossibleValuesParser::new(values).try_map(|s| T::parse(&s))
}

pub use ppgn::models::card::command_line;

/// The shipped stack's model folder and the Fashion-MNIST folder, the two
/// folders most subcommands read.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Folders {
    /// Model folder [default: $PPGN_MODELS or models/fashion-mnist].
    #[arg(long)]
    pub models: Option<std::path::PathBuf>,
    /// Fashion-MNIST folder [default: $PPGN_FASHION_MNIST or /usr/share/datasets/fashion-mnist].
    #[arg(long)]
    pub data_dir: Option<std::path::PathBuf>,
}

impl Folders {
    /// The model folder: the flag, else `$PPGN_MODELS`, else the default.
    pub fn models_dir(&self) -> std::path::PathBuf {
        ppgn::models::fashion::resolve_dir(self.models.as_deref())
    }
    /// The Fashion-MNIST folder given (`None`: the library's default).
    pub fn data(&self) -> Option<&std::path::Path> {
        self.data_dir.as_deref()
    }
}
