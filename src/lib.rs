//! ppgn: plug-and-play conditional image generation by gradient-based
//! inference (Nguyen et al., "Plug & Play Generative Networks"; Xu et al.,
//! "Generating Class-conditional Images with Gradient-based Inference").

pub mod data;
pub mod density;
pub mod error;
pub mod eval;
pub mod fsutil;
pub mod models;
pub mod nn;
pub mod run;
pub mod sampler;
pub mod serve;
pub mod train;
pub mod viz;

pub use error::{Error, Result};
