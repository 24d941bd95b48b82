//! `modeconn serve` end to end: the real server process on loopback, driven by a plain HTTP
//! client (ureq and raw sockets, nothing of the server's own types), its answers compared with
//! `modeconn predict` on the same inputs.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use ndarray::{ArrayD, Axis, IxDyn};
use serde_json::{Value, json};

use crate::util::*;

pub(crate) const KEY_A: &str = "5f1e0c7a9b3d2e4f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7";
const KEY_B: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

// ---------------------------------------------------------------------------------------------
// The server process

/// A running `modeconn serve`, killed when dropped.
pub(crate) struct Served {
    pub(crate) child: Child,
    pub(crate) port: u16,
    /// The gRPC port, when the server was asked for one (`--grpc-port`).
    pub(crate) grpc_port: Option<u16>,
    log: Arc<Mutex<String>>,
}

impl Served {
    /// Starts `modeconn serve ARGS --port 0` and waits until it listens.
    pub(crate) fn start(args: &[&dyn AsRef<OsStr>]) -> Served {
        Served::start_with(args, |_| {})
    }

    /// [`Served::start`] after `adjust` changed the command (limits, environment).
    pub(crate) fn start_with(
        args: &[&dyn AsRef<OsStr>],
        adjust: impl FnOnce(&mut Command),
    ) -> Served {
        let mut all = args.to_vec();
        all.extend([
            &"--host" as &dyn AsRef<OsStr>,
            &"127.0.0.1",
            &"--port",
            &"0",
        ]);
        Served::start_exact(&all, adjust)
    }

    /// `modeconn serve ARGS` as given (they must choose a free port, e.g. `--http_port=0`),
    /// after `adjust`; waits until it listens.
    pub(crate) fn start_exact(
        args: &[&dyn AsRef<OsStr>],
        adjust: impl FnOnce(&mut Command),
    ) -> Served {
        let mut all: Vec<&dyn AsRef<OsStr>> = vec![&"serve"];
        all.extend_from_slice(args);
        Served::start_program(&bin(), &all, adjust)
    }

