//! `ppgn classes`: the class indices and names.

use clap::Args;

use ppgn::data::fashion_mnist::CLASS_NAMES;
use ppgn::data::imagenet;

#[derive(Args, Debug)]
pub struct ClassesArgs {
    /// The 1000 ImageNet classes (EfficientNet-Lite0, CaffeNet) instead of
    /// Fashion-MNIST's 10.
    #[arg(long)]
    pub imagenet: bool,
}

pub fn run(a: ClassesArgs) -> anyhow::Result<()> {
    if a.imagenet {
        for (i, n) in imagenet::class_names().iter().enumerate() {
            println!("{i}  {n}");
        }
    } else {
        for (i, n) in CLASS_NAMES.iter().enumerate() {
            println!("{i}  {n}");
        }
    }
    Ok(())
}
