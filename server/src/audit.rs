//! The audit log: one JSON line per answered request with the request id, the model's
//! digest, the mode, a keyed fingerprint of each input sample, and the points used sealed
//! (encrypted and authenticated) with a server key, never the input itself.
//!
//! Both keys are derived from the configured `audit_key`: the fingerprint key with BLAKE3's
//! key derivation, the sealing key likewise for ChaCha20-Poly1305. [`unseal`] opens a sealed
//! point list again, given the same key.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use modeconn_runtime::Member;
use ndarray::ArrayD;
use serde_json::json;

use crate::{Error, Result};
use modeconn_runtime::fs::hex;

const FINGERPRINT_CONTEXT: &str = "modeconn audit 2026 input fingerprint";
const SEAL_CONTEXT: &str = "modeconn audit 2026 point seal";

/// What an audit line records.
#[derive(Debug)]
pub struct Entry<'a> {
    /// The server's id of the request.
    pub request_id: &'a str,
    /// The model's name.
    pub model: &'a str,
    /// `sha256:` digest of the bundle.
    pub digest: &'a str,
    /// Mode name.
    pub mode: &'a str,
    /// Keyed fingerprints of the input's samples ([`AuditLog::fingerprints`]).
    pub fingerprints: &'a [String],
    /// The points used.
    pub members: &'a [Member],
}

/// An open audit log.
pub struct AuditLog {
    file: Mutex<File>,
    fingerprint_key: [u8; 32],
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").finish_non_exhaustive()
    }
}

fn cipher(key: &[u8; 32]) -> ChaCha20Poly1305 {
    let seal_key = blake3::derive_key(SEAL_CONTEXT, key);
    ChaCha20Poly1305::new(Key::from_slice(&seal_key))
}

impl AuditLog {
    /// Opens (appends to) the log at `path`.
    pub fn open(path: &Path, key: &[u8; 32]) -> Result<AuditLog> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| Error::Io {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(AuditLog {
            file: Mutex::new(file),
            fingerprint_key: blake3::derive_key(FINGERPRINT_CONTEXT, key),
            cipher: cipher(key),
        })
    }

    /// Keyed fingerprints (16 bytes, hex) of each sample of a batch.
    pub fn fingerprints(&self, input: &ArrayD<f32>) -> Vec<String> {
        input
            .outer_iter()
            .map(|sample| {
                let mut h = blake3::Hasher::new_keyed(&self.fingerprint_key);
                for v in sample.iter() {
                    h.update(&v.to_le_bytes());
                }
                hex(&h.finalize().as_bytes()[..16])
            })
            .collect()
    }

    /// Writes one line; the line is written with one `write` call so lines from concurrent
    /// requests never interleave.
    pub fn record(&self, entry: &Entry<'_>) -> std::io::Result<()> {
        let points: Vec<serde_json::Value> = entry
            .members
            .iter()
            .map(|m| match m {
                Member::T(t) => json!({ "t": t }),
                Member::Index(i) => json!({ "member": i }),
            })
            .collect();
        let plain = serde_json::to_vec(&points).unwrap_or_default();
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).map_err(std::io::Error::other)?;
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &plain,
                    aad: entry.request_id.as_bytes(),
                },
            )
            .map_err(|_| std::io::Error::other("sealing the points failed"))?;
        let time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let line = json!({
            "time": time,
            "request_id": entry.request_id,
            "model": entry.model,
            "model_digest": entry.digest,
            "mode": entry.mode,
            "samples": entry.fingerprints.len(),
            "fingerprints": entry.fingerprints,
            "sealed_points": format!("{}{}", hex(&nonce), hex(&sealed)),
        });
        let mut bytes = serde_json::to_vec(&line).unwrap_or_default();
        bytes.push(b'\n');
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        file.write_all(&bytes)
    }
}

/// Opens the `sealed_points` of an audit line: the points as JSON (`[{"t": ...}, ...]` or
/// `[{"member": ...}, ...]`). Fails if the key, the request id or the text is not the one
/// sealed.
pub fn unseal(key: &[u8; 32], request_id: &str, sealed: &str) -> Option<serde_json::Value> {
    let bytes: Vec<u8> = (0..sealed.len())
        .step_by(2)
        .map(|i| {
            sealed
                .get(i..i + 2)
                .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect::<Option<_>>()?;
    if bytes.len() < 12 {
        return None;
    }
    let (nonce, body) = bytes.split_at(12);
    let plain = cipher(key)
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: body,
                aad: request_id.as_bytes(),
            },
        )
        .ok()?;
    serde_json::from_slice(&plain).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_points_open_with_the_key_only() {
        let dir = std::env::temp_dir().join(format!("modeconn-audit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.jsonl");
        let key = [7u8; 32];
        let log = AuditLog::open(&path, &key).unwrap();
        let input = ArrayD::from_shape_vec(vec![2, 3], vec![1.0, 2.0, 3.0, 1.0, 2.0, 3.0]).unwrap();
        log.record(&Entry {
            request_id: "r1",
            model: "m",
            digest: "sha256:00",
            mode: "keyed",
            fingerprints: &log.fingerprints(&input),
            members: &[Member::T(0.25), Member::T(0.75)],
        })
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let line: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        let fp = line["fingerprints"].as_array().unwrap();
        assert_eq!(fp[0], fp[1], "equal samples, equal fingerprints");
        assert!(!text.contains("0.25"), "the point is not in clear: {text}");
        let sealed = line["sealed_points"].as_str().unwrap();
        let points = unseal(&key, "r1", sealed).unwrap();
        assert_eq!(points, json!([{"t": 0.25}, {"t": 0.75}]));
        assert!(unseal(&[8u8; 32], "r1", sealed).is_none());
        assert!(unseal(&key, "r2", sealed).is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
