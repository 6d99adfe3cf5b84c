//! What a sampling job is asked to do, as typed settings: which networks,
//! which condition, how many chains, the sampler's settings, where the run
//! goes. A front end (the CLI) fills a [`SampleSpec`]; [`crate::run::jobs::sample`]
//! runs it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use super::inpaint::Inpaint;
use super::preset::SamplerConfig;
use crate::density::condition::Neuron;
use crate::error::{Error, Result};
use crate::models::plug::{is_sidecar, CLASSIFIERS, GENERATORS};

/// The generator and condition network of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Networks {
    /// The shipped Fashion-MNIST stack, from `models` (default: `$PPGN_MODELS`
    /// or `models/fashion-mnist`), guided by its own classifier or by
    /// `guide` (a built-in classifier or a sidecar file).
    Fashion {
        models: Option<PathBuf>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        guide: Option<String>,
    },
    /// A generator and a classifier combined without retraining, each
    /// built in (`crate::models::plug::GENERATORS`, `CLASSIFIERS`; weights
    /// from `ppgn models fetch`'s cache) or brought as an ONNX file with a
    /// sidecar (a value ending in `.toml`, `docs/onnx.md`); `models` is the
    /// shipped stack's folder for the `fashion` classifier.
    Plug {
        generator: String,
        classifier: String,
        models: Option<PathBuf>,
    },
    /// The papers' DGN fc6 generator + CaffeNet, from converted weights.
    Caffe { weights: PathBuf },
}

impl Networks {
    /// The pair named by `generator` and `classifier` (`fashion`,
    /// `dgn-fc6` + `alexnet`, or a plug-and-play pair such as `dcgan-faces`
    /// + `efficientnet-lite0` or sidecar files).
    pub fn named(
        generator: &str,
        classifier: &str,
        models: Option<PathBuf>,
        weights: Option<PathBuf>,
    ) -> Result<Self> {
        match (generator, classifier) {
            ("fashion", "fashion") => Ok(Networks::Fashion {
                models,
                guide: None,
            }),
            ("fashion", c) if plug_side(c, CLASSIFIERS) => Ok(Networks::Fashion {
                models,
                guide: Some(c.to_string()),
            }),
            (g, c) if plug_side(g, GENERATORS) && plug_side(c, CLASSIFIERS) => Ok(Networks::Plug {
                generator: g.to_string(),
                classifier: c.to_string(),
                models,
            }),
            ("dgn-fc6", "alexnet") => match weights {
                Some(weights) => Ok(Networks::Caffe { weights }),
                None => Err(Error::unsupported(
                    "--generator dgn-fc6 --classifier alexnet needs --weights DIR",
                    "give the folder of the converted Caffe weights (docs/caffe-weights.md)",
                )),
            },
            (g, c) => Err(Error::unsupported(
                format!("--generator {g} with --classifier {c}"),
                format!(
                    "dgn-fc6 with alexnet, or a generator of {} with a classifier of {} (FILE.toml: a sidecar, docs/onnx.md)",
                    GENERATORS.join(", ") + ", fashion, FILE.toml",
                    CLASSIFIERS.join(", ") + ", FILE.toml"
                ),
            )),
        }
    }

    /// The preset a run of these networks uses unless told otherwise.
    pub fn default_preset(&self) -> &'static str {
        match self {
            Networks::Plug { .. } => "faces",
            _ => "ppgn",
        }
    }
}

/// Whether `name` is one of `builtin` or a sidecar file.
fn plug_side(name: &str, builtin: &[&str]) -> bool {
    builtin.contains(&name) || is_sidecar(name)
}

/// What the chains are conditioned on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Classes by index or name, `chains` chains each; `all` for every class.
    Classes(Vec<String>),
    /// One hidden unit of a layer (Fashion stack only).
    Neuron { layer: String, neuron: Neuron },
}

impl Request {
    /// `all`, or classes separated by commas.
    pub fn classes(spec: &str) -> Self {
        Request::Classes(spec.split(',').map(|s| s.trim().to_string()).collect())
    }
}

