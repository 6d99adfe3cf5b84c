//! Metrics: reconstruction of real images through the codes, and scores of
//! generated images by the independent evaluator.

pub mod ms_ssim;
pub mod reconstruction;
pub mod report;
pub mod results;
pub mod scores;
