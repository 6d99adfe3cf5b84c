//! Restoration: the posterior of an image given a damaged observation of
//! it, `y = A(x) + noise`, sampled through a generator's code
//! (`crate::density::observation`). The first paper's inpainting ("Plug &
//! Play Generative Networks" (supplementary), S10) is the case `A` = a
//! mask; any operator of `crate::run::config::restore` and any pair whose
//! generator draws pixels in [0, 1] work, with every sampler.
//!
//! Each image gets its own chains; the draws are their decoded images at
//! the records of the run's second half (the first half is burn-in, and
//! where the step adapts, adaptation). What a draw says of the true image
//! includes the error the generator cannot draw, so before the spread and
//! the quantiles are taken every draw gets `N(0, tau^2)` noise per pixel
//! (seeded); the mean is of the draws themselves.
//!
//! `chains`: what one drive of chains leaves; `draws`: the chains and
//! their draws; `paper`: the first paper's
//! inpainting (its class term, clamp and context term) in place of the
//! likelihood; `summary`: the per-pixel mean,
//! spread and quantiles and their scores; `job`: the images asked for and
//! the run folder.

mod chains;
mod draws;
mod job;
mod paper;
mod summary;

pub use draws::{restore, Damage, DrawError, DrawNoise, Restored};
pub use job::{job, RestoreSpec, Truths};
pub use paper::{check as check_paper, Inpainting, PaperInpaint, PAPER_INPAINT};
pub use summary::{quantile, score, summarise, Scores, Summary};
