//! The plugin's C ABI, called in-process through the functions' Rust paths (the same code the
//! `cdylib` exports): every failure comes back as an error report, progress arrives as JSON
//! events, and a job run through the ABI writes the same bundle as the Rust API.
//!
//! Needs libtorch at run time (`LD_LIBRARY_PATH` from the env file of `scripts/setup.sh`); the
//! training jobs use the embedded digits data.

use std::ffi::{CStr, CString, c_char, c_void};
use std::path::Path;

use modeconn_runtime::Bundle;
use modeconn_trainer::job::{ABI_VERSION, Job};
use modeconn_trainer::plugin::{
    modeconn_trainer_abi_version, modeconn_trainer_free_string, modeconn_trainer_run,
};
use serde_json::{Value, json};

/// Runs a job given as raw bytes (NUL added here) through the ABI; returns the report and the
/// events the callback received, as text.
fn run_bytes(job: Option<&[u8]>) -> (Value, Vec<String>) {
    let job = job.map(|b| CString::new(b).expect("the job has no NUL"));
    let ptr = job.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
    let mut events: Vec<String> = Vec::new();
    // SAFETY: `ptr` is NULL or a C string that outlives the call; `collect` matches the
    // callback's signature and `events` outlives the call.
    let report =
        unsafe { modeconn_trainer_run(ptr, Some(collect), (&raw mut events).cast::<c_void>()) };
    assert!(!report.is_null(), "the plugin returned NULL");
    // SAFETY: the plugin returns a NUL-terminated string, released right after.
    let text = unsafe { CStr::from_ptr(report) }
        .to_str()
        .expect("the report is UTF-8")
        .to_string();
    // SAFETY: returned by `modeconn_trainer_run`, released once.
    unsafe { modeconn_trainer_free_string(report) };
    let value: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("the report is not JSON ({e}): {text}"));
    assert!(
        value["ok"].is_boolean(),
        "the report has no boolean `ok`: {value}"
    );
    (value, events)
}

/// Runs a job given as JSON through the ABI.
fn run_json(job: &Value) -> (Value, Vec<String>) {
    run_bytes(Some(job.to_string().as_bytes()))
}

/// The progress callback of these tests: appends each event to the `Vec<String>` behind `user`.
extern "C" fn collect(event: *const c_char, user: *mut c_void) {
    assert!(!event.is_null() && !user.is_null());
    // SAFETY: `user` is the `Vec<String>` given by `run_bytes`; `event` is a C string valid
    // during the call.
    let events = unsafe { &mut *user.cast::<Vec<String>>() };
    let text = unsafe { CStr::from_ptr(event) };
    events.push(text.to_string_lossy().into_owned());
}

/// The error line of a failed report, checked to be one non-empty line.
#[track_caller]
fn error_of(report: &Value) -> String {
    assert_eq!(report["ok"], false, "expected an error report: {report}");
    let error = report["error"]
        .as_str()
        .unwrap_or_else(|| panic!("the error report has no message: {report}"));
    assert!(
        !error.trim().is_empty() && !error.contains('\n'),
        "the error is not one line: {error:?}"
    );
    error.to_string()
}

/// A small, fast training job on the embedded digits data, writing to `out`.
fn small_train_job(out: &Path) -> Value {
    json!({
        "command": "train",
        "arch": "mlp",
        "hidden": [16],
        "data": "digits",
        "epochs": 1,
        "batch_size": 64,
        "limit": 256,
        "seed": 7,
        "device": "cpu",
        "out": out,
    })
}

#[test]
fn abi_version_matches_the_job_contract() {
    assert_eq!(modeconn_trainer_abi_version(), ABI_VERSION);
}

#[test]
fn free_string_accepts_null() {
    // SAFETY: NULL is documented to do nothing.
    unsafe { modeconn_trainer_free_string(std::ptr::null_mut()) };
}

#[test]
fn null_job_is_an_error_report() {
    let (report, events) = run_bytes(None);
    let error = error_of(&report);
    assert!(error.contains("NULL"), "{error}");
    assert!(events.is_empty());
}