/// Where the chains start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Init {
    /// Random codes from the seed (draws of the prior where it has one).
    Random,
    /// The code of test image `i` of the pair's data set (a pair with an
    /// encoder and a data set).
    Test(usize),
    /// Positions from a `.npy` file `[rows, code]` in the space the chains
    /// move (the generator's code; with the flow prior, its base point):
    /// chain `i` starts from row `i`, or every chain from the one row.
    Codes(PathBuf),
    /// The codes of images from a `.npy` file `[rows, c, h, w]` in [0, 1]
    /// (a pair with an encoder), a row per chain or one for all.
    Images(PathBuf),
}

impl Init {
    /// `random`, `test:INDEX`, `codes:FILE.npy` or `images:FILE.npy`.
    pub fn parse(s: &str) -> Result<Self> {
        if s == "random" {
            return Ok(Init::Random);
        }
        let bad = || {
            Error::setting(
                "init",
                format!("{s:?}"),
                "random, test:INDEX, codes:FILE.npy or images:FILE.npy",
            )
        };
        if let Some(i) = s.strip_prefix("test:") {
            return i.parse().map(Init::Test).map_err(|_| bad());
        }
        match s.split_once(':') {
            Some(("codes", f)) if !f.is_empty() => Ok(Init::Codes(f.into())),
            Some(("images", f)) if !f.is_empty() => Ok(Init::Images(f.into())),
            _ => Err(bad()),
        }
    }

    /// The name it was given by.
    pub fn name(&self) -> String {
        match self {
            Init::Random => "random".into(),
            Init::Test(i) => format!("test:{i}"),
            Init::Codes(f) => format!("codes:{}", f.display()),
            Init::Images(f) => format!("images:{}", f.display()),
        }
    }
}

/// A sampling job: everything that decides what it computes and writes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SampleSpec {
    /// Choose the step (and the prior's weight) by a short pilot, or the
    /// step adaptation where the sampler has an acceptance test
    /// (`crate::run::jobs::autotune`).
    pub autotune: bool,
    pub networks: Networks,
    pub request: Request,
    /// Fill a hole in a test image (Fashion stack, classes only).
    pub inpaint: Option<Inpaint>,
    /// Chains per class (for a neuron: chains in all).
    pub chains: usize,
    pub settings: SamplerConfig,
    pub init: Init,
    /// Fashion-MNIST folder (for `Init::Test` and inpainting).
    pub data_dir: Option<PathBuf>,
    pub seed: u64,
    /// Also keep every final sample whose condition value is at least this.
    pub keep_above: Option<f64>,
    /// Record the condition value and a snapshot every this many steps.
    pub record_every: usize,
    pub out: PathBuf,
    /// Replace an existing run folder.
    pub force: bool,
    /// Finish an interrupted run in `out`'s hidden folder.
    pub resume: bool,
    /// Chains per batch (Fashion-MNIST stack) [default: from the
    /// network's memory per chain, `crate::run::drive::estimate`].
    pub batch: Option<usize>,
    /// Which share of the batches this process runs (`ppgn merge` joins them).
    pub shard: crate::run::drive::shard::Shard,
    /// Enlarge every image of the PNG grids this many times [default: the
    /// smallest factor that makes a cell 96 pixels tall].
    pub scale: Option<usize>,
    /// The command line, for the manifest.
    pub command: String,
}

/// The file in an interrupted run's staging folder that holds its job,
/// for `ppgn sample --resume --out DIR` without the other flags.
pub const STORED: &str = "resume-spec.json";

impl SampleSpec {
    /// A job of `networks` conditioned on `request` with `settings`, into
    /// the folder `out`, with the defaults of `ppgn sample` for the rest
    /// (8 chains a class, random starts, seed 0, a record every 10 steps,
    /// one process, no autotune): front ends change what they were asked
    /// with `SampleSpec { chains: 4, ..SampleSpec::new(...) }`.
    pub fn new(
        networks: Networks,
        request: Request,
        settings: SamplerConfig,
        out: PathBuf,
    ) -> Self {
        Self {
            autotune: false,
            networks,
            request,
            inpaint: None,
            chains: 8,
            settings,
            init: Init::Random,
            data_dir: None,
            seed: 0,
            keep_above: None,
            record_every: 10,
            out,
            force: false,
            resume: false,
            batch: None,
            shard: crate::run::drive::shard::Shard::WHOLE,
            scale: None,
            command: String::new(),
        }
    }

