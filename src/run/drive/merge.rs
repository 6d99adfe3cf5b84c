//! `ppgn merge`: shard folders of one run (`ppgn sample --shard K/N`)
//! joined into the run folder the unsharded run writes: `samples.npy`,
//! `labels.npy` (and `kept.npy`) byte-identical to it, the per-chain
//! entries in chain order, the run's diagnostics (acceptance, R-hat and ESS
//! of the condition value, the evaluator's accuracy) recomputed over all
//! chains, and the grid, filmstrip and GIF redrawn. Shards of other
//! settings or models, a shard given twice and a missing shard are refused
//! by name before anything is written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::batched::Shown;
use super::shard::Shard;
use crate::data::npy;
use crate::data::npy_stream::{F32Rows, F32RowsReader};
use crate::error::{Error, Result};
use crate::run::output::folder::RunFolder;
use crate::sampler::diagnostics::{bulk_ess, rank_rhat};

/// The fraction of each class's chains whose final image the evaluator
/// gives that class, by class name (none for neuron runs, nor for runs
/// whose pair had no evaluator).
pub fn evaluator_accuracy(chains: &[Value]) -> BTreeMap<String, f64> {
    let mut count: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for c in chains.iter().filter(|c| !c["evaluator_class"].is_null()) {
        if let Some(class) = c["class"].as_u64() {
            let name = c["class_name"]
                .as_str()
                .map_or(class.to_string(), String::from);
            let e = count.entry(name).or_default();
            e.1 += 1;
            e.0 += (c["evaluator_class"].as_u64() == Some(class)) as usize;
        }
    }
    count
        .into_iter()
        .map(|(c, (ok, n))| (c, ok as f64 / n as f64))
        .collect()
}

