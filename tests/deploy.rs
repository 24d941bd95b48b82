//! The deployment files (`deploy/`), checked without a container engine or a cluster:
//! - the image's file tree, assembled by the script the Dockerfile runs, resolves every library
//!   inside itself (or in the base image's C and C++ runtime) and serves from there with only
//!   the image's environment, answers its health check, and drains on SIGTERM;
//! - every manifest validates (Kubernetes' schemas, KServe's SDK models), and its ports, paths
//!   and model names are what the server does when started as the manifest starts it;
//! - the job templates train endpoints and fit curves when their scripts run here, on the
//!   digits.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::serve::{Served, curve, get};
use crate::trainer_cli::real_plugin;
use crate::util::*;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// What the runtime stage of `deploy/Dockerfile` sets: its environment, ports, entrypoint,
/// health check and user.
#[derive(Debug, Default)]
struct Image {
    env: BTreeMap<String, String>,
    expose: Vec<u16>,
    entrypoint: Vec<String>,
    health: Vec<String>,
    user: String,
}

/// The runtime stage of the Dockerfile, its continued lines joined.
fn image() -> Image {
    let text = std::fs::read_to_string(repo().join("deploy/Dockerfile")).expect("the Dockerfile");
    let stage = text
        .split("\nFROM ")
        .find(|s| s.contains(" AS runtime"))
        .expect("a runtime stage");
    let joined = stage.replace("\\\n", " ");
    let mut image = Image::default();
    let json_list = |s: &str| -> Vec<String> {
        serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("`{s}` is not exec form: {e}"))
    };
    for line in joined.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("ENV ") {
            for pair in rest.split_whitespace() {
                let (k, v) = pair.split_once('=').expect("ENV K=V");
                image.env.insert(k.into(), v.into());
            }
        } else if let Some(rest) = line.strip_prefix("EXPOSE ") {
            image.expose = rest
                .split_whitespace()
                .map(|p| p.parse().expect("a port"))
                .collect();
        } else if let Some(rest) = line.strip_prefix("ENTRYPOINT ") {
            image.entrypoint = json_list(rest);
        } else if let Some(rest) = line.strip_prefix("HEALTHCHECK ") {
            image.health = json_list(rest.split_once("CMD ").expect("HEALTHCHECK CMD").1);
        } else if let Some(rest) = line.strip_prefix("USER ") {
            image.user = rest.trim().into();
        }
    }
    image
}

/// Assembles the image's tree with `deploy/image-tree.sh` (this build's `modeconn`, the test
/// environment's ONNX Runtime).
fn tree(variant: &str, out: &Path) -> PathBuf {
    let run = run_command(
        {
            let mut c = Command::new("bash");
            c.arg(repo().join("deploy/image-tree.sh"))
                .arg(variant)
                .arg(out)
                .arg("--bin")
                .arg(bin());
            c
        },
        format!("image-tree.sh {variant}"),
    )
    .ok();
    assert!(
        run.stdout.contains(&*out.to_string_lossy()),
        "{}",
        run.transcript()
    );
    out.to_path_buf()
}

/// The libraries of the base image (Debian's C and C++ runtime) that the tree may link.
const BASE: [&str; 10] = [
    "linux-vdso.so.1",
    "libc.so.6",
    "libm.so.6",
    "libdl.so.2",
    "libpthread.so.0",
    "librt.so.1",
    "libgcc_s.so.1",
    "libstdc++.so.6",
    "ld-linux-x86-64.so.2",
    // zlib, which cuDNN links (the image installs zlib1g).
    "libz.so.1",
];

/// Every ELF file of the tree links only the tree, the base image's runtime, and `missing`
/// (what the host provides).
fn check_closure(tree: &Path, missing: &[&str]) -> usize {
    let lib = tree.join("opt/modeconn/lib");
    let mut files = vec![tree.join("usr/local/bin/modeconn")];
    files.extend(
        std::fs::read_dir(&lib)
            .expect("the tree's lib")
            .map(|e| e.expect("an entry").path()),
    );
    for f in &files {
        let out = Command::new("ldd")
            .arg(f)
            .env("LD_LIBRARY_PATH", &lib)
            .output()
            .expect("ldd runs");
        let text = String::from_utf8_lossy(&out.stdout);
        for line in text.lines().map(str::trim) {
            let name = line.split_whitespace().next().unwrap_or("");
            let short = Path::new(name)
                .file_name()
                .map_or(String::new(), |n| n.to_string_lossy().into_owned());
            let resolved = line
                .split("=> ")
                .nth(1)
                .and_then(|r| r.split_whitespace().next());
            let ok = match resolved {
                Some("not") => missing.contains(&short.as_str()),
                Some(path) if Path::new(path).starts_with(tree) => true,
                _ => BASE.contains(&short.as_str()),
            };
            assert!(
                ok,
                "{}: `{line}` is neither in the tree nor the base image",
                f.display()
            );
        }
    }
    files.len()
}

