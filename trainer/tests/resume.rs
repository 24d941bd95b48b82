//! Long runs are safe: a `train`, `curve` or `fge` run killed with SIGKILL in the middle and
//! resumed from its checkpoint writes bit for bit the bundle of an uninterrupted run with the
//! same seed; checkpoints are written atomically; a checkpoint of another job, a damaged one or
//! a loss that blows up stop the run with a clear message.
//!
//! The run to kill is this test binary started again in a child process that runs only
//! [`child_run`], told what to do through environment variables (the parent sets them; on its
//! own `child_run` does nothing).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use modeconn_runtime::bundle::Bundle;
use modeconn_trainer::checkpoint;
use modeconn_trainer::job::{Event, Job, Report};
use modeconn_trainer::run::run;
use modeconn_trainer::{Error, Result};
use serde_json::{Value, json};
use tch::{Device, Tensor};

/// The job the child runs, as JSON.
const CHILD_JOB: &str = "MODECONN_TEST_RESUME_CHILD_JOB";
/// After this many epochs the child slows down (see [`child_run`]).
const CHILD_SLOW_AFTER: &str = "MODECONN_TEST_RESUME_CHILD_SLOW_AFTER";

/// Epochs of every run.
const EPOCHS: usize = 12;
/// The child is killed once its checkpoint holds this many epochs.
const KILL_AFTER: usize = 3;
/// How long each mini-batch of the child takes, at least, once it is past `KILL_AFTER`
/// epochs: long enough that the kill lands before the run ends, on a busy machine too.
const SLOW_STEP: Duration = Duration::from_millis(150);

/// Options every job here shares: 256 digits in batches of 32 (8 steps an epoch), on the CPU.
fn small(job: Value) -> Value {
    let mut job = job;
    for (k, v) in [
        ("data", json!("digits")),
        ("limit", json!(256)),
        ("batch_size", json!(32)),
        ("device", json!("cpu")),
    ] {
        job[k] = v;
    }
    job
}

fn parse(job: &Value) -> Job {
    Job::from_json(&job.to_string()).unwrap_or_else(|e| panic!("{e}\n{job}"))
}

/// Runs a job, returning its report and its events.
fn go(job: &Value) -> (Report, Vec<Event>) {
    let mut events = Vec::new();
    let report = run(&parse(job), &mut |e: &Event| events.push(e.clone()))
        .unwrap_or_else(|e| panic!("{e}\n{job}"));
    (report, events)
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|e| panic!("cannot make a temporary folder: {e}"))
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Trains an endpoint quickly (for curves and FGE).
fn endpoint(dir: &Path, seed: u64) -> PathBuf {
    let out = dir.join(format!("end{seed}.safetensors"));
    go(&small(json!({
        "command": "train", "arch": "mlp", "hidden": [16], "epochs": 2, "seed": seed,
        "out": path_str(&out),
    })));
    out
}

/// Not a test of its own: the run that [`killed_and_resumed`] starts in a child process and
/// kills. Runs the job in [`CHILD_JOB`], full speed until [`CHILD_SLOW_AFTER`] epochs are done
/// and then [`SLOW_STEP`] a mini-batch, so that the kill surely comes mid-run. Started without
/// that variable (as by `cargo test`), it does nothing.
#[test]
fn child_run() {
    let Ok(text) = std::env::var(CHILD_JOB) else {
        return;
    };
    let slow_after: usize = std::env::var(CHILD_SLOW_AFTER)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let job = Job::from_json(&text).unwrap_or_else(|e| panic!("{e}"));
    let mut epochs_done = 0;
    let result = run(&job, &mut |e: &Event| match e {
        Event::Epoch { epoch, .. } => epochs_done = *epoch,
        Event::Step { .. } if epochs_done >= slow_after => std::thread::sleep(SLOW_STEP),
        _ => {}
    });
    // Reached only when the parent did not kill this run in time: it then reports the end.
    if let Err(e) = result {
        panic!("the child run failed: {e}");
    }
}

/// The epochs a checkpoint holds, 0 without one. A checkpoint that cannot be read while the
/// run writes it is a failure: writes must be atomic.
fn epochs_in(ckpt: &Path) -> usize {
    match checkpoint::load(ckpt, Device::Cpu) {
        Ok(Some(c)) => c.epoch,
        Ok(None) => 0,
        Err(e) => panic!("a checkpoint was seen half-written: {e}"),
    }
}

