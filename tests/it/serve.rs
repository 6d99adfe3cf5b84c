//! `ppgn serve`: what it refuses (over raw HTTP, so nothing normalises
//! the requests on the way), runs side by side, and the page in a real
//! browser (headless Chromium driven over WebDriver).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::tempdir;

/// A `ppgn serve` child process, killed when dropped.
struct Server {
    child: Child,
    url: String,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(runs: &Path, extra: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ppgn"))
        .args(["serve", "--port", "0", "--runs", runs.to_str().unwrap()])
        .args(extra)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    let addr = url["http://".len()..]
        .split('/')
        .next()
        .unwrap()
        .to_string();
    Server { child, url, addr }
}

/// One HTTP/1.0 request as written (path and headers unnormalised):
/// the status and the body.
fn http(addr: &str, method: &str, path: &str, headers: &[&str], body: &[u8]) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    let mut head = format!("{method} {path} HTTP/1.0\r\n");
    if !headers
        .iter()
        .any(|h| h.to_ascii_lowercase().starts_with("host:"))
    {
        head += &format!("Host: {addr}\r\n");
    }
    for h in headers {
        head += &format!("{h}\r\n");
    }
    head += &format!("Content-Length: {}\r\n\r\n", body.len());
    s.write_all(head.as_bytes()).unwrap();
    let _ = s.write_all(body);
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    let text = String::from_utf8_lossy(&reply);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let at = reply
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(reply.len(), |i| i + 4);
    (status, reply[at..].to_vec())
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

fn post_json(addr: &str, path: &str, body: &serde_json::Value) -> (u16, String) {
    let (status, b) = http(
        addr,
        "POST",
        path,
        &["Content-Type: application/json"],
        body.to_string().as_bytes(),
    );
    (status, text(&b))
}

/// Reads a run's event stream to its end; the frames' count and the last event's data.
fn follow(addr: &str, id: &str) -> (usize, serde_json::Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET /api/runs/{id}/events HTTP/1.0\r\nHost: {addr}\r\n\r\n"
    )
    .unwrap();
    let mut lines = BufReader::new(s).lines();
    let mut frames = 0;
    while let Some(Ok(line)) = lines.next() {
        if line == "event: frame" {
            frames += 1;
        } else if line == "event: end" {
            let data = lines.next().unwrap().unwrap();
            return (
                frames,
                serde_json::from_str(data.trim_start_matches("data: ")).unwrap(),
            );
        }
    }
    panic!("the stream of {id} ended without an end event");
}

fn start(addr: &str, body: serde_json::Value) -> String {
    let (status, reply) = post_json(addr, "/api/runs", &body);
    assert_eq!(status, 201, "{reply}");
    let v: serde_json::Value = serde_json::from_str(&reply).unwrap();
    v["id"].as_str().unwrap().to_string()
}

