//! The server's routes, the guard every request passes, and the JSON of
//! starting a run.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::live::{Action, Job, LiveRun};
use super::reply::refuse;
use super::Shared;
use crate::data::fashion_mnist::CLASS_NAMES;
use crate::error::Error;
use crate::run::config::preset::{Choice, SamplerKind, PRESETS};
use crate::run::config::settings::{resolve, Overrides};
use crate::run::config::spec::{Inpaint, Networks, Request as Asked, SampleSpec};
use crate::run::config::steer::Change;
use crate::run::jobs::restore::{Damage, PaperInpaint, RestoreSpec, Truths};

/// Request bodies larger than this are refused (413).
pub const BODY_LIMIT: usize = 1 << 20;

pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(super::page::index))
        .route("/api/options", get(options))
        .route("/api/runs", post(start))
        .route("/api/runs/{id}/events", get(events))
        .route("/api/runs/{id}/change", post(change))
        .route("/api/runs/{id}/{action}", post(act))
        .route("/api/folders", get(super::files::folders))
        .route("/api/test-image/{index}", get(super::files::test_image))
        .route("/files/{*path}", get(super::files::file))
        .fallback(|| async { refuse(StatusCode::NOT_FOUND, "no such page or API") })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn_with_state(shared.clone(), guard))
        .with_state(shared)
}

/// What a library error is to the page: a 400 naming the mistake.
fn bad(e: Error) -> Response {
    refuse(StatusCode::BAD_REQUEST, e.to_string())
}

/// Every request: the Host header must be this server's, the token
/// (when there is one) must come along (`?token=` or the `x-ppgn-token`
/// header), and a POST must come from this origin.
async fn guard(State(s): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let host = match host {
        Some(h) if s.hosts.is_empty() || s.hosts.iter().any(|k| k.eq_ignore_ascii_case(h)) => h,
        other => {
            return refuse(
                StatusCode::MISDIRECTED_REQUEST,
                format!(
                    "Host {} is not this server's (open it as http://{})",
                    other.unwrap_or("(none)"),
                    s.hosts.first().map_or("its address", String::as_str)
                ),
            )
        }
    };
    if let Some(token) = &s.cfg.token {
        if !given_token(&req).is_some_and(|t| same_secret(&t, token)) {
            return refuse(
                StatusCode::UNAUTHORIZED,
                "this server asks for its token: open the address it printed (?token=...)",
            );
        }
    }
    if req.method() == Method::POST && !same_origin(headers, host) {
        return refuse(
            StatusCode::FORBIDDEN,
            "a change from another site's page is refused (the Origin is not this server)",
        );
    }
    next.run(req).await
}

/// `a == b` in time that does not depend on where they differ.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0, |d, (x, y)| d | (x ^ y)) == 0
}

fn given_token(req: &Request) -> Option<String> {
    if let Some(t) = req.headers().get("x-ppgn-token") {
        return t.to_str().ok().map(str::to_string);
    }
    req.uri()
        .query()?
        .split('&')
        .find_map(|kv| kv.strip_prefix("token=").map(str::to_string))
}

/// Whether a state change comes from this server's own page: its Origin
/// (browsers send one with every POST made by script) is `http://host`;
/// a client that sends none (curl, the tests) is not a browser page.
fn same_origin(headers: &HeaderMap, host: &str) -> bool {
    match headers.get(header::ORIGIN).map(|o| o.to_str()) {
        None => !matches!(
            headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()),
            Some("cross-site" | "same-site")
        ),
        Some(Ok(o)) => o.eq_ignore_ascii_case(&format!("http://{host}")),
        Some(Err(_)) => false,
    }
}

/// What the page offers: networks, classes, presets, samplers.
async fn options(State(s): State<Arc<Shared>>) -> Response {
    let mut pairs = vec![serde_json::json!({"generator": "fashion", "classifier": "fashion"})];
    let home = crate::models::pretrained::home();
    if crate::models::pretrained::PACKAGES
        .iter()
        .all(|p| p.path(&home).exists())
    {
        pairs.push(
            serde_json::json!({"generator": "dcgan-faces", "classifier": "efficientnet-lite0"}),
        );
    }
    let sidecars = super::files::sidecars(s.cfg.networks.as_deref());
    let samplers: Vec<String> = SamplerKind::ALL.iter().map(|k| k.name()).collect();
    Json(serde_json::json!({
        "pairs": pairs,
        "sidecars": sidecars,
        "classes": CLASS_NAMES,
        "presets": PRESETS.iter().map(|(n, what)| serde_json::json!({"name": n, "what": what})).collect::<Vec<_>>(),
        "samplers": samplers,
        "max_runs": s.cfg.max_runs,
    }))
    .into_response()
}

