"""Validate modeconn's deployment manifests (deploy/) and check that they agree with each other
and with the server; print what tests/deploy.rs needs to check them against a running server.

Usage: manifests.py DEPLOY_DIR VERSION

- Core kinds (Deployment, Service, HorizontalPodAutoscaler, PodDisruptionBudget, ConfigMap,
  Secret, Job) are validated strictly against the Kubernetes OpenAPI schemas of
  kubernetes-validate, for Kubernetes KUBERNETES below.
- KServe kinds (ClusterServingRuntime, InferenceService) are built as the KServe SDK's models,
  field by field: an unknown field, a value of the wrong type or a missing required field fails.
- The cross-checks: the ports the server is told to listen on are the ports declared, probed,
  scraped and exposed; probe paths are the server's health paths; the grace period exceeds the
  configured request timeout; the mounted files are where the server is told to read them; the
  images are of VERSION.

Prints one JSON object on stdout (see the end of main); exits non-zero on the first failure.
"""

import glob
import json
import os
import re
import sys
import tomllib

import kserve.models
import kubernetes.client.models
import kubernetes_validate
import yaml

KUBERNETES = "1.33.0"
HEALTH = {"/v2/health/ready", "/v2/health/live"}


def fail(message):
    raise SystemExit(f"manifests: {message}")


def check(condition, message):
    if not condition:
        fail(message)


def model_class(name):
    for module in (kserve.models, kubernetes.client.models):
        cls = getattr(module, name, None)
        if cls is not None:
            return cls
    fail(f"no model class {name}")


def build(value, type_name, path):
    """The SDK object of `value` (as a manifest writes it) for the OpenAPI type `type_name`."""
    if type_name in ("object",):
        return value
    # The SDKs write containers two ways: list[X] or List[X], dict(str, X) or Dict[str, X].
    m = re.fullmatch(r"[lL]ist\[(.+)\]", type_name)
    if m:
        check(isinstance(value, list), f"{path}: expected a list")
        return [build(v, m.group(1), f"{path}[{i}]") for i, v in enumerate(value)]
    m = re.fullmatch(r"dict\((\w+), (.+)\)", type_name) or re.fullmatch(
        r"Dict\[(\w+), (.+)\]", type_name)
    if m:
        check(isinstance(value, dict), f"{path}: expected a map")
        return {k: build(v, m.group(2), f"{path}.{k}") for k, v in value.items()}
    primitive = {"str": str, "int": int, "bool": bool, "float": (int, float)}
    if type_name in primitive:
        ok = isinstance(value, primitive[type_name]) and not (
            type_name != "bool" and isinstance(value, bool))
        check(ok, f"{path}: expected {type_name}, got {value!r}")
        return value
    if type_name == "datetime":
        return value
    cls = model_class(type_name)
    check(isinstance(value, dict), f"{path}: expected an object ({type_name})")
    by_json = {j: a for a, j in cls.attribute_map.items()}
    kwargs = {}
    for key, v in value.items():
        check(key in by_json, f"{path}: `{key}` is not a field of {type_name}")
        attr = by_json[key]
        kwargs[attr] = build(v, cls.openapi_types[attr], f"{path}.{key}")
    try:
        return cls(**kwargs)
    except ValueError as e:
        fail(f"{path}: {e}")


