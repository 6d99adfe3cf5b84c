//! Visualisations beyond plain grids: the t-SNE grid of Fig. S11.

pub mod tsne;

use crate::data::image::{encode_png, grid};
use crate::error::{Error, Result};

/// A t-SNE grid PNG of up to `side * side` images (28x28 grey, each 784
/// values), embedded by their `features`: similar images land in nearby cells.
pub fn tsne_grid_png(
    images: &[Vec<f32>],
    features: &[Vec<f64>],
    t: &tsne::Tsne,
) -> Result<Vec<u8>> {
    if images.len() != features.len() || images.is_empty() {
        return Err(Error::shape(
            "t-SNE grid",
            format!("one feature row per image ({}), at least 1", images.len()),
            features.len(),
        ));
    }
    let n = images.len();
    let cols = (n as f64).sqrt().ceil() as usize;
    let rows = n.div_ceil(cols);
    let y = t.embed(features);
    let cells = tsne::snap_to_grid(&y, cols, rows);
    let flat = tsne::arrange(images, &cells, cols, rows);
    let (px, w, h) = grid(&flat, cols * rows, (28, 28, 1), cols, 1)?;
    encode_png(&px, w, h, 1)
}