/// Runs `job` in a child process, kills it with SIGKILL once its checkpoint holds
/// [`KILL_AFTER`] epochs and returns the epochs of the checkpoint it left.
fn run_and_kill(job: &Value, ckpt: &Path, log: &Path) -> usize {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("no test executable: {e}"));
    let stderr = std::fs::File::create(log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
    let mut child = Command::new(exe)
        .args(["child_run", "--exact", "--nocapture", "--test-threads", "1"])
        .env(CHILD_JOB, job.to_string())
        .env(CHILD_SLOW_AFTER, KILL_AFTER.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start the child run: {e}"));
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => panic!(
                "the child run ended ({status}) before it could be killed:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            ),
            Ok(None) => {}
            Err(e) => panic!("cannot watch the child run: {e}"),
        }
        if epochs_in(ckpt) >= KILL_AFTER {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the child run wrote no checkpoint of {KILL_AFTER} epochs in time");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // `kill` is SIGKILL on Unix: no destructor, no handler, no last write.
    child
        .kill()
        .unwrap_or_else(|e| panic!("cannot kill the child run: {e}"));
    let status = child
        .wait()
        .unwrap_or_else(|e| panic!("cannot reap the child run: {e}"));
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            status.signal(),
            Some(9),
            "the child run was not killed by SIGKILL ({status}):\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }
    #[cfg(not(unix))]
    assert!(!status.success(), "the child run was not killed");
    epochs_in(ckpt)
}

/// Files of `dir` whose names show a checkpoint or a temporary file.
fn leftovers(dir: &Path) -> Vec<String> {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".ckpt") || n.contains(".tmp"))
        .collect()
}

/// Provenance histories without timings.
fn history(bundle: &Bundle) -> Value {
    let mut history = bundle
        .metadata()
        .provenance
        .as_ref()
        .map(|p| p["history"].clone())
        .unwrap_or_default();
    if let Some(rows) = history.as_array_mut() {
        for row in rows {
            if let Some(row) = row.as_object_mut() {
                row.remove("seconds");
            }
        }
    }
    history
}

