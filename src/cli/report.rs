//! `ppgn report`: runs the samplers at equal gradient budgets and the
//! studies of the papers' figures, and writes docs/results.md (with its
//! images in docs/results/ and every number in docs/results/results.json).

use std::path::PathBuf;

use clap::Args;

use super::progress::Bar;
use ppgn::eval::protocol::{report, ReportSpec};

#[derive(Args, Debug)]
#[command(
    after_help = "docs/results.md's last table says how long the defaults took. Smaller \
--per-class, --budgets and --study-steps give a quick look (the numbers then differ)."
)]
pub struct ReportArgs {
    /// Folder for results.md and results/ (images and results.json).
    #[arg(long, default_value = "docs")]
    pub out: PathBuf,
    /// Chains per class for every sampler (and real test images per class for the baseline).
    #[arg(long, default_value_t = 20)]
    pub per_class: usize,
    /// Gradient evaluations per chain, comma-separated: one table per budget.
    #[arg(long, default_value = "200,800", value_delimiter = ',')]
    pub budgets: Vec<usize>,
    /// Chains per class in the eps1/eps3/mixing studies.
    #[arg(long, default_value_t = 3)]
    pub study_chains: usize,
    /// Steps of the eps1/eps3/mixing studies and of the t-SNE chains.
    #[arg(long, default_value_t = 200)]
    pub study_steps: usize,
    /// Class of the t-SNE grid (Fig. S11).
    #[arg(long, default_value = "bag")]
    pub tsne_class: String,
    /// PPGN chains of the t-SNE grid (S11 ran 10).
    #[arg(long, default_value_t = 10)]
    pub tsne_chains: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub folders: super::Folders,
    /// Frechet reference: the first N training images (default all; fewer for a quick look).
    #[arg(long)]
    pub reference_images: Option<usize>,
    /// Draws of each prior alone (no condition), beside G(E(x)) of as many test images.
    #[arg(long, default_value_t = 1000)]
    pub prior_draws: usize,
    /// Folder of trained generators (scripts/generator-study.sh) to compare (Fig. S8).
    #[arg(long)]
    pub generator_study: Option<PathBuf>,
    /// Keep every sampler's row in this folder as it is scored, and read
    /// rows kept there by an earlier report of the same networks and settings
    /// instead of sampling them again (a stopped report resumes). Leave it out,
    /// or empty it, after a change to the engine's arithmetic.
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

pub fn run(a: ReportArgs) -> anyhow::Result<()> {
    let spec = ReportSpec {
        out: a.out,
        per_class: a.per_class,
        budgets: a.budgets,
        study_chains: a.study_chains,
        study_steps: a.study_steps,
        tsne_class: a.tsne_class,
        tsne_chains: a.tsne_chains,
        seed: a.seed,
        models: a.folders.models,
        data_dir: a.folders.data_dir,
        reference_images: a.reference_images,
        prior_draws: a.prior_draws,
        generator_study: a.generator_study,
        cache: a.cache,
        command: super::command_line(),
    };
    println!("{}", report(&spec, &mut Bar::new(a.quiet, None))?);
    Ok(())
}