#[test]
fn the_image_tree_serves_with_only_the_image_s_environment() {
    let image = image();
    assert_eq!(image.entrypoint, ["modeconn", "serve"]);
    assert_eq!(image.health, ["modeconn", "health"]);
    assert_eq!(image.env["MODECONN_HOST"], "0.0.0.0");
    assert_eq!(image.env["MODECONN_MODEL_DIR"], "/mnt/models");
    let ports: Vec<u16> = ["MODECONN_PORT", "MODECONN_GRPC_PORT"]
        .iter()
        .map(|k| image.env[*k].parse().expect("a port"))
        .collect();
    assert_eq!(
        image.expose, ports,
        "EXPOSE is not the ports the server listens on"
    );
    assert!(image.user.starts_with("10001"), "the image runs as root");

    let dir = tempdir();
    let root = tree("cpu", &dir.path().join("tree"));
    let files = check_closure(&root, &[]);
    assert_eq!(
        files, 2,
        "the CPU tree holds the binary and ONNX Runtime only"
    );
    std::fs::copy(curve(), root.join("mnt/models/digits.safetensors")).expect("a bundle");

    // The image's environment, its absolute paths into the tree; only the addresses change, to
    // the loopback and free ports.
    let mut env: BTreeMap<String, String> = image
        .env
        .iter()
        .map(|(k, v)| {
            let inside = root.join(v.trim_start_matches('/'));
            let v = if v.starts_with('/') && inside.exists() {
                inside.to_string_lossy().into_owned()
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect();
    assert!(
        Path::new(&env["ORT_DYLIB_PATH"]).starts_with(&root),
        "ORT_DYLIB_PATH is not in the tree"
    );
    env.insert("MODECONN_HOST".into(), "127.0.0.1".into());
    env.insert("MODECONN_PORT".into(), "0".into());
    env.insert("MODECONN_GRPC_PORT".into(), "0".into());
    let program = root.join("usr/local/bin").join(&image.entrypoint[0]);
    let args: Vec<&dyn AsRef<std::ffi::OsStr>> = image.entrypoint[1..]
        .iter()
        .map(|a| a as &dyn AsRef<std::ffi::OsStr>)
        .collect();
    let mut server = Served::start_program(&program, &args, |cmd| {
        cmd.env_clear().envs(&env).current_dir(&root);
    });
    let meta: Value = get(&server.url("/v2")).json();
    assert_eq!(meta["models"], serde_json::json!(["digits"]));
    assert!(
        server.grpc_port.is_some(),
        "the image's gRPC port is not served"
    );

    // Nothing outside the tree is mapped but the base image's libraries.
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", server.child.id())).expect("maps");
    for path in maps.lines().filter_map(|l| l.split_whitespace().nth(5)) {
        if !path.starts_with('/') {
            continue;
        }
        let p = Path::new(path);
        // A library is mapped under its file's name, its soname with the version after it.
        let system = BASE.iter().any(|b| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(b))
                && (path.starts_with("/lib") || path.starts_with("/usr/lib"))
        });
        assert!(
            p.starts_with(&root) || system || path == "/etc/ld.so.cache",
            "the server maps {path}, outside the image's tree"
        );
    }

    // The health check, as the image runs it.
    let mut health_env = env.clone();
    health_env.insert("MODECONN_PORT".into(), server.port.to_string());
    let health = Command::new(root.join("usr/local/bin").join(&image.health[0]))
        .args(&image.health[1..])
        .env_clear()
        .envs(&health_env)
        .output()
        .expect("the health check runs");
    assert!(
        health.status.success(),
        "the health check failed: {}",
        String::from_utf8_lossy(&health.stderr)
    );
    let status = server.terminate();
    assert!(
        status.success(),
        "SIGTERM did not drain and exit cleanly: {status:?}"
    );
    let after = Command::new(&program)
        .arg("health")
        .env_clear()
        .envs(&health_env)
        .output()
        .expect("the health check runs");
    assert!(
        !after.status.success(),
        "the health check passes with no server"
    );
}

#[test]
fn the_cuda_tree_links_only_itself_and_the_driver() {
    let dir = tempdir();
    let root = tree("cuda", &dir.path().join("tree"));
    let files = check_closure(&root, &["libcuda.so.1"]);
    let lib = root.join("opt/modeconn/lib");
    for needed in [
        "libonnxruntime_providers_cuda.so",
        "libonnxruntime_providers_shared.so",
        "libcudnn.so.9",
        "libcublas.so.13",
    ] {
        assert!(lib.join(needed).exists(), "the CUDA tree lacks {needed}");
    }
    eprintln!("the CUDA tree: {files} files");
}

/// What `tests/python/manifests.py` found.
fn manifests() -> Value {
    let version = env!("CARGO_PKG_VERSION");
    let run = run_python("manifests.py", &[&repo().join("deploy"), &version]);
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}\n{}", run.transcript()))
}