#[test]
fn the_server_refuses_what_it_must_and_keeps_serving() {
    let runs = tempdir("serve-refuse");
    let outside = tempdir("serve-outside");
    std::fs::write(outside.join("secret.txt"), "TOP-SECRET-CONTENT").unwrap();
    std::fs::create_dir_all(runs.join("a")).unwrap();
    std::fs::write(runs.join("a/ok.txt"), "fine").unwrap();
    std::os::unix::fs::symlink(&outside, runs.join("a/link")).unwrap();
    let s = serve(&runs, &["--max-runs", "1"]);
    let a = s.addr.as_str();
    assert!(
        s.url.starts_with("http://127.0.0.1:"),
        "loopback by default: {}",
        s.url
    );

    // files: inside the runs folder only
    assert_eq!(
        http(a, "GET", "/files/a/ok.txt", &[], b""),
        (200, b"fine".to_vec())
    );
    for path in [
        "/files/../../etc/passwd",
        "/files/a/../../etc/passwd",
        "/files/%2e%2e/%2e%2e/etc/passwd",
        "/files/a/link/secret.txt",
        "/files//etc/passwd",
        "/files/a%2f..%2f..%2fetc%2fpasswd",
    ] {
        let (status, body) = http(a, "GET", path, &[], b"");
        assert!((400..500).contains(&status), "{path}: {status}");
        assert!(
            !text(&body).contains("TOP-SECRET") && !text(&body).contains("root:"),
            "{path}"
        );
    }
    // the Host header (DNS rebinding), the origin of changes, the body's size
    let (status, body) = http(
        a,
        "GET",
        "/api/options",
        &["Host: attacker.example:80"],
        b"",
    );
    assert_eq!(status, 421, "{}", text(&body));
    let (status, _) = http(
        a,
        "POST",
        "/api/runs",
        &[
            "Origin: http://attacker.example",
            "Content-Type: application/json",
        ],
        b"{}",
    );
    assert_eq!(status, 403);
    let big = vec![b' '; (1 << 20) + 10];
    let (status, _) = http(
        a,
        "POST",
        "/api/runs",
        &["Content-Type: application/json"],
        &big,
    );
    assert_eq!(status, 413);
    // bad requests: a 4xx naming the mistake, nothing started
    for (body, says) in [
        (serde_json::json!({"class": "sneakr"}), "sneakr"),
        (serde_json::json!({"chains": 0}), "chains"),
        (serde_json::json!({"eps2": -1.0}), "eps2"),
        (serde_json::json!({"preset": "nope"}), "nope"),
        (
            serde_json::json!({"generator": "../../x.toml"}),
            "--networks",
        ),
        (serde_json::json!({"speed": 3}), "speed"),
    ] {
        let (status, reply) = post_json(a, "/api/runs", &body);
        assert!(
            (400..500).contains(&status) && reply.contains(says),
            "{body}: {status} {reply}"
        );
    }
    let (status, _) = http(
        a,
        "POST",
        "/api/runs",
        &["Content-Type: application/json"],
        b"{not json",
    );
    assert!((400..500).contains(&status));
    assert_eq!(http(a, "POST", "/api/runs/nope/stop", &[], b"").0, 404);
    // the cap on runs at once; a stopped run is a finished run folder
    let id = start(
        a,
        serde_json::json!({"class": "bag", "chains": 2, "steps": 100000}),
    );
    let (status, reply) = post_json(a, "/api/runs", &serde_json::json!({"class": "bag"}));
    assert_eq!(status, 429, "{reply}");
    // the folder list: a staging folder left by a stopped server is an
    // interrupted run with its resume command; the running one's is not
    std::fs::create_dir_all(runs.join(".serve-777.partial")).unwrap();
    let staging = runs.join(format!(".{id}.partial"));
    let t = std::time::Instant::now();
    while !staging.exists() && t.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(staging.exists(), "the running run has no staging folder");
    let (status, list) = http(a, "GET", "/api/folders", &[], b"");
    assert_eq!(status, 200);
    let list: Vec<serde_json::Value> = serde_json::from_slice(&list).unwrap();
    let interrupted: Vec<&serde_json::Value> =
        list.iter().filter(|r| r["interrupted"] == true).collect();
    assert_eq!(interrupted.len(), 1, "{list:?}");
    assert_eq!(interrupted[0]["name"], "serve-777");
    let resume = interrupted[0]["resume"].as_str().unwrap();
    assert!(
        resume.starts_with("ppgn sample --resume --out ") && resume.ends_with("serve-777"),
        "{resume}"
    );
    assert!(list.iter().any(|r| r["name"] == "a"), "{list:?}");
    let (status, reply) = post_json(
        a,
        &format!("/api/runs/{id}/change"),
        &serde_json::json!({"eps2": f64::MAX, "step": -1.0}),
    );
    assert_eq!(status, 400, "{reply}");
    assert_eq!(
        http(a, "POST", &format!("/api/runs/{id}/stop"), &[], b"").0,
        204
    );
    let (_, end) = follow(a, &id);
    assert_eq!(end["state"], "finished", "{end}");
    let (status, npy) = http(a, "GET", &format!("/files/{id}/samples.npy"), &[], b"");
    assert_eq!(status, 200);
    assert!(
        text(&npy[..128]).contains("'shape': (2, 1, 28, 28)"),
        "{}",
        text(&npy[..128])
    );
    // the pretrained pair takes changes of the weights too (every pair
    // rebuilds its target); a run whose step is adapted refuses a step
    let faces = serde_json::json!({"generator": "dcgan-faces", "classifier": "efficientnet-lite0",
        "class": "sunglasses", "chains": 1, "steps": 100000});
    let id = start(a, faces);
    let change = format!("/api/runs/{id}/change");
    assert_eq!(
        post_json(a, &change, &serde_json::json!({"eps2": 0.5})).0,
        204
    );
    assert_eq!(
        post_json(a, &change, &serde_json::json!({"eps3": 0.02})).0,
        204
    );
    assert_eq!(
        http(a, "POST", &format!("/api/runs/{id}/stop"), &[], b"").0,
        204
    );
    let (_, end) = follow(a, &id);
    assert_eq!(end["state"], "finished", "{end}");
    assert_eq!(end["eps3"], 0.02, "{end}");
    // a step set by hand while dual averaging adapts it would be replaced
    // silently: refused
    let exact =
        serde_json::json!({"class": "bag", "chains": 1, "steps": 100000, "preset": "exact-mala"});
    let id = start(a, exact);
    let (status, reply) = post_json(
        a,
        &format!("/api/runs/{id}/change"),
        &serde_json::json!({"step": 0.01}),
    );
    assert!(
        status == 400 && reply.contains("adapted"),
        "{status} {reply}"
    );
    assert_eq!(
        http(a, "POST", &format!("/api/runs/{id}/stop"), &[], b"").0,
        204
    );
    follow(a, &id);
    // still serving
    assert_eq!(http(a, "GET", "/api/options", &[], b"").0, 200);
}

