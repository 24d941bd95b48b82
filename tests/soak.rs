//! A bounded soak of `modeconn serve` on loopback, small enough for two cores: good, bad, slow
//! and huge requests from a few threads for a fixed time, the server's resident memory sampled
//! meanwhile (under a bound, and back near its start afterwards), the server's counters
//! reconciled with the clients' own (nothing lost, nothing answered twice), then the same
//! traffic again with a SIGTERM in the middle of it.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::serve::{
    Ended, KEY_A, Raw, RawReply, get, inputs, json_request, logged_inferences, open_connections,
    raw_post, rss_of, serve_curve,
};

/// How the requests of each kind of client ended.
type Counts = BTreeMap<(&'static str, Ended), usize>;

const INFER: &str = "/v2/models/m/infer";

/// A request with a binary input (`Inference-Header-Content-Length`).
fn binary_post(samples: usize, seed: u64, params: serde_json::Value) -> Vec<u8> {
    let x = inputs(samples, seed);
    let bytes: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
    let head = serde_json::to_vec(&json!({
        "inputs": [{"name": "input", "shape": x.shape(), "datatype": "FP32",
                    "parameters": {"binary_data_size": bytes.len()}}],
        "parameters": params,
    }))
    .unwrap();
    let mut r = format!(
        "POST {INFER} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\n\
         Inference-Header-Content-Length: {}\r\nContent-Length: {}\r\n\r\n",
        head.len(),
        head.len() + bytes.len()
    )
    .into_bytes();
    r.extend(head);
    r.extend(bytes);
    r
}

/// The requests each kind of client sends in turn.
fn requests(kind: &str) -> Vec<Vec<u8>> {
    let keep = kind != "fresh";
    let post = |params: serde_json::Value, samples: usize, seed: u64, outputs: &[&str]| {
        raw_post(
            INFER,
            &json_request(&inputs(samples, seed), params, outputs),
            keep,
        )
    };
    match kind {
        "good" | "fresh" => vec![
            post(json!({}), 2, 1, &["probabilities", "class"]),
            post(json!({"mode": "randomized"}), 3, 2, &[]),
            binary_post(4, 3, json!({"mode": "keyed", "binary_data_output": true})),
            post(json!({"mode": "at", "t": [0.2, 0.7]}), 1, 4, &["entropy"]),
        ],
        "bad" => vec![
            raw_post(INFER, b"{\"inputs\": [", true),
            raw_post(
                INFER,
                br#"{"inputs": [{"name": "input", "shape": [1, 3, 8, 7], "datatype": "FP32", "data": [0]}]}"#,
                true,
            ),
            raw_post(
                "/v2/models/nope/infer",
                &json_request(&inputs(1, 5), json!({}), &[]),
                true,
            ),
            post(json!({}), 1, 6, &["logits"]),
        ],
        "huge" => vec![
            // Over the body limit, refused by its length before it is sent.
            format!(
                "POST {INFER} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n",
                3 << 20
            )
            .into_bytes(),
            // Over the work limit: 64 samples at 1024 points.
            post(json!({"mode": "at", "t": many(1024)}), 64, 7, &["class"]),
            // Over the answer limit: every member's probabilities of 40 samples at 1024 points.
            post(json!({"mode": "at", "t": many(1024)}), 40, 8, &["per_member"]),
            // Large but allowed: about 1.8 MB of JSON.
            post(json!({}), 500, 9, &["class"]),
        ],
        _ => vec![],
    }
}

fn many(n: usize) -> Vec<f64> {
    (0..n).map(|i| i as f64 / (n - 1) as f64).collect()
}

/// The statuses a kind of client may get; anything else fails the soak.
fn expected(kind: &str, status: u16) -> bool {
    match kind {
        "good" | "fresh" => matches!(status, 200 | 503),
        "bad" => matches!(status, 400 | 404 | 503),
        "huge" => matches!(status, 200 | 413 | 503),
        "slow" => matches!(status, 408 | 503),
        _ => false,
    }
}

/// One client of `kind` until `stop` (or, with `until_refused`, until the server refuses it).
fn client(
    kind: &'static str,
    port: u16,
    stop: &AtomicBool,
    until_refused: bool,
    refusals: &mut usize,
) -> Counts {
    let mut counts = Counts::new();
    let list = requests(kind);
    let mut conn: Option<Raw> = None;
    let mut i = 0;
    while !stop.load(Ordering::SeqCst) {
        let ended = if kind == "slow" {
            slow_body(port)
        } else {
            if conn.is_none() {
                match Raw::connect(port) {
                    Ok(c) => conn = Some(c),
                    Err(_) => {
                        *counts.entry((kind, Ended::Refused)).or_default() += 1;
                        if until_refused {
                            break;
                        }
                        continue;
                    }
                }
            }
            let raw = conn.as_mut().unwrap();
            let request = &list[i % list.len()];
            i += 1;
            match raw.exchange(request) {
                Ok(reply) => {
                    if reply.closes() {
                        conn = None;
                    }
                    if refused_by_the_limit(&reply) {
                        *refusals += 1;
                    }
                    Ended::Answered(reply.status)
                }
                Err(e) => {
                    conn = None;
                    e
                }
            }
        };
        if let Ended::Answered(status) = ended {
            assert!(expected(kind, status), "{kind}: status {status}");
        }
        *counts.entry((kind, ended)).or_default() += 1;
        if until_refused && matches!(ended, Ended::Refused | Ended::Answered(503)) {
            break;
        }
    }
    counts
}

/// A `503` of the connection limit (no request was read, nothing is counted as one).
fn refused_by_the_limit(reply: &RawReply) -> bool {
    reply.status == 503 && String::from_utf8_lossy(&reply.body).contains("too many connections")
}

/// A body announced whole and sent in part: the request times out (`408`).
fn slow_body(port: u16) -> Ended {
    let Ok(mut raw) = Raw::connect(port) else {
        return Ended::Refused;
    };
    let head = format!(
        "POST {INFER} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n{{\"inputs\": ["
    );
    if raw.stream.write_all(head.as_bytes()).is_err() {
        return Ended::SendFailed;
    }
    match raw.read_reply() {
        Some(r) => Ended::Answered(r.status),
        None => Ended::Unanswered,
    }
}

/// Connections that send part of their headers and then nothing: how many the server closed.
fn slowloris(port: u16, stop: &AtomicBool) -> (usize, usize) {
    let (mut closed, mut opened) = (0, 0);
    while !stop.load(Ordering::SeqCst) {
        for s in open_connections(port, 4, b"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\n") {
            opened += 1;
            let mut raw = Raw::from_stream(s);
            if raw.closed_within(Duration::from_secs(3)) {
                closed += 1;
            }
        }
    }
    (closed, opened)
}

/// The sum of the series of `metric` whose labels contain `label` (all of them for "").
fn sum(metrics: &str, metric: &str, label: &str) -> usize {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as usize
}

/// Runs the clients of `kinds` (and slowloris connections) until `stop`, or each until the
/// server refuses it.
fn traffic(
    port: u16,
    kinds: &[&'static str],
    stop: &AtomicBool,
    until_refused: bool,
    during: impl FnOnce(),
) -> (Counts, usize, (usize, usize)) {
    std::thread::scope(|scope| {
        let clients: Vec<_> = kinds
            .iter()
            .map(|&kind| {
                scope.spawn(move || {
                    let mut refusals = 0;
                    let counts = client(kind, port, stop, until_refused, &mut refusals);
                    (counts, refusals)
                })
            })
            .collect();
        let loris = (!until_refused).then(|| scope.spawn(|| slowloris(port, stop)));
        during();
        let mut all = Counts::new();
        let mut refusals = 0;
        for c in clients {
            let (counts, r) = c.join().unwrap();
            refusals += r;
            for (k, v) in counts {
                *all.entry(k).or_default() += v;
            }
        }
        let loris = loris.map_or((0, 0), |l| l.join().unwrap());
        (all, refusals, loris)
    })
}

fn answered(counts: &Counts, status: Option<u16>) -> usize {
    counts
        .iter()
        .filter(|((_, e), _)| match (e, status) {
            (Ended::Answered(s), Some(want)) => *s == want,
            (Ended::Answered(_), None) => true,
            _ => false,
        })
        .map(|(_, n)| n)
        .sum()
}

fn unanswered(counts: &Counts) -> usize {
    counts
        .iter()
        .filter(|((_, e), _)| *e == Ended::Unanswered)
        .map(|(_, n)| n)
        .sum()
}

#[test]
fn a_soak_of_mixed_traffic_keeps_memory_bounded_counts_every_request_and_drains_on_sigterm() {
    let (_dir, mut server) = serve_curve(
        &format!("[server]\nkeyed_secret = \"{KEY_A}\"\n"),
        &[
            &"--max-body-mb",
            &"2",
            &"--receive-mb",
            &"8",
            &"--timeout-ms",
            &"2000",
            &"--header-timeout-ms",
            &"1000",
            &"--keep-alive-ms",
            &"1000",
            &"--max-connections",
            &"64",
            &"--max-work",
            &"50000",
            &"--max-response-mb",
            &"2",
            &"--queue",
            &"64",
        ],
    );
    let port = server.port;
    let pid = server.child.id();
    // Two seconds of the same traffic first: ONNX Runtime's sessions grow their working memory
    // to the largest batches they have met and keep it (freeing nothing to malloc_trim, and
    // levelling off at about 25 MiB over 25 s of this traffic), so memory is measured from
    // there, and the bound afterwards leaves room for the sessions that meet a larger batch
    // only later. The largest allowed request first, on both workers.
    let kinds = ["good", "good", "good", "fresh", "bad", "huge", "slow"];
    let largest = requests("huge").pop().unwrap();
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                let reply = Raw::connect(port).unwrap().exchange(&largest).unwrap();
                assert_eq!(reply.status, 200);
            });
        }
    });
    let first = 2;
    let warming = AtomicBool::new(false);
    let (warm_counts, warm_refusals, _) = traffic(port, &kinds, &warming, false, || {
        std::thread::sleep(Duration::from_secs(2));
        warming.store(true, Ordering::SeqCst);
    });
    assert_eq!(unanswered(&warm_counts), 0, "{warm_counts:?}");
    std::thread::sleep(Duration::from_millis(1500));
    let counted = |metrics: &str| {
        let failures: BTreeMap<u16, usize> = [400, 404, 408, 413, 503]
            .into_iter()
            .map(|code| {
                let label = format!("code=\"{code}\"");
                (
                    code,
                    sum(metrics, "modeconn_request_failures_total", &label),
                )
            })
            .collect();
        (sum(metrics, "modeconn_requests_total", ""), failures)
    };
    let (ok_before, failed_before) = counted(&get(&server.url("/metrics")).text());
    let start = rss_of(pid);

    // Phase 1: eight seconds of mixed traffic, memory sampled every 50 ms.
    let stop = AtomicBool::new(false);
    let mut peak = start;
    let (counts, refusals, (loris_closed, loris_opened)) =
        traffic(port, &kinds, &stop, false, || {
            let until = Instant::now() + Duration::from_secs(8);
            while Instant::now() < until {
                peak = peak.max(rss_of(pid));
                std::thread::sleep(Duration::from_millis(50));
            }
            stop.store(true, Ordering::SeqCst);
        });
    std::thread::sleep(Duration::from_millis(1500));
    let end = rss_of(pid);
    let (ok_after, failed_after) = counted(&get(&server.url("/metrics")).text());
    let served_ok = ok_after - ok_before;
    let failures: BTreeMap<u16, usize> = failed_after
        .iter()
        .map(|(code, n)| (*code, n - failed_before[code]))
        .collect();
    let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
    for ((kind, _), n) in &counts {
        *by_kind.entry(kind).or_default() += n;
    }
    eprintln!(
        "soak, 8 s: requests by kind {by_kind:?}; outcomes {counts:?}; {refusals} refused at the \
         connection limit; slowloris connections closed {loris_closed} of {loris_opened}; server \
         counted {served_ok} answers and failures {failures:?}; RSS {} MiB at the start, {} MiB \
         at the peak, {} MiB after",
        start / 1024,
        peak / 1024,
        end / 1024
    );
    // Every request was answered once, and the server counted exactly what the clients saw
    // (less the warm-up's answers, and the refusals of the connection limit, which no handler
    // saw).
    assert_eq!(unanswered(&counts), 0, "{counts:?}");
    assert_eq!(served_ok, answered(&counts, Some(200)));
    for (code, n) in &failures {
        let seen = answered(&counts, Some(*code)) - if *code == 503 { refusals } else { 0 };
        assert_eq!(*n, seen, "status {code}: server {n}, clients {seen}");
    }
    assert!(answered(&counts, Some(200)) > 100, "{counts:?}");
    for code in [400, 404, 408, 413] {
        assert!(failures[&code] > 0, "no {code} in {counts:?}");
    }
    assert!(loris_opened > 0 && loris_closed == loris_opened);
    assert!(peak < start + 96 * 1024, "peak {peak} KiB from {start} KiB");
    assert!(
        end < start + 40 * 1024,
        "{end} KiB after, {start} KiB at the start"
    );

    // Phase 2: the same traffic, and SIGTERM after 1.5 s; each client goes on until refused.
    let stop = AtomicBool::new(false);
    let (late, late_refusals, _) = traffic(port, &kinds[..5], &stop, true, || {
        std::thread::sleep(Duration::from_millis(1500));
        let status = server.terminate();
        assert!(status.success(), "exit status {status:?}");
    });
    let logged = logged_inferences(&server.log());
    eprintln!(
        "soak, SIGTERM under traffic: outcomes {late:?}; the server logged {logged} answers in all"
    );
    assert_eq!(unanswered(&late), 0, "{late:?}");
    assert_eq!(
        logged,
        first + answered(&warm_counts, None) - warm_refusals + answered(&counts, None) - refusals
            + answered(&late, None)
            - late_refusals,
        "answers logged by the server and seen by the clients"
    );
}
