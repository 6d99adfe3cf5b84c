//! Seeded weight initialisation. candle's CPU random generator cannot be
//! seeded, so a `VarMap` is filled here from a ChaCha stream instead: the
//! same seed gives the same initial weights, bit for bit.

use candle_core::{Result, Tensor};
use candle_nn::VarMap;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

/// He (Kaiming) normal init for weights (`std = sqrt(2 / fan_in)`, fan_in =
/// product of all but the first dimension), zeros for biases. Variables are
/// visited in name order so the result does not depend on hash-map order.
pub fn init_seeded(varmap: &VarMap, seed: u64) -> Result<()> {
    let data = varmap.data().lock().unwrap();
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for name in names {
        let var = &data[name];
        let dims = var.dims().to_vec();
        let n: usize = dims.iter().product();
        let values: Vec<f32> = if name.ends_with("bias") || dims.len() < 2 {
            vec![0.0; n]
        } else {
            let fan_in: usize = dims[1..].iter().product();
            let normal = Normal::new(0.0f32, (2.0 / fan_in as f32).sqrt()).unwrap();
            (0..n).map(|_| normal.sample(&mut rng)).collect()
        };
        let t = Tensor::from_vec(values, dims, var.device())?.to_dtype(var.dtype())?;
        var.set(&t)?;
    }
    Ok(())
}
