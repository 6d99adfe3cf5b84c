//! `ppgn serve`.

use std::path::PathBuf;

use clap::Args;

#[derive(Args, Debug)]
#[command(
    after_help = "Open the printed address in a browser: start runs, watch their chains, \
pause, resume, stop, change eps1/eps2/eps3/step while they run (recorded in the manifest), \
inpaint a drawn hole, browse and download run folders. On an address other than loopback \
every request needs the printed token."
)]
pub struct ServeArgs {
    /// Port to listen on (0: any free one).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Address to listen on; anything but loopback asks for a token.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: std::net::IpAddr,
    /// Where run folders live: new runs go there, and only its files are served.
    #[arg(long, default_value = "runs")]
    pub runs: PathBuf,
    /// Networks brought as ONNX files with their sidecars (`*.toml`), usable from the page.
    #[arg(long)]
    pub networks: Option<PathBuf>,
    /// Model folder [default: $PPGN_MODELS or models/fashion-mnist].
    #[arg(long)]
    pub models: Option<PathBuf>,
    /// Runs at once, at most (they share the cores).
    #[arg(long, default_value_t = 2)]
    pub max_runs: usize,
}

pub fn run(a: ServeArgs) -> anyhow::Result<()> {
    let cfg = ppgn::serve::Config {
        host: a.host,
        port: a.port,
        runs: a.runs,
        networks: a.networks,
        models: a.models,
        max_runs: a.max_runs.max(1),
        token: None,
    };
    let say = |l: &ppgn::serve::Listening| println!("ppgn serve: open {} (Ctrl-C stops it)", l.url);
    Ok(ppgn::serve::serve(cfg.with_default_token(), say)?)
}