/// Asserts that two bundles hold the same tensors bit for bit and the same metadata, apart
/// from provenance, whose histories agree apart from timings.
fn assert_same_bundles(a: &Path, b: &Path) {
    let open = |p: &Path| Bundle::open(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let (a, b) = (open(a), open(b));
    let names = |x: &Bundle| -> Vec<(String, Vec<usize>)> {
        x.tensors()
            .iter()
            .map(|t| (t.name.clone(), t.shape.clone()))
            .collect()
    };
    assert_eq!(names(&a), names(&b), "the bundles hold different tensors");
    assert!(!a.tensors().is_empty(), "the bundle holds no tensor");
    for (ta, tb) in a.tensors().iter().zip(b.tensors()) {
        let (da, db) = (a.data(ta), b.data(tb));
        let differ = da
            .iter()
            .zip(db.iter())
            .filter(|(x, y)| x.to_bits() != y.to_bits())
            .count();
        assert_eq!(
            differ,
            0,
            "`{}`: {differ} of {} values differ after resuming",
            ta.name,
            da.len()
        );
    }
    let strip = |x: &Bundle| {
        let mut m = x.metadata().clone();
        m.provenance = None;
        m
    };
    assert_eq!(strip(&a), strip(&b), "the metadata differ");
    let (ha, hb) = (history(&a), history(&b));
    assert_eq!(
        ha.as_array().map(Vec::len),
        Some(EPOCHS),
        "the history lacks epochs"
    );
    assert_eq!(ha, hb, "the epochs' losses differ after resuming");
}

/// Runs `job` uninterrupted, then killed and resumed, and compares what they wrote. `check`
/// runs between the kill and the resumption, with the resumable job.
fn killed_and_resumed(dir: &Path, name: &str, job: Value, check: impl FnOnce(&Value, &Path)) {
    let a = dir.join(format!("{name}-a.safetensors"));
    let b = dir.join(format!("{name}-b.safetensors"));

    let mut uninterrupted = job.clone();
    uninterrupted["out"] = json!(path_str(&a));
    go(&uninterrupted);
    assert!(a.is_file(), "{name}: no bundle");
    // `train` keeps its last checkpoint (FGE continues its momentum); `curve` and `fge`
    // remove theirs. Nothing else is left, and no temporary file ever.
    let kept = |outs: &[&Path]| -> Vec<String> {
        if name == "train" {
            outs.iter()
                .map(|o| {
                    format!(
                        "{}.ckpt",
                        o.file_name().unwrap_or_default().to_string_lossy()
                    )
                })
                .collect()
        } else {
            Vec::new()
        }
    };
    let own = |dir: &Path| -> Vec<String> {
        let mut files: Vec<String> = leftovers(dir)
            .into_iter()
            .filter(|f| f.starts_with(&format!("{name}-")) || f.contains(".tmp"))
            .collect();
        files.sort();
        files
    };
    assert_eq!(own(dir), kept(&[&a]), "{name}: files left");

    let mut job = job;
    job["out"] = json!(path_str(&b));
    let ckpt = checkpoint::default_path(&b);
    let done = run_and_kill(&job, &ckpt, &dir.join(format!("{name}-child.log")));
    assert!(
        0 < done && done < EPOCHS,
        "{name}: the kill came after {done} of {EPOCHS} epochs, not in the middle"
    );
    eprintln!("{name}: killed with {done} of {EPOCHS} epochs in the checkpoint");
    assert!(!b.exists(), "{name}: the killed run wrote its bundle");
    check(&job, &ckpt);

    job["resume"] = json!(true);
    let (report, events) = go(&job);
    let epochs: Vec<usize> = events
        .iter()
        .filter_map(|e| match e {
            Event::Epoch { epoch, .. } => Some(*epoch),
            _ => None,
        })
        .collect();
    assert_eq!(
        epochs,
        (done + 1..=EPOCHS).collect::<Vec<_>>(),
        "{name}: the resumed run did not continue after epoch {done}"
    );
    assert_eq!(own(dir), kept(&[&a, &b]), "{name}: files left");
    assert_same_bundles(&a, &b);
    // The report's time per epoch is of the epochs the resumed process ran: mixing in the
    // killed process's epochs, which ran in their own conditions, made it 8.09 s against 0.3 s.
    let bundle = Bundle::open(&b).unwrap_or_else(|e| panic!("{e}"));
    let rows = bundle
        .metadata()
        .provenance
        .as_ref()
        .map(|p| p["history"].clone());
    let ran: Vec<f64> = rows
        .as_ref()
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|r| r["epoch"].as_u64().is_some_and(|e| e as usize > done))
        .filter_map(|r| r["seconds"].as_f64())
        .collect();
    assert_eq!(ran.len(), EPOCHS - done, "{name}: {rows:?}");
    let reported = serde_json::to_value(&report).unwrap_or_default()["seconds_per_epoch"]
        .as_f64()
        .unwrap_or(f64::NAN);
    let expected = ran.iter().sum::<f64>() / ran.len() as f64;
    assert!(
        (reported - expected).abs() <= 1e-12 * expected.max(1.0),
        "{name}: seconds_per_epoch {reported}, the resumed epochs took {expected} on average"
    );
}

#[test]
fn a_killed_train_run_resumes_to_the_same_network() {
    let tmp = tempdir();
    let job = small(json!({
        "command": "train", "arch": "mlp", "hidden": [32], "epochs": EPOCHS, "lr": 0.05,
        "seed": 7,
    }));
    killed_and_resumed(tmp.path(), "train", job, |job, ckpt| {
        // Another job (another seed) must not continue this checkpoint, nor touch it.
        let before = std::fs::read(ckpt).unwrap_or_else(|e| panic!("{e}"));
        let mut other = job.clone();
        other["seed"] = json!(8);
        other["resume"] = json!(true);
        match run(&parse(&other), &mut |_: &Event| {}) {
            Err(Error::Config(m)) => {
                assert!(m.contains("another job"), "{m}");
                assert!(m.contains(&*ckpt.to_string_lossy()), "{m}");
            }
            other => panic!("another job's checkpoint was not refused: {other:?}"),
        }
        let after = std::fs::read(ckpt).unwrap_or_else(|e| panic!("{e}"));
        assert!(before == after, "the refused run changed the checkpoint");
    });
}

