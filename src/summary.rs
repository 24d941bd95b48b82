//! The summary of a report for people: where the bundle went and every number, one per line.

use std::collections::BTreeMap;

use modeconn_jobs::Report;
use serde_json::Value;

/// Prints a report for people: where the bundle went, then every number it holds, one per
/// line (long lists and tables are counted, not printed).
pub fn print_summary(report: &Report) {
    if let Some(out) = report.out() {
        println!("wrote {}", out.display());
    }
    let mut lines = BTreeMap::new();
    // The report's wire form, flattened: every field, nested ones joined with dots.
    if let Ok(Value::Object(map)) = serde_json::to_value(report) {
        for (key, value) in &map {
            if !matches!(key.as_str(), "ok" | "command" | "out") {
                flatten(key, value, &mut lines);
            }
        }
    }
    let width = lines.keys().map(String::len).max().unwrap_or(0);
    for (key, value) in lines {
        println!("{key:<width$}  {value}");
    }
}

/// The lines of `print_summary` for one value, keys joined with dots.
fn flatten(key: &str, value: &Value, lines: &mut BTreeMap<String, String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                flatten(&format!("{key}.{k}"), v, lines);
            }
        }
        Value::Array(items) if items.iter().all(Value::is_number) && items.len() <= 8 => {
            let shown: Vec<String> = items.iter().map(number).collect();
            lines.insert(key.into(), shown.join(" "));
        }
        Value::Array(items) => {
            lines.insert(key.into(), format!("({} entries)", items.len()));
        }
        Value::Number(_) => {
            lines.insert(key.into(), number(value));
        }
        Value::String(s) => {
            lines.insert(key.into(), s.clone());
        }
        Value::Bool(b) => {
            lines.insert(key.into(), b.to_string());
        }
        Value::Null => {}
    }
}

/// A JSON number for people: integers as they are, others with four decimals.
fn number(v: &Value) -> String {
    match (v.as_i64(), v.as_u64(), v.as_f64()) {
        (Some(i), _, _) => i.to_string(),
        (_, Some(u), _) => u.to_string(),
        (_, _, Some(f)) if f != 0.0 && f.abs() < 1e-3 => format!("{f:.3e}"),
        (_, _, Some(f)) => format!("{f:.4}"),
        _ => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_read_well() {
        assert_eq!(number(&json!(3)), "3");
        assert_eq!(number(&json!(0.25)), "0.2500");
        assert_eq!(number(&json!(0.00001)), "1.000e-5");
        assert_eq!(number(&json!(0.0)), "0.0000");
    }

    #[test]
    fn reports_flatten_to_lines() {
        let mut lines = BTreeMap::new();
        let report = json!({"a": {"b": 1, "c": [0.5, 1.0]}, "rows": [{"t": 0}], "s": "x",
                            "n": null, "f": true});
        for (k, v) in report.as_object().expect("an object") {
            flatten(k, v, &mut lines);
        }
        let expected: BTreeMap<String, String> = [
            ("a.b", "1"),
            ("a.c", "0.5000 1.0000"),
            ("rows", "(1 entries)"),
            ("s", "x"),
            ("f", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(lines, expected);
    }
}