#[test]
fn a_token_guards_other_addresses_and_two_runs_share_the_cores() {
    let runs = tempdir("serve-token");
    let s = serve(&runs, &["--host", "0.0.0.0"]);
    let token = s
        .url
        .split("token=")
        .nth(1)
        .expect("a printed token")
        .to_string();
    assert!(token.len() >= 32, "{token}");
    let port = s.addr.rsplit(':').next().unwrap();
    let a = format!("127.0.0.1:{port}");
    assert_eq!(http(&a, "GET", "/api/options", &[], b"").0, 401);
    assert_eq!(http(&a, "GET", "/api/options?token=wrong", &[], b"").0, 401);
    assert_eq!(
        http(&a, "GET", &format!("/api/options?token={token}"), &[], b"").0,
        200
    );
    let header = format!("x-ppgn-token: {token}");
    assert_eq!(http(&a, "GET", "/", &[&header], b"").0, 200);
    // two runs of the same job at once: the same samples
    let body = serde_json::json!({"class": "coat", "chains": 3, "steps": 40, "seed": 5});
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (status, b) = http(
            &a,
            "POST",
            "/api/runs",
            &["Content-Type: application/json", &header],
            body.to_string().as_bytes(),
        );
        assert_eq!(status, 201, "{}", text(&b));
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    let files: Vec<Vec<u8>> = ids
        .iter()
        .map(|id| {
            let deadline = Instant::now() + Duration::from_secs(120);
            while !runs.join(id).join("manifest.json").exists() {
                assert!(Instant::now() < deadline, "{id} did not finish");
                std::thread::sleep(Duration::from_millis(100));
            }
            std::fs::read(runs.join(id).join("samples.npy")).unwrap()
        })
        .collect();
    assert_eq!(files[0], files[1]);
}