    /// `PROGRAM ARGS` (a `modeconn` elsewhere, `serve` among the args), after `adjust`; waits
    /// until it listens.
    pub(crate) fn start_program(
        program: &Path,
        args: &[&dyn AsRef<OsStr>],
        adjust: impl FnOnce(&mut Command),
    ) -> Served {
        let mut cmd = Command::new(program);
        adjust(&mut cmd);
        cmd.args(args.iter().map(|a| a.as_ref()))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("cannot start modeconn serve");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let sink = Arc::clone(&log);
        let grpc = Arc::new(Mutex::new(None));
        let grpc_seen = Arc::clone(&grpc);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    let addr = v["fields"]["address"].as_str().unwrap_or_default();
                    let port = addr.rsplit(':').next().and_then(|p| p.parse::<u16>().ok());
                    if v["fields"]["message"] == "listening for gRPC" {
                        *grpc_seen.lock().unwrap() = port;
                    } else if v["fields"]["message"] == "listening" {
                        let _ = tx.send(port);
                    }
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(Some(port)) => Served {
                child,
                port,
                grpc_port: *grpc.lock().unwrap(),
                log,
            },
            other => {
                let _ = child.kill();
                let status = child.wait();
                panic!(
                    "modeconn serve did not start ({other:?}, {status:?}):\n{}",
                    log.lock().unwrap()
                );
            }
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn infer_url(&self, model: &str) -> String {
        self.url(&format!("/v2/models/{model}/infer"))
    }

    pub(crate) fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Resident memory of the server process in KiB.
    pub(crate) fn rss_kib(&self) -> u64 {
        let kib = rss_of(self.child.id());
        assert!(kib > 0, "cannot read the server's resident memory");
        kib
    }

    /// Sends SIGTERM and waits (at most 60 s) for the process to exit.
    pub(crate) fn terminate(&mut self) -> ExitStatus {
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill failed");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not exit after SIGTERM:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The value of a metric line (`name{labels}` exactly as exposed), 0 when absent.
    pub(crate) fn metric(&self, series: &str) -> f64 {
        let text = get(&self.url("/metrics")).text();
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
            .map_or(0.0, |v| v.trim().parse().expect("metric value"))
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// The client

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

/// A response as the client saw it.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

impl Reply {
    fn from(mut r: ureq::http::Response<ureq::Body>) -> Reply {
        let headers = r
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let body = r
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_vec()
            .expect("cannot read the body");
        Reply {
            status: r.status().as_u16(),
            headers,
            body,
        }
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn header_len(&self) -> Option<usize> {
        self.headers
            .get("inference-header-content-length")
            .map(|v| v.parse().expect("header length"))
    }

    /// The JSON part.
    pub(crate) fn json(&self) -> Value {
        let end = self.header_len().unwrap_or(self.body.len());
        serde_json::from_slice(&self.body[..end])
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// `{"error": ...}` of a failed request, checking its status.
    #[track_caller]
    fn error(&self, status: u16) -> String {
        assert_eq!(self.status, status, "{}", self.text());
        self.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error message: {}", self.text()))
            .to_string()
    }

    /// An output tensor, from JSON data or the binary part, as f64 values with its shape.
    #[track_caller]
    fn output(&self, name: &str) -> (Vec<usize>, Vec<f64>) {
        assert_eq!(self.status, 200, "{}", self.text());
        let head = self.json();
        let outputs = head["outputs"].as_array().expect("outputs");
        let mut offset = self.header_len().unwrap_or(0);
        for o in outputs {
            let shape: Vec<usize> = o["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            let size = o["parameters"]["binary_data_size"]
                .as_u64()
                .map(|s| s as usize);
            let values = match size {
                Some(size) => {
                    let bytes = &self.body[offset..offset + size];
                    offset += size;
                    decode(o["datatype"].as_str().unwrap(), bytes)
                }
                None => o["data"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap())
                    .collect(),
            };
            if o["name"] == name {
                assert_eq!(values.len(), shape.iter().product::<usize>(), "{name}");
                return (shape, values);
            }
        }
        panic!("no output `{name}` in {head}");
    }

    fn array(&self, name: &str) -> ArrayD<f32> {
        let (shape, values) = self.output(name);
        ArrayD::from_shape_vec(IxDyn(&shape), values.iter().map(|&v| v as f32).collect())
            .expect("shape")
    }
}

fn decode(datatype: &str, bytes: &[u8]) -> Vec<f64> {
    match datatype {
        "FP32" => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()) as f64)
            .collect(),
        "FP64" => bytes
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
            .collect(),
        "INT64" => bytes
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as f64)
            .collect(),
        other => panic!("unexpected datatype {other}"),
    }
}

pub(crate) fn get(url: &str) -> Reply {
    Reply::from(agent().get(url).call().expect("GET failed"))
}

fn post(url: &str, headers: &[(&str, String)], body: Vec<u8>) -> Reply {
    let mut req = agent().post(url);
    for (k, v) in headers {
        req = req.header(*k, v.as_str());
    }
    Reply::from(req.send(&body[..]).expect("POST failed"))
}

/// An inference request in JSON.
pub(crate) fn json_request(x: &ArrayD<f32>, params: Value, outputs: &[&str]) -> Vec<u8> {
    let mut body = json!({
        "id": "req-1",
        "inputs": [{
            "name": "input",
            "shape": x.shape(),
            "datatype": "FP32",
            "data": x.iter().copied().collect::<Vec<f32>>(),
        }],
        "parameters": params,
    });
    if !outputs.is_empty() {
        body["outputs"] = outputs.iter().map(|o| json!({ "name": o })).collect();
    }
    serde_json::to_vec(&body).unwrap()
}

fn infer(server: &Served, model: &str, x: &ArrayD<f32>, params: Value, outputs: &[&str]) -> Reply {
    post(
        &server.infer_url(model),
        &[],
        json_request(x, params, outputs),
    )
}

/// The same request with the binary tensor extension both ways.
fn infer_binary(
    server: &Served,
    model: &str,
    x: &ArrayD<f32>,
    params: Value,
    outputs: &[&str],
) -> Reply {
    let mut params = params;
    if params.is_null() {
        params = json!({});
    }
    params["binary_data_output"] = json!(true);
    let bytes: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut head = json!({
        "inputs": [{
            "name": "input",
            "shape": x.shape(),
            "datatype": "FP32",
            "parameters": {"binary_data_size": bytes.len()},
        }],
        "parameters": params,
    });
    if !outputs.is_empty() {
        head["outputs"] = outputs
            .iter()
            .map(|o| json!({ "name": o, "parameters": {"binary_data": true} }))
            .collect();
    }
    let mut body = serde_json::to_vec(&head).unwrap();
    let len = body.len();
    body.extend_from_slice(&bytes);
    let reply = post(
        &server.infer_url(model),
        &[
            ("Inference-Header-Content-Length", len.to_string()),
            ("Content-Type", "application/octet-stream".into()),
        ],
        body,
    );
    assert!(reply.header_len().is_some(), "{}", reply.text());
    reply
}

// ---------------------------------------------------------------------------------------------
// References

/// `modeconn predict BUNDLE --input X ARGS --out P.npy [--per-member PM.npy]`.
fn predict(bundle: &Path, x: &ArrayD<f32>, args: &[&str]) -> (ArrayD<f32>, ArrayD<f32>) {
    let dir = tempdir();
    let xp = dir.path().join("x.npy");
    let p = dir.path().join("p.npy");
    let pm = dir.path().join("pm.npy");
    write_f32(&xp, x);
    let mut all: Vec<&dyn AsRef<OsStr>> = vec![
        &"predict",
        &bundle,
        &"--input",
        &xp,
        &"--out",
        &p,
        &"--per-member",
        &pm,
    ];
    all.extend(args.iter().map(|a| a as &dyn AsRef<OsStr>));
    modeconn(&all).ok();
    (read_f32(&p), read_f32(&pm))
}

/// A deterministic batch of `n` inputs for the CNN fixtures ([n, 3, 8, 8]).
pub(crate) fn inputs(n: usize, seed: u64) -> ArrayD<f32> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let values = (0..n * 3 * 8 * 8)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 * 4.0 - 2.0
        })
        .collect();
    ArrayD::from_shape_vec(IxDyn(&[n, 3, 8, 8]), values).unwrap()
}

pub(crate) fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("server.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `modeconn serve m=CURVE --config C ARGS`, with `C` holding `text` in a folder that lives as
/// long as the returned guard.
pub(crate) fn serve_curve(text: &str, args: &[&dyn AsRef<OsStr>]) -> (tempfile::TempDir, Served) {
    let dir = tempdir();
    let config = write_config(dir.path(), text);
    let model = format!("m={}", curve().display());
    let mut all: Vec<&dyn AsRef<OsStr>> = vec![&model, &"--config", &config];
    all.extend_from_slice(args);
    let server = Served::start(&all);
    (dir, server)
}

pub(crate) fn curve() -> PathBuf {
    curve_fixture(&BEZIER3).join("bundle.safetensors")
}

fn snapshots() -> PathBuf {
    snapshots_fixture().join("bundle.safetensors")
}

fn x7() -> ArrayD<f32> {
    read_f32(&curve_fixture(&BEZIER3).join("x.npy"))
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn every_endpoint_answers_and_inference_equals_predict_in_json_and_binary() {
    let dir = tempdir();
    let config = write_config(
        dir.path(),
        &format!(
            "[server]\nkeyed_secret = \"{KEY_A}\"\n[models.curve]\nreturn_point = true\n\
             [models.snap]\nmodes = [\"ensemble\", \"at\"]\n"
        ),
    );
    let curve_path = curve();
    let snap_path = snapshots();
    let curve_arg = format!("curve={}", curve_path.display());
    let snap_arg = format!("snap={}", snap_path.display());
    let server = Served::start(&[&curve_arg, &snap_arg, &"--config", &config]);

    // Health, server and model metadata.
    assert_eq!(get(&server.url("/v2/health/live")).json()["live"], true);
    assert_eq!(get(&server.url("/v2/health/ready")).json()["ready"], true);
    let meta = get(&server.url("/v2")).json();
    assert_eq!(meta["name"], "modeconn");
    assert!(
        meta["extensions"]
            .as_array()
            .unwrap()
            .contains(&json!("binary_tensor_data"))
    );
    for path in ["/v2/models/curve", "/v2/models/curve/versions/1"] {
        let m = get(&server.url(path)).json();
        assert_eq!(m["name"], "curve");
        assert_eq!(m["inputs"][0]["name"], "input");
        assert_eq!(m["inputs"][0]["datatype"], "FP32");
        assert_eq!(m["inputs"][0]["shape"], json!([-1, 3, 8, 8]));
        assert_eq!(m["outputs"][0]["shape"], json!([-1, CLASSES]));
        assert_eq!(
            m["parameters"]["modes"],
            json!(["ensemble", "at", "randomized", "keyed"])
        );
        assert_eq!(m["parameters"]["kind"], "curve");
    }
    assert_eq!(
        get(&server.url("/v2/models/snap")).json()["parameters"]["modes"],
        json!(["ensemble", "at"])
    );
    for path in ["/v2/models/snap/ready", "/v2/models/snap/versions/1/ready"] {
        let r = get(&server.url(path));
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["ready"], true);
    }
    assert!(
        get(&server.url("/v2/models/nope"))
            .error(404)
            .contains("nope")
    );
    assert!(
        get(&server.url("/v2/models/curve/versions/2"))
            .error(404)
            .contains("version")
    );

    let x = x7();
    // The default mode: the 5-point grid, as `predict` does by default.
    let (p, pm) = predict(&curve_path, &x, &["--grid", "5"]);
    let all = [
        "probabilities",
        "class",
        "entropy",
        "per_member",
        "disagreement",
        "point",
    ];
    let j = infer(&server, "curve", &x, json!({}), &all);
    let b = infer_binary(&server, "curve", &x, json!({}), &all);
    for r in [&j, &b] {
        assert_eq!(r.json()["model_name"], "curve");
        assert_eq!(r.json()["parameters"]["mode"], "ensemble");
        assert_close(&r.array("probabilities"), &p, TOL);
        assert_close(&r.array("per_member"), &pm, TOL);
        assert_eq!(r.output("point").1, vec![0.0, 0.25, 0.5, 0.75, 1.0]);
        let classes = r.output("class").1;
        let entropy = r.output("entropy").1;
        for (i, row) in p.axis_iter(Axis(0)).enumerate() {
            let top = (0..CLASSES)
                .max_by(|&a, &c| row[a].partial_cmp(&row[c]).unwrap())
                .unwrap();
            assert_eq!(classes[i] as usize, top);
            let h: f64 = row.iter().map(|&q| -(q as f64) * (q as f64).ln()).sum();
            assert!((entropy[i] - h).abs() < 1e-4, "{} vs {h}", entropy[i]);
        }
        let d = r.output("disagreement").1;
        assert!(d.iter().all(|v| (0.0..=1.0).contains(v)));
    }
    assert_eq!(j.json()["id"], "req-1");
    // JSON and binary carry the same numbers exactly.
    assert_eq!(j.array("probabilities"), b.array("probabilities"));
    // Without `outputs`, only the mean probabilities come back.
    let plain = infer(&server, "curve", &x, json!(null), &[]);
    assert_eq!(plain.json()["outputs"].as_array().unwrap().len(), 1);
    assert!(plain.headers.contains_key("x-request-id"));

    // Mode `at`, on the versioned route, and with nested JSON data.
    let (p_at, pm_at) = predict(&curve_path, &x, &["--at", "0.1,0.63"]);
    let r = post(
        &server.url("/v2/models/curve/versions/1/infer"),
        &[],
        json_request(
            &x,
            json!({"mode": "at", "t": [0.1, 0.63]}),
            &["probabilities", "per_member"],
        ),
    );
    assert_close(&r.array("probabilities"), &p_at, TOL);
    assert_close(&r.array("per_member"), &pm_at, TOL);
    let nested: Vec<Value> = x
        .axis_iter(Axis(0))
        .map(|s| {
            json!(
                s.outer_iter()
                    .map(|c| c
                        .outer_iter()
                        .map(|r| r.iter().copied().collect::<Vec<f32>>())
                        .collect::<Vec<_>>())
                    .collect::<Vec<_>>()
            )
        })
        .collect();
    let body = json!({
        "inputs": [{"name": "input", "shape": x.shape(), "datatype": "FP32", "data": nested}],
        "parameters": {"mode": "at", "t": 0.1},
    });
    let r = post(
        &server.infer_url("curve"),
        &[],
        serde_json::to_vec(&body).unwrap(),
    );
    let (p_01, _) = predict(&curve_path, &x, &["--at", "0.1"]);
    assert_close(&r.array("probabilities"), &p_01, TOL);

    // A snapshot set: all members, and chosen ones.
    let (ps, pms) = predict(&snap_path, &x, &["--members", "all"]);
    let r = infer_binary(
        &server,
        "snap",
        &x,
        json!({}),
        &["probabilities", "per_member", "point"],
    );
    assert_close(&r.array("probabilities"), &ps, TOL);
    assert_close(&r.array("per_member"), &pms, TOL);
    assert_eq!(r.output("point").1, vec![0.0, 1.0, 2.0]);
    let (ps2, _) = predict(&snap_path, &x, &["--members", "2,0"]);
    let r = infer(
        &server,
        "snap",
        &x,
        json!({"mode": "at", "members": [2, 0]}),
        &[],
    );
    assert_close(&r.array("probabilities"), &ps2, TOL);

    // Metrics count what happened.
    assert!(server.metric("modeconn_requests_total{model=\"curve\",mode=\"ensemble\"}") >= 3.0);
    assert_eq!(
        server.metric("modeconn_requests_total{model=\"snap\",mode=\"at\"}"),
        1.0
    );
    assert_eq!(
        server.metric("modeconn_provider{model=\"curve\",provider=\"cpu\"}"),
        1.0
    );
    let text = get(&server.url("/metrics")).text();
    for name in [
        "modeconn_queue_seconds_bucket",
        "modeconn_compute_seconds_sum",
        "modeconn_batch_samples_count",
        "modeconn_batch_requests_sum",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics:\n{text}");
    }
    // JSON logs, one object a line, with the request id.
    let log = server.log();
    let id = &plain.headers["x-request-id"];
    let line = log
        .lines()
        .find(|l| l.contains(id.as_str()))
        .expect("request logged");
    let v: Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["fields"]["model"], "curve");
    assert_eq!(v["fields"]["status"], 200);
}

/// Chi-square statistic of counts against a uniform distribution.
fn chi_square(counts: &[usize]) -> f64 {
    let n: usize = counts.iter().sum();
    let e = n as f64 / counts.len() as f64;
    counts.iter().map(|&c| (c as f64 - e).powi(2) / e).sum()
}

#[test]
fn randomized_points_are_uniform_over_the_grid_and_secret_unless_configured() {
    let dir = tempdir();
    let config = write_config(
        dir.path(),
        "[defaults]\nrandomized_grid = 5\n[models.open]\nreturn_point = true\n\
         [models.closed]\nmodes = [\"randomized\"]\n",
    );
    let path = curve();
    let open = format!("open={}", path.display());
    let closed = format!("closed={}", path.display());
    let server = Served::start(&[
        &open,
        &closed,
        &"--config",
        &config,
        &"--max-delay-ms",
        &"0",
    ]);
    let x = inputs(1, 11);
    // Each grid point's own answer, from `predict`.
    let grid = [0.0, 0.25, 0.5, 0.75, 1.0];
    let (_, per_t) = predict(&path, &x, &["--at", "0,0.25,0.5,0.75,1"]);

    const N: usize = 400;
    let mut counts = [0usize; 5];
    let mut answers = std::collections::BTreeSet::new();
    for _ in 0..N {
        let r = infer(
            &server,
            "open",
            &x,
            json!({"mode": "randomized"}),
            &["probabilities", "point"],
        );
        let t = r.output("point").1[0];
        let k = grid
            .iter()
            .position(|&g| g == t)
            .unwrap_or_else(|| panic!("t = {t} is off the grid"));
        counts[k] += 1;
        let p = r.array("probabilities");
        assert_close(&p, &per_t.index_axis(Axis(0), k).to_owned(), TOL);
        answers.insert(p.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
    }
    // 4 degrees of freedom: P(chi2 > 18.467) = 0.001 under uniformity.
    let chi2 = chi_square(&counts);
    eprintln!(
        "randomized: {N} requests, counts per grid point {counts:?}, chi-square {chi2:.2}, {} distinct answers",
        answers.len()
    );
    assert!(
        chi2 < 18.467,
        "counts {counts:?}: chi-square {chi2:.2} rejects uniformity at 0.001"
    );
    assert!(answers.len() >= 2, "every answer was the same");

    // Where the configuration keeps the point secret, it is never returned.
    let r = infer(
        &server,
        "closed",
        &x,
        json!({}),
        &["probabilities", "class"],
    );
    assert_eq!(r.json()["parameters"]["mode"], "randomized");
    assert!(!r.text().contains("\"point\""), "{}", r.text());
    let e = infer(&server, "closed", &x, json!({}), &["point"]).error(403);
    assert!(e.contains("point"), "{e}");
    let e = infer(&server, "closed", &x, json!({}), &["per_member"]).error(400);
    assert!(e.contains("per_member"), "{e}");
    let e = infer(&server, "closed", &x, json!({"mode": "ensemble"}), &[]).error(403);
    assert!(e.contains("not allowed"), "{e}");
}

#[test]
fn keyed_answers_repeat_replicas_agree_and_keys_differ() {
    let dir = tempdir();
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let text = |key: &str| {
        format!(
            "[server]\nkeyed_secret = \"{key}\"\n[defaults]\nmodes = [\"keyed\"]\nreturn_point = true\n"
        )
    };
    let config_a = write_config(&a, &text(KEY_A));
    let config_b = write_config(&b, &text(KEY_B));
    let path = curve();
    let model = format!("m={}", path.display());
    let replica1 = Served::start(&[&model, &"--config", &config_a]);
    let replica2 = Served::start(&[&model, &"--config", &config_a, &"--max-batch", &"4"]);
    let other = Served::start(&[&model, &"--config", &config_b]);

    let x = inputs(32, 5);
    let first = infer_binary(&replica1, "m", &x, json!({}), &["probabilities", "point"]);
    let points = first.output("point").1;
    assert_eq!(points.len(), 32);
    for _ in 0..3 {
        let again = infer_binary(&replica1, "m", &x, json!({}), &["probabilities", "point"]);
        assert_eq!(again.output("probabilities"), first.output("probabilities"));
        assert_eq!(again.output("point").1, points);
    }
    // Another process with the same configuration answers the same, also batched differently
    // and one sample at a time.
    let r2 = infer_binary(&replica2, "m", &x, json!({}), &["probabilities", "point"]);
    assert_eq!(r2.output("point").1, points);
    assert_close(
        &r2.array("probabilities"),
        &first.array("probabilities"),
        TOL,
    );
    for i in [0, 7, 31] {
        let one = x.select(Axis(0), &[i]);
        let r = infer(&replica2, "m", &one, json!({}), &["point"]);
        assert_eq!(r.output("point").1, vec![points[i]]);
    }
    // Each answer is the answer of its point, as `predict --at` gives it.
    let distinct: Vec<f64> = {
        let mut d = points.clone();
        d.sort_by(f64::total_cmp);
        d.dedup();
        d
    };
    assert!(distinct.len() >= 3, "32 inputs fell on {distinct:?}");
    let probs = first.array("probabilities");
    for t in &distinct {
        let rows: Vec<usize> = (0..32).filter(|&i| points[i] == *t).collect();
        let (p, _) = predict(&path, &x.select(Axis(0), &rows), &["--at", &t.to_string()]);
        assert_close(&probs.select(Axis(0), &rows), &p, TOL);
    }
    // Another key, other points.
    let r3 = infer(&other, "m", &x, json!({}), &["point"]);
    let differ = r3
        .output("point")
        .1
        .iter()
        .zip(&points)
        .filter(|(a, b)| a != b)
        .count();
    assert!(differ > 0, "two keys chose the same 32 points");
}

#[test]
fn bad_requests_get_4xx_and_leave_good_ones_alone() {
    let path = curve();
    let model = format!("m={}", path.display());
    let server = Arc::new(Served::start(&[&model, &"--max-body-mb", &"1"]));
    let x = inputs(4, 3);
    let (expected, _) = predict(&path, &x, &["--grid", "5"]);

    // Good requests keep running meanwhile, from two threads.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let good: Vec<_> = (0..2)
        .map(|_| {
            let (server, stop, x, expected) = (
                Arc::clone(&server),
                Arc::clone(&stop),
                x.clone(),
                expected.clone(),
            );
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) || n < 5 {
                    let r = infer(&server, "m", &x, json!({}), &[]);
                    assert_close(&r.array("probabilities"), &expected, TOL);
                    n += 1;
                }
                n
            })
        })
        .collect();

    let url = server.infer_url("m");
    let body = |v: Value| serde_json::to_vec(&v).unwrap();
    let tensor = |shape: Value, datatype: &str, data: Value| json!({"inputs": [{"name": "input", "shape": shape, "datatype": datatype, "data": data}]});
    let zeros = |n: usize| json!(vec![0.0; n]);
    let binary_head = body(
        json!({"inputs": [{"name": "input", "shape": [1, 3, 8, 8], "datatype": "FP32", "parameters": {"binary_data_size": 768}}]}),
    );
    let cases: Vec<(&str, Reply, u16, &str)> = vec![
        (
            "wrong shape",
            post(
                &url,
                &[],
                body(tensor(json!([1, 3, 8, 7]), "FP32", zeros(168))),
            ),
            400,
            "shape",
        ),
        (
            "too few values",
            post(
                &url,
                &[],
                body(tensor(json!([1, 3, 8, 8]), "FP32", zeros(10))),
            ),
            400,
            "needs 192",
        ),
        (
            "dtype",
            post(
                &url,
                &[],
                body(tensor(json!([1, 3, 8, 8]), "INT64", zeros(192))),
            ),
            400,
            "datatype INT64",
        ),
        (
            "input name",
            post(
                &url,
                &[],
                body(
                    json!({"inputs": [{"name": "x", "shape": [1, 3, 8, 8], "datatype": "FP32", "data": zeros(192)}]}),
                ),
            ),
            400,
            "unknown input `x`",
        ),
        (
            "unknown model",
            post(
                &server.infer_url("nope"),
                &[],
                body(tensor(json!([1, 3, 8, 8]), "FP32", zeros(192))),
            ),
            404,
            "unknown model `nope`",
        ),
        (
            "malformed JSON",
            post(&url, &[], b"{\"inputs\": [".to_vec()),
            400,
            "malformed",
        ),
        (
            "not an object",
            post(&url, &[], b"[1, 2]".to_vec()),
            400,
            "malformed",
        ),
        ("oversized body", oversized(&server, 2 << 20), 413, "limit"),
        (
            "forbidden mode",
            post(
                &url,
                &[],
                body(
                    json!({"inputs": [{"name": "input", "shape": [1, 3, 8, 8], "datatype": "FP32", "data": zeros(192)}], "parameters": {"mode": "keyed"}}),
                ),
            ),
            403,
            "not allowed",
        ),
        (
            "unknown mode",
            post(
                &url,
                &[],
                body(
                    json!({"inputs": [{"name": "input", "shape": [1, 3, 8, 8], "datatype": "FP32", "data": zeros(192)}], "parameters": {"mode": "sideways"}}),
                ),
            ),
            400,
            "unknown mode",
        ),
        (
            "t out of range",
            post(
                &url,
                &[],
                body(
                    json!({"inputs": [{"name": "input", "shape": [1, 3, 8, 8], "datatype": "FP32", "data": zeros(192)}], "parameters": {"mode": "at", "t": [1.5]}}),
                ),
            ),
            400,
            "1.5",
        ),
        (
            "at without t",
            post(
                &url,
                &[],
                body(
                    json!({"inputs": [{"name": "input", "shape": [1, 3, 8, 8], "datatype": "FP32", "data": zeros(192)}], "parameters": {"mode": "at"}}),
                ),
            ),
            400,
            "needs parameter `t`",
        ),
        (
            "unknown output",
            post(
                &url,
                &[],
                body(
                    json!({"inputs": [{"name": "input", "shape": [1, 3, 8, 8], "datatype": "FP32", "data": zeros(192)}], "outputs": [{"name": "logits"}]}),
                ),
            ),
            400,
            "unknown output `logits`",
        ),
        (
            "binary size",
            post(
                &url,
                &[(
                    "Inference-Header-Content-Length",
                    binary_head.len().to_string(),
                )],
                {
                    let mut b = binary_head.clone();
                    b.extend(vec![0u8; 100]);
                    b
                },
            ),
            400,
            "binary data",
        ),
        (
            "header length",
            post(
                &url,
                &[("Inference-Header-Content-Length", "5000".into())],
                b"{}".to_vec(),
            ),
            400,
            "Inference-Header-Content-Length",
        ),
        (
            "NaN in binary",
            post(
                &url,
                &[(
                    "Inference-Header-Content-Length",
                    binary_head.len().to_string(),
                )],
                {
                    let mut b = binary_head.clone();
                    b.extend((0..192).flat_map(|_| f32::NAN.to_le_bytes()));
                    b
                },
            ),
            400,
            "NaN",
        ),
    ];
    for (what, reply, status, needle) in &cases {
        let msg = reply.error(*status);
        assert!(
            msg.contains(needle),
            "{what}: `{msg}` does not mention `{needle}`"
        );
    }
    let r = Reply::from(agent().get(&url).call().unwrap());
    assert!(r.error(405).contains("POST"));
    assert!(
        get(&server.url("/v3/whatever"))
            .error(404)
            .contains("no such endpoint")
    );

    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let n: usize = good
        .into_iter()
        .map(|h| h.join().expect("a good request failed"))
        .sum();
    assert!(n >= 10);
    assert_eq!(
        server.metric("modeconn_request_failures_total{model=\"m\",code=\"413\"}"),
        1.0
    );
    assert_eq!(
        server.metric("modeconn_request_failures_total{model=\"_unknown\",code=\"404\"}"),
        1.0
    );
}