#[test]
fn null_callback_is_accepted() {
    let job = CString::new("{}").expect("no NUL");
    // SAFETY: a valid C string, no callback.
    let report = unsafe { modeconn_trainer_run(job.as_ptr(), None, std::ptr::null_mut()) };
    assert!(!report.is_null());
    // SAFETY: returned by `modeconn_trainer_run`, released once.
    unsafe { modeconn_trainer_free_string(report) };
}

#[test]
fn non_utf8_job_is_an_error_report() {
    let (report, _) = run_bytes(Some(b"{\"command\": \"tr\xffin\"}"));
    let error = error_of(&report);
    assert!(error.contains("UTF-8"), "{error}");
}

#[test]
fn invalid_json_is_an_error_report_naming_the_problem() {
    let (report, _) = run_bytes(Some(b"{\"command\": \"train\", \"arch\": "));
    let error = error_of(&report);
    assert!(error.starts_with("invalid job"), "{error}");
    assert!(error.contains("line 1 column"), "no position: {error}");

    let (report, _) = run_bytes(Some(b"[1, 2]"));
    error_of(&report);
}

#[test]
fn unknown_command_is_an_error_report() {
    let (report, _) = run_json(&json!({"command": "dance", "data": "digits"}));
    let error = error_of(&report);
    assert!(
        error.contains("dance"),
        "the error does not name it: {error}"
    );

    let (report, _) = run_json(&json!({"arch": "mlp", "data": "digits"}));
    let error = error_of(&report);
    assert!(error.contains("command"), "{error}");
}

#[test]
fn unknown_field_is_named() {
    let mut job = small_train_job(Path::new("never-written.safetensors"));
    job["learning_rate"] = json!(0.1);
    let (report, _) = run_json(&job);
    let error = error_of(&report);
    assert!(
        error.contains("learning_rate"),
        "the error does not name the field: {error}"
    );
}

#[test]
fn missing_field_is_named() {
    let (report, _) = run_json(&json!({"command": "train", "data": "digits", "epochs": 1}));
    let error = error_of(&report);
    assert!(error.contains("missing field `out`"), "{error}");
    // Neither an architecture nor a graph: the job says it needs one of them.
    let (report, _) = run_json(
        &json!({"command": "train", "data": "digits", "epochs": 1, "out": "never.safetensors"}),
    );
    let error = error_of(&report);
    assert!(
        error.contains("`arch`") && error.contains("`onnx`"),
        "{error}"
    );
}

#[test]
fn wrong_type_is_named() {
    let mut job = small_train_job(Path::new("never-written.safetensors"));
    job["epochs"] = json!("three");
    let (report, _) = run_json(&job);
    let error = error_of(&report);
    assert!(
        error.contains("three") || error.contains("integer"),
        "{error}"
    );
}

#[test]
fn concurrent_runs_answer_each_caller() {
    let handles: Vec<_> = (0..4)
        .map(|i| {
            std::thread::spawn(move || {
                let (report, _) = run_json(&json!({"command": format!("unknown{i}")}));
                error_of(&report).contains(&format!("unknown{i}"))
            })
        })
        .collect();
    for h in handles {
        assert!(
            h.join().expect("no panic"),
            "a report went to the wrong caller"
        );
    }
}

#[test]
fn bad_jobs_are_error_reports() {
    let tmp = tempfile::tempdir().expect("a temporary folder");
    let out = tmp.path().join("x.safetensors");
    let cases: Vec<(&str, Value, &[&str])> = vec![
        (
            "unknown architecture",
            json!({"arch": "no-such-net"}),
            &["no-such-net"],
        ),
        (
            "missing data",
            json!({"data": tmp.path().join("missing.npz")}),
            &["missing.npz"],
        ),
        ("zero epochs", json!({"epochs": 0}), &["epoch"]),
        (
            "negative learning rate",
            json!({"lr": -1.0}),
            &["lr", "learning rate"],
        ),
        ("zero batch size", json!({"batch_size": 0}), &["batch"]),
        ("unknown device", json!({"device": "tpu"}), &["tpu"]),
    ];
    for (what, change, names) in cases {
        let mut job = small_train_job(&out);
        for (k, v) in change.as_object().expect("an object") {
            job[k] = v.clone();
        }
        let (report, _) = run_json(&job);
        let error = error_of(&report);
        assert!(
            names.iter().any(|n| error.to_lowercase().contains(n)),
            "{what}: the error names none of {names:?}: {error}"
        );
        assert!(!out.exists(), "{what}: a bundle was written");
    }
}

