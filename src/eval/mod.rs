//! Metrics. For now: how well the stack reconstructs real images, `G(E(x))`.

pub mod reconstruction;
