//! Served throughput and latency against in-process `Ensemble::predict`.
//!
//! Starts the server in this process on loopback (the same `Server` that `modeconn serve`
//! runs), drives it with `CLIENTS` concurrent HTTP clients (ureq, binary tensor extension unless
//! noted) or gRPC clients (tonic, raw contents) for a fixed time per setting, and reports
//! requests/s, samples/s, p50 and p99 latency.
//! The baseline runs `Ensemble::predict` on the same inputs from the same number of threads.
//! The model is the bench CNN of `benchmarks/fixture.rs` (3x32x32 inputs, 10 classes).
//!
//! Run with `cargo bench --bench serve` after sourcing the `modeconn.env` that
//! `scripts/setup.sh` writes. `MODECONN_BENCH_SECONDS` sets the measured time per setting and path (default 5);
//! `MODECONN_BENCH_WORKERS`, `MODECONN_BENCH_DELAY_MS` change the server's `--workers` and
//! `--max-delay-ms`; `MODECONN_BENCH_ONLY` runs the settings whose name contains it;
//! `MODECONN_BENCH_SPIN=1` lets idle operator threads spin.

#[path = "benchmarks/fixture.rs"]
#[allow(dead_code)]
mod fixture;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use modeconn_runtime::{Ensemble, EnsembleOptions, Sampling};
use modeconn_server::grpc::proto;
use modeconn_server::{Config, Options, Server};
use ndarray::ArrayD;
use serde_json::{Value, json};

use fixture::{Fixture, input};

/// Concurrent clients (and baseline threads).
const CLIENTS: usize = 4;
/// Alternating served / in-process rounds per setting.
const ROUNDS: usize = 5;

struct Setting {
    name: &'static str,
    mode: &'static str,
    batch: usize,
    binary: bool,
    grpc: bool,
}

const SETTINGS: [Setting; 11] = [
    Setting {
        name: "ensemble b=1",
        mode: "ensemble",
        batch: 1,
        binary: true,
        grpc: false,
    },
    Setting {
        name: "ensemble b=8",
        mode: "ensemble",
        batch: 8,
        binary: true,
        grpc: false,
    },
    Setting {
        name: "ensemble b=32",
        mode: "ensemble",
        batch: 32,
        binary: true,
        grpc: false,
    },
    Setting {
        name: "ensemble b=32 JSON",
        mode: "ensemble",
        batch: 32,
        binary: false,
        grpc: false,
    },
    Setting {
        name: "randomized b=1",
        mode: "randomized",
        batch: 1,
        binary: true,
        grpc: false,
    },
    Setting {
        name: "randomized b=8",
        mode: "randomized",
        batch: 8,
        binary: true,
        grpc: false,
    },
    Setting {
        name: "randomized b=32",
        mode: "randomized",
        batch: 32,
        binary: true,
        grpc: false,
    },
    // Per-sample modes write JSON numbers at full width, so that an answer's length does not
    // tell its point: this setting shows what that costs against `ensemble b=32 JSON`.
    Setting {
        name: "randomized b=32 JSON",
        mode: "randomized",
        batch: 32,
        binary: false,
        grpc: false,
    },
    // The same over gRPC, beside their HTTP settings.
    Setting {
        name: "ensemble b=1 gRPC",
        mode: "ensemble",
        batch: 1,
        binary: true,
        grpc: true,
    },
    Setting {
        name: "ensemble b=32 gRPC",
        mode: "ensemble",
        batch: 32,
        binary: true,
        grpc: true,
    },
    Setting {
        name: "randomized b=32 gRPC",
        mode: "randomized",
        batch: 32,
        binary: true,
        grpc: true,
    },
];

/// A gRPC inference request with raw contents.
fn grpc_request(x: &ArrayD<f32>, mode: &str) -> proto::ModelInferRequest {
    use proto::infer_parameter::ParameterChoice;
    let mut parameters = std::collections::HashMap::new();
    parameters.insert(
        "mode".to_string(),
        proto::InferParameter {
            parameter_choice: Some(ParameterChoice::StringParam(mode.into())),
        },
    );
    proto::ModelInferRequest {
        model_name: "cnn".into(),
        parameters,
        inputs: vec![proto::model_infer_request::InferInputTensor {
            name: "input".into(),
            datatype: "FP32".into(),
            shape: x.shape().iter().map(|&d| d as i64).collect(),
            ..Default::default()
        }],
        raw_input_contents: vec![x.iter().flat_map(|v| v.to_le_bytes()).collect()],
        ..Default::default()
    }
}

