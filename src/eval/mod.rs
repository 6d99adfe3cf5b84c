//! Metrics: scores of generated images by the independent evaluator, and
//! the report's experiments.

pub mod choose;
pub mod claims;
pub mod experiments;
pub mod generators;
pub mod judge;
pub mod mixing;
pub mod ms_ssim;
pub mod priors;
pub mod protocol;
pub mod report;
pub mod restore;
pub mod results;
pub mod resume;
pub mod run_eval;
pub mod scores;
pub mod stack_check;
pub mod studies;
pub mod tsne_run;