/// Mean acceptance, and per class (or over all chains of a neuron run)
/// the rank-normalised split R-hat and bulk ESS of the condition value
/// over the second half of the records (null with fewer than 2 chains or
/// 4 records there).
pub fn diagnostics(chains: &[Value]) -> Value {
    let mut groups: BTreeMap<String, Vec<Vec<f64>>> = BTreeMap::new();
    for c in chains {
        let name = c["class_name"].as_str().unwrap_or("all").to_string();
        let trace: Vec<f64> = c["condition_value"]
            .as_array()
            .map(|v| v.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default();
        let half = trace[trace.len() / 2..].to_vec();
        groups.entry(name).or_default().push(half);
    }
    let per: BTreeMap<String, Value> = groups
        .into_iter()
        .map(|(name, draws)| {
            let ok = draws.len() >= 2 && draws.iter().all(|d| d.len() >= 4);
            let v = match ok {
                true => json!({"rhat": rank_rhat(&draws), "ess": bulk_ess(&draws)}),
                false => Value::Null,
            };
            (name, v)
        })
        .collect();
    let accept: Vec<f64> = chains
        .iter()
        .filter_map(|c| c["accept_rate"].as_f64())
        .collect();
    json!({
        "mean_accept_rate": accept.iter().sum::<f64>() / accept.len().max(1) as f64,
        "condition_value": per,
    })
}

/// The manifest fields that may differ between the shards of one run.
const PER_SHARD: [&str; 11] = [
    "command",
    "shard",
    "chains",
    "shown_chains",
    "adapted_step",
    "adapted_steps",
    "wall_time_s",
    "mean_accept",
    "diagnostics",
    "evaluator_accuracy_per_class",
    "merged_from",
];

/// One shard folder and its manifest.
struct Part {
    dir: PathBuf,
    manifest: Value,
    shard: Shard,
}

impl Part {
    fn read(dir: &Path) -> Result<Self> {
        let path = dir.join("manifest.json");
        let text = std::fs::read_to_string(&path).map_err(|e| {
            Error::data(
                &path,
                format!("{e}; expected the folder of a finished `ppgn sample --shard` run"),
            )
        })?;
        let manifest: Value = serde_json::from_str(&text)
            .map_err(|e| Error::data(&path, format!("unreadable manifest: {e}")))?;
        let shard: Shard = serde_json::from_value(manifest["shard"].clone()).map_err(|_| {
            Error::data(
                &path,
                "no shard in the manifest (a run of this version of `ppgn sample`)",
            )
        })?;
        Ok(Part {
            dir: dir.to_path_buf(),
            manifest,
            shard,
        })
    }

    /// The manifest without what differs between shards (and the models'
    /// folder, which may be mounted elsewhere on another machine).
    fn settings(&self) -> Value {
        let mut m = self.manifest.clone();
        if let Some(o) = m.as_object_mut() {
            for k in PER_SHARD {
                o.remove(k);
            }
        }
        if let Some(models) = m["models"].as_object_mut() {
            models.remove("folder");
        }
        m
    }

    fn chains(&self) -> Vec<Value> {
        self.manifest["chains"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

/// What [`merge`] made.
#[derive(Debug)]
pub struct Merged {
    pub dir: PathBuf,
    pub chains: usize,
    pub shards: usize,
}

impl std::fmt::Display for Merged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "merged {} shards, {} chains, into {}",
            self.shards,
            self.chains,
            self.dir.display()
        )
    }
}

/// Joins the shard folders `runs` into the run folder `out` (replaced if
/// `force`).
pub fn merge(runs: &[PathBuf], out: &Path, force: bool) -> Result<Merged> {
    let parts = check(runs)?;
    RunFolder::check(out, force, false)?;
    let folder = RunFolder::open(out, force, false)?;
    let (chains, dir) = folder.fill(|f| write(f, &parts))?;
    Ok(Merged {
        dir,
        chains,
        shards: parts.len(),
    })
}

/// The shards in order, or the first problem by name.
fn check(runs: &[PathBuf]) -> Result<Vec<Part>> {
    if runs.is_empty() {
        return Err(Error::setting("runs", "none", "the shard folders to merge"));
    }
    let mut parts: Vec<Part> = runs.iter().map(|d| Part::read(d)).collect::<Result<_>>()?;
    let first = parts[0].settings();
    let count = parts[0].shard.count;
    for p in &parts[1..] {
        let s = p.settings();
        if s != first || p.shard.count != count {
            let field = first
                .as_object()
                .and_then(|o| {
                    o.keys()
                        .find(|k| first[k.as_str()] != s[k.as_str()])
                        .cloned()
                })
                .unwrap_or_else(|| "shard count".into());
            return Err(Error::data(
                &p.dir,
                format!(
                    "shard {} was run with other settings or models than {} ({field} differs); \
                     merge the shards of one command",
                    p.shard,
                    parts[0].dir.display()
                ),
            ));
        }
    }
    parts.sort_by_key(|p| p.shard.index);
    for w in parts.windows(2) {
        if w[0].shard.index == w[1].shard.index {
            return Err(Error::data(
                &w[1].dir,
                format!(
                    "shard {} given twice (also {})",
                    w[1].shard,
                    w[0].dir.display()
                ),
            ));
        }
    }
    if let Some(k) = (1..=count).find(|&k| parts.iter().all(|p| p.shard.index != k)) {
        return Err(Error::unsupported(
            format!("shard {k}/{count} is missing"),
            format!("run `ppgn sample ... --shard {k}/{count}` and merge all {count} shards"),
        ));
    }
    Ok(parts)
}

/// `[c, h, w]` and `(h, w, c)` of a shard's images, from its samples.npy.
fn image_shape(dir: &Path) -> Result<(Vec<usize>, (usize, usize, usize))> {
    let path = dir.join("samples.npy");
    let chw = F32RowsReader::open(&path)?.shape[1..].to_vec();
    match chw.as_slice() {
        &[c, h, w] => Ok((chw, (h, w, c))),
        other => Err(Error::data(
            &path,
            format!("images of shape {other:?}, expected [c, h, w]"),
        )),
    }
}

/// `kept.npy` (`[n, c, h, w]`) and `kept.png`, its first rows.
fn write_kept(f: &RunFolder, kept: &[f32], hwc: (usize, usize, usize), cols: usize) -> Result<()> {
    let per = hwc.0 * hwc.1 * hwc.2;
    let n = kept.len() / per;
    f.npy_f32("kept.npy", &[n, hwc.2, hwc.0, hwc.1], kept)?;
    let shown = n.min(cols * 10);
    if shown > 0 {
        let images = crate::data::image::chw_to_hwc(&kept[..shown * per], shown, hwc);
        f.grid("kept.png", &images, shown, hwc, cols)?;
    }
    Ok(())
}

/// Writes the merged run into `f`; returns its number of chains.
fn write(f: &RunFolder, parts: &[Part]) -> Result<usize> {
    let total = parts[0].manifest["chains_total"].as_u64().unwrap_or(0) as usize;
    let (chw, hwc) = image_shape(&parts[0].dir)?;
    let mut samples = F32Rows::create(&f.path("samples.npy"), &[&[total][..], &chw].concat())?;
    let (mut labels, mut kept, mut chains) = (Vec::new(), Vec::new(), Vec::new());
    let mut shown = Shown::default();
    let (mut wall, mut adapted) = (0.0, Vec::new());
    for p in parts {
        samples.append_file(&p.dir.join("samples.npy"))?;
        labels.extend(npy::read_i64(&p.dir.join("labels.npy"))?.1);
        if p.dir.join("kept.npy").exists() {
            kept.extend(npy::read_f32(&p.dir.join("kept.npy"))?.1);
        }
        let ids: Vec<usize> = serde_json::from_value(p.manifest["shown_chains"].clone())
            .map_err(|e| Error::data(p.dir.join("manifest.json"), e.to_string()))?;
        let s = Shown::read(&p.dir, ids)?;
        shown.hwc = s.hwc;
        shown.ids.extend(s.ids);
        shown.finals.extend(s.finals);
        if shown.snapshots.is_empty() {
            shown.snapshots = vec![Vec::new(); s.snapshots.len()];
        }
        for (all, one) in shown.snapshots.iter_mut().zip(s.snapshots) {
            all.extend(one);
        }
        chains.extend(p.chains());
        wall += p.manifest["wall_time_s"].as_f64().unwrap_or(0.0);
        adapted.extend(
            p.manifest["adapted_steps"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
        );
    }
    samples.finish()?;
    let ids: Vec<u64> = chains.iter().filter_map(|c| c["chain"].as_u64()).collect();
    if ids.len() != total || ids.iter().enumerate().any(|(i, &c)| c != i as u64) {
        return Err(Error::data(
            &parts[0].dir,
            format!("the shards' manifests do not list chains 0..{total} in order"),
        ));
    }
    f.npy_i64("labels.npy", &[total], &labels)?;
    let per_row = parts[0].manifest["chains_per_class"].as_u64().unwrap_or(1) as usize;
    let cols = per_row.min(super::batched::SHOWN_PER_ROW);
    if !kept.is_empty() || parts[0].dir.join("kept.npy").exists() {
        write_kept(f, &kept, hwc, cols)?;
    }
    let finals: BTreeMap<u64, f64> = chains
        .iter()
        .filter_map(|c| Some((c["chain"].as_u64()?, c["final_condition_value"].as_f64()?)))
        .collect();
    let labels: Vec<String> = shown
        .ids
        .iter()
        .map(|&i| {
            format!(
                "{:.2}",
                finals.get(&(i as u64)).copied().unwrap_or(f64::NAN)
            )
        })
        .collect();
    shown.write(f, &labels, cols)?;
    let mut m = parts[0].manifest.clone();
    let runs: Vec<String> = parts.iter().map(|p| p.dir.display().to_string()).collect();
    m["merged_from"] = json!(runs);
    m["shard"] = json!(Shard::WHOLE);
    m["shown_chains"] = json!(shown.ids);
    m["wall_time_s"] = json!(wall);
    m["adapted_step"] = adapted.first().cloned().unwrap_or(Value::Null);
    m["adapted_steps"] = json!(adapted);
    m["diagnostics"] = diagnostics(&chains);
    m["evaluator_accuracy_per_class"] = json!(evaluator_accuracy(&chains));
    m["chains"] = json!(chains);
    f.json("manifest.json", &m)?;
    Ok(total)
}