def main():
    deploy, version = sys.argv[1], sys.argv[2]
    docs = {}
    for f in sorted(glob.glob(os.path.join(deploy, "*", "*.yaml"))):
        with open(f) as fh:
            for doc in yaml.safe_load_all(fh):
                if doc:
                    docs.setdefault(doc["kind"], []).append((os.path.relpath(f, deploy), doc))
    for kind, items in docs.items():
        for f, doc in items:
            if doc["apiVersion"].startswith("serving.kserve.io/"):
                group_version = doc["apiVersion"].split("/")[1]
                build(doc, f"V{group_version[1:]}{kind}", f"{f}")
            else:
                try:
                    kubernetes_validate.validate(doc, KUBERNETES, strict=True)
                except kubernetes_validate.ValidationError as e:
                    fail(f"{f}: {e.message} at {'.'.join(str(p) for p in e.path)}")
    print(f"validated {sum(len(v) for v in docs.values())} manifests", file=sys.stderr)

    # The plain Deployment and what goes with it.
    (_, dep), = docs["Deployment"]
    pod = dep["spec"]["template"]
    (c,) = pod["spec"]["containers"]
    env = {e["name"]: e["value"] for e in c.get("env", [])}
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    check(str(ports["http"]) == env["MODECONN_PORT"], "the http port is not MODECONN_PORT")
    check(str(ports["grpc"]) == env["MODECONN_GRPC_PORT"], "the grpc port is not MODECONN_GRPC_PORT")
    check(env["MODECONN_HOST"] == "0.0.0.0", "a container must listen on every interface")
    probes = []
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        p = c[kind]["httpGet"]
        check(p["path"] in HEALTH, f"{kind} probes {p['path']}, not a health path")
        check(p["port"] in ports, f"{kind} probes port {p['port']}, not a declared port")
        probes.append({"probe": kind, "path": p["path"], "port": ports[p["port"]]})
    annotations = pod["metadata"]["annotations"]
    check(int(annotations["prometheus.io/port"]) == ports["http"], "metrics are scraped elsewhere")
    check(annotations["prometheus.io/path"] == "/metrics", "metrics are at /metrics")
    args = dict(a.lstrip("-").split("=", 1) for a in c["args"])
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    check(mounts["models"]["mountPath"] == args["model-dir"], "--model-dir is not the models mount")
    check(mounts["config"]["mountPath"] == args["config"], "--config is not the config mount")
    (_, cm), = docs["ConfigMap"]
    check(volumes["config"]["configMap"]["name"] == cm["metadata"]["name"], "another ConfigMap")
    config_text = cm["data"][mounts["config"]["subPath"]]
    config = tomllib.loads(config_text)
    (_, secret), = docs["Secret"]
    check(volumes["keyed"]["secret"]["secretName"] == secret["metadata"]["name"], "another Secret")
    key_file = config["server"]["keyed_secret_file"]
    check(os.path.dirname(key_file) == mounts["keyed"]["mountPath"], "the key is not in the mount")
    check(os.path.basename(key_file) in secret["stringData"], "the Secret lacks the key file")
    grace = pod["spec"]["terminationGracePeriodSeconds"]
    timeout = config["server"].get("request_timeout_ms", 30000) / 1000
    check(grace > timeout, f"grace period {grace} s is within the drain ({timeout} s)")
    labels = pod["metadata"]["labels"]
    (_, svc), = docs["Service"]
    check(svc["spec"]["selector"].items() <= labels.items(), "the Service selects other pods")
    for p in svc["spec"]["ports"]:
        check(p["targetPort"] in ports, f"the Service targets port {p['targetPort']}")
    (_, pdb), = docs["PodDisruptionBudget"]
    check(pdb["spec"]["selector"]["matchLabels"].items() <= labels.items(), "the PDB selects other pods")
    (_, hpa), = docs["HorizontalPodAutoscaler"]
    check(hpa["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"], "the HPA scales another")
    (metric,) = hpa["spec"]["metrics"]
    images = [c["image"]]

    # KServe.
    runtimes = {}
    for f, rt in docs["ClusterServingRuntime"]:
        (k,) = rt["spec"]["containers"]
        kargs = dict(a.lstrip("-").split("=", 1) for a in k["args"])
        check(kargs["model_name"] == "{{.Name}}", f"{f}: the model is not named by KServe")
        check(kargs["model_dir"] == "/mnt/models", f"{f}: KServe mounts models at /mnt/models")
        check(rt["spec"]["protocolVersions"] == ["v2", "grpc-v2"], f"{f}: protocols")
        check(any(m["name"] == "modeconn" for m in rt["spec"]["supportedModelFormats"]), f)
        check(rt["spec"]["annotations"]["prometheus.kserve.io/port"] == kargs["http_port"], f)
        runtimes[rt["metadata"]["name"]] = {"args": k["args"], "grpc_port": kargs["grpc_port"],
                                            "env": {e["name"]: e["value"] for e in k["env"]}}
        images.append(k["image"])
    for f, isvc in docs["InferenceService"]:
        m = isvc["spec"]["predictor"]["model"]
        check(m["modelFormat"]["name"] == "modeconn", f"{f}: another model format")
        runtime = runtimes[m.get("runtime", "kserve-modeconn")]
        if m.get("protocolVersion") == "grpc-v2":
            (port,) = m["ports"]
            check(port["name"] == "h2c" and str(port["containerPort"]) == runtime["grpc_port"],
                  f"{f}: the gRPC port is not the runtime's")
    for image in images:
        check(image.split(":")[1].startswith(version + "-"), f"image {image} is not of {version}")

    # The job templates: their scripts, run by the test.
    jobs = []
    for f, job in docs["Job"]:
        spec = job["spec"]
        check(spec["completionMode"] == "Indexed", f"{f}: not an Indexed Job")
        (jc,) = spec["template"]["spec"]["containers"]
        check(jc["command"][:2] == ["/bin/sh", "-c"], f"{f}: not a shell script")
        jobs.append({"file": f, "script": jc["command"][2],
                     "env": {e["name"]: e["value"] for e in jc["env"]},
                     "completions": spec["completions"]})
    slurm = []
    for f in sorted(glob.glob(os.path.join(deploy, "slurm", "*.sbatch"))):
        text = open(f).read()
        lo, hi = re.search(r"^#SBATCH --array=(\d+)-(\d+)$", text, re.M).groups()
        slurm.append({"file": os.path.relpath(f, deploy), "tasks": int(hi) - int(lo) + 1})
    print(json.dumps({
        "deployment": {"args": c["args"], "env": env, "probes": probes, "config": config_text,
                       "secret": secret["stringData"], "key_file": key_file},
        "runtimes": runtimes,
        "hpa_metric": metric["pods"]["metric"]["name"],
        "jobs": jobs,
        "slurm": slurm,
    }))


if __name__ == "__main__":
    main()
