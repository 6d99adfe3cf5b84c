//! Networks, their weights files and cards.

pub mod caffe;
pub mod card;
pub mod dcgan;
pub mod efficientnet_lite;
pub mod fashion;
pub mod onnx;
pub mod plug;
pub mod pretrained;
pub mod torch_file;
pub mod weights;
