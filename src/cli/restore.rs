//! `ppgn restore`: the posterior of images given a damaged observation of
//! them (`ppgn::run::jobs::restore`), with the sampler flags of `ppgn sample`.

use clap::Args;

use super::progress::Bar;
use ppgn::eval::restore::{calibrate, samplers_for};
use ppgn::run::config::restore::{noise_std, parse, tau};
use ppgn::run::jobs::restore::{job, Damage, DrawError, PaperInpaint, RestoreSpec, Truths};

#[derive(Args, Debug)]
#[command(
    allow_negative_numbers = true,
    after_help = "Example: ppgn restore --image test:0-9 --operator down:2 --noise-std 0.05\n\
Each image gets --chains chains; the records of the second half of the steps are its draws. \
Writes restore.png (a row per image: truth, observation, mean, spread x4, 5% and 95% images, \
draws), truth.npy, observed.npy, mean.npy, std.npy, q05.npy, q95.npy (float32 [k, c, h, w]), \
samples.npy ([k, draws, c, h, w]) and manifest.json (PSNR of the mean and the coverage of the \
90% intervals per image)."
)]
pub struct RestoreArgs {
    /// The true images: `test:N` or `test:A-B` (the pair's test set),
    /// `val:N` or `val:A-B` (its validation split), or a `.npy` ([n, c, h,
    /// w] in [0, 1]), a PNG or a folder of PNGs at the generator's image
    /// size [default: test:0].
    #[arg(long)]
    pub image: Option<String>,
    /// The damage: `mask:WxH@X,Y` (a hidden patch), `mask:FILE.png` (white
    /// pixels hidden), `blur:SIGMA` (Gaussian), `down:K` (K x K means),
    /// `noise` (none but the noise), chained with `+` (`blur:1+down:2`).
    #[arg(long, default_value = "mask:12x12@8,8")]
    pub operator: String,
    /// The observation's noise standard deviation, in [0, 1] pixel units.
    #[arg(long, default_value_t = 0.0)]
    pub noise_std: f64,
    /// The generator's own error: a number (per pixel, in [0, 1] units) or
    /// a .npy of one per pixel (`ppgn models check --tau-map` writes the
    /// shipped generator's) [default: its card's
    /// validation_reconstruction_rmse].
    #[arg(long, value_name = "TAU|FILE.npy")]
    pub tau: Option<String>,
    /// The error added to each draw before the spread and quantiles: gaussian (N(0, tau^2)) or by-value (the generator card's error given the value drawn) [default: gaussian].
    #[arg(long, value_parser = DrawError::parse)]
    pub draw_error: Option<DrawError>,
    /// Measure calibration instead: restore test images 0..N-1 (or the
    /// images `test:A-B`, `val:A-B`) with each of --samplers (their presets'
    /// settings, eps2 1, --steps if given, >= 100 draws an image) into
    /// --out/NAME/, and write the table (with the chains' ESS per gradient
    /// evaluation) to --out/calibration.md.
    #[arg(long, value_name = "N|test:A-B|val:A-B")]
    pub eval: Option<String>,
    /// The samplers --eval compares: map, mala-approx, paper-inpaint or
    /// preset names [default: map,mala-approx,exact-mala,exact-hmc,exact-nuts;
    /// with a mask, paper-inpaint after mala-approx].
    #[arg(long, value_delimiter = ',')]
    pub samplers: Option<Vec<String>>,
    // exact-mala: Metropolis-Hastings, so the spread is the posterior's;
    // eps2 1: the likelihood as it is, not tempered
    #[command(
        flatten,
        next_help_heading = "The flags of ppgn sample (here --preset defaults to exact-mala, --eps2 to 1, --chains are an image's; --preset paper-inpaint is the first paper's inpainting (S10: the ppgn preset, the class term on the clamped image and the context term, for a mask), conditioned on --class or each test image's label; --class applies to it alone, and --neuron, --init, --keep-above, --autotune, --resume, --dry-run, --batch and --shard are refused)"
    )]
    pub sample: super::sample::SampleArgs,
}

pub fn run(mut a: RestoreArgs) -> anyhow::Result<()> {
    let x = &a.sample;
    let unused = [
        ("--neuron", x.neuron.is_some()),
        ("--init", x.init != "random"),
        ("--keep-above", x.keep_above.is_some()),
        ("--autotune", x.autotune),
        ("--resume", x.resume),
        ("--dry-run", x.dry_run),
        ("--batch", x.batch.is_some()),
        ("--shard", x.shard != ppgn::run::drive::shard::Shard::WHOLE),
    ];
    if let Some((flag, _)) = unused.iter().find(|(_, given)| *given) {
        anyhow::bail!("{flag} is a flag of ppgn sample that ppgn restore does not take: drop it (each image's chains start from the prior's draws, in one batch)");
    }
    let damage = Damage {
        operator: parse(&a.operator)?,
        noise_std: noise_std(a.noise_std)?,
        tau: a.tau.as_deref().map(tau).transpose()?,
        draw_error: a.draw_error,
    };
    let truths = match (&a.eval, &a.image) {
        (Some(_), Some(_)) => {
            anyhow::bail!("--eval N restores the test images 0 to N-1: drop --image")
        }
        (Some(n), None) => Truths::eval(n)?,
        (None, image) => Truths::parse(image.as_deref().unwrap_or("test:0"))?,
    };
    let paper = PaperInpaint::asked(&mut a.sample.preset, a.sample.class.take())?;
    a.sample.preset.get_or_insert_with(|| "exact-mala".into());
    a.sample.eps2.get_or_insert(1.0);
    let s = a.sample.spec(None)?;
    let spec = RestoreSpec {
        networks: s.networks,
        data_dir: s.data_dir,
        truths,
        damage,
        paper,
        settings: s.settings,
        chains: s.chains,
        record_every: s.record_every,
        seed: s.seed,
        out: s.out,
        force: s.force,
        scale: s.scale,
        command: s.command,
    };
    let mut bar = Bar::new(a.sample.quiet, None);
    match &a.eval {
        Some(_) => print!(
            "{}",
            calibrate(
                &spec,
                &a.samplers
                    .unwrap_or_else(|| samplers_for(&spec.damage.operator)),
                a.sample.steps,
                &mut bar
            )?
        ),
        None => println!("{}", job(&spec, &mut bar)?),
    }
    Ok(())
}
