//! How live the page is: a server on a free port runs `chains` chains of
//! the `ppgn` preset on the Fashion-MNIST stack, and an event-stream
//! client (plain HTTP over TCP, as a browser's `EventSource` reads it)
//! counts the frames: the time from asking for the run to its first frame,
//! and frames a second after it (`ppgn bench serve`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Instant;

use crate::error::{Error, Result};

/// What one run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ServeBench {
    pub chains: usize,
    pub steps: usize,
    /// From the request that starts the run to its first frame with images.
    pub first_frame_s: f64,
    pub frames: usize,
    /// Frames a second from the first to the last.
    pub frames_per_s: f64,
    pub wall_s: f64,
}

impl std::fmt::Display for ServeBench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ppgn serve, {} chains x {} steps of ppgn: first frame {:.2} s after the request, \
             {} frames at {:.1} a second, {:.1} s in all",
            self.chains,
            self.steps,
            self.first_frame_s,
            self.frames,
            self.frames_per_s,
            self.wall_s
        )
    }
}

/// Starts a server (its runs in a temporary folder, removed after) and
/// measures one run.
pub fn bench(chains: usize, steps: usize, models: Option<PathBuf>) -> Result<ServeBench> {
    let runs = std::env::temp_dir().join(format!("ppgn-serve-bench-{}", std::process::id()));
    let cfg = super::Config {
        host: [127, 0, 0, 1].into(),
        port: 0,
        runs: runs.clone(),
        networks: None,
        models,
        max_runs: 1,
        token: None,
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = super::serve(cfg, |l| {
            let _ = tx.send(Ok(l.addr));
        });
        if let Err(e) = r {
            let _ = tx.send(Err(e));
        }
    });
    let addr = rx
        .recv()
        .map_err(|_| Error::unsupported("the server did not start", "see the error above"))??;
    let result = measure(addr, chains, steps);
    let _ = std::fs::remove_dir_all(&runs);
    result
}

fn measure(addr: SocketAddr, chains: usize, steps: usize) -> Result<ServeBench> {
    let asked = Instant::now();
    let body =
        serde_json::json!({"class": "sneaker", "chains": chains, "steps": steps, "preset": "ppgn"});
    let (status, reply) = exchange(addr, "POST", "/api/runs", Some(&body.to_string()))?;
    let id = serde_json::from_str::<serde_json::Value>(&reply)
        .ok()
        .and_then(|v| v["id"].as_str().map(str::to_string))
        .filter(|_| status == 201)
        .ok_or_else(|| {
            Error::unsupported(
                format!("the run was refused ({status}: {reply})"),
                "check the stack is installed",
            )
        })?;
    let mut stream = send(addr, "GET", &format!("/api/runs/{id}/events"), None)?;
    let mut lines = BufReader::new(&mut stream).lines();
    let (mut first, mut last, mut frames) = (None, asked, 0);
    let mut ended = None;
    while let Some(line) = lines.next() {
        let line = line.map_err(|e| Error::io(addr.to_string(), e))?;
        if line == "event: frame" {
            // the frame before the first record has no images
            let data = lines
                .next()
                .transpose()
                .map_err(|e| Error::io(addr.to_string(), e))?;
            if data.is_some_and(|d| d.contains("\"state\":\"starting\"")) {
                continue;
            }
            let now = Instant::now();
            first.get_or_insert(now);
            last = now;
            frames += 1;
        } else if line == "event: end" {
            ended = lines
                .next()
                .transpose()
                .map_err(|e| Error::io(addr.to_string(), e))?;
            break;
        }
    }
    let end = ended.unwrap_or_default();
    if !end.contains("\"finished\"") {
        return Err(Error::unsupported(
            format!("the run did not finish: {end}"),
            "run `ppgn sample` with the same settings to see why",
        ));
    }
    let first =
        first.ok_or_else(|| Error::unsupported("the run sent no frame", "see its message"))?;
    Ok(ServeBench {
        chains,
        steps,
        first_frame_s: (first - asked).as_secs_f64(),
        frames,
        frames_per_s: (frames.saturating_sub(1)) as f64 / (last - first).as_secs_f64().max(1e-9),
        wall_s: asked.elapsed().as_secs_f64(),
    })
}

/// Sends one HTTP/1.0 request (the reply ends with the connection).
fn send(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> Result<TcpStream> {
    let io = |e| Error::io(addr.to_string(), e);
    let mut s = TcpStream::connect(addr).map_err(io)?;
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .map_err(io)?;
    Ok(s)
}

/// One request and its whole reply: the status and the body.
fn exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<(u16, String)> {
    let mut s = send(addr, method, path, body)?;
    let mut reply = String::new();
    s.read_to_string(&mut reply)
        .map_err(|e| Error::io(addr.to_string(), e))?;
    let status = reply
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = reply.split_once("\r\n\r\n").map_or("", |b| b.1).to_string();
    Ok((status, body))
}
