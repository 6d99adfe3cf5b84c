//! Run folders and what goes in them: atomic files in a staging folder, grids, arrays and the one manifest.

pub mod folder;
pub mod outputs;
