//! Target `server`: the server's request decoding, as `POST /v2/models/{name}/infer` does it:
//! the body split at `Inference-Header-Content-Length` (`protocol::split_body`), the JSON part
//! parsed (`protocol::parse_request`), the request checked against the model and its policy
//! (`ServedModel::decode`, JSON or binary input data) and bounded (`check_work`,
//! `check_response`); then, for small queries, the ensemble's prediction and the response
//! (`ServedModel::respond`, `InferResponse::encode`).
//!
//! An input is one flags byte, two bytes of header length when the flags say so, then the
//! body. Flags: bit 0 serves the snapshot set (else the curve), bit 1 the restricted policy
//! (modes `ensemble` and `at`, point never returned, no keyed secret; else every mode, points
//! returned), bit 2 sends `Inference-Header-Content-Length` with the next two bytes (u16 LE).
//!
//! Properties: decoding reserves no more bytes for the values than the body justifies; a
//! request that decodes has an input of the model's shape, finite values, and outputs its mode
//! allows; it predicts or fails with an error, and its response encodes into a JSON head (and
//! binary part) with one output per output asked for, within the size `check_response` bounds
//! it by.

use std::sync::OnceLock;

use http::{HeaderMap, HeaderValue};
use modeconn_runtime::bundle::Kind;
use modeconn_runtime::{Bundle, Ensemble, EnsembleOptions};
use modeconn_server::model::{Answer, ServedModel};
use modeconn_server::protocol::{self, HEADER_LENGTH};
use modeconn_server::{Mode, Policy};
use serde_json::Value;

use crate::models::{CLASSES, FEATURES, cnn_shaped_bundle};

/// Flag: serve the snapshot set.
pub const SNAPSHOTS: u8 = 1;
/// Flag: the restricted policy.
pub const RESTRICTED: u8 = 2;
/// Flag: a header length follows.
pub const HEADER: u8 = 4;

/// The most members × samples a decoded query is run with.
const MAX_RUN: usize = 256;

/// The keyed-mode secret of the unrestricted models.
pub const SECRET: [u8; 32] = [0x5e; 32];

/// The served models, by flags (bits 0 and 1).
fn models() -> &'static [ServedModel; 4] {
    static MODELS: OnceLock<[ServedModel; 4]> = OnceLock::new();
    MODELS.get_or_init(|| std::array::from_fn(|flags| served(flags as u8)))
}

fn served(flags: u8) -> ServedModel {
    let kind = if flags & SNAPSHOTS != 0 {
        Kind::Snapshots
    } else {
        Kind::Curve
    };
    let bytes = cnn_shaped_bundle(kind, 3, false).expect("the served bundle is written");
    let bundle = Bundle::from_bytes(bytes).expect("the served bundle loads");
    let options = EnsembleOptions {
        static_budget: 1 << 20,
        max_sessions: 1,
    };
    let ensemble = Ensemble::new(crate::runtime(), bundle, options).expect("the ensemble loads");
    let restricted = flags & RESTRICTED != 0;
    let policy = Policy {
        modes: if restricted {
            vec![Mode::Ensemble, Mode::At]
        } else {
            Mode::ALL.to_vec()
        },
        default_mode: if restricted { Mode::At } else { Mode::Ensemble },
        return_point: !restricted,
        grid: 5,
        randomized_grid: 11,
        keyed_quantum: (!restricted).then_some(1.0 / 1024.0),
    };
    let secret = (!restricted).then_some(SECRET);
    ServedModel::new(
        format!("fuzz-{flags}"),
        "fuzz.safetensors".into(),
        ensemble,
        "sha256:00".into(),
        policy,
        secret,
    )
}

/// An input of this target from its parts (for the seeds and regression tests).
pub fn input(flags: u8, header_length: Option<u16>, body: &[u8]) -> Vec<u8> {
    let mut out = vec![flags | if header_length.is_some() { HEADER } else { 0 }];
    if let Some(n) = header_length {
        out.extend_from_slice(&n.to_le_bytes());
    }
    out.extend_from_slice(body);
    out
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut headers = HeaderMap::new();
    let body = if flags & HEADER != 0 {
        let Some((len, body)) = rest.split_first_chunk::<2>() else {
            return;
        };
        let len = u16::from_le_bytes(*len).to_string();
        headers.insert(HEADER_LENGTH, HeaderValue::from_str(&len).expect("digits"));
        body
    } else {
        rest
    };
    let model = &models()[usize::from(flags & (SNAPSHOTS | RESTRICTED))];
    let Ok((json, binary)) = protocol::split_body(&headers, body) else {
        return;
    };
    let Ok(request) = protocol::parse_request(json) else {
        return;
    };
    // What decoding reserves for the values must be justified by the body: a JSON value takes
    // two bytes of text at least, a binary one four.
    let mut reserved = 0;
    let decoded = model.decode(request, binary, |bytes| {
        reserved = bytes;
        Ok(())
    });
    assert!(
        reserved <= 2 * body.len() + 4,
        "{reserved} bytes reserved for a body of {}",
        body.len()
    );
    let Ok((query, input)) = decoded else {
        return;
    };

    let meta = model.ensemble.bundle().metadata();
    assert_eq!(input.ndim(), meta.input.shape.len());
    assert_eq!(input.shape()[1..], [3, 8, 8]);
    assert!(input.len() / input.shape()[0] == FEATURES);
    assert!(input.iter().all(|v| v.is_finite()));
    assert!(!query.outputs.is_empty());
    assert!(model.policy.modes.contains(&query.mode));

    let batch = input.shape()[0];
    // As the server does before queueing: the work and the response are bounded.
    if model.check_work(&query, batch, MAX_RUN).is_err() {
        return;
    }
    if model.check_response(&query, batch, usize::MAX).is_err() {
        return;
    }
    let Ok(p) = model
        .ensemble
        .predict(input.view(), &query.sampling, query.wants_per_member())
    else {
        return;
    };
    assert_eq!(p.probabilities.shape(), &[batch, CLASSES]);
    let answer = Answer {
        probabilities: p.probabilities,
        entropy: p.entropy,
        disagreement: p.disagreement,
        per_member: p.per_member,
        members: p.members,
    };
    let response = model.respond(&query, answer, "fuzz-request");
    assert_eq!(response.outputs.len(), query.outputs.len());
    let (bytes, json_len) = response.encode();
    assert!(
        model
            .check_response(&query, batch, bytes.len() - 1)
            .is_err(),
        "a response of {} bytes passed a bound below its size",
        bytes.len()
    );
    let head: Value = serde_json::from_slice(&bytes[..json_len.unwrap_or(bytes.len())])
        .expect("the response's JSON part is JSON");
    let outputs = head["outputs"].as_array().expect("outputs");
    assert_eq!(outputs.len(), query.outputs.len());
    if !query.mode.is_per_sample() || model.policy.return_point {
        return;
    }
    assert!(
        outputs.iter().all(|o| o["name"] != "point"),
        "a per-sample point was returned against the policy"
    );
}
