//! Target `audit`: audit lines and `unseal`. The input is read as an audit log, line by line,
//! as `modeconn unseal` reads one (`src/cmd/unseal.rs`: JSON, `request_id`, `sealed_points`,
//! then `audit::unseal` with the key); and it names a request (its first line) and points (the
//! rest, four bytes a point) that are sealed by a real `AuditLog` and opened again.
//!
//! Properties: a seal opens only with its key and request id, to the points sealed; a seal
//! that opens is the canonical text of its bytes (hex digits only); nothing panics on any line.

use std::fs::File;
use std::io::{Read, Seek};
use std::sync::{Mutex, OnceLock};

use modeconn_runtime::Member;
use modeconn_server::audit::{self, AuditLog, Entry};
use modeconn_server::config::parse_hex32;
use serde_json::{Value, json};

/// The audit key of the seeds and of the log the target writes (the key of the audit unit
/// test, `server/src/audit.rs`).
pub const KEY: [u8; 32] = [7; 32];

/// The most points one input seals.
const MAX_POINTS: usize = 64;

struct Log {
    log: AuditLog,
    /// The same file, to empty it before each line and read the line back.
    file: File,
}

fn log() -> &'static Mutex<Log> {
    static LOG: OnceLock<Mutex<Log>> = OnceLock::new();
    LOG.get_or_init(|| {
        // In memory where there is a tmpfs: the log is emptied and rewritten for every input.
        let shm = std::path::Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let path = dir.join(format!("modeconn-fuzz-audit-{}.jsonl", std::process::id()));
        let log = AuditLog::open(&path, &KEY).expect("the audit log opens");
        let file = File::options()
            .read(true)
            .write(true)
            .open(&path)
            .expect("the audit log opens");
        // Open, the file needs no name: nothing is left behind when the process ends.
        let _ = std::fs::remove_file(&path);
        Mutex::new(Log { log, file })
    })
}

/// The points an input names after its first line.
pub fn points(rest: &[u8]) -> Vec<Member> {
    rest.chunks_exact(4)
        .take(MAX_POINTS)
        .map(|c| {
            let v = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            if v & 1 == 0 {
                Member::T(f64::from(v >> 1) / f64::from(u32::MAX >> 1))
            } else {
                Member::Index((v >> 1) as usize % 100_000)
            }
        })
        .collect()
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for line in text.lines() {
        unseal_line(line);
    }
    let (id, rest) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let id = String::from_utf8_lossy(id);
    seal_and_open(&id, &points(rest));
}

/// A line as `modeconn unseal` reads it.
fn unseal_line(line: &str) {
    let _ = parse_hex32(line.trim());
    if line.trim().is_empty() {
        return;
    }
    let Ok(entry) = serde_json::from_str::<Value>(line) else {
        return;
    };
    let id = entry["request_id"].as_str().unwrap_or_default();
    let Some(sealed) = entry["sealed_points"].as_str() else {
        return;
    };
    if audit::unseal(&KEY, id, sealed).is_some() {
        assert!(
            sealed.bytes().all(|b| b.is_ascii_hexdigit()),
            "a seal that is not hex text opened: {sealed:?}"
        );
    }
}

/// Seals `members` for request `id` in a real audit line and opens it again.
fn seal_and_open(id: &str, members: &[Member]) {
    let guard = log().lock().unwrap_or_else(|p| p.into_inner());
    guard.file.set_len(0).expect("the audit log empties");
    guard
        .log
        .record(&Entry {
            request_id: id,
            model: "m",
            digest: "sha256:00",
            mode: "keyed",
            fingerprints: &[],
            members,
        })
        .expect("the line is written");
    let mut line = String::new();
    let mut file = &guard.file;
    file.rewind()
        .and_then(|()| file.read_to_string(&mut line))
        .expect("the line reads back");
    drop(guard);
    let entry: Value = serde_json::from_str(line.trim_end()).expect("an audit line is JSON");
    assert_eq!(line.matches('\n').count(), 1, "one line: {line:?}");
    assert_eq!(entry["request_id"].as_str(), Some(id));
    let sealed = entry["sealed_points"].as_str().expect("sealed points");
    let expected: Vec<Value> = members
        .iter()
        .map(|m| match m {
            Member::T(t) => json!({ "t": t }),
            Member::Index(i) => json!({ "member": i }),
        })
        .collect();
    let opened = audit::unseal(&KEY, id, sealed).expect("the seal opens with its key and id");
    assert!(
        same_points(&opened, &Value::Array(expected.clone())),
        "the points opened are those sealed: {opened} for {expected:?}"
    );
    assert!(
        audit::unseal(&[8; 32], id, sealed).is_none(),
        "another key opened the seal"
    );
    let other = format!("{id}-other");
    assert!(
        audit::unseal(&KEY, &other, sealed).is_none(),
        "another request id opened the seal"
    );
}

/// Equal point lists, each t bit for bit.
fn same_points(opened: &Value, sealed: &Value) -> bool {
    let (Some(a), Some(b)) = (opened.as_array(), sealed.as_array()) else {
        return false;
    };
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(a, b)| match (a["t"].as_f64(), b["t"].as_f64()) {
                (Some(x), Some(y)) => x.to_bits() == y.to_bits(),
                _ => a == b,
            })
}