#[test]
fn the_manifests_validate_and_agree_with_the_server() {
    let m = manifests();
    let dir = tempdir();

    // The Deployment's container, with its mounts in a folder here.
    let d = &m["deployment"];
    let models = dir.path().join("models");
    std::fs::create_dir_all(&models).unwrap();
    std::fs::copy(curve(), models.join("digits.safetensors")).unwrap();
    let key_file = d["key_file"].as_str().unwrap();
    let key_name = Path::new(key_file)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let secret = dir.path().join(&key_name);
    std::fs::write(&secret, d["secret"][&key_name].as_str().unwrap()).unwrap();
    let config = dir.path().join("server.toml");
    let text = d["config"]
        .as_str()
        .unwrap()
        .replace(key_file, &secret.to_string_lossy());
    std::fs::write(&config, text).unwrap();
    let args: Vec<String> = d["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let a = a.as_str().unwrap();
            match a.split_once('=') {
                Some(("--model-dir", _)) => format!("--model-dir={}", models.display()),
                Some(("--config", _)) => format!("--config={}", config.display()),
                _ => a.to_string(),
            }
        })
        .collect();
    let env: BTreeMap<String, String> = d["env"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    let mut all: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"serve"];
    all.extend(args.iter().map(|a| a as &dyn AsRef<std::ffi::OsStr>));
    let server = Served::start_program(&bin(), &all, |cmd| {
        cmd.envs(&env)
            .env("MODECONN_HOST", "127.0.0.1")
            .env("MODECONN_PORT", "0")
            .env("MODECONN_GRPC_PORT", "0");
    });
    assert!(
        server.grpc_port.is_some(),
        "MODECONN_GRPC_PORT did not start gRPC"
    );
    // Every probe's path answers 200 on the HTTP port (the manifest's port is MODECONN_PORT).
    for p in m["deployment"]["probes"].as_array().unwrap() {
        assert_eq!(
            p["port"].as_u64().map(|p| p.to_string()),
            Some(env["MODECONN_PORT"].clone())
        );
        let r = get(&server.url(p["path"].as_str().unwrap()));
        assert_eq!(r.status, 200, "{p}");
    }
    // The autoscaler's metric is one the server exposes.
    let metrics = get(&server.url("/metrics")).text();
    let metric = m["hpa_metric"].as_str().unwrap();
    assert!(
        metrics.lines().any(|l| l.starts_with(metric)),
        "{metric} is not in /metrics:\n{metrics}"
    );
    drop(server);

    // The KServe runtimes' arguments, with KServe's substitutions: the model is served under
    // the InferenceService's name from /mnt/models.
    for (name, rt) in m["runtimes"].as_object().unwrap() {
        let args: Vec<String> = rt["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                a.as_str()
                    .unwrap()
                    .replace("{{.Name}}", "digits-curve")
                    .replace("/mnt/models", &models.to_string_lossy())
                    .replace("--http_port=8080", "--http_port=0")
                    .replace("--grpc_port=8081", "--grpc_port=0")
            })
            .collect();
        let mut all: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"serve"];
        all.extend(args.iter().map(|a| a as &dyn AsRef<std::ffi::OsStr>));
        let server = Served::start_program(&bin(), &all, |cmd| {
            cmd.env("MODECONN_HOST", "127.0.0.1")
                .env("MODECONN_DEVICE", "cpu");
        });
        let meta: Value = get(&server.url("/v2")).json();
        assert_eq!(
            meta["models"],
            serde_json::json!(["digits-curve"]),
            "{name}"
        );
        assert!(server.grpc_port.is_some(), "{name}: no gRPC");
    }
}