fn env_number(name: &str) -> Option<f64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn seconds() -> Duration {
    let s = std::env::var("MODECONN_BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(5.0);
    Duration::from_secs_f64(s)
}

/// The body and headers of one request.
fn request(x: &ArrayD<f32>, mode: &str, binary: bool) -> (Vec<u8>, Option<usize>) {
    if binary {
        let bytes: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
        let head = json!({
            "inputs": [{"name": "input", "shape": x.shape(), "datatype": "FP32",
                        "parameters": {"binary_data_size": bytes.len()}}],
            "parameters": {"mode": mode, "binary_data_output": true},
        });
        let mut body = serde_json::to_vec(&head).expect("json");
        let len = body.len();
        body.extend_from_slice(&bytes);
        (body, Some(len))
    } else {
        let body = json!({
            "inputs": [{"name": "input", "shape": x.shape(), "datatype": "FP32",
                        "data": x.iter().copied().collect::<Vec<f32>>()}],
            "parameters": {"mode": mode},
        });
        (serde_json::to_vec(&body).expect("json"), None)
    }
}

struct Measured {
    requests: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Measured {
    /// Several measurements as one.
    fn pool(all: Vec<Measured>) -> Measured {
        Measured {
            requests: all.iter().map(|m| m.requests).sum(),
            elapsed: all.iter().map(|m| m.elapsed).sum(),
            latencies: all.into_iter().flat_map(|m| m.latencies).collect(),
        }
    }

    fn per_second(&self, batch: usize) -> f64 {
        (self.requests * batch) as f64 / self.elapsed.as_secs_f64()
    }
    fn quantile(&self, q: f64) -> f64 {
        let mut l = self.latencies.clone();
        l.sort();
        let i = ((l.len() as f64 - 1.0) * q).round() as usize;
        l.get(i).map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
    }
}

/// Runs `work` from `CLIENTS` threads for `time`, timing each call.
fn drive(time: Duration, work: impl Fn() + Sync) -> Measured {
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let latencies: Vec<Vec<Duration>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|_| {
                s.spawn(|| {
                    let mut l = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let t = Instant::now();
                        work();
                        l.push(t.elapsed());
                    }
                    l
                })
            })
            .collect();
        std::thread::sleep(time);
        stop.store(true, Ordering::Relaxed);
        handles
            .into_iter()
            .map(|h| h.join().expect("client"))
            .collect()
    });
    let elapsed = started.elapsed();
    let latencies: Vec<Duration> = latencies.into_iter().flatten().collect();
    Measured {
        requests: latencies.len(),
        elapsed,
        latencies,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a test run (`cargo test --benches`) passes nothing and
    // gets one short pass so the bench is kept compiling and working.
    let quick = !std::env::args().any(|a| a == "--bench");
    let time = if quick {
        Duration::from_millis(200)
    } else {
        seconds()
    };
    // The first runtime of the process fixes the operator thread pool for both paths: the
    // server's setting (idle threads do not spin), unless MODECONN_BENCH_SPIN=1.
    let spin = std::env::var("MODECONN_BENCH_SPIN").is_ok_and(|v| v == "1");
    modeconn_runtime::Runtime::new(
        modeconn_runtime::RuntimeOptions::default()
            .with_device(modeconn_runtime::Device::Cpu)
            .with_busy_wait(spin),
    )
    .expect("ONNX Runtime (source the modeconn.env written by scripts/setup.sh)");
    let fx = Fixture::get();
    let mut options = Options::new(vec![("cnn".into(), fx.curve.clone())]);
    options.device = modeconn_runtime::Device::Cpu;
    options.config = Config::parse("", ".".as_ref()).expect("config");
    if let Some(w) = env_number("MODECONN_BENCH_WORKERS") {
        options.workers = w as usize;
    }
    if let Some(d) = env_number("MODECONN_BENCH_DELAY_MS") {
        options.max_delay = Duration::from_secs_f64(d / 1e3);
    }
    let only = std::env::var("MODECONN_BENCH_ONLY").unwrap_or_default();
    let server = Server::load(&options).expect("server");
    let rt = tokio::runtime::Runtime::new().expect("tokio");
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let grpc_listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let grpc_port = grpc_listener.local_addr().expect("addr").port();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let serving =
        rt.spawn(
            Arc::clone(&server).serve_with_grpc(listener, Some(grpc_listener), async {
                let _ = stop_rx.await;
            }),
        );
    // The gRPC clients get a runtime of their own, as the HTTP clients are threads of their own:
    // sharing the server's would make clients and server take turns on its worker threads.
    let client_rt = tokio::runtime::Runtime::new().expect("tokio");
    let channel = client_rt
        .block_on(
            tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{grpc_port}"))
                .expect("endpoint")
                .connect(),
        )
        .expect("gRPC connection");
    let grpc = proto::grpc_inference_service_client::GrpcInferenceServiceClient::new(channel)
        .max_decoding_message_size(64 << 20);
    let url = format!("http://127.0.0.1:{port}/v2/models/cnn/infer");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();

    let ensemble = Ensemble::open(
        &fx.runtime,
        &fx.curve,
        EnsembleOptions {
            max_sessions: CLIENTS,
            ..EnsembleOptions::default()
        },
    )
    .expect("ensemble");

    println!(
        "{CLIENTS} concurrent clients, {:.1} s per setting, spinning {spin}, server --max-batch {} --max-delay-ms {} --workers {}",
        time.as_secs_f64(),
        options.max_batch,
        options.max_delay.as_millis(),
        options.workers
    );
    println!(
        "{:<22} {:>10} {:>11} {:>9} {:>9} {:>14} {:>7}",
        "setting", "req/s", "samples/s", "p50 ms", "p99 ms", "in-process s/s", "ratio*"
    );
    for s in SETTINGS.iter().filter(|s| s.name.contains(only.as_str())) {
        let x = input(s.batch);
        let (body, header_len) = request(&x, s.mode, s.binary);
        let grpc_body = grpc_request(&x, s.mode);
        let call_grpc = || {
            let mut client = grpc.clone();
            let r = client_rt
                .handle()
                .block_on(client.model_infer(grpc_body.clone()))
                .expect("gRPC inference");
            assert!(!r.get_ref().raw_output_contents.is_empty(), "no outputs");
        };
        let call_http = || {
            let mut req = agent.post(&url);
            if let Some(len) = header_len {
                req = req.header("Inference-Header-Content-Length", len.to_string());
            }
            let mut r = req.send(&body[..]).expect("request");
            let bytes = r.body_mut().read_to_vec().expect("body");
            assert_eq!(
                r.status().as_u16(),
                200,
                "{}",
                String::from_utf8_lossy(&bytes)
            );
            if !s.binary {
                let v: Value = serde_json::from_slice(&bytes).expect("json");
                assert!(v["outputs"][0]["data"].is_array());
            }
        };
        let call = || {
            if s.grpc {
                call_grpc();
            } else {
                call_http();
            }
        };
        let sampling = match s.mode {
            "ensemble" => Sampling::Grid(5),
            _ => Sampling::Randomized {
                grid: 21,
                seed: None,
            },
        };
        let local = || {
            ensemble
                .predict(x.view(), &sampling, false)
                .expect("predict");
        };
        // Warm up both paths (static sessions, connections), then alternate served and
        // in-process rounds so that both see the same machine; the ratio is the median of the
        // rounds' ratios.
        drive(time / 4, call);
        drive(time / 4, local);
        let mut served = Vec::new();
        let mut baseline = Vec::new();
        for _ in 0..ROUNDS {
            served.push(drive(time / ROUNDS as u32, call));
            baseline.push(drive(time / ROUNDS as u32, local));
        }
        let mut ratios: Vec<f64> = served
            .iter()
            .zip(&baseline)
            .map(|(a, b)| a.per_second(s.batch) / b.per_second(s.batch))
            .collect();
        ratios.sort_by(f64::total_cmp);
        let served = Measured::pool(served);
        let baseline = Measured::pool(baseline);
        println!(
            "{:<22} {:>10.1} {:>11.1} {:>9.2} {:>9.2} {:>14.1} {:>7.3}",
            s.name,
            served.requests as f64 / served.elapsed.as_secs_f64(),
            served.per_second(s.batch),
            served.quantile(0.5),
            served.quantile(0.99),
            baseline.per_second(s.batch),
            ratios[ratios.len() / 2]
        );
    }
    println!("* median over {ROUNDS} alternating rounds of served / in-process samples per second");
    let _ = stop_tx.send(());
    rt.block_on(serving).expect("join").expect("serve");
}
