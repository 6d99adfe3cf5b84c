//! `ppgn classes`: the class indices and names.

use crate::data::fashion_mnist::CLASS_NAMES;

pub fn run() -> anyhow::Result<()> {
    for (i, n) in CLASS_NAMES.iter().enumerate() {
        println!("{i}  {n}");
    }
    Ok(())
}