/// Networks brought as ONNX files run from the page when their sidecars
/// are in `--networks`, and only from there.
#[test]
fn networks_brought_as_files_run_from_the_networks_folder() {
    let runs = tempdir("serve-onnx-runs");
    let nets = tempdir("serve-onnx-nets");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx");
    for f in ["classifier.onnx", "dcgan.onnx"] {
        std::fs::copy(fixtures.join(f), nets.join(f)).unwrap();
    }
    let names: String = (0..10).map(|i| format!("thing {i}\n")).collect();
    std::fs::write(nets.join("names.txt"), names).unwrap();
    std::fs::write(
        nets.join("g.toml"),
        "[network]\nonnx = \"dcgan.onnx\"\nkind = \"generator\"\noutput_range = [-1.0, 1.0]\n",
    )
    .unwrap();
    std::fs::write(
        nets.join("c.toml"),
        "[network]\nonnx = \"classifier.onnx\"\nkind = \"classifier\"\nclasses = \"names.txt\"\n",
    )
    .unwrap();
    let s = serve(&runs, &["--networks", nets.to_str().unwrap()]);
    let a = s.addr.as_str();
    let (_, options) = http(a, "GET", "/api/options", &[], b"");
    let options: serde_json::Value = serde_json::from_slice(&options).unwrap();
    assert_eq!(
        options["sidecars"],
        serde_json::json!([{"name": "c.toml", "kind": "classifier"}, {"name": "g.toml", "kind": "generator"}])
    );
    let body = serde_json::json!({"generator": "g.toml", "classifier": "c.toml",
        "class": "thing 7", "chains": 2, "steps": 10});
    let id = start(a, body);
    let (frames, end) = follow(a, &id);
    assert_eq!(end["state"], "finished", "{end}");
    assert!(frames >= 3, "{frames} frames");
    let (_, npy) = http(a, "GET", &format!("/files/{id}/samples.npy"), &[], b"");
    assert_eq!(npy_f32(&npy).0, vec![2, 3, 16, 16]);
    // a sidecar outside the folder is refused
    let outside =
        serde_json::json!({"generator": "../serve-onnx-nets/g.toml", "classifier": "c.toml"});
    let (status, reply) = post_json(a, "/api/runs", &outside);
    assert_eq!(status, 400, "{reply}");
}

