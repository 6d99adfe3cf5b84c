//! The pairs of networks chains run on: the `Pair` trait and its implementations (the shipped stack, composed and Caffe pairs), and the one place `Networks` become a pair.

pub mod fashion;
pub mod fashion_pair;
pub mod load;
pub mod pair;
pub mod plug_pair;
pub mod pretrained;
