//! Networks, their weights files and cards.

pub mod caffe;
pub mod card;
pub mod dcgan;
pub mod efficientnet_lite;
pub mod fashion;
pub mod generator_error;
pub mod onnx;
pub mod plug;
pub mod pretrained;
pub mod torch_file;
pub mod weights;

use std::fmt::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// The tensor names and shapes a weights file of `network` must hold
/// (`ppgn models tensors`).
pub fn expected_tensors(network: &str) -> Result<Vec<(String, Vec<usize>)>> {
    Ok(match network {
        "alexnet" => caffe::alexnet_tensors(&caffe::CaffeNetConfig::caffenet()),
        "dgn-fc6" => caffe::generator_tensors(&caffe::DgnConfig::fc6()),
        "efficientnet-lite0" => efficientnet_lite::expected_tensors(),
        "dcgan-faces" => dcgan::expected_tensors(),
        other => {
            return Err(Error::UnknownName {
                what: "network",
                given: other.into(),
                expected: "alexnet, dgn-fc6, efficientnet-lite0 or dcgan-faces".into(),
            })
        }
    })
}

/// What is installed (`ppgn models list`): the Fashion-MNIST networks in
/// `dir` with their cards' numbers, and the pretrained packages.
pub fn inventory(dir: &Path) -> Result<String> {
    let mut out = format!("Fashion-MNIST stack in {}\n", dir.display());
    let optional = fashion::OPTIONAL.iter().map(|n| (n, true));
    for (name, optional) in fashion::NETWORKS.iter().map(|n| (n, false)).chain(optional) {
        let (w, c) = fashion::paths(dir, name);
        if !w.exists() {
            if !optional {
                let _ = writeln!(out, "  {name:<14} missing ({})", w.display());
            }
            continue;
        }
        let card = card::Card::load(&c)?;
        let metrics: Vec<String> = card
            .metrics
            .iter()
            .filter(|(k, _)| !k.starts_with("final_epoch"))
            .map(|(k, v)| format!("{k} {v:.4}"))
            .collect();
        let _ = writeln!(
            out,
            "  {name:<14} {} steps, {}",
            card.steps,
            metrics.join(", ")
        );
    }
    let home = pretrained::home();
    let _ = writeln!(
        out,
        "Pretrained networks in {} (`ppgn models fetch` installs them)",
        home.display()
    );
    for pkg in &pretrained::PACKAGES {
        let status = match pkg.status(&home) {
            pretrained::Status::Installed => "installed",
            pretrained::Status::Missing => "missing",
            pretrained::Status::Corrupt => "CORRUPT (checksum mismatch; run `ppgn models fetch`)",
        };
        let _ = writeln!(
            out,
            "  {:<20} {status:<9} {} [{}]",
            pkg.name, pkg.description, pkg.license
        );
    }
    Ok(out)
}