/// Inpainting from the page: a test image, a drawn mask and a class make an
/// inpainting run whose known pixels stay the image's; a mask of the wrong
/// size is refused.
#[test]
fn the_page_inpaints_a_drawn_hole() {
    let runs = tempdir("serve-inpaint");
    let s = serve(&runs, &[]);
    let a = s.addr.as_str();
    let (status, png) = http(a, "GET", "/api/test-image/3", &[], b"");
    assert_eq!((status, &png[1..4]), (200, &b"PNG"[..]));
    assert_eq!(http(a, "GET", "/api/test-image/99999", &[], b"").0, 400);
    let mask: Vec<u8> = (0..784)
        .map(|i| u8::from((8..20).contains(&(i / 28)) && (8..20).contains(&(i % 28))))
        .collect();
    let body = serde_json::json!({"class": "bag", "chains": 2, "steps": 30, "inpaint": {"image": 3, "mask": &mask}});
    let id = start(a, body);
    let (_, end) = follow(a, &id);
    assert_eq!(end["state"], "finished", "{end}");
    let info: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(runs.join(&id).join("inpaint.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(info["image"], "test:3");
    assert_eq!(info["mask"], "drawn (144 pixels)");
    assert!(runs.join(&id).join("inpaint.png").exists());
    // the known pixels (mask 0) are the test image's in every sample
    use ppgn::data::fashion_mnist::{load, resolve_dir, Split};
    let test = load(&resolve_dir(None), Split::Test).unwrap();
    let real = &test.images[3 * 784..4 * 784];
    let (shape, samples) = npy_f32(&std::fs::read(runs.join(&id).join("samples.npy")).unwrap());
    assert_eq!(shape, vec![2, 1, 28, 28]);
    for chain in samples.chunks(784) {
        for i in (0..784).filter(|&i| mask[i] == 0) {
            assert!(
                (chain[i] - real[i] as f32 / 255.0).abs() < 1e-5,
                "pixel {i}"
            );
        }
    }
    let bad = serde_json::json!({"class": "bag", "inpaint": {"image": 3, "mask": [1, 0, 1]}});
    let (status, reply) = post_json(a, "/api/runs", &bad);
    assert!(status == 400 && reply.contains("784"), "{status} {reply}");
}

/// A restoration from the page: a test image under `down:2` with its
/// chains shown beside their mean and spread, the run folder the one
/// `ppgn restore` writes; a bad operator and a restoration asked with
/// inpainting are refused before anything runs.
#[test]
fn the_page_restores_a_damaged_test_image() {
    let runs = tempdir("serve-restore");
    let s = serve(&runs, &[]);
    let a = s.addr.as_str();
    let body = serde_json::json!({"chains": 2, "steps": 20,
        "restore": {"image": 3, "operator": "down:2", "noise_std": 0.05}});
    let id = start(a, body);
    let (frames, end) = follow(a, &id);
    assert_eq!(end["state"], "finished", "{end}");
    assert!(frames >= 1);
    // each row: 2 chains, their mean, their spread
    assert_eq!(end["cols"], 4, "{end}");
    assert!(
        end["message"]
            .as_str()
            .unwrap()
            .contains("1 images restored"),
        "{end}"
    );
    let m: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(runs.join(&id).join("manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(m["sampler"]["preset"], "exact-mala");
    assert_eq!(m["sampler"]["eps2"].as_f64().unwrap(), 1.0);
    assert_eq!(m["images"], "test:3");
    assert_eq!(m["operator"], "down:2");
    let (shape, _) = npy_f32(&std::fs::read(runs.join(&id).join("std.npy")).unwrap());
    assert_eq!(shape, vec![1, 1, 28, 28]);
    let bad = serde_json::json!({"restore": {"image": 3, "operator": "smear:2"}});
    let (status, reply) = post_json(a, "/api/runs", &bad);
    assert!(
        status == 400 && reply.contains("down:K"),
        "{status} {reply}"
    );
    // the paper's inpainting, as `ppgn restore --preset paper-inpaint`
    let body = serde_json::json!({"chains": 2, "steps": 4, "preset": "paper-inpaint",
        "class": "bag", "restore": {"image": 3, "operator": "mask:10x10@9,9"}});
    let id = start(a, body);
    let (_, end) = follow(a, &id);
    assert_eq!(end["state"], "finished", "{end}");
    let m: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(runs.join(&id).join("manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(m["sampler"]["preset"], "ppgn");
    assert_eq!(m["paper_inpaint"]["classes"][0], "Bag", "{m}");
    let class = serde_json::json!({"class": "bag", "restore": {"image": 3, "operator": "down:2"}});
    let (status, reply) = post_json(a, "/api/runs", &class);
    assert!(
        status == 400 && reply.contains("paper-inpaint"),
        "{status} {reply}"
    );
    let mask = vec![0u8; 784];
    let both = serde_json::json!({"restore": {"image": 3, "operator": "down:2"},
        "inpaint": {"image": 3, "mask": mask}});
    let (status, reply) = post_json(a, "/api/runs", &both);
    assert!(
        status == 400 && reply.contains("restoration alone"),
        "{status} {reply}"
    );
}

/// A free port for chromedriver.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// chromedriver in a process group of its own, killed with the browsers
/// it started when dropped (also when a test fails before closing them).
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        // SAFETY: kill(2) of the process group this test started
        unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

fn chromedriver() -> (Driver, u16) {
    let port = free_port();
    let exe = std::env::var("PPGN_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
    let child = Command::new(&exe)
        .arg(format!("--port={port}"))
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{exe}: {e} (Debian: apt-get install chromium chromium-driver; scripts/test installs them)"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    (Driver(child), port)
}

fn npy_f32(bytes: &[u8]) -> (Vec<usize>, Vec<f32>) {
    let len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = String::from_utf8_lossy(&bytes[10..10 + len]).to_string();
    assert!(header.contains("'descr': '<f4'"), "{header}");
    let shape: Vec<usize> = header
        .split('(')
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap()
        .split(',')
        .filter_map(|d| d.trim().parse().ok())
        .collect();
    let values = bytes[10 + len..]
        .chunks(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    (shape, values)
}

#[test]
fn the_page_starts_watches_steers_stops_and_downloads_in_a_browser() {
    let runs = tempdir("serve-browser");
    let s = serve(&runs, &[]);
    let (_driver, port) = chromedriver();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let id = rt.block_on(browse(&s.url, port));
    // the downloaded samples: 8 chains of 28x28 images in [0, 1]
    let (status, npy) = http(
        &s.addr,
        "GET",
        &format!("/files/{id}/samples.npy"),
        &[],
        b"",
    );
    assert_eq!(status, 200);
    let (shape, values) = npy_f32(&npy);
    assert_eq!(shape, vec![8, 1, 28, 28]);
    assert_eq!(values.len(), 8 * 784);
    assert!(values.iter().all(|v| (0.0..=1.0).contains(v)));
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(runs.join(&id).join("manifest.json")).unwrap(),
    )
    .unwrap();
    let changes = manifest["sampler"]["changes"].as_array().unwrap().clone();
    assert!(changes.iter().any(|c| c["eps2"] == 0.5), "{changes:?}");
    let stop = changes
        .iter()
        .find(|c| c["stop"] == true)
        .expect("the stop is recorded");
    assert!(stop["at"].as_u64().unwrap() < 2000, "{stop}");
}

async fn browse(url: &str, port: u16) -> String {
    use fantoccini::{ClientBuilder, Locator};
    let mut caps = serde_json::Map::new();
    let chrome = std::env::var("PPGN_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({"binary": chrome, "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"]}),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let c = ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a WebDriver session with headless Chromium");
    c.goto(url).await.unwrap();
    let text = |id: &'static str| {
        let c = c.clone();
        async move { c.find(Locator::Id(id)).await.unwrap().text().await.unwrap() }
    };
    let wait_for = |what: &'static str, secs: u64| {
        let deadline = Instant::now() + Duration::from_secs(secs);
        move || assert!(Instant::now() < deadline, "waited {secs} s for {what}")
    };
    // the form loads its options, then a run starts
    let check = wait_for("the options", 20);
    while c
        .find_all(Locator::Css("#classes option"))
        .await
        .unwrap()
        .len()
        < 11
    {
        check();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let fill = |id: &'static str, v: &'static str| {
        let c = c.clone();
        async move {
            let e = c.find(Locator::Id(id)).await.unwrap();
            e.clear().await.unwrap();
            e.send_keys(v).await.unwrap();
        }
    };
    fill("steps", "2000").await;
    c.find(Locator::Id("start"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // at least three live updates, then eps2 changes mid-run
    let check = wait_for("three frames", 30);
    let started = Instant::now();
    while text("frames").await.parse::<usize>().unwrap_or(0) < 3 {
        if Instant::now() > started + Duration::from_secs(25) {
            panic!(
                "state {:?}, error {:?}",
                text("state").await,
                text("error").await
            );
        }
        check();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let id = text("run").await;
    fill("c-eps2", "0.5").await;
    c.find(Locator::Id("apply"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let check = wait_for("eps2 in force", 30);
    while !text("eps-now").await.contains("/ 0.500 /") {
        check();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if let Ok(path) = std::env::var("PPGN_SCREENSHOT") {
        std::fs::write(PathBuf::from(path), c.screenshot().await.unwrap()).unwrap();
    }
    c.find(Locator::Id("stop"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let check = wait_for("the run to finish", 60);
    while text("state").await != "finished" {
        check();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(text("error").await.is_empty());
    c.close().await.unwrap();
    id
}