#[test]
fn a_manifest_with_a_wrong_field_is_refused() {
    let dir = tempdir();
    let copy = dir.path().join("deploy");
    let status = Command::new("cp")
        .arg("-r")
        .arg(repo().join("deploy"))
        .arg(&copy)
        .status()
        .expect("cp");
    assert!(status.success());
    let version = env!("CARGO_PKG_VERSION");
    for (file, from, to, needed) in [
        (
            "kserve/runtime-cpu.yaml",
            "  protocolVersions:",
            "  protocolVersion:",
            "`protocolVersion` is not a field of V1alpha1ServingRuntimeSpec",
        ),
        (
            "kubernetes/deployment.yaml",
            "  replicas: 2",
            "  replicaz: 2",
            "'replicaz' was unexpected",
        ),
        (
            "kubernetes/service.yaml",
            "      targetPort: http",
            "      targetPort: metrics",
            "the Service targets port metrics",
        ),
    ] {
        let path = copy.join(file);
        let original = std::fs::read_to_string(&path).unwrap();
        assert!(original.contains(from), "{file} lacks `{from}`");
        std::fs::write(&path, original.replacen(from, to, 1)).unwrap();
        let mut cmd = Command::new(python());
        cmd.arg(python_dir().join("manifests.py"))
            .arg(&copy)
            .arg(version);
        let out = cmd.output().expect("python runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{file}: the broken manifest passed");
        assert!(stderr.contains(needed), "{file}: {stderr}");
        std::fs::write(&path, original).unwrap();
    }
}

/// Runs a template's script as its scheduler would, index by index, with the data, epochs and
/// storage of a test; `index_var` names the index.
fn run_tasks(
    script: &Path,
    shell: &str,
    tasks: usize,
    index_var: &str,
    env: &BTreeMap<String, String>,
) {
    let path = format!(
        "{}:{}",
        bin().parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for i in 0..tasks {
        let mut cmd = Command::new(shell);
        cmd.arg(script)
            .envs(env)
            .env(index_var, i.to_string())
            .env("PATH", &path)
            .env("MODECONN_TRAINER", real_plugin());
        run_command(cmd, format!("{} task {i}", script.display())).ok();
    }
}

#[test]
fn the_job_templates_train_endpoints_and_fit_curves_on_the_digits() {
    let m = manifests();
    let dir = tempdir();
    let small = |shared: &Path| -> BTreeMap<String, String> {
        [
            ("DATA", "digits".to_string()),
            ("EPOCHS", "1".to_string()),
            // Without batch norm the curves' statistics grid and evaluation are quick.
            ("ARCH", "mlp".to_string()),
            ("SHARED", shared.to_string_lossy().into_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    };
    let check = |shared: &Path, what: &str| {
        for i in 0..4 {
            let p = shared.join(format!("endpoints/endpoint-{i}.safetensors"));
            assert!(p.exists(), "{what}: endpoint {i} is missing");
        }
        for pair in ["0-1", "1-2", "2-3"] {
            let c = shared.join(format!("curves/curve-{pair}.safetensors"));
            let meta = modeconn_runtime::Bundle::open(&c)
                .unwrap_or_else(|e| panic!("{what}: curve {pair}: {e}"))
                .metadata()
                .clone();
            assert_eq!(meta.points, 3, "{what}: curve {pair}");
            let eval: Value = serde_json::from_str(
                &std::fs::read_to_string(shared.join(format!("curves/curve-{pair}.eval.json")))
                    .expect("the evaluation"),
            )
            .expect("JSON");
            assert!(
                eval["segment"].is_object(),
                "{what}: {pair} evaluated without the segment"
            );
        }
    };

    // Kubernetes: the Indexed Jobs' scripts, with their own environment under the test's.
    // The endpoints first, then the curves between them.
    let first = |file: &str| !file.contains("train");
    let shared = dir.path().join("k8s");
    let mut jobs = m["jobs"].as_array().unwrap().clone();
    jobs.sort_by_key(|j| first(j["file"].as_str().unwrap()));
    for job in &jobs {
        let script = dir
            .path()
            .join(job["file"].as_str().unwrap().replace('/', "-") + ".sh");
        std::fs::write(&script, job["script"].as_str().unwrap()).unwrap();
        let mut env: BTreeMap<String, String> = job["env"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect();
        env.extend(small(&shared));
        let tasks = job["completions"].as_u64().unwrap() as usize;
        run_tasks(&script, "/bin/sh", tasks, "JOB_COMPLETION_INDEX", &env);
    }
    check(&shared, "the Kubernetes jobs");

    // Slurm: the array scripts as sbatch runs them, one task per index of --array.
    let shared = dir.path().join("slurm");
    let mut arrays = m["slurm"].as_array().unwrap().clone();
    arrays.sort_by_key(|s| first(s["file"].as_str().unwrap()));
    for s in &arrays {
        let script = repo().join("deploy").join(s["file"].as_str().unwrap());
        let tasks = s["tasks"].as_u64().unwrap() as usize;
        run_tasks(
            &script,
            "bash",
            tasks,
            "SLURM_ARRAY_TASK_ID",
            &small(&shared),
        );
    }
    check(&shared, "the Slurm arrays");
}
