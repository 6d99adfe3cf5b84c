//! Settings: the presets, what settings imply when they run, resolving and validating settings, settings named by their values, changes keyed by step, a job's typed settings and inpainting's.

pub mod choice;
pub mod derived;
pub mod inpaint;
pub mod preset;
pub mod restore;
pub mod settings;
pub mod spec;
pub mod steer;
pub mod tuning;
