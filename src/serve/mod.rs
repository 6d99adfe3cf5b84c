//! `ppgn serve`: a web page to start runs, watch their chains live (a
//! server-sent event stream), pause, resume and stop them, change eps1,
//! eps2, eps3 and the step while they run, and browse and download run
//! folders. Runs are ordinary run folders (`ppgn sample --resume` and
//! `ppgn eval` read them).
//!
//! Safe by default: loopback unless told otherwise, and then a token every
//! request must carry; the Host header is checked (DNS rebinding); state
//! changes only by POST from the same origin; bodies of at most 1 MiB;
//! files only from inside the runs folder; a cap on runs at once.

mod api;
mod files;
mod live;
mod page;
mod reply;

pub mod bench;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

pub use live::{Action, Frame};

/// What `ppgn serve` is asked to do.
#[derive(Debug, Clone)]
pub struct Config {
    pub host: IpAddr,
    /// 0 picks a free port.
    pub port: u16,
    /// Where run folders live (new ones go there; only its files are served).
    pub runs: PathBuf,
    /// ONNX networks with their sidecars that runs may use (only from here).
    pub networks: Option<PathBuf>,
    /// The shipped stack's folder [default: `$PPGN_MODELS` or `models/fashion-mnist`].
    pub models: Option<PathBuf>,
    /// Runs at once, at most.
    pub max_runs: usize,
    /// The token every request must carry; `None` on loopback, where no
    /// token is asked unless given.
    pub token: Option<String>,
}

impl Config {
    /// A token when the address is not loopback (and none was given).
    pub fn with_default_token(mut self) -> Self {
        if self.token.is_none() && !self.host.is_loopback() {
            let bytes: [u8; 16] = rand::random();
            self.token = Some(bytes.iter().map(|b| format!("{b:02x}")).collect());
        }
        self
    }
}

/// The server's state, shared by the handlers.
struct Shared {
    cfg: Config,
    /// `host:port` values the Host header may take.
    hosts: Vec<String>,
    runs: Mutex<HashMap<String, Arc<live::LiveRun>>>,
    running: Arc<std::sync::atomic::AtomicUsize>,
}

/// A running server: where it listens and the address to open.
pub struct Listening {
    pub addr: SocketAddr,
    /// The page's address, with the token when there is one.
    pub url: String,
}

/// Runs the server until the process ends; `ready` is told where it
/// listens once it does (before any request is served).
pub fn serve(cfg: Config, ready: impl FnOnce(&Listening)) -> Result<()> {
    std::fs::create_dir_all(&cfg.runs).map_err(|e| Error::io(&cfg.runs, e))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::io("the server's runtime", e))?;
    rt.block_on(async move {
        let addr = SocketAddr::new(cfg.host, cfg.port);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Error::io(format!("{addr} (choose another --port)"), e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::io(addr.to_string(), e))?;
        let shared = Arc::new(Shared {
            hosts: hosts(&cfg, addr),
            cfg,
            runs: Mutex::new(HashMap::new()),
            running: Arc::default(),
        });
        let url = match &shared.cfg.token {
            Some(t) => format!("http://{addr}/?token={t}"),
            None => format!("http://{addr}/"),
        };
        ready(&Listening { addr, url });
        axum::serve(listener, api::router(shared))
            .await
            .map_err(|e| Error::io(addr.to_string(), e))
    })
}

/// The Host header values a request may carry: the address it listens
/// on, and `localhost` on loopback; any on all interfaces (`0.0.0.0`),
/// where the token guards instead.
fn hosts(cfg: &Config, addr: SocketAddr) -> Vec<String> {
    let port = addr.port();
    if cfg.host.is_unspecified() {
        return Vec::new();
    }
    let mut hosts = vec![addr.to_string()];
    if cfg.host.is_loopback() {
        hosts.extend([format!("localhost:{port}"), format!("127.0.0.1:{port}")]);
        hosts.push(format!("[::1]:{port}"));
    }
    hosts
}