#[test]
fn a_killed_curve_run_resumes_to_the_same_curve() {
    let tmp = tempdir();
    let (start, end) = (endpoint(tmp.path(), 1), endpoint(tmp.path(), 2));
    let job = small(json!({
        "command": "curve", "start": path_str(&start), "end": path_str(&end),
        "basis": "bezier", "bends": 1, "epochs": EPOCHS, "lr": 0.05, "seed": 3,
    }));
    killed_and_resumed(tmp.path(), "curve", job, |_, _| {});
}

#[test]
fn a_killed_fge_run_resumes_to_the_same_ensemble() {
    let tmp = tempdir();
    let init = endpoint(tmp.path(), 1);
    // Cycles of 3 epochs (24 steps): snapshots in the middle of epochs 2, 5, 8 and 11, so the
    // kill comes with a snapshot taken and others to come.
    let job = small(json!({
        "command": "fge", "init": path_str(&init), "cycle": 3, "lr1": 0.05, "lr2": 0.0005,
        "epochs": EPOCHS, "seed": 5,
    }));
    killed_and_resumed(tmp.path(), "fge", job, |_, ckpt| {
        let c = checkpoint::load(ckpt, Device::Cpu)
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("no checkpoint"));
        assert!(
            c.state["members"].as_u64() >= Some(1),
            "no snapshot before the kill: {}",
            c.state["members"]
        );
    });
    let bundle =
        Bundle::open(tmp.path().join("fge-b.safetensors")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(bundle.metadata().points, 4, "one snapshot per cycle");
}

#[test]
fn a_checkpoint_of_another_command_is_refused() -> Result<()> {
    let tmp = tempdir();
    let out = tmp.path().join("x.safetensors");
    let ckpt = checkpoint::default_path(&out);
    let curve = json!({"command": "curve", "start": "a", "end": "b", "data": "digits",
        "epochs": 2, "out": path_str(&out)});
    let w = Tensor::f_zeros([3], (tch::Kind::Float, Device::Cpu))?;
    checkpoint::save(
        &ckpt,
        1,
        &json!({ "job": curve, "history": [] }),
        &[("0/w".to_string(), &w)],
    )?;
    let job = small(json!({
        "command": "train", "arch": "mlp", "epochs": 2, "resume": true, "out": path_str(&out),
    }));
    match run(&parse(&job), &mut |_: &Event| {}) {
        Err(Error::Config(m)) => assert!(m.contains("another job"), "{m}"),
        other => panic!("a curve's checkpoint was not refused: {other:?}"),
    }
    assert!(!out.exists(), "a bundle was written");
    assert!(ckpt.exists(), "the checkpoint was removed");
    Ok(())
}

#[test]
fn a_damaged_checkpoint_is_an_error_that_names_it() -> Result<()> {
    let tmp = tempdir();
    let out = tmp.path().join("x.safetensors");
    let ckpt = checkpoint::default_path(&out);
    std::fs::write(&ckpt, b"not a checkpoint").map_err(|e| Error::Config(e.to_string()))?;
    let job = small(json!({
        "command": "train", "arch": "mlp", "epochs": 1, "resume": true, "out": path_str(&out),
    }));
    match run(&parse(&job), &mut |_: &Event| {}) {
        Err(e) => {
            let m = e.to_string();
            assert!(m.contains(&*ckpt.to_string_lossy()), "{m}");
            assert_eq!(m.lines().count(), 1, "{m}");
        }
        Ok(r) => panic!("a damaged checkpoint was resumed: {r:?}"),
    }
    assert!(!out.exists(), "a bundle was written");
    Ok(())
}