    /// The job to resume in `given.out`: the one the interrupted run
    /// stored there, when the flags asked for it (`given` is what the
    /// flags made, `bare` what `--resume --out DIR` alone makes) or for
    /// nothing else; `given` itself when the folder stores no job (a run
    /// of an older version: its checkpoint still checks the settings).
    pub fn resumed(given: SampleSpec, bare: &SampleSpec) -> Result<SampleSpec> {
        let path = crate::run::output::folder::RunFolder::partial_path(&given.out).join(STORED);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(given),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let stored: SampleSpec = serde_json::from_str(&text)
            .map_err(|e| Error::data(&path, format!("unreadable stored job: {e}")))?;
        if given.job() != bare.job() && given.job() != stored.job() {
            return Err(Error::data(
                &path,
                "the interrupted run was started with other settings; resume it with \
                 --resume --out DIR alone (the folder keeps its settings), or pass --force to start over",
            ));
        }
        Ok(SampleSpec {
            resume: true,
            force: false,
            command: given.command,
            out: given.out,
            ..stored
        })
    }

    /// What decides the samples: everything but the command line, the
    /// folder and how it is opened.
    fn job(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).expect("serialises");
        if let Some(m) = v.as_object_mut() {
            for k in ["command", "out", "force", "resume", "scale"] {
                m.remove(k);
            }
        }
        v
    }

    /// Checks what can be checked before any network is loaded.
    pub fn validate(&self) -> Result<()> {
        if self.chains == 0 {
            return Err(Error::setting("chains", 0, "at least 1"));
        }
        if self.record_every == 0 {
            return Err(Error::setting("record_every", 0, "at least 1"));
        }
        if let Some(s) = self.scale.filter(|s| !(1..=32).contains(s)) {
            return Err(Error::setting("scale", s, "a factor from 1 to 32"));
        }
        if self.batch == Some(0) {
            return Err(Error::setting("batch", 0, "at least 1 chain"));
        }
        super::settings::validate(&self.settings)?;
        match (self.keep_above, &self.request) {
            (Some(k), Request::Classes(_)) if !(0.0..=1.0).contains(&k) => {
                return Err(Error::setting(
                    "keep_above",
                    k,
                    "a probability in [0, 1] (the class's p(y | x))",
                ))
            }
            (Some(k), _) if !k.is_finite() => {
                return Err(Error::setting(
                    "keep_above",
                    k,
                    "a finite activation of the unit",
                ))
            }
            _ => {}
        }
        if let Some(p) = &self.inpaint {
            if !(p.context_weight.is_finite() && p.context_weight >= 0.0) {
                return Err(Error::setting(
                    "context_weight",
                    p.context_weight,
                    "a finite non-negative number",
                ));
            }
        }
        if self.inpaint.is_some() && matches!(self.request, Request::Neuron { .. }) {
            return Err(Error::unsupported(
                "inpainting conditioned on a neuron",
                "inpaint conditioned on a class",
            ));
        }
        crate::run::output::folder::RunFolder::check(&self.out, self.force, self.resume)
    }
}

/// What a finished job reports.
#[derive(Debug, Clone)]
pub struct RunOutput {
    /// The run folder.
    pub dir: PathBuf,
    pub chains: usize,
    pub steps: usize,
    pub preset: String,
    pub wall_s: f64,
    /// One line on how well the chains met their condition.
    pub verdict: String,
}

impl std::fmt::Display for RunOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} chains x {} steps of {} in {:.1} s: {}; wrote {}",
            self.chains,
            self.steps,
            self.preset,
            self.wall_s,
            self.verdict,
            self.dir.display()
        )
    }
}
