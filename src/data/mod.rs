//! Data in and out: the Fashion-MNIST reader and image writers.

pub mod fashion_mnist;
pub mod idx;
pub mod image;
pub mod imagenet;
pub mod images;
pub mod npy;
pub mod npy_stream;
