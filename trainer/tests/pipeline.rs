//! The whole pipeline on the digits through the Rust API: two endpoints, a curve between them,
//! FGE, and evaluation.

use std::path::Path;

use modeconn_trainer::job::{Event, Job};
use modeconn_trainer::run::run;

fn job(text: String) -> Job {
    Job::from_json(&text).expect("a valid job")
}

fn go(j: &Job) -> serde_json::Value {
    let mut events = 0usize;
    let report = run(j, &mut |_e: &Event| events += 1).unwrap_or_else(|e| panic!("{e}"));
    assert!(events > 0, "no progress events");
    report
}

#[test]
fn smoke() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let p = |n: &str| d.join(n).display().to_string();
    let start = std::time::Instant::now();
    for seed in [1, 2] {
        let r = go(&job(format!(
            r#"{{"command":"train","arch":"mlp","hidden":[64],"data":"digits","epochs":6,"lr":0.05,"seed":{seed},"device":"cpu","out":"{}"}}"#,
            p(&format!("end{seed}.safetensors"))
        )));
        eprintln!("train {seed}: {r}");
    }
    let r = go(&job(format!(
        r#"{{"command":"curve","start":"{}","end":"{}","basis":"bezier","data":"digits","epochs":6,"lr":0.05,"device":"cpu","out":"{}"}}"#,
        p("end1.safetensors"),
        p("end2.safetensors"),
        p("curve.safetensors")
    )));
    eprintln!("curve: {r}");
    let r = go(&job(format!(
        r#"{{"command":"eval","bundle":"{}","data":"digits","points":11,"segment":true,"device":"cpu"}}"#,
        p("curve.safetensors")
    )));
    eprintln!("eval: {}", r["curve"]["summary"]);
    eprintln!("segment: {}", r["segment"]["summary"]["test_error"]);
    let r = go(&job(format!(
        r#"{{"command":"fge","init":"{}","data":"digits","cycle":2,"lr1":0.05,"lr2":0.0005,"epochs":6,"device":"cpu","out":"{}"}}"#,
        p("end1.safetensors"),
        p("fge.safetensors")
    )));
    eprintln!("fge: {r}");
    assert!(Path::new(&p("fge.safetensors")).exists());
    eprintln!("elapsed {:?}", start.elapsed());
}