#[test]
fn a_burst_above_capacity_gets_correct_answers_or_503_and_memory_stays_bounded() {
    let path = curve();
    let model = format!("m={}", path.display());
    let server = Arc::new(Served::start(&[
        &model,
        &"--workers",
        &"1",
        &"--queue",
        &"4",
        &"--max-batch",
        &"4",
        &"--max-delay-ms",
        &"1",
    ]));
    const THREADS: usize = 24;
    const EACH: usize = 10;
    let x = inputs(THREADS * EACH, 21);
    let (expected, _) = predict(&path, &x, &["--grid", "5"]);
    let before = server.rss_kib();
    let results: Vec<Vec<(usize, u16, Option<String>)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (server, x, expected) = (&server, &x, &expected);
                scope.spawn(move || {
                    (0..EACH)
                        .map(|k| {
                            let i = t * EACH + k;
                            let one = x.select(Axis(0), &[i]);
                            let mut body: Value =
                                serde_json::from_slice(&json_request(&one, json!({}), &[]))
                                    .unwrap();
                            body["id"] = json!(format!("burst-{i}"));
                            let r = post(
                                &server.infer_url("m"),
                                &[],
                                serde_json::to_vec(&body).unwrap(),
                            );
                            match r.status {
                                200 => {
                                    assert_eq!(r.json()["id"], format!("burst-{i}"));
                                    assert_close(
                                        &r.array("probabilities"),
                                        &expected.select(Axis(0), &[i]),
                                        TOL,
                                    );
                                }
                                503 => {
                                    assert!(r.error(503).contains("queue is full"));
                                }
                                other => panic!("request {i}: status {other}: {}", r.text()),
                            }
                            (i, r.status, r.headers.get("retry-after").cloned())
                        })
                        .collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let all: Vec<_> = results.into_iter().flatten().collect();
    assert_eq!(all.len(), THREADS * EACH, "a request was lost");
    let ok = all.iter().filter(|r| r.1 == 200).count();
    let busy: Vec<_> = all.iter().filter(|r| r.1 == 503).collect();
    assert_eq!(ok + busy.len(), all.len());
    assert!(ok > 0, "nothing was answered");
    assert!(!busy.is_empty(), "the burst never filled the queue of 4");
    assert!(
        busy.iter().all(|r| r.2.as_deref() == Some("1")),
        "503 without Retry-After"
    );
    // Answered once each: the server counted exactly the 200s it sent.
    assert_eq!(
        server.metric("modeconn_requests_total{model=\"m\",mode=\"ensemble\"}"),
        ok as f64
    );
    assert_eq!(
        server.metric("modeconn_request_failures_total{model=\"m\",code=\"503\"}"),
        busy.len() as f64
    );
    assert_eq!(server.metric("modeconn_queue_depth"), 0.0);
    assert_eq!(server.metric("modeconn_in_flight_requests"), 0.0);
    let after = server.rss_kib();
    eprintln!(
        "burst: {ok} answered, {} refused with 503; server RSS {before} KiB -> {after} KiB",
        busy.len()
    );
    assert!(
        after < before + 64 * 1024,
        "resident memory grew from {before} KiB to {after} KiB over the burst"
    );
}

/// Announces a body of `len` bytes on a raw socket and reads the answer without sending it:
/// the server refuses by `Content-Length` before reading (a client writing the body meanwhile
/// may see its connection closed under it).
fn oversized(server: &Served, len: usize) -> Reply {
    announce(server, len, b"")
}

/// Announces a body of `len` bytes, sends only `part` of it, and reads the answer.
fn announce(server: &Served, len: usize, part: &[u8]) -> Reply {
    let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    write!(
        s,
        "POST /v2/models/m/infer HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    s.write_all(part).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: body.as_bytes().to_vec(),
    }
}

/// Sends an inference request on a raw socket and closes it after `wait`, unanswered.
fn send_and_hang_up(server: &Served, model: &str, x: &ArrayD<f32>, wait: Duration) {
    let body = json_request(x, json!({}), &[]);
    let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    write!(
        s,
        "POST /v2/models/{model}/infer HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(&body).unwrap();
    std::thread::sleep(wait);
    s.shutdown(std::net::Shutdown::Both).unwrap();
}

#[test]
fn clients_that_leave_or_time_out_leave_no_work_behind() {
    let path = curve();
    let model = format!("m={}", path.display());
    // Batches wait 1.5 s for company, so a request is still queued when its client leaves.
    let server = Served::start(&[
        &model,
        &"--max-delay-ms",
        &"1500",
        &"--max-batch",
        &"1000",
        &"--timeout-ms",
        &"10000",
    ]);
    let x = inputs(2, 8);
    send_and_hang_up(&server, "m", &x, Duration::from_millis(100));
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        server.metric("modeconn_abandoned_total{model=\"m\"}"),
        1.0,
        "{}",
        server.log()
    );
    assert_eq!(
        server.metric("modeconn_compute_seconds_count{model=\"m\"}"),
        0.0
    );
    assert_eq!(server.metric("modeconn_in_flight_requests"), 0.0);
    // The server still answers.
    let (p, _) = predict(&path, &x, &[]);
    assert_close(
        &infer(&server, "m", &x, json!({}), &[]).array("probabilities"),
        &p,
        TOL,
    );
    assert_eq!(
        server.metric("modeconn_compute_seconds_count{model=\"m\"}"),
        1.0
    );

    // A deadline shorter than the wait: 504, and the request is not run afterwards either.
    let quick = Served::start(&[
        &model,
        &"--max-delay-ms",
        &"1500",
        &"--max-batch",
        &"1000",
        &"--timeout-ms",
        &"200",
    ]);
    let e = infer(&quick, "m", &x, json!({}), &[]).error(504);
    assert!(e.contains("200 ms"), "{e}");
    // A body that does not arrive in time: 408, and the connection is closed.
    let e = announce(&quick, 1000, b"{\"inputs\": [").error(408);
    assert!(e.contains("did not arrive"), "{e}");
    std::thread::sleep(Duration::from_millis(2000));
    assert_eq!(quick.metric("modeconn_abandoned_total{model=\"m\"}"), 1.0);
    assert_eq!(
        quick.metric("modeconn_compute_seconds_count{model=\"m\"}"),
        0.0
    );
}

#[test]
fn sigterm_answers_every_queued_request_then_exits() {
    let path = curve();
    let model = format!("m={}", path.display());
    let mut server = Served::start(&[&model, &"--max-delay-ms", &"800", &"--max-batch", &"1000"]);
    let x = inputs(6, 9);
    let (expected, _) = predict(&path, &x, &[]);
    let port = server.port;
    let replies: Vec<_> = (0..6)
        .map(|i| {
            let one = x.select(Axis(0), &[i]);
            std::thread::spawn(move || {
                let url = format!("http://127.0.0.1:{port}/v2/models/m/infer");
                post(&url, &[], json_request(&one, json!({}), &[]))
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let status = server.terminate();
    assert!(
        status.success(),
        "exit status {status:?}:\n{}",
        server.log()
    );
    for (i, h) in replies.into_iter().enumerate() {
        let r = h.join().unwrap();
        assert_close(
            &r.array("probabilities"),
            &expected.select(Axis(0), &[i]),
            TOL,
        );
    }
    let log = server.log();
    assert!(
        log.contains("shutting down") && log.contains("\"stopped\""),
        "{log}"
    );
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "still listening"
    );
}

#[test]
fn the_audit_log_records_sealed_points_and_fingerprints_not_inputs() {
    let dir = tempdir();
    let key_path = dir.path().join("audit.key");
    std::fs::write(&key_path, format!("{KEY_B}\n")).unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "[server]\nkeyed_secret = \"{KEY_A}\"\naudit_log = \"audit.jsonl\"\naudit_key_file = \"audit.key\"\n\
             [defaults]\nmodes = [\"keyed\", \"randomized\", \"ensemble\"]\nreturn_point = true\n"
        ),
    );
    let path = curve();
    let model = format!("m={}", path.display());
    let server = Served::start(&[&model, &"--config", &config]);
    let x = inputs(3, 4);
    let keyed = infer(&server, "m", &x, json!({}), &["point"]);
    let ensemble = infer(
        &server,
        "m",
        &x.select(Axis(0), &[0]),
        json!({"mode": "ensemble"}),
        &["point"],
    );
    let digest = get(&server.url("/v2/models/m")).json()["parameters"]["digest"].clone();
    assert!(digest.as_str().unwrap().starts_with("sha256:"));

    let text = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    let key = modeconn_server::config::parse_hex32(KEY_B).unwrap();
    for (line, reply, mode, samples) in [
        (&lines[0], &keyed, "keyed", 3),
        (&lines[1], &ensemble, "ensemble", 1),
    ] {
        let id = &reply.headers["x-request-id"];
        assert_eq!(line["request_id"], id.as_str());
        assert_eq!(line["mode"], mode);
        assert_eq!(line["model"], "m");
        assert_eq!(line["model_digest"], digest);
        assert_eq!(line["fingerprints"].as_array().unwrap().len(), samples);
        let sealed = line["sealed_points"].as_str().unwrap();
        let points = modeconn_server::audit::unseal(&key, id, sealed).expect("the seal opens");
        let ts: Vec<f64> = points
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["t"].as_f64().unwrap())
            .collect();
        assert_eq!(ts, reply.output("point").1);
        assert!(modeconn_server::audit::unseal(&key, "another-id", sealed).is_none());
    }
    // `modeconn unseal` opens them with the key, and refuses another key.
    let run = modeconn(&[
        &"unseal",
        &dir.path().join("audit.jsonl"),
        &"--key-file",
        &key_path,
    ])
    .ok();
    let opened: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(opened.len(), 2);
    assert_eq!(opened[0]["points"].as_array().unwrap().len(), 3);
    assert_eq!(
        opened[0]["points"][0]["t"].as_f64().unwrap(),
        keyed.output("point").1[0]
    );
    assert!(opened[0].get("sealed_points").is_none());
    let wrong = dir.path().join("wrong.key");
    std::fs::write(&wrong, KEY_A).unwrap();
    let run = modeconn(&[
        &"unseal",
        &dir.path().join("audit.jsonl"),
        &"--key-file",
        &wrong,
    ]);
    assert!(run.fails_cleanly().contains("do not open"));
    // Nothing of the input is written: no value of it appears.
    for v in x.iter().take(20) {
        assert!(
            !text.contains(&v.to_string()),
            "input value {v} in the audit log"
        );
    }
}

#[test]
fn bad_configurations_and_arguments_fail_at_start_with_one_line() {
    let dir = tempdir();
    let path = curve();
    let model = format!("m={}", path.display());
    let cases: Vec<(String, &str)> = vec![
        ("[defaults]\nmodes = [\"keyed\"]\n".into(), "keyed_secret"),
        (
            "[models.other]\nmodes = [\"at\"]\n".into(),
            "[models.other]",
        ),
        (
            "[defaults]\nmodes = [\"at\"]\ndefault_mode = \"ensemble\"\n".into(),
            "default_mode",
        ),
        ("[server]\nlisten = 1\n".into(), "listen"),
    ];
    for (text, needle) in cases {
        let config = write_config(dir.path(), &text);
        let run = modeconn(&[&"serve", &model, &"--config", &config, &"--port", &"0"]);
        let msg = run.fails_cleanly();
        assert!(msg.contains(needle), "{text:?}: {msg}");
    }
    let missing = dir.path().join("missing.safetensors");
    let run = modeconn(&[&"serve", &missing, &"--port", &"0"]);
    assert!(run.fails_cleanly().contains("missing.safetensors"));
    let run = modeconn(&[&"serve", &model, &model, &"--port", &"0"]);
    assert!(run.fails_cleanly().contains("NAME=PATH"));
    let run = modeconn(&[&"serve", &model, &"--workers", &"0", &"--port", &"0"]);
    assert!(run.fails_cleanly().contains("--workers"));
}

#[test]
fn tritonclient_works_unchanged() {
    let path = curve();
    let model = format!("m={}", path.display());
    let server = Served::start(&[&model]);
    let dir = tempdir();
    let x = x7();
    let xp = dir.path().join("x.npy");
    write_f32(&xp, &x);
    let (p, _) = predict(&path, &x, &[]);
    let (p_at, _) = predict(&path, &x, &["--at", "0.1,0.63"]);
    let (pp, pap) = (dir.path().join("p.npy"), dir.path().join("p_at.npy"));
    write_f32(&pp, &p);
    write_f32(&pap, &p_at);
    let url = format!("127.0.0.1:{}", server.port);
    let run = run_python(
        "triton_client.py",
        &[&url, &"m", &xp, &pp, &"0.1,0.63", &pap],
    );
    for line in [
        "health and metadata ok",
        "inference ok (binary=True)",
        "errors ok",
    ] {
        assert!(run.stdout.contains(line), "{}", run.transcript());
    }
}

#[test]
fn dynamic_batching_gathers_requests_of_the_same_model_and_points() {
    let path = curve();
    let model = format!("m={}", path.display());
    // The first request of a batch waits up to 1.5 s for others; batches hold 4 samples.
    let server = Served::start(&[&model, &"--max-delay-ms", &"1500", &"--max-batch", &"4"]);
    let x = inputs(9, 12);
    let (p_grid, _) = predict(&path, &x, &[]);
    let (p_at, _) = predict(&path, &x, &["--at", "0.5"]);
    let port = server.port;
    // One request for t = 0.5 first, then eight one-sample requests for the ensemble.
    let send = |i: usize| {
        let one = x.select(Axis(0), &[i]);
        std::thread::spawn(move || {
            let params = if i == 8 {
                json!({"mode": "at", "t": 0.5})
            } else {
                json!({})
            };
            let url = format!("http://127.0.0.1:{port}/v2/models/m/infer");
            let r = post(&url, &[], json_request(&one, params, &[]));
            (r, Instant::now())
        })
    };
    let at = send(8);
    std::thread::sleep(Duration::from_millis(200));
    let handles: Vec<_> = (0..8).map(send).collect();
    let (r_at, at_done) = at.join().unwrap();
    assert_close(
        &r_at.array("probabilities"),
        &p_at.select(Axis(0), &[8]),
        TOL,
    );
    for (i, h) in handles.into_iter().enumerate() {
        let (r, done) = h.join().unwrap();
        assert_close(
            &r.array("probabilities"),
            &p_grid.select(Axis(0), &[i]),
            TOL,
        );
        // Full batches run at once: the `at` request still gathering does not hold them back.
        assert!(
            done < at_done,
            "ensemble request {i} waited for the `at` batch"
        );
    }
    // Two full batches of four ensemble requests, and the `at` request on its own.
    let m = |s: &str| server.metric(&format!("modeconn_batch_{s}{{model=\"m\"}}"));
    assert_eq!(
        m("requests_count"),
        3.0,
        "{}",
        get(&server.url("/metrics")).text()
    );
    assert_eq!(m("requests_sum"), 9.0);
    assert_eq!(m("samples_sum"), 9.0);
    assert_eq!(
        server.metric("modeconn_batch_requests_bucket{le=\"4.0\",model=\"m\"}")
            - server.metric("modeconn_batch_requests_bucket{le=\"2.0\",model=\"m\"}"),
        2.0
    );
}

#[test]
fn the_queue_is_bounded_in_bytes_too() {
    let path = curve();
    let model = format!("m={}", path.display());
    // One worker; a batch waits 1.5 s for company; 1 MiB of input may wait.
    let server = Served::start(&[
        &model,
        &"--queue-mb",
        &"1",
        &"--max-delay-ms",
        &"1500",
        &"--max-batch",
        &"100000",
    ]);
    // 1000 samples of 3x8x8 FP32: 750 KiB each.
    let x = inputs(1000, 2);
    let port = server.port;
    let first = {
        let x = x.clone();
        std::thread::spawn(move || {
            let url = format!("http://127.0.0.1:{port}/v2/models/m/infer");
            post(&url, &[], json_request(&x, json!({}), &["class"]))
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let e = infer(&server, "m", &x, json!({}), &["class"]);
    assert!(e.error(503).contains("0.7 MiB waiting"), "{}", e.text());
    assert_eq!(e.headers.get("retry-after").map(String::as_str), Some("1"));
    // A small request still fits beside the first.
    let small = infer(
        &server,
        "m",
        &x.select(Axis(0), &[0, 1]),
        json!({}),
        &["class"],
    );
    assert_eq!(small.status, 200, "{}", small.text());
    assert_eq!(first.join().unwrap().output("class").1.len(), 1000);
}

#[test]
fn an_audit_log_that_cannot_be_written_fails_the_request_not_the_server() {
    let dir = tempdir();
    let config = write_config(
        dir.path(),
        &format!("[server]\naudit_log = \"/dev/full\"\naudit_key = \"{KEY_B}\"\n"),
    );
    let path = curve();
    let model = format!("m={}", path.display());
    let server = Served::start(&[&model, &"--config", &config]);
    let x = inputs(1, 1);
    for _ in 0..2 {
        let e = infer(&server, "m", &x, json!({}), &[]).error(500);
        assert!(e.contains("audit log"), "{e}");
    }
    assert!(server.log().contains("cannot write the audit log"));
    assert_eq!(get(&server.url("/v2/health/live")).status, 200);
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP/1.1, for tests that must tell how an exchange ended

/// How one request on a raw socket ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Ended {
    /// A complete response with this status.
    Answered(u16),
    /// The connection could not be made: refused before anything was sent.
    Refused,
    /// The request could not be written completely.
    SendFailed,
    /// The request was written completely, and the connection ended (reset or EOF) before a
    /// complete response.
    Unanswered,
}

/// A response read from a raw socket.
#[derive(Debug)]
pub(crate) struct RawReply {
    pub(crate) status: u16,
    pub(crate) headers: BTreeMap<String, String>,
    pub(crate) body: Vec<u8>,
}

impl RawReply {
    /// Whether the server said it closes the connection.
    pub(crate) fn closes(&self) -> bool {
        self.headers
            .get("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// An HTTP/1.1 connection on a raw socket.
pub(crate) struct Raw {
    pub(crate) stream: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    pub(crate) fn connect(port: u16) -> std::io::Result<Raw> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        stream.set_nodelay(true)?;
        Ok(Raw {
            stream,
            buf: Vec::new(),
        })
    }

    /// A connection already made.
    pub(crate) fn from_stream(stream: TcpStream) -> Raw {
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        Raw {
            stream,
            buf: Vec::new(),
        }
    }

    /// Writes `request` whole and reads one response.
    pub(crate) fn exchange(&mut self, request: &[u8]) -> Result<RawReply, Ended> {
        self.stream
            .write_all(request)
            .map_err(|_| Ended::SendFailed)?;
        self.read_reply().ok_or(Ended::Unanswered)
    }

    /// Reads one response (`None` if the connection ends first).
    pub(crate) fn read_reply(&mut self) -> Option<RawReply> {
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            self.fill()?;
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        let mut lines = head.lines();
        let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
        let headers: BTreeMap<String, String> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let len: usize = headers.get("content-length")?.parse().ok()?;
        while self.buf.len() < head_end + 4 + len {
            self.fill()?;
        }
        let body = self.buf[head_end + 4..head_end + 4 + len].to_vec();
        self.buf.drain(..head_end + 4 + len);
        Some(RawReply {
            status,
            headers,
            body,
        })
    }

    fn fill(&mut self) -> Option<()> {
        let mut chunk = [0u8; 16 << 10];
        match self.stream.read(&mut chunk) {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Some(())
            }
        }
    }

    /// Whether the server closed the connection within `wait` (EOF or reset).
    pub(crate) fn closed_within(&mut self, wait: Duration) -> bool {
        self.stream.set_read_timeout(Some(wait)).unwrap();
        let mut byte = [0u8; 1];
        let closed = match self.stream.read(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        };
        self.stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        closed
    }
}

/// The bytes of `POST path` with a JSON body.
pub(crate) fn raw_post(path: &str, body: &[u8], keep_alive: bool) -> Vec<u8> {
    let mut r = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{}\r\n",
        body.len(),
        if keep_alive { "" } else { "Connection: close\r\n" }
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// One request on a new connection.
pub(crate) fn raw_once(port: u16, request: &[u8]) -> Result<RawReply, Ended> {
    Raw::connect(port)
        .map_err(|_| Ended::Refused)?
        .exchange(request)
}

/// Counts of how requests ended.
pub(crate) type Tally = BTreeMap<Ended, usize>;

/// Inference requests the server logged as answered (with a result or an error).
pub(crate) fn logged_inferences(log: &str) -> usize {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| {
            matches!(
                v["fields"]["message"].as_str(),
                Some("inference" | "inference failed")
            )
        })
        .count()
}

#[test]
fn sigterm_under_load_answers_every_request_it_reads() {
    let path = curve();
    let model = format!("m={}", path.display());
    let mut server = Served::start(&[&model, &"--max-delay-ms", &"2", &"--max-batch", &"8"]);
    let port = server.port;
    let x = inputs(1, 31);
    let body = json_request(&x, json!({}), &["class"]);
    let path_infer = "/v2/models/m/infer";
    let keep = raw_post(path_infer, &body, true);
    let once = raw_post(path_infer, &body, false);
    // Half the clients reuse their connection, half open one per request; each goes on until
    // the server refuses it (`503`, as a load balancer would then send it elsewhere, or no
    // connection).
    const CLIENTS: usize = 12;
    let deadline = Instant::now() + Duration::from_secs(30);
    let tallies: Vec<Tally> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let (keep, once) = (&keep, &once);
                scope.spawn(move || {
                    let mut tally = Tally::new();
                    let mut conn: Option<Raw> = None;
                    while Instant::now() < deadline {
                        let ended = if c % 2 == 0 {
                            if conn.is_none() {
                                match Raw::connect(port) {
                                    Ok(r) => conn = Some(r),
                                    Err(_) => {
                                        *tally.entry(Ended::Refused).or_default() += 1;
                                        break;
                                    }
                                }
                            }
                            let raw = conn.as_mut().unwrap();
                            match raw.exchange(keep) {
                                Ok(reply) => {
                                    if reply.closes() {
                                        conn = None;
                                    }
                                    Ended::Answered(reply.status)
                                }
                                Err(e) => {
                                    conn = None;
                                    e
                                }
                            }
                        } else {
                            match raw_once(port, once) {
                                Ok(reply) => Ended::Answered(reply.status),
                                Err(e) => e,
                            }
                        };
                        *tally.entry(ended).or_default() += 1;
                        if matches!(ended, Ended::Refused | Ended::Answered(503)) {
                            break;
                        }
                    }
                    tally
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(1500));
        let status = server.terminate();
        assert!(status.success(), "exit status {status:?}");
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut all = Tally::new();
    for t in &tallies {
        for (k, v) in t {
            *all.entry(*k).or_default() += v;
        }
    }
    let answered: usize = all
        .iter()
        .filter(|(k, _)| matches!(k, Ended::Answered(_)))
        .map(|(_, v)| v)
        .sum();
    let logged = logged_inferences(&server.log());
    eprintln!("sigterm under load: {all:?}; the server logged {logged} answers");
    assert_eq!(
        all.get(&Ended::Unanswered).copied().unwrap_or(0),
        0,
        "requests sent whole got no answer: {all:?}"
    );
    assert_eq!(
        answered, logged,
        "answers seen by the clients and by the server"
    );
    assert!(all.get(&Ended::Answered(200)).is_some_and(|&n| n > 0));
}

/// `modeconn serve` with at most `files` open files (`RLIMIT_NOFILE`).
fn start_with_file_limit(args: &[&dyn AsRef<OsStr>], files: u64) -> Served {
    use std::os::unix::process::CommandExt;
    Served::start_with(args, |cmd| {
        // SAFETY: setrlimit(2) is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let limit = libc::rlimit {
                    rlim_cur: files,
                    rlim_max: files,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    })
}

/// Opens up to `n` connections (those the kernel does not take within a second are skipped),
/// each sending `first` (nothing, or part of a request).
pub(crate) fn open_connections(port: u16, n: usize, first: &[u8]) -> Vec<TcpStream> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    (0..n)
        .filter_map(|_| TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok())
        .filter_map(|mut s| s.write_all(first).ok().map(|()| s))
        .collect()
}

/// One request on a new connection, given `within` to be answered.
fn raw_within(port: u16, request: &[u8], within: Duration) -> Result<RawReply, Ended> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let stream = TcpStream::connect_timeout(&addr, within).map_err(|_| Ended::Refused)?;
    let mut raw = Raw::from_stream(stream);
    raw.stream.set_read_timeout(Some(within)).unwrap();
    raw.exchange(request)
}

/// Sends SIGTERM and waits at most `within` for the exit; the time it took, or `None`.
fn terminate_within(server: &mut Served, within: Duration) -> Option<(Duration, ExitStatus)> {
    let started = Instant::now();
    // SAFETY: kill(2) on our own child's pid.
    let rc = unsafe { libc::kill(server.child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0, "kill failed");
    while started.elapsed() < within {
        if let Some(status) = server.child.try_wait().expect("wait") {
            return Some((started.elapsed(), status));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

const PARTIAL_HEAD: &[u8] = b"POST /v2/models/m/infer HTTP/1.1\r\nHost: localhost\r\nContent-Le";

#[test]
fn idle_and_half_open_connections_cannot_starve_good_requests() {
    let path = curve();
    let model = format!("m={}", path.display());
    // Default limits and timeouts, 256 open files.
    let server = start_with_file_limit(&[&model], 256);
    let port = server.port;
    let idle = open_connections(port, 300, b"");
    let partial = open_connections(port, 40, PARTIAL_HEAD);
    let x = inputs(1, 3);
    let request = raw_post(
        "/v2/models/m/infer",
        &json_request(&x, json!({}), &[]),
        false,
    );
    let started = Instant::now();
    let good: Vec<Result<u16, Ended>> = (0..10)
        .map(|_| raw_within(port, &request, Duration::from_secs(2)).map(|r| r.status))
        .collect();
    let answered = good.iter().filter(|r| **r == Ok(200)).count();
    eprintln!(
        "{} idle and {} half-open connections, 256 files: {answered} of 10 good requests answered in {:.2} s ({good:?})",
        idle.len(),
        partial.len(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(answered, 10, "good requests: {good:?}");
    assert!(server.metric("modeconn_connections_closed_total{reason=\"evicted\"}") > 0.0);
    drop((idle, partial));
}

#[test]
fn idle_and_half_open_connections_are_closed_by_timeouts_and_at_shutdown() {
    let path = curve();
    let model = format!("m={}", path.display());
    let x = inputs(1, 4);
    let request = raw_post(
        "/v2/models/m/infer",
        &json_request(&x, json!({}), &[]),
        true,
    );

    // Default settings: SIGTERM closes an idle connection, one that sent part of its headers
    // and one idle after an answer, at once.
    let mut server = Served::start(&[&model]);
    let port = server.port;
    let mut after = Raw::connect(port).unwrap();
    assert_eq!(after.exchange(&request).unwrap().status, 200);
    let held = (
        open_connections(port, 1, b""),
        open_connections(port, 1, PARTIAL_HEAD),
        after,
    );
    std::thread::sleep(Duration::from_millis(200));
    let stopped = terminate_within(&mut server, Duration::from_secs(15));
    eprintln!("SIGTERM with idle and half-open connections: exit after {stopped:?}");
    let (took, status) = stopped.expect("the server did not exit within 15 s of SIGTERM");
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(2), "shutdown took {took:?}");
    drop(held);

    // Short timeouts: idle connections close after the keep-alive time, half-open ones after
    // the header time, and past the connection limit the answer is 503.
    let server = Served::start(&[
        &model,
        &"--keep-alive-ms",
        &"600",
        &"--header-timeout-ms",
        &"1200",
        &"--max-connections",
        &"3",
        &"--max-delay-ms",
        &"1500",
        &"--max-batch",
        &"1000",
    ]);
    let port = server.port;
    let started = Instant::now();
    let mut idle = Raw::connect(port).unwrap();
    let mut partial = Raw::connect(port).unwrap();
    partial.stream.write_all(PARTIAL_HEAD).unwrap();
    assert!(
        !idle.closed_within(Duration::from_millis(400)),
        "closed before the keep-alive time"
    );
    assert!(
        idle.closed_within(Duration::from_millis(1000)),
        "idle connection still open"
    );
    let idle_closed = started.elapsed();
    assert!(
        partial.closed_within(Duration::from_millis(1500)),
        "half-open connection still open"
    );
    let partial_closed = started.elapsed();
    eprintln!("idle connection closed after {idle_closed:?}, half-open after {partial_closed:?}");
    assert!(
        partial_closed > Duration::from_millis(1100),
        "{partial_closed:?}"
    );
    // Three requests wait 1.5 s for company in the batcher; a fourth connection is refused.
    let busy: Vec<_> = (0..3)
        .map(|_| {
            let request = request.clone();
            std::thread::spawn(move || raw_once(port, &request).map(|r| r.status))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let refused = raw_once(port, &request).expect("an answer");
    assert_eq!(
        refused.status,
        503,
        "{}",
        String::from_utf8_lossy(&refused.body)
    );
    assert!(refused.closes());
    assert_eq!(
        refused.headers.get("retry-after").map(String::as_str),
        Some("1")
    );
    for b in busy {
        assert_eq!(b.join().unwrap(), Ok(200));
    }
    assert_eq!(server.metric("modeconn_connections_refused_total"), 1.0);
}
/// `n` t values spread over [0, 1].
fn many_t(n: usize) -> Vec<f64> {
    (0..n).map(|i| i as f64 / (n - 1) as f64).collect()
}

#[test]
fn heavy_requests_are_bounded_run_in_chunks_and_stop_at_their_deadline() {
    let path = curve();
    let model = format!("m={}", path.display());
    let x = inputs(1000, 13);
    let heavy = json_request(&x, json!({"mode": "at", "t": many_t(1024)}), &["class"]);
    let small = json_request(&x.select(Axis(0), &[0]), json!({}), &["class"]);

    // 1000 samples at 1024 points is 1,024,000 member-samples: over the default bound, refused
    // before it runs.
    let server = Served::start(&[&model]);
    let started = Instant::now();
    let r = post(&server.infer_url("m"), &[], heavy.clone());
    eprintln!(
        "heavy request with the default bound: {} in {:.2} s",
        r.status,
        started.elapsed().as_secs_f64()
    );
    let e = r.error(413);
    assert!(e.contains("max_work") && e.contains("1024000"), "{e}");
    assert_eq!(
        server.metric("modeconn_compute_seconds_count{model=\"m\"}"),
        0.0
    );
    drop(server);

    // Allowed, but the deadline is 1 s: both heavy requests stop there, and a small request
    // sent after them is answered at once.
    let server = Served::start(&[&model, &"--timeout-ms", &"1000", &"--max-work", &"4000000"]);
    let port = server.port;
    let started = Instant::now();
    let heavies: Vec<_> = (0..2)
        .map(|_| {
            let heavy = heavy.clone();
            std::thread::spawn(move || {
                let url = format!("http://127.0.0.1:{port}/v2/models/m/infer");
                let r = post(&url, &[], heavy);
                (r.status, started.elapsed())
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1300));
    let sent = Instant::now();
    let r = post(&server.infer_url("m"), &[], small);
    let small_took = sent.elapsed();
    let heavies: Vec<(u16, Duration)> = heavies.into_iter().map(|h| h.join().unwrap()).collect();
    // Everything the workers did, heavy requests included, fits in the 1.3 s before the small
    // request and the small request's own run.
    let compute = server.metric("modeconn_compute_seconds_sum{model=\"m\"}");
    eprintln!(
        "two heavy requests under a 1 s deadline: {heavies:?}; then a small one: {} in {:.3} s; \
         compute {compute:.2} s",
        r.status,
        small_took.as_secs_f64()
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(small_took < Duration::from_millis(500), "{small_took:?}");
    for (status, took) in &heavies {
        assert_eq!(*status, 504);
        assert!(*took < Duration::from_millis(1300), "{took:?}");
    }
    assert!(compute < 2.0 * 1.3 + 0.5, "the workers ran {compute:.2} s");
    assert_eq!(server.metric("modeconn_abandoned_total{model=\"m\"}"), 2.0);
    drop(server);
    chunked_answers_equal_whole_ones();
}

/// Large batches run in chunks (by members, and by samples in per-sample modes) whose answers
/// are those of one run.
fn chunked_answers_equal_whole_ones() {
    let (_dir, server) = serve_curve(
        &format!(
            "[server]\nkeyed_secret = \"{KEY_A}\"\n[defaults]\nmodes = [\"at\", \"keyed\"]\nreturn_point = true\n"
        ),
        &[],
    );
    let path = curve();
    // 8 samples at 1024 points: 8,192 member-samples, two chunks by members.
    let x = inputs(8, 37);
    let ts = many_t(1024);
    let all = ["probabilities", "per_member", "entropy", "disagreement"];
    let r = infer_binary(&server, "m", &x, json!({"mode": "at", "t": ts}), &all);
    let t_arg = ts
        .iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let (p, pm) = predict(&path, &x, &["--at", &t_arg]);
    assert_close(&r.array("probabilities"), &p, TOL);
    assert_close(&r.array("per_member"), &pm, TOL);
    let (_, entropy) = r.output("entropy");
    let (_, disagreement) = r.output("disagreement");
    for (i, row) in p.axis_iter(Axis(0)).enumerate() {
        let h: f64 = row.iter().map(|&q| -(q as f64) * (q as f64).ln()).sum();
        assert!((entropy[i] - h).abs() < 1e-4, "{} vs {h}", entropy[i]);
        let top = ndarray::Array1::from_iter(row.iter().copied());
        let top = (0..CLASSES)
            .max_by(|&a, &b| top[a].partial_cmp(&top[b]).unwrap())
            .unwrap();
        let differ = pm
            .axis_iter(Axis(0))
            .filter(|m| {
                let s = m.index_axis(Axis(0), i);
                (0..CLASSES)
                    .max_by(|&a, &b| s[a].partial_cmp(&s[b]).unwrap())
                    .unwrap()
                    != top
            })
            .count();
        assert!((disagreement[i] - differ as f64 / 1024.0).abs() < 1e-6);
    }
    // 4,100 keyed samples: two chunks by samples, the same points and answers as two requests.
    let x = inputs(4100, 41);
    let whole = infer_binary(
        &server,
        "m",
        &x,
        json!({"mode": "keyed"}),
        &["probabilities", "point"],
    );
    let halves: Vec<Reply> = [0..2050, 2050..4100]
        .into_iter()
        .map(|rows| {
            let part = x.select(Axis(0), &rows.collect::<Vec<_>>());
            infer_binary(
                &server,
                "m",
                &part,
                json!({"mode": "keyed"}),
                &["probabilities", "point"],
            )
        })
        .collect();
    let points: Vec<f64> = halves.iter().flat_map(|h| h.output("point").1).collect();
    assert_eq!(whole.output("point").1, points);
    let probs: Vec<ArrayD<f32>> = halves.iter().map(|h| h.array("probabilities")).collect();
    let views: Vec<_> = probs.iter().map(|a| a.view()).collect();
    assert_close(
        &whole.array("probabilities"),
        &ndarray::concatenate(Axis(0), &views).unwrap(),
        TOL,
    );
}
/// Samples a process's resident memory every 10 ms while `work` runs: (peak, samples) in KiB.
fn peak_rss_during<T>(server: &Served, work: impl FnOnce() -> T) -> (u64, T) {
    let stop = std::sync::atomic::AtomicBool::new(false);
    let pid = server.child.id();
    std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let mut peak = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                peak = peak.max(rss_of(pid));
                std::thread::sleep(Duration::from_millis(10));
            }
            peak
        });
        let out = work();
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        (sampler.join().unwrap(), out)
    })
}

/// Resident memory of a process in KiB (0 once it is gone).
pub(crate) fn rss_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

#[test]
fn concurrent_large_bodies_are_bounded_in_memory_and_it_goes_back() {
    let path = curve();
    let model = format!("m={}", path.display());
    let server = Served::start(&[&model, &"--max-body-mb", &"6", &"--receive-mb", &"12"]);
    // 16 clients at once, each with a JSON body of about 5 MiB: one body at a time fits in the
    // 12 MiB being received (each counts twice).
    let x = inputs(1400, 17);
    let body = json_request(&x, json!({"mode": "at", "t": 0.5}), &["class"]);
    let mb = body.len() as f64 / f64::from(1 << 20);
    let port = server.port;
    // Warm up both workers (and their sessions' memory) with requests of the size.
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| assert_eq!(post(&server.infer_url("m"), &[], body.clone()).status, 200));
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    let before = server.rss_kib();
    let (peak, statuses) = peak_rss_during(&server, || {
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..16)
                .map(|_| {
                    let body = &body;
                    scope.spawn(move || {
                        let url = format!("http://127.0.0.1:{port}/v2/models/m/infer");
                        post(&url, &[], body.clone()).status
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .collect::<Vec<u16>>()
        })
    });
    std::thread::sleep(Duration::from_millis(500));
    let after = server.rss_kib();
    eprintln!(
        "16 concurrent {mb:.1} MiB bodies: statuses {statuses:?}; RSS {} MiB before, {} MiB peak, {} MiB after",
        before / 1024,
        peak / 1024,
        after / 1024
    );
    assert!(
        statuses.iter().all(|&s| s == 200 || s == 503),
        "{statuses:?}"
    );
    assert!(statuses.contains(&200));
    assert!(
        peak < before + 40 * 1024,
        "peak {peak} KiB from {before} KiB"
    );
    assert!(
        after < before + 8 * 1024,
        "{after} KiB after, {before} KiB before"
    );
}

#[test]
fn answers_are_bounded_before_they_are_computed() {
    let path = curve();
    let model = format!("m={}", path.display());
    let server = Served::start(&[&model, &"--max-response-mb", &"1"]);
    // 64 samples at 1024 points, with every member's probabilities: 327,680 values.
    let x = inputs(64, 19);
    let params = json!({"mode": "at", "t": many_t(1024)});
    let body = json_request(&x, params.clone(), &["per_member"]);
    let r = post(&server.infer_url("m"), &[], body.clone());
    eprintln!(
        "per_member of 64 samples at 1024 points: a {} byte request, a {} byte answer ({})",
        body.len(),
        r.body.len(),
        r.status
    );
    let e = r.error(413);
    assert!(
        e.contains("max_response_mb") && e.contains("1048576"),
        "{e}"
    );
    assert_eq!(
        server.metric("modeconn_compute_seconds_count{model=\"m\"}"),
        0.0
    );
    // 32 samples: 655,360 bytes in binary fit, while in JSON they could take 16 bytes a value.
    let half = x.select(Axis(0), &(0..32).collect::<Vec<_>>());
    let r = infer_binary(&server, "m", &half, params.clone(), &["per_member"]);
    assert_eq!(r.output("per_member").0, vec![1024, 32, CLASSES]);
    assert!(r.body.len() < 1 << 20);
    infer(&server, "m", &half, params, &["per_member"]).error(413);
}

#[test]
fn randomized_and_keyed_answers_have_one_size_whatever_the_point() {
    let (_dir, server) = serve_curve(
        &format!(
            "[server]\nkeyed_secret = \"{KEY_A}\"\n[defaults]\nmodes = [\"randomized\", \"keyed\"]\n"
        ),
        &[],
    );
    let outputs = ["probabilities", "class", "entropy"];
    let bits = |r: &Reply| {
        r.array("probabilities")
            .iter()
            .map(|v| v.to_bits())
            .collect::<Vec<_>>()
    };
    // One input, 400 times in JSON and 50 times in binary: a random point each time.
    let x = inputs(1, 23);
    let mut json_sizes = std::collections::BTreeSet::new();
    let mut answers = std::collections::BTreeSet::new();
    for _ in 0..400 {
        let r = infer(&server, "m", &x, json!({"mode": "randomized"}), &outputs);
        json_sizes.insert(r.body.len());
        answers.insert(bits(&r));
    }
    let mut binary_sizes = std::collections::BTreeSet::new();
    for _ in 0..50 {
        let r = infer_binary(&server, "m", &x, json!({"mode": "randomized"}), &outputs);
        binary_sizes.insert(r.body.len());
    }
    // 60 inputs in keyed mode, each at its own point.
    let mut keyed_sizes = std::collections::BTreeSet::new();
    let mut keyed_answers = std::collections::BTreeSet::new();
    for seed in 0..60 {
        let r = infer(
            &server,
            "m",
            &inputs(1, 100 + seed),
            json!({"mode": "keyed"}),
            &outputs,
        );
        keyed_sizes.insert(r.body.len());
        keyed_answers.insert(bits(&r));
    }
    eprintln!(
        "randomized: {} answers of one input in {} JSON body lengths {json_sizes:?}, {} binary \
         {binary_sizes:?}; keyed: 60 inputs in {} lengths",
        answers.len(),
        json_sizes.len(),
        binary_sizes.len(),
        keyed_sizes.len()
    );
    assert!(answers.len() > 1 && keyed_answers.len() > 1);
    assert_eq!(json_sizes.len(), 1, "{json_sizes:?}");
    assert_eq!(binary_sizes.len(), 1, "{binary_sizes:?}");
    assert_eq!(keyed_sizes.len(), 1, "{keyed_sizes:?}");
    // The numbers still read back as the same values as in binary.
    let j = infer(&server, "m", &x, json!({"mode": "keyed"}), &outputs);
    let b = infer_binary(&server, "m", &x, json!({"mode": "keyed"}), &outputs);
    let single = |r: &Reply, name: &str| {
        r.output(name)
            .1
            .iter()
            .map(|v| (*v as f32).to_bits())
            .collect::<Vec<_>>()
    };
    assert_eq!(bits(&j), bits(&b));
    assert_eq!(j.output("class"), b.output("class"));
    assert_eq!(single(&j, "entropy"), single(&b, "entropy"));
}

/// The distinct values of a list, and how far the mean of some probabilities is from others.
fn distinct(points: &[f64]) -> usize {
    let mut d = points.to_vec();
    d.sort_by(f64::total_cmp);
    d.dedup();
    d.len()
}

fn mean_distance(probs: &ArrayD<f32>, reference: &ArrayD<f32>) -> f64 {
    let mean = probs.mean_axis(Axis(0)).unwrap();
    mean.iter()
        .zip(reference.iter())
        .map(|(a, b)| (*a as f64 - *b as f64).abs())
        .fold(0.0, f64::max)
}

#[test]
fn keyed_mode_meets_one_point_for_signed_zeros_and_changes_below_the_quantum() {
    const QUANTUM: f32 = 1e-3;
    let text = |extra: &str| {
        format!(
            "[server]\nkeyed_secret = \"{KEY_A}\"\n[defaults]\nmodes = [\"keyed\"]\nreturn_point = true\n{extra}"
        )
    };
    let path = curve();
    // One input with 64 zeros, and three families of copies of it.
    let mut x = inputs(1, 43);
    for i in 0..64 {
        x.as_slice_mut().unwrap()[i * 3] = 0.0;
    }
    let n = x.len();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = |m: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % m as u64) as usize
    };
    let copies = |count: usize, change: &mut dyn FnMut(&mut [f32])| {
        let mut all = Vec::with_capacity(count * n);
        for _ in 0..count {
            let mut v = x.as_slice().unwrap().to_vec();
            change(&mut v);
            all.extend(v);
        }
        let mut shape = x.shape().to_vec();
        shape[0] = count;
        ArrayD::from_shape_vec(IxDyn(&shape), all).unwrap()
    };
    // 200 copies with some zeros written -0.0 (the same numbers, other bytes).
    let zeros = copies(200, &mut |v| {
        for i in 0..64 {
            if next(2) == 1 {
                v[i * 3] = -0.0;
            }
        }
    });
    // 100 copies with one value one ulp larger in magnitude.
    let ulps = copies(100, &mut |v| {
        let i = loop {
            let i = next(n);
            if v[i] != 0.0 {
                break i;
            }
        };
        v[i] = f32::from_bits(v[i].to_bits() + 1);
    });
    // 100 copies with one value one quantum larger: what the quantum does not cover.
    let steps = copies(100, &mut |v| v[next(n)] += QUANTUM);
    let (ensemble, _) = predict(&path, &x, &["--grid", "21"]);

    let mut rows = Vec::new();
    for (name, extra) in [
        ("without a quantum", String::new()),
        (
            "with a quantum of 0.001",
            format!("keyed_quantum = {QUANTUM}\n"),
        ),
    ] {
        let (_dir, server) = serve_curve(&text(&extra), &[]);
        let mut row = Vec::new();
        for family in [&zeros, &ulps, &steps] {
            let r = infer_binary(&server, "m", family, json!({}), &["probabilities", "point"]);
            row.push((
                distinct(&r.output("point").1),
                mean_distance(&r.array("probabilities"), &ensemble),
            ));
        }
        eprintln!(
            "keyed {name}: 200 copies with -0.0 meet {} points (mean {:.4} from the ensemble), \
             100 one-ulp changes {} ({:.4}), 100 changes of 0.001 {} ({:.4})",
            row[0].0, row[0].1, row[1].0, row[1].1, row[2].0, row[2].1
        );
        rows.push(row);
    }
    // Signed zeros are read as one number either way; one-ulp changes meet many points without
    // a quantum and one with it; changes of a whole quantum still meet many.
    assert_eq!(rows[0][0].0, 1);
    assert!(rows[0][1].0 >= 8, "{:?}", rows[0]);
    assert_eq!(rows[1][0].0, 1);
    assert!(rows[1][1].0 <= 2, "{:?}", rows[1]);
    assert!(rows[1][2].0 >= 8, "{:?}", rows[1]);
}

#[test]
fn metrics_answer_in_the_format_asked_for_with_every_series_from_the_start() {
    let (_dir, server) = serve_curve("[defaults]\nmodes = [\"ensemble\", \"at\"]\n", &[]);
    let ask = |accept: Option<&str>| {
        let mut req = agent().get(&server.url("/metrics"));
        if let Some(a) = accept {
            req = req.header("accept", a);
        }
        Reply::from(req.call().expect("GET /metrics"))
    };
    // Plain clients and classic parsers get the text format 0.0.4, where a counter's TYPE line
    // names its `_total` sample.
    for accept in [None, Some("text/plain;version=0.0.4"), Some("*/*")] {
        let r = ask(accept);
        assert_eq!(r.status, 200);
        assert_eq!(
            r.headers["content-type"], "text/plain; version=0.0.4; charset=utf-8",
            "{accept:?}"
        );
        let text = String::from_utf8(r.body).expect("UTF-8");
        assert!(
            text.contains("# TYPE modeconn_abandoned_total counter"),
            "{text}"
        );
        assert!(!text.contains("# EOF"));
        // Nothing has happened yet, and every documented series is there at 0.
        for series in [
            "modeconn_abandoned_total{model=\"m\"} 0",
            "modeconn_requests_total{model=\"m\",mode=\"ensemble\"} 0",
            "modeconn_requests_total{model=\"m\",mode=\"at\"} 0",
            "modeconn_queue_seconds_count{model=\"m\"} 0",
            "modeconn_compute_seconds_count{model=\"m\"} 0",
            "modeconn_batch_samples_count{model=\"m\"} 0",
            "modeconn_batch_requests_count{model=\"m\"} 0",
            "modeconn_connections_refused_total 0",
            "modeconn_connections_closed_total{reason=\"keep_alive\"} 0",
            "modeconn_connections_closed_total{reason=\"stalled\"} 0",
            "modeconn_queue_depth 0",
        ] {
            assert!(
                text.lines().any(|l| l == series),
                "`{series}` is missing:\n{text}"
            );
        }
    }
    // Prometheus asks for OpenMetrics first and gets it.
    let r = ask(Some(
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    ));
    assert!(r.headers["content-type"].starts_with("application/openmetrics-text"));
    let text = String::from_utf8(r.body).expect("UTF-8");
    assert!(text.contains("# TYPE modeconn_abandoned counter") && text.ends_with("# EOF\n"));
}

#[test]
fn the_repository_index_lists_the_models_and_refuses_bad_bodies() {
    let (_dir, server) = serve_curve("", &[]);
    let index = |body: &str| post(&server.url("/v2/repository/index"), &[], body.into());
    for body in ["", "{}", "{\"ready\": true}", "{\"ready\": false}"] {
        let r = index(body);
        assert_eq!(r.status, 200, "{body}");
        let v: Value = serde_json::from_slice(&r.body).expect("JSON");
        assert_eq!(
            v,
            json!([{"name": "m", "version": "1", "state": "READY", "reason": ""}]),
            "{body}"
        );
    }
    for (body, needle) in [
        ("[1]", "a JSON object"),
        ("{\"ready\": 3}", "`ready` must be true or false"),
        ("not json", "a JSON object"),
    ] {
        let r = index(body);
        assert_eq!(r.status, 400, "{body}");
        let text = String::from_utf8_lossy(&r.body).into_owned();
        assert!(text.contains(needle), "{body}: {text}");
    }
    let r = index(&" ".repeat(5000));
    assert_eq!(r.status, 400);
}

/// A model repository: `curve/model.safetensors` with a `config.toml` allowing `ensemble` and
/// `at` only, and `snap.safetensors` beside it.
fn repository() -> tempfile::TempDir {
    let dir = tempdir();
    let folder = dir.path().join("curve");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::copy(curve(), folder.join("model.safetensors")).unwrap();
    std::fs::write(
        folder.join("config.toml"),
        "modes = [\"ensemble\", \"at\"]\n",
    )
    .unwrap();
    std::fs::copy(snapshots(), dir.path().join("snap.safetensors")).unwrap();
    dir
}

#[test]
fn a_model_repository_is_served_with_each_model_s_own_policy() {
    let repo = repository();
    let server = Served::start(&[&"--model-dir", &repo.path()]);
    let meta: Value = serde_json::from_slice(&get(&server.url("/v2")).body).unwrap();
    assert_eq!(meta["models"], json!(["curve", "snap"]));
    let x = x7();
    let (p, _) = predict(&curve(), &x, &[]);
    assert_close(
        &infer(&server, "curve", &x, json!({}), &[]).array("probabilities"),
        &p,
        TOL,
    );
    // curve/config.toml allows two modes; snap has the defaults.
    let refused = infer(&server, "curve", &x, json!({"mode": "randomized"}), &[]);
    assert_eq!(
        refused.status,
        403,
        "{}",
        String::from_utf8_lossy(&refused.body)
    );
    assert_eq!(
        infer(&server, "snap", &x, json!({"mode": "randomized"}), &[]).status,
        200
    );
}

#[test]
fn kserve_s_flags_and_the_environment_configure_the_server() {
    let repo = tempdir();
    std::fs::copy(curve(), repo.path().join("bundle.safetensors")).unwrap();
    // What a KServe ServingRuntime passes.
    let dir = format!("--model_dir={}", repo.path().display());
    let server = Served::start_exact(&[&"--model_name=digits", &dir, &"--http_port=0"], |_| {});
    let meta: Value = serde_json::from_slice(&get(&server.url("/v2")).body).unwrap();
    assert_eq!(meta["models"], json!(["digits"]));
    drop(server);
    // The same from the environment alone, with KServe's MODEL_NAME.
    let server = Served::start_exact(&[], |cmd| {
        cmd.env("MODECONN_MODEL_DIR", repo.path())
            .env("MODECONN_PORT", "0")
            .env("MODECONN_MAX_BATCH", "4")
            .env("MODEL_NAME", "from-env");
    });
    let meta: Value = serde_json::from_slice(&get(&server.url("/v2")).body).unwrap();
    assert_eq!(meta["models"], json!(["from-env"]));
    drop(server);
    // A bad value from the environment is named like a bad flag.
    let run = modeconn_with(&[&"serve", &"--model-dir", &repo.path()], |cmd| {
        cmd.env("MODECONN_MAX_BATCH", "many");
    });
    assert!(!run.status.success());
    assert!(
        run.stderr.contains("--max-batch") && run.stderr.contains("many"),
        "{}",
        run.stderr
    );
    // One name for two bundles is refused.
    let two = repository();
    let line =
        modeconn(&[&"serve", &"--model-dir", &two.path(), &"--model-name", &"x"]).fails_cleanly();
    assert!(
        line.contains("it names one bundle, and 2 are served"),
        "{line}"
    );
}

/// The gRPC address of a server started with `--grpc-port 0`.
fn grpc_url(server: &Served) -> String {
    format!(
        "127.0.0.1:{}",
        server.grpc_port.expect("the server logged its gRPC port")
    )
}

#[test]
fn grpc_answers_as_http_does_in_every_mode_with_the_codes_clients_expect() {
    let dir = tempdir();
    let config = write_config(
        dir.path(),
        &format!(
            "[server]\nkeyed_secret = \"{KEY_A}\"\n[defaults]\nrandomized_grid = 5\n\
             [models.m]\nmodes = [\"ensemble\", \"at\", \"randomized\", \"keyed\"]\n\
             [models.limited]\nmodes = [\"ensemble\"]\n"
        ),
    );
    let (m, limited) = (
        format!("m={}", curve().display()),
        format!("limited={}", curve().display()),
    );
    let server = Served::start(&[&m, &limited, &"--config", &config, &"--grpc-port", &"0"]);
    let xp = dir.path().join("x.npy");
    write_f32(&xp, &x7());
    let http = format!("127.0.0.1:{}", server.port);
    let run = run_python(
        "triton_grpc.py",
        &[
            &"check",
            &grpc_url(&server),
            &http,
            &"m",
            &"limited",
            &xp,
            &"m",
            &"5",
        ],
    );
    for line in [
        "health and metadata ok",
        "inference ok in every mode, equal to HTTP",
        "typed contents ok",
        "errors ok",
    ] {
        assert!(run.stdout.contains(line), "{}", run.transcript());
    }
    // gRPC requests are counted and logged as HTTP ones are.
    assert!(server.metric("modeconn_requests_total{model=\"m\",mode=\"keyed\"}") >= 2.0);
    assert!(
        server.metric("modeconn_request_failures_total{model=\"limited\",code=\"403\"}") >= 1.0
    );
    assert!(
        server.log().contains("\"protocol\":\"grpc\""),
        "{}",
        server.log()
    );
}

#[test]
fn a_grpc_burst_against_a_small_queue_loses_nothing() {
    let path = curve();
    let model = format!("m={}", path.display());
    let server = Served::start(&[
        &model,
        &"--grpc-port",
        &"0",
        &"--workers",
        &"1",
        &"--queue",
        &"2",
        &"--max-batch",
        &"1",
    ]);
    let dir = tempdir();
    let x = inputs(60, 5);
    let (expected, _) = predict(&path, &x, &["--grid", "5"]);
    let (xp, ep) = (dir.path().join("x.npy"), dir.path().join("p.npy"));
    write_f32(&xp, &x);
    write_f32(&ep, &expected);
    let run = run_python(
        "triton_grpc.py",
        &[&"burst", &grpc_url(&server), &"m", &xp, &ep, &"16", &"10"],
    );
    let line = run
        .stdout
        .lines()
        .find(|l| l.starts_with("ok "))
        .unwrap_or_else(|| panic!("{}", run.transcript()));
    let counts: Vec<f64> = line.split(' ').filter_map(|w| w.parse().ok()).collect();
    let (ok, exhausted) = (counts[0], counts[1]);
    eprintln!("gRPC burst of 160 against a queue of 2: {ok} answered, {exhausted} exhausted");
    assert_eq!(ok + exhausted, 160.0);
    assert!(ok > 0.0);
    assert_eq!(
        server.metric("modeconn_requests_total{model=\"m\",mode=\"ensemble\"}"),
        ok
    );
    assert_eq!(
        server.metric("modeconn_request_failures_total{model=\"m\",code=\"503\"}"),
        exhausted
    );
}

#[test]
fn a_grpc_request_past_its_deadline_is_deadline_exceeded() {
    let model = format!("m={}", curve().display());
    let server = Served::start(&[
        &model,
        &"--grpc-port",
        &"0",
        &"--timeout-ms",
        &"300",
        &"--max-work",
        &"4000000",
    ]);
    let dir = tempdir();
    let xp = dir.path().join("x.npy");
    write_f32(&xp, &inputs(1000, 13));
    let run = run_python(
        "triton_grpc.py",
        &[&"deadline", &grpc_url(&server), &"m", &xp, &"1024"],
    );
    assert!(run.stdout.contains("deadline ok"), "{}", run.transcript());
    assert_eq!(
        server.metric("modeconn_request_failures_total{model=\"m\",code=\"504\"}"),
        1.0
    );
}
