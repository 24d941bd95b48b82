//! Target `jobs`: the JSON of the trainer plugin's ABI: jobs as callers send them
//! (`Job::from_json`, which the C ABI's `modeconn_train` and the plugin both call), and the
//! events and reports the plugin sends back (parsed as `TrainerPlugin::run` does).
//!
//! Properties: what parses writes back to JSON that parses to the same value (floats to
//! within a few ulps: serde_json's default float parsing is not always correctly rounded).

use modeconn_jobs::{Event, Job, Report};
use serde_json::Value;

/// Runs one input.
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(job) = Job::from_json(text) {
        let again = serde_json::to_string(&job).expect("a job writes as JSON");
        let back = Job::from_json(&again).unwrap_or_else(|e| panic!("{again}: {e}"));
        assert_close(&job, &back);
    }
    if let Ok(event) = serde_json::from_str::<Event>(text) {
        let again = serde_json::to_string(&event).expect("an event writes as JSON");
        let back: Event = serde_json::from_str(&again).unwrap_or_else(|e| panic!("{again}: {e}"));
        assert_close(&event, &back);
    }
    // As the plugin loader reads a report: a JSON object with `"ok": true`, then the report.
    if let Ok(value) = serde_json::from_str::<Value>(text)
        && value.get("ok") == Some(&Value::Bool(true))
        && let Ok(report) = serde_json::from_value::<Report>(value)
    {
        let again = serde_json::to_string(&report).expect("a report writes as JSON");
        let back: Report = serde_json::from_str(&again).unwrap_or_else(|e| panic!("{again}: {e}"));
        assert_close(&report, &back);
        let _ = report.command();
    }
}

fn assert_close<T: serde::Serialize + std::fmt::Debug>(a: &T, b: &T) {
    let (va, vb) = (to_value(a), to_value(b));
    assert!(close(&va, &vb), "{a:?} came back as {b:?}");
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("serialises")
}

/// Equal JSON values, numbers to within 4 ulps.
fn close(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            _ if x == y => true,
            (Some(x), Some(y)) => {
                x == y || (x.signum() == y.signum() && x.to_bits().abs_diff(y.to_bits()) <= 4)
            }
            _ => false,
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| close(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| close(v, w)))
        }
        _ => a == b,
    }
}
