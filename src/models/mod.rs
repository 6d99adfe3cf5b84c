//! Networks, their weights files and cards.

pub mod card;
pub mod fashion;
pub mod weights;