/// The page's form: what a run is asked to do (unset values take the
/// preset's).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Start {
    #[serde(default = "fashion")]
    pub generator: String,
    #[serde(default = "fashion")]
    pub classifier: String,
    /// Class(es) by index or name, comma-separated, or `all`.
    pub class: Option<String>,
    /// `LAYER:UNIT[@X,Y]` in place of a class.
    pub neuron: Option<String>,
    pub preset: Option<String>,
    pub sampler: Option<SamplerKind>,
    pub eps1: Option<f64>,
    pub eps2: Option<f64>,
    pub eps3: Option<f64>,
    pub step: Option<f64>,
    #[serde(default = "eight")]
    pub chains: usize,
    pub steps: Option<usize>,
    #[serde(default)]
    pub seed: u64,
    /// Fill a hole in a test image: its index and 784 values, 1 to fill.
    pub inpaint: Option<InpaintAsked>,
    /// Restore a damaged test image (`ppgn restore`) instead of sampling a
    /// class; the preset defaults to exact-mala and eps2 to 1.
    pub restore: Option<RestoreAsked>,
}

/// A restoration from the page: a test image, the operator as `ppgn
/// restore --operator` takes it, the observation's noise and tau.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreAsked {
    pub image: usize,
    pub operator: String,
    #[serde(default)]
    pub noise_std: f64,
    pub tau: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InpaintAsked {
    pub image: usize,
    pub mask: Vec<u8>,
}

fn fashion() -> String {
    "fashion".into()
}

fn eight() -> usize {
    8
}

/// The most chains a run of the page may have.
const MAX_CHAINS: usize = 1024;

impl Start {
    /// The job, in the run folder `out`.
    fn job(mut self, s: &Shared, out: std::path::PathBuf) -> crate::Result<Job> {
        let Some(r) = self.restore.take() else {
            return Ok(Job::Sample(self.spec(s, out)?));
        };
        if self.inpaint.is_some() || self.neuron.is_some() {
            return Err(Error::setting(
                "restore",
                "with inpaint or neuron",
                "a restoration alone (its operator's mask replaces inpainting's)",
            ));
        }
        let paper = PaperInpaint::asked(&mut self.preset, self.class.take())?;
        self.preset.get_or_insert_with(|| "exact-mala".into());
        self.eps2.get_or_insert(1.0);
        let damage = Damage {
            operator: crate::run::config::restore::parse(&r.operator)?,
            noise_std: crate::run::config::restore::noise_std(r.noise_std)?,
            tau: r.tau.map(|t| vec![t]),
            draw_error: None,
        };
        let base = self.spec(s, out)?;
        Ok(Job::Restore(RestoreSpec {
            paper,
            networks: base.networks,
            data_dir: None,
            truths: Truths::Test(r.image..=r.image),
            damage,
            settings: base.settings,
            chains: base.chains,
            record_every: base.record_every,
            seed: base.seed,
            out: base.out,
            force: false,
            scale: None,
            command: base.command,
        }))
    }

    fn spec(self, s: &Shared, out: std::path::PathBuf) -> crate::Result<SampleSpec> {
        let side = |name: String| match name.ends_with(".toml") {
            true => super::files::sidecar(s.cfg.networks.as_deref(), &name),
            false => Ok(name),
        };
        let networks = Networks::named(
            &side(self.generator)?,
            &side(self.classifier)?,
            s.cfg.models.clone(),
            None,
        )?;
        let request = match &self.neuron {
            Some(n) => {
                let (layer, neuron) = crate::density::condition::Neuron::parse(n, "h1, h, logits")?;
                Asked::Neuron { layer, neuron }
            }
            None => Asked::classes(self.class.as_deref().unwrap_or("sneaker")),
        };
        if let (Networks::Fashion { guide: None, .. }, Asked::Classes(names)) =
            (&networks, &request)
        {
            for name in names.iter().filter(|n| n.as_str() != "all") {
                crate::data::fashion_mnist::parse_class(name)?;
            }
        }
        if self.chains == 0 || self.chains > MAX_CHAINS {
            return Err(Error::setting(
                "chains",
                self.chains,
                format!("1 to {MAX_CHAINS} a class"),
            ));
        }
        let o = Overrides {
            sampler: self.sampler,
            eps1: self.eps1,
            eps2: self.eps2,
            eps3: self.eps3,
            steps: self.steps,
            step: self.step,
            ..Overrides::default()
        };
        let settings = resolve(
            self.preset.as_deref().unwrap_or(networks.default_preset()),
            None,
            &o,
        )?;
        let inpaint = self.inpaint.map(|p| p.asked()).transpose()?;
        let spec = SampleSpec {
            inpaint,
            chains: self.chains,
            // a frame at every record: 400 records at most, to bound memory
            record_every: settings.steps.div_ceil(400),
            seed: self.seed,
            command: "ppgn serve".into(),
            ..SampleSpec::new(networks, request, settings, out)
        };
        spec.validate()?;
        Ok(spec)
    }
}