#[test]
fn progress_events_are_json() {
    let tmp = tempfile::tempdir().expect("a temporary folder");
    let out = tmp.path().join("end.safetensors");
    let (report, events) = run_json(&small_train_job(&out));
    assert_eq!(report["ok"], true, "{report}");
    assert!(!events.is_empty(), "no progress events");
    for text in &events {
        let event: Value = serde_json::from_str(text)
            .unwrap_or_else(|e| panic!("an event is not JSON ({e}): {text}"));
        assert!(event["event"].is_string(), "an event has no tag: {event}");
        let back: modeconn_trainer::job::Event = serde_json::from_value(event.clone())
            .unwrap_or_else(|e| panic!("an event is not an Event ({e}): {event}"));
        assert_eq!(serde_json::to_value(&back).expect("serialises"), event);
    }
    let tags: Vec<String> = events
        .iter()
        .filter_map(|t| serde_json::from_str::<Value>(t).ok())
        .filter_map(|e| e["event"].as_str().map(String::from))
        .collect();
    for tag in ["begin", "step", "epoch", "end"] {
        assert!(tags.iter().any(|t| t == tag), "no `{tag}` event: {tags:?}");
    }
    Bundle::open(&out).expect("the bundle loads");
}

/// Recursively drops object keys that hold times (`seconds`, `time`), which differ between runs.
fn without_times(v: &Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| !k.contains("second") && !k.contains("time"))
                .map(|(k, v)| (k.clone(), without_times(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_times).collect()),
        other => other.clone(),
    }
}

#[test]
fn the_abi_writes_the_same_bundle_as_the_rust_api() {
    let tmp = tempfile::tempdir().expect("a temporary folder");
    // Both runs write to the same path (the provenance may record it); the first result is
    // moved aside.
    let out = tmp.path().join("end.safetensors");
    let through_abi = tmp.path().join("abi.safetensors");
    let job_json = small_train_job(&out);

    let (report, _) = run_json(&job_json);
    assert_eq!(report["ok"], true, "{report}");
    std::fs::rename(&out, &through_abi).expect("move the first bundle aside");
    for entry in std::fs::read_dir(tmp.path()).expect("list the folder") {
        let path = entry.expect("an entry").path();
        if path != through_abi {
            let _ = std::fs::remove_file(path); // checkpoints
        }
    }

    let job = Job::from_json(&job_json.to_string()).expect("the job parses");
    modeconn_trainer::run::run(&job, &mut |_| {}).expect("the Rust API runs the job");

    let a = std::fs::read(&through_abi).expect("read the ABI's bundle");
    let b = std::fs::read(&out).expect("read the Rust API's bundle");
    if a == b {
        return;
    }
    // Not byte-identical: the only allowed difference is a time in the provenance.
    let a = Bundle::open(&through_abi).expect("the ABI's bundle loads");
    let b = Bundle::open(&out).expect("the Rust API's bundle loads");
    let (mut ma, mut mb) = (a.metadata().clone(), b.metadata().clone());
    let (pa, pb) = (ma.provenance.take(), mb.provenance.take());
    assert_eq!(ma, mb, "the metadata differ");
    assert_eq!(
        pa.as_ref().map(without_times),
        pb.as_ref().map(without_times),
        "the provenance differs"
    );
    assert_eq!(a.graph().bytes(), b.graph().bytes(), "the graphs differ");
    assert_eq!(a.tensors().len(), b.tensors().len());
    for (ta, tb) in a.tensors().iter().zip(b.tensors()) {
        assert_eq!(
            (&ta.name, &ta.shape, ta.role),
            (&tb.name, &tb.shape, tb.role),
            "the tensor lists differ"
        );
        assert!(
            a.data(ta) == b.data(tb),
            "the values of {} differ between the ABI and the Rust API",
            ta.name
        );
    }
}
