//! `ppgn inpaint`: fill the masked region of a real test image conditioned
//! on a class ("Plug & Play Generative Networks" (supplementary), S10): the sampler's usual
//! target plus the context term on the known pixels, which are clamped to
//! the real ones in the output.

use clap::Args;

use super::sample::{run_spec, SampleArgs};
use ppgn::run::config::spec::Inpaint;

#[derive(Args, Debug)]
#[command(
    after_help = "Example: ppgn inpaint --class dress --image test:123 --mask 12x12@8,8\n\
Writes inpaint.png (original, masked input, then each chain's fill) beside the files of \
`ppgn sample`."
)]
pub struct InpaintArgs {
    /// The image to complete: `test:INDEX` from the pair's data set (the
    /// Fashion-MNIST test set), or a PNG file of the generator's image size.
    #[arg(long)]
    pub image: String,
    /// What to fill, on the generator's image: `WxH@X,Y` (a patch with its top-left
    /// corner at X,Y), `random` (a patch of 12/28 of the side placed by --seed), or a PNG
    /// of the image's size whose white pixels are filled.
    #[arg(long, default_value = "random")]
    pub mask: String,
    /// Weight of the context term `|(1 - M) * (x_real - x)|^2`.
    #[arg(long, default_value_t = 1.0)]
    pub context_weight: f64,
    #[command(flatten)]
    pub sample: SampleArgs,
}

pub fn run(a: InpaintArgs) -> anyhow::Result<()> {
    let inpaint = Inpaint::asked(&a.image, &a.mask, a.context_weight)?;
    let spec = a.sample.spec(Some(inpaint))?;
    run_spec(&spec, a.sample.quiet, a.sample.stop_after)
}