impl InpaintAsked {
    fn asked(self) -> crate::Result<Inpaint> {
        if self.mask.len() != 28 * 28 || self.mask.iter().any(|&m| m > 1) {
            return Err(Error::shape(
                "inpainting mask",
                "784 values of 0 or 1",
                self.mask.len(),
            ));
        }
        Ok(Inpaint {
            image: self.image,
            file: None,
            mask_spec: format!(
                "drawn ({} pixels)",
                self.mask.iter().filter(|&&m| m == 1).count()
            ),
            mask: self.mask.iter().map(|&m| m as f32).collect(),
            context_weight: 1.0,
        })
    }
}

/// Starts a run: 201 with its id, or 400 naming what is wrong, or 429
/// when as many runs as allowed are running.
async fn start(
    State(s): State<Arc<Shared>>,
    body: Result<Json<Start>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(start) = match body {
        Ok(b) => b,
        Err(e) => return refuse(e.status(), e.body_text()),
    };
    let running = s.running.fetch_add(1, Ordering::SeqCst);
    if running >= s.cfg.max_runs {
        s.running.fetch_sub(1, Ordering::SeqCst);
        return refuse(
            StatusCode::TOO_MANY_REQUESTS,
            format!("{running} runs are running, the most this server takes (--max-runs); stop one or wait"),
        );
    }
    let per_row = start.chains;
    let (name, out) = super::files::new_run_folder(&s.cfg.runs);
    let spec = match start.job(&s, out) {
        Ok(spec) => spec,
        Err(e) => {
            s.running.fetch_sub(1, Ordering::SeqCst);
            return bad(e);
        }
    };
    let counter = s.running.clone();
    let run = LiveRun::start(name.clone(), spec, per_row, move || {
        counter.fetch_sub(1, Ordering::SeqCst);
    });
    s.runs
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(name.clone(), run);
    (StatusCode::CREATED, Json(serde_json::json!({ "id": name }))).into_response()
}

/// The run `id`, or a 404 naming it.
fn find(s: &Shared, id: &str) -> Result<Arc<LiveRun>, Box<Response>> {
    let runs = s.runs.lock().unwrap_or_else(|p| p.into_inner());
    runs.get(id).cloned().ok_or_else(|| {
        let message = format!("no run {id} started by this server");
        Box::new(refuse(StatusCode::NOT_FOUND, message))
    })
}

/// The run's frames as server-sent events (`frame`, and `end` last).
async fn events(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let run = match find(&s, &id) {
        Ok(r) => r,
        Err(e) => return *e,
    };
    let rx = run.frames.subscribe();
    let stream =
        futures_util::stream::unfold((rx, true, false), |(mut rx, first, done)| async move {
            if done || (!first && rx.changed().await.is_err()) {
                return None;
            }
            let f = rx.borrow_and_update().clone();
            let end = f.terminal();
            let json = serde_json::to_string(&*f).expect("serialises");
            let event = Event::default()
                .event(if end { "end" } else { "frame" })
                .data(json);
            Some((Ok::<_, Infallible>(event), (rx, false, end)))
        });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// Pause, resume or stop.
async fn act(State(s): State<Arc<Shared>>, Path((id, action)): Path<(String, String)>) -> Response {
    let action: Action = match serde_json::from_value(serde_json::Value::String(action.clone())) {
        Ok(a) => a,
        Err(_) => {
            return refuse(
                StatusCode::NOT_FOUND,
                format!("no action {action}: pause, resume, stop or change"),
            )
        }
    };
    match find(&s, &id) {
        Ok(run) if run.finished() => refuse(StatusCode::CONFLICT, format!("run {id} has ended")),
        Ok(run) => {
            run.act(action);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => *e,
    }
}

/// New eps1, eps2, eps3 or step, from the next record on.
async fn change(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Result<Json<Change>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(change) = match body {
        Ok(b) => b,
        Err(e) => return refuse(e.status(), e.body_text()),
    };
    match find(&s, &id) {
        Ok(run) if run.finished() => refuse(StatusCode::CONFLICT, format!("run {id} has ended")),
        Ok(run) => match run.change(Change {
            at: 0,
            stop: false,
            ..change
        }) {
            Ok(()) => StatusCode::NO_CONTENT.into_response(),
            Err(e) => bad(e),
        },
        Err(e) => *e,
    }
}
