//! `ppgn train <network>`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use ppgn::data::fashion_mnist;
use ppgn::models::fashion as stack;
use ppgn::run::config::preset::Choice;
use ppgn::train::job::{self, Network};
use ppgn::train::{code_prior::CodeTraining, gan::GanSettings, robust::Robust, TrainOptions};

#[derive(Args, Debug)]
#[command(
    allow_negative_numbers = true,
    after_help = "Training resumes from <out>/<network>.ckpt.* when it exists (same seed, \
batch and lr); a killed run loses at most the last --checkpoint-every steps. \
Outputs: <out>/<network>.safetensors and <out>/<network>.json (the card). \
Defaults follow Plug & Play Generative Networks (supplementary), S9.1: Adam, batch 64; lr 2e-4 for G and D, \
1e-3 for the classifiers and the image DAE, 3e-4 for the h DAE."
)]
pub struct TrainArgs {
    /// Which network to train.
    #[arg(value_parser = super::choice::<Network>())]
    pub network: Network,
    /// Passes over the training images (every network holds out the last 5,000, the validation split) [default: per network].
    #[arg(long)]
    pub epochs: Option<usize>,
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Adam learning rate [default: per network].
    #[arg(long)]
    pub lr: Option<f64>,
    /// Decoupled weight decay (the paper's L2 regularisation).
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// Seed for initialisation, batch order, dropout and noise [default: per network].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Output folder. The shipped stack was trained with `--out models/fashion-mnist`.
    #[arg(long, default_value = "runs/train")]
    pub out: PathBuf,
    /// The networks this one is trained against (the classifier for G and the
    /// priors on codes, the evaluator for G's card) are read from the model folder.
    #[command(flatten)]
    pub folders: super::Folders,
    #[arg(long, default_value_t = 500)]
    pub checkpoint_every: u64,
    /// Stop after this many steps (a quick run).
    #[arg(long)]
    pub max_steps: Option<u64>,
    /// Stop after this many steps in all, keeping the checkpoint; rerun to continue.
    #[arg(long)]
    pub stop_at: Option<u64>,
    /// Ignore an existing checkpoint.
    #[arg(long)]
    pub restart: bool,
    /// Generator only: the Joint PPGN-h variant (S9.5): noise on x, h1, h and the extra loss L_h.
    #[arg(long)]
    pub joint: bool,
    /// Generator only: weights of L_img, L_h1 and L_GAN (eq. 18), each a mean over elements.
    #[arg(long, num_args = 3, value_names = ["IMG", "H1", "GAN"])]
    pub loss_weights: Option<Vec<f64>>,
    /// Generator only: weight of the code loss L_h = ||E(G(h)) - h||^2 (eq. 24, Fig. S8's
    /// feature loss in the code layer), without the joint variant's noise [default: 0, or 1
    /// with --joint].
    #[arg(long, value_name = "W")]
    pub code_loss: Option<f64>,
    /// The network's size: the generator's channels at 7x7, 14x14 and 28x28 [default: 64 32
    /// 16]; code-score's width and residual blocks [default: 512 3]; code-prior's couplings and
    /// hidden width [default: 8 256].
    #[arg(long, alias = "channels", num_args = 2..=3, value_name = "N")]
    pub size: Option<Vec<usize>>,
    /// Classifiers only: Gaussian noise of this std on every training image (pixels in [0, 1]).
    #[arg(long, value_name = "S")]
    pub noise_std: Option<f64>,
    /// Classifiers only: train on adversarial images within an L2 ball of radius EPS,
    /// found by 3 steps of PGD; the card adds the accuracy under a 10-step attack.
    #[arg(long, value_name = "l2:EPS")]
    pub adversarial: Option<String>,
    /// The priors on codes (code-score, code-prior): whiten the codes by their
    /// principal axes (not only per unit); the flow then starts as their
    /// full-covariance Gaussian fit.
    #[arg(long)]
    pub whiten: bool,
    /// code-score only: start each residual block's last layer and the output layer at zero,
    /// so that the untrained denoiser returns c_skip(s) v [default: He's normal everywhere].
    #[arg(long)]
    pub zero_init: bool,
    /// code-score only: the mean of ln s over the training noise levels (EDM's P_mean) [default: -1.2].
    #[arg(long, value_name = "M")]
    pub noise_mean: Option<f64>,
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn run(a: TrainArgs) -> anyhow::Result<()> {
    let (epochs, lr, seed) = a.network.defaults();
    let opts = TrainOptions {
        epochs: a.epochs.unwrap_or(epochs),
        batch_size: a.batch_size,
        lr: a.lr.unwrap_or(lr),
        weight_decay: a.weight_decay,
        seed: a.seed.unwrap_or(seed),
        out_dir: a.out.clone(),
        models_dir: a.folders.models_dir(),
        checkpoint_every: a.checkpoint_every,
        max_steps: a.max_steps,
        stop_at: a.stop_at,
        restart: a.restart,
        size: a.size.clone(),
        command: super::command_line(),
        robust: Robust::parse(a.noise_std, a.adversarial.as_deref())?,
        codes: CodeTraining {
            whiten: a.whiten,
            zero_init: a.zero_init,
            noise_mean: a.noise_mean,
        },
    };
    // the generator's flags, checked before any data or network loads
    let gan = GanSettings::from_flags(a.joint, a.loss_weights.as_deref(), a.code_loss)?;
    let dir = fashion_mnist::resolve_dir(a.folders.data());
    let mut bar = super::progress::Bar::new(a.quiet, None);
    let Some(card) = job::train(a.network, &opts, &gan, &dir, &mut bar)
        .with_context(|| format!("training {}", a.network.name()))?
    else {
        println!(
            "stopped {} at step {}; rerun the same command without --stop-at to continue",
            a.network.name(),
            a.stop_at.unwrap_or(0)
        );
        return Ok(());
    };
    let (w, c) = stack::paths(&opts.out_dir, &a.network.name());
    println!("{}", card.summary());
    println!("wrote {} and {}", w.display(), c.display());
    Ok(())
}
