//! Loading and saving `.safetensors` weights with errors that name the file
//! and say what is wrong (a truncated file, a missing or mis-shaped tensor).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};

use crate::error::{Error, Result};
use crate::fsutil::write_atomic;

/// Reads and validates a safetensors file, returning its tensors.
pub fn load_tensors(path: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    // The safetensors parser checks the header and that every tensor's byte
    // range lies inside the file, which catches truncation.
    safetensors::SafeTensors::deserialize(&bytes).map_err(|e| Error::Weights {
        path: path.to_path_buf(),
        message: format!(
            "not a valid safetensors file ({e}); it may be truncated, re-copy or retrain it"
        ),
    })?;
    candle_core::safetensors::load_buffer(&bytes, device).map_err(|e| Error::Weights {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// A `VarBuilder` over a validated weights file, converting to `dtype`.
pub fn var_builder(path: &Path, dtype: DType, device: &Device) -> Result<VarBuilder<'static>> {
    let tensors = load_tensors(path, device)?;
    Ok(VarBuilder::from_tensors(tensors, dtype, device))
}

/// Builds a network from a weights file, turning shape and name errors
/// into messages that name the file.
pub fn build<T>(
    path: &Path,
    dtype: DType,
    device: &Device,
    make: impl FnOnce(VarBuilder<'static>) -> candle_core::Result<T>,
) -> Result<T> {
    let vb = var_builder(path, dtype, device)?;
    make(vb).map_err(|e| Error::Weights {
        path: path.to_path_buf(),
        message: format!("does not fit the network: {e}"),
    })
}

/// The variables of a `VarMap` as plain tensors, by name.
pub fn varmap_tensors(varmap: &VarMap, prefix: &str) -> HashMap<String, Tensor> {
    varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (format!("{prefix}{k}"), v.as_tensor().clone()))
        .collect()
}

/// Writes tensors as safetensors, atomically.
pub fn save_tensors(path: &Path, tensors: &HashMap<String, Tensor>) -> Result<()> {
    let bytes = safetensors::serialize(tensors.iter(), None).map_err(|e| Error::Weights {
        path: path.to_path_buf(),
        message: format!("cannot serialise: {e}"),
    })?;
    write_atomic(path, &bytes)
}

/// Writes `tensors` and a text `note` (in the header's metadata, under
/// `ppgn`) as one safetensors file, atomically: a state whose parts must
/// never disagree (a run's checkpoint) is one rename.
pub fn save_tensors_with_note(
    path: &Path,
    tensors: &HashMap<String, Tensor>,
    note: &str,
) -> Result<()> {
    let meta = HashMap::from([("ppgn".to_string(), note.to_string())]);
    let bytes = safetensors::serialize(tensors.iter(), Some(meta)).map_err(|e| Error::Weights {
        path: path.to_path_buf(),
        message: format!("cannot serialise: {e}"),
    })?;
    write_atomic(path, &bytes)
}

/// The note [`save_tensors_with_note`] wrote, and the tensors.
pub fn load_tensors_with_note(
    path: &Path,
    device: &Device,
) -> Result<(String, HashMap<String, Tensor>)> {
    let tensors = load_tensors(path, device)?;
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let note = safetensors::SafeTensors::read_metadata(&bytes)
        .ok()
        .and_then(|(_, m)| m.metadata().as_ref().and_then(|m| m.get("ppgn").cloned()))
        .ok_or_else(|| Error::data(path, "lacks its ppgn note (not written by ppgn?)"))?;
    Ok((note, tensors))
}

/// Copies tensors named `"{prefix}{var}"` into the variables of `varmap`.
pub fn load_into_varmap(
    varmap: &VarMap,
    tensors: &HashMap<String, Tensor>,
    prefix: &str,
    path: &Path,
) -> Result<()> {
    for (name, var) in varmap.data().lock().unwrap().iter() {
        let key = format!("{prefix}{name}");
        let t = tensors.get(&key).ok_or_else(|| Error::Weights {
            path: path.to_path_buf(),
            message: format!("lacks tensor {key}"),
        })?;
        if t.dims() != var.dims() {
            return Err(Error::Weights {
                path: path.to_path_buf(),
                message: format!(
                    "tensor {key} has shape {:?}, expected {:?}",
                    t.dims(),
                    var.dims()
                ),
            });
        }
        var.set(&t.to_dtype(var.dtype())?)?;
    }
    Ok(())
}

/// Checks that `w` holds every `(name, shape)` of `expected` (extra tensors
/// are allowed), naming the first one missing or mis-shaped.
pub fn check_tensors(
    w: &HashMap<String, Tensor>,
    expected: &[(String, Vec<usize>)],
) -> candle_core::Result<()> {
    for (name, shape) in expected {
        match w.get(name) {
            None => candle_core::bail!("missing tensor {name} (expected shape {shape:?})"),
            Some(t) if t.dims() != shape.as_slice() => {
                candle_core::bail!("tensor {name} has shape {:?}, expected {shape:?}", t.dims())
            }
            _ => {}
        }
    }
    Ok(())
}