#[test]
fn checkpoints_round_trip_and_truncated_ones_are_errors() -> Result<()> {
    let tmp = tempdir();
    let path = tmp.path().join("run.ckpt");
    let w = Tensor::f_from_slice(&[1.5f32, -2.0, f32::MIN_POSITIVE, 3.0e38])?;
    let b = Tensor::f_arange(10, (tch::Kind::Float, Device::Cpu))?;
    let state = json!({ "job": { "command": "train" }, "history": [1, 2] });
    checkpoint::save(
        &path,
        4,
        &state,
        &[("param/w".into(), &w), ("momentum/b".into(), &b)],
    )?;
    assert_eq!(leftovers(tmp.path()), vec!["run.ckpt".to_string()]);
    let c = checkpoint::load(&path, Device::Cpu)?.unwrap_or_else(|| panic!("no checkpoint"));
    assert_eq!(c.epoch, 4);
    assert_eq!(c.state, state);
    assert_eq!(c.tensors.len(), 2);
    assert!(c.tensors["param/w"].equal(&w) && c.tensors["momentum/b"].equal(&b));

    // A new checkpoint replaces the old one whole.
    checkpoint::save(&path, 5, &state, &[("param/w".into(), &b)])?;
    let c = checkpoint::load(&path, Device::Cpu)?.unwrap_or_else(|| panic!("no checkpoint"));
    assert_eq!((c.epoch, c.tensors.len()), (5, 1));
    assert!(c.tensors["param/w"].equal(&b));

    let bytes = std::fs::read(&path).map_err(|e| Error::Config(e.to_string()))?;
    let cut = tmp.path().join("cut.ckpt");
    for len in [0, 1, 30, bytes.len() / 2, bytes.len() - 30, bytes.len() - 1] {
        std::fs::write(&cut, &bytes[..len]).map_err(|e| Error::Config(e.to_string()))?;
        match checkpoint::load(&cut, Device::Cpu) {
            Err(e) => {
                let m = e.to_string();
                assert!(m.contains("cut.ckpt"), "{len} bytes: {m}");
                assert_eq!(m.lines().count(), 1, "{len} bytes: {m}");
            }
            Ok(c) => panic!("{len} of {} bytes were read: {c:?}", bytes.len()),
        }
    }
    assert!(checkpoint::load(&tmp.path().join("none.ckpt"), Device::Cpu)?.is_none());
    Ok(())
}

#[cfg(target_os = "linux")]
#[test]
fn temporary_files_of_killed_writers_are_removed() -> Result<()> {
    let tmp = tempdir();
    let path = tmp.path().join("run.ckpt");
    // A process that has ended: its temporary file is litter.
    let mut ended =
        Command::new(std::env::current_exe().map_err(|e| Error::Config(e.to_string()))?)
            .arg("--list")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Error::Config(e.to_string()))?;
    let _ = ended.wait();
    // Temporary files are named as the workspace's atomic writer names them:
    // `.NAME.tmp-PID-RANDOM` (`modeconn_runtime::fs::write_atomic`).
    let stale = tmp
        .path()
        .join(format!(".run.ckpt.tmp-{}-a1b2c3d4", ended.id()));
    // The parent of this process is running: its file is left alone.
    let live = tmp.path().join(format!(
        ".run.ckpt.tmp-{}-a1b2c3d4",
        std::os::unix::process::parent_id()
    ));
    let other = tmp.path().join(".other.ckpt.tmp-1-a1b2c3d4");
    for p in [&stale, &live, &other] {
        std::fs::write(p, b"partial").map_err(|e| Error::Config(e.to_string()))?;
    }
    let w = Tensor::f_zeros([2], (tch::Kind::Float, Device::Cpu))?;
    checkpoint::save(&path, 1, &json!({}), &[("w".into(), &w)])?;
    assert!(!stale.exists(), "the stale temporary file is still there");
    assert!(
        live.exists() && other.exists(),
        "a file not litter was removed"
    );
    assert!(path.is_file());
    Ok(())
}

#[test]
fn a_loss_that_blows_up_stops_the_run_and_names_the_learning_rate() {
    let tmp = tempdir();
    let out = tmp.path().join("x.safetensors");
    let job = small(json!({
        "command": "train", "arch": "mlp", "epochs": 2, "lr": 1e30, "out": path_str(&out),
    }));
    match run(&parse(&job), &mut |_: &Event| {}) {
        Err(e @ Error::NonFiniteLoss { .. }) => {
            let m = e.to_string();
            assert!(m.contains("learning rate"), "{m}");
            let Error::NonFiniteLoss { value, epoch, step } = e else {
                unreachable!()
            };
            assert!(!value.is_finite(), "{value}");
            assert_eq!(epoch, 1, "{m}");
            assert!(step >= 1, "{m}");
        }
        other => panic!("the run did not stop on a non-finite loss: {other:?}"),
    }
    assert!(!out.exists(), "a bundle was written");
    assert_eq!(leftovers(tmp.path()), Vec::<String>::new(), "files left");
}
