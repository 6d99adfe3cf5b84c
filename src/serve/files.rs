//! Run folders and their files: listing, serving (only from inside the
//! runs folder), new folders for runs, the networks folder's sidecars, and
//! test images to inpaint.

use std::path::{Component, Path as FsPath, PathBuf};
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::reply::refuse;
use super::Shared;
use crate::data::fashion_mnist::{self, Split};
use crate::error::{Error, Result};

/// Every run folder under the runs folder (newest first) with its files,
/// and the staging folders of runs that are not running here (a server or
/// a `ppgn sample` stopped mid-run) with the command that resumes them.
pub(super) async fn folders(State(s): State<Arc<Shared>>) -> Response {
    let Ok(entries) = std::fs::read_dir(&s.cfg.runs) else {
        return Json(serde_json::json!([])).into_response();
    };
    let running = |name: &str| {
        let runs = s.runs.lock().unwrap_or_else(|p| p.into_inner());
        runs.get(name)
            .is_some_and(|r| !r.frames.borrow().terminal())
    };
    let mut runs: Vec<(std::time::SystemTime, serde_json::Value)> = entries
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| {
            let file_name = e.file_name().to_string_lossy().to_string();
            let when = e
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            if let Some(hidden) = file_name.strip_prefix('.') {
                let name = hidden.strip_suffix(".partial")?;
                if running(name) {
                    return None;
                }
                let resume = format!(
                    "ppgn sample --resume --out {}",
                    s.cfg.runs.join(name).display()
                );
                let entry = serde_json::json!({ "name": name, "files": [], "interrupted": true, "resume": resume });
                return Some((when, entry));
            }
            let mut files: Vec<String> = std::fs::read_dir(e.path())
                .map(|d| {
                    d.flatten()
                        .filter(|f| f.path().is_file())
                        .map(|f| f.file_name().to_string_lossy().to_string())
                        .collect()
                })
                .unwrap_or_default();
            files.sort();
            Some((when, serde_json::json!({ "name": file_name, "files": files })))
        })
        .collect();
    runs.sort_by_key(|r| std::cmp::Reverse(r.0));
    Json(runs.into_iter().map(|r| r.1).collect::<Vec<_>>()).into_response()
}

/// The path `asked` names inside `root`, or why it is refused: only
/// plain names (no `..`, no root, no backslash), and after following
/// links still inside `root`.
pub fn inside(root: &FsPath, asked: &str) -> std::result::Result<PathBuf, String> {
    let rel = FsPath::new(asked);
    let plain =
        !asked.contains('\\') && rel.components().all(|c| matches!(c, Component::Normal(_)));
    if !plain {
        return Err(format!("{asked:?} is not a path inside the runs folder"));
    }
    let root = root
        .canonicalize()
        .map_err(|e| format!("the runs folder: {e}"))?;
    let full = root
        .join(rel)
        .canonicalize()
        .map_err(|_| format!("no file {asked} in the runs folder"))?;
    if !full.starts_with(&root) {
        return Err(format!("{asked:?} leads outside the runs folder"));
    }
    Ok(full)
}

/// A file of a run folder (`?download` asks the browser to save it).
pub(super) async fn file(State(s): State<Arc<Shared>>, Path(asked): Path<String>) -> Response {
    let path = match inside(&s.cfg.runs, &asked) {
        Ok(p) if p.is_file() => p,
        Ok(_) => return refuse(StatusCode::NOT_FOUND, format!("{asked} is not a file")),
        Err(m) => return refuse(StatusCode::NOT_FOUND, m),
    };
    let read = path.clone();
    let bytes: Vec<u8> = match tokio::task::spawn_blocking(move || std::fs::read(read)).await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, format!("{asked}: {e}")),
        Err(e) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, format!("{asked}: {e}")),
    };
    let kind = match path.extension().and_then(|e| e.to_str()) {
        Some("png") => "image/png",
        Some("gif") => "image/gif",
        Some("json") => "application/json",
        Some("md" | "txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    };
    let name = path
        .file_name()
        .map_or(String::new(), |n| n.to_string_lossy().to_string());
    (
        [
            (header::CONTENT_TYPE, kind.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("inline; filename=\"{name}\""),
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
        ],
        bytes,
    )
        .into_response()
}

/// A fresh folder name under `runs` for a run of the page: `serve-N`.
pub(super) fn new_run_folder(runs: &FsPath) -> (String, PathBuf) {
    static NEXT: std::sync::Mutex<usize> = std::sync::Mutex::new(1);
    let mut next = NEXT.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let name = format!("serve-{:03}", *next);
        *next += 1;
        let dir = runs.join(&name);
        if !dir.exists() && !crate::run::output::folder::RunFolder::partial_path(&dir).exists() {
            return (name, dir);
        }
    }
}

/// The sidecars (`*.toml`) of the networks folder, each with its kind
/// (`generator` or `classifier`, as its `[network]` table says).
pub(super) fn sidecars(networks: Option<&FsPath>) -> Vec<serde_json::Value> {
    let Some(dir) = networks else {
        return Vec::new();
    };
    let mut found: Vec<serde_json::Value> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".toml"))
                .map(|e| {
                    let kind = std::fs::read_to_string(e.path())
                        .ok()
                        .and_then(|t| t.parse::<toml::Table>().ok())
                        .and_then(|t| t.get("network")?.get("kind")?.as_str().map(str::to_string));
                    serde_json::json!({"name": e.file_name().to_string_lossy(), "kind": kind})
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort_by_key(|v| v["name"].as_str().map(str::to_string));
    found
}

/// The sidecar `name` of the networks folder, as a path (networks brought
/// as files load only from there).
pub(super) fn sidecar(networks: Option<&FsPath>, name: &str) -> Result<String> {
    let dir = networks.ok_or_else(|| {
        Error::unsupported(
            format!("the network file {name}"),
            "start the server with --networks DIR to use networks brought as files",
        )
    })?;
    let path = inside(dir, name).map_err(|m| Error::data(dir, m))?;
    Ok(path.to_string_lossy().to_string())
}

/// Fashion-MNIST test image `index` as a PNG, for the inpainting picker.
pub(super) async fn test_image(Path(index): Path<usize>) -> Response {
    let png = (|| -> Result<Vec<u8>> {
        let test = fashion_mnist::load(&fashion_mnist::resolve_dir(None), Split::Test)?;
        if index >= test.len() {
            return Err(Error::setting("image", index, format!("0..{}", test.len())));
        }
        let px = &test.images[index * 784..(index + 1) * 784];
        crate::data::image::encode_png(px, 28, 28, 1)
    })();
    match png {
        Ok(b) => ([(header::CONTENT_TYPE, "image/png")], b).into_response(),
        Err(e) => refuse(StatusCode::BAD_REQUEST, e.to_string()),
    }
}
