"""The GPU check of modeconn: runs the trainer and the runtime on a device and prints one JSON
report (see docs/gpu.md). scripts/gpu-check.sh sets up the environment and calls this.

    gpu_check.py --bin DIR [--device cuda|cuda:N|cpu] [--quick] [--work DIR] [--out FILE]

DIR holds `modeconn` and `libmodeconn_trainer.so`. Everything is driven through the CLI, so a
machine needs only those binaries, libtorch, ONNX Runtime and numpy. `--device cpu` runs every
step on the CPU (the tests run it so, with --quick); the figures that compare a GPU with the
CPU are then left out.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np


def run(cmd, **kw):
    """Runs a command, returning its stdout; a failure stops the check with its output."""
    done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if done.returncode != 0:
        sys.stderr.write(f"gpu-check: {' '.join(map(str, cmd))} failed:\n{done.stderr}\n")
        sys.exit(1)
    return done.stdout


class Check:
    def __init__(self, args):
        self.bin = Path(args.bin)
        self.modeconn = self.bin / "modeconn"
        self.plugin = self.bin / "libmodeconn_trainer.so"
        self.device = args.device
        self.quick = args.quick
        self.work = Path(args.work)
        self.work.mkdir(parents=True, exist_ok=True)
        self.report = {"device": self.device, "quick": self.quick}
        self.arch = args.arch or ("preresnet8" if self.quick else "preresnet20")
        self.epochs = 1 if self.quick else 3

    def cli(self, *args):
        return run([self.modeconn, *args])

    def cli_json(self, *args):
        return json.loads(self.cli(*args, "--json"))

    def train_cli(self, *args):
        return self.cli(*args, "--trainer", self.plugin, "--quiet")

    # -- data ---------------------------------------------------------------------------------

    def data(self):
        """CIFAR-shaped data (32x32 RGB, 10 classes): random pixels, labels from a fixed linear
        rule, so that training has something to learn and timings are those of real shapes."""
        rng = np.random.default_rng(0)
        n_train, n_test = (256, 64) if self.quick else (5000, 1000)
        x = rng.integers(0, 256, size=(n_train + n_test, 32, 32, 3), dtype=np.uint8)
        w = rng.standard_normal((3, 10))
        y = (x.reshape(len(x), -1, 3).mean(axis=1) @ w).argmax(axis=1).astype(np.int64)
        self.npz = self.work / "cifar-shaped.npz"
        np.savez(self.npz, x_train=x[:n_train], y_train=y[:n_train], x_test=x[n_train:],
                 y_test=y[n_train:])
        # The runtime takes what the trainer feeds its network: NCHW, uint8 scaled by 1/255.
        self.x_test = self.work / "x_test.npy"
        self.y_test = self.work / "y_test.npy"
        np.save(self.x_test, (x[n_train:].transpose(0, 3, 1, 2) / 255.0).astype(np.float32))
        np.save(self.y_test, y[n_train:])
        self.report["data"] = {"train": n_train, "test": n_test, "shape": [3, 32, 32],
                               "classes": 10}

    # -- trainer ------------------------------------------------------------------------------

    def seconds_per_epoch(self, bundle):
        history = self.cli_json("inspect", bundle)["provenance"]["history"]
        return statistics.median(h["seconds"] for h in history)

    def trainer(self):
        data = ["--data", self.npz, "--device", self.device, "--batch-size", 128]
        common = [*data, "--epochs", self.epochs]
        memory = GpuMemory() if self.device.startswith("cuda") else None
        self.a, self.b = self.work / "a.safetensors", self.work / "b.safetensors"
        self.train_cli("train", "--arch", self.arch, "--seed", 1, "--out", self.a, *common)
        self.train_cli("train", "--arch", self.arch, "--seed", 2, "--out", self.b, *common)
        self.curve = self.work / "curve.safetensors"
        self.train_cli("curve", "--start", self.a, "--end", self.b, "--basis", "bezier",
                       "--bends", 1, "--bn-grid", 5, "--out", self.curve, *common)
        self.fge = self.work / "fge.safetensors"
        # Two cycles of two epochs: a snapshot in the middle of each.
        self.train_cli("fge", "--init", self.a, "--cycle", 2, "--lr1", 0.05, "--lr2", 0.0005,
                       "--epochs", 4, "--out", self.fge, *data)
        single = self.seconds_per_epoch(self.a)
        curve = self.seconds_per_epoch(self.curve)
        self.report["trainer"] = {
            "arch": self.arch,
            "epochs": self.epochs,
            "train_seconds_per_epoch": single,
            "curve_seconds_per_epoch": curve,
            "curve_over_train": curve / single,
            "peak_gpu_memory_mib": memory.stop() if memory else None,
        }

    def reproduced(self):
        """The trainer's own evaluation of its bundles against the runtime's predictions on the
        CPU, point by point and member by member."""
        eval_json = self.work / "eval-curve.json"
        self.train_cli("eval", self.curve, "--data", self.npz, "--points", 3, "--device",
                       self.device, "--json", eval_json)
        rows = json.loads(eval_json.read_text())["curve"]["points"]
        curve = []
        for row in rows:
            p = self.cli_json("predict", self.curve, "--input", self.x_test, "--at",
                              row["t"], "--labels", self.y_test, "--device", "cpu")
            curve.append({"t": row["t"], "trainer_nll": row["test_nll"], "runtime_nll": p["nll"],
                          "trainer_error": row["test_error"],
                          "runtime_error": 1.0 - p["accuracy"]})
        eval_json = self.work / "eval-fge.json"
        self.train_cli("eval", self.fge, "--data", self.npz, "--device", self.device,
                       "--json", eval_json)
        members = []
        for row in json.loads(eval_json.read_text())["members"]:
            p = self.cli_json("predict", self.fge, "--input", self.x_test, "--members",
                              row["member"], "--labels", self.y_test, "--device", "cpu")
            members.append({"member": row["member"], "trainer_nll": row["test_nll"],
                            "runtime_nll": p["nll"]})
        worst = max(abs(r["trainer_nll"] - r["runtime_nll"]) for r in curve + members)
        self.report["bundles_reproduced"] = {
            "curve": curve, "fge": members, "max_nll_difference": worst, "agree": worst < 1e-3}

    # -- runtime ------------------------------------------------------------------------------

    def batch(self, n):
        path = self.work / f"x{n}.npy"
        x = np.load(self.x_test)
        np.save(path, np.resize(x, (n,) + x.shape[1:]))
        return path

    def timed(self, bundle, x, *sampling, static_budget=None):
        extra = ["--static-budget", static_budget] if static_budget is not None else []
        repeat = 5 if self.quick else 50
        p = self.cli_json("predict", bundle, "--input", x, *sampling, "--device", self.device,
                          "--repeat", repeat, *extra)
        return p["seconds"]["median"]

    def runtime(self):
        out = {}
        if self.device != "cpu":
            on_gpu, on_cpu = self.work / "p-gpu.npy", self.work / "p-cpu.npy"
            self.cli("predict", self.curve, "--input", self.x_test, "--grid", 5, "--device",
                     self.device, "--out", on_gpu)
            self.cli("predict", self.curve, "--input", self.x_test, "--grid", 5, "--device",
                     "cpu", "--out", on_cpu)
            out["cuda_vs_cpu_max_abs"] = float(np.abs(np.load(on_gpu) - np.load(on_cpu)).max())
        dynamic_vs_static, ensemble_vs_singles = {}, {}
        members = self.cli_json("inspect", self.fge)["points"]
        for n in (1, 128):
            x = self.batch(n)
            # The same three points of the curve, computed in the graph or materialised.
            dynamic = self.timed(self.curve, x, "--at", "0,0.5,1")
            static = self.timed(self.curve, x, "--grid", 3)
            dynamic_vs_static[f"batch_{n}"] = {"dynamic_ms": dynamic / 3 * 1e3,
                                               "static_ms": static / 3 * 1e3,
                                               "ratio": dynamic / static}
            ensemble = self.timed(self.fge, x, "--members", "all")
            singles = sum(self.timed(self.fge, x, "--members", m) for m in range(members))
            ensemble_vs_singles[f"batch_{n}"] = {"ensemble_ms": ensemble * 1e3,
                                                 "singles_ms": singles * 1e3,
                                                 "ratio": ensemble / singles}
        out["dynamic_vs_static"] = dynamic_vs_static
        out["ensemble_vs_singles"] = {"members": members, **ensemble_vs_singles}
        self.report["runtime"] = out

    def serve(self):
        """Served throughput on loopback (4 client threads) against in-process prediction of
        the same batches, on the device."""
        batch, threads, requests = (8, 2, 10) if self.quick else (32, 4, 50)
        x = np.load(self.batch(batch))
        in_process = self.timed(self.curve, self.batch(batch), "--grid", 5)
        server = subprocess.Popen(
            [str(self.modeconn), "serve", f"curve={self.curve}", "--host", "127.0.0.1",
             "--port", "0", "--device",
             self.device, "--workers", "2"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            port = wait_for_port(server)
            # Keep reading its log, so that a full pipe never holds it up.
            threading.Thread(target=lambda: [None for _ in server.stderr], daemon=True).start()
            body = json.dumps({"inputs": [{"name": "input", "shape": list(x.shape),
                                           "datatype": "FP32",
                                           "data": x.ravel().tolist()}]}).encode()
            url = f"http://127.0.0.1:{port}/v2/models/curve/infer"
            post(url, body)  # warm-up: sessions are made on the first query
            started = time.perf_counter()
            workers = [threading.Thread(target=lambda: [post(url, body)
                                                        for _ in range(requests)])
                       for _ in range(threads)]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            elapsed = time.perf_counter() - started
        finally:
            server.terminate()
            server.wait(timeout=60)
        served = threads * requests * batch / elapsed
        local = batch / in_process
        self.report["serve"] = {"batch": batch, "clients": threads,
                                "served_samples_per_s": served,
                                "in_process_samples_per_s": local, "ratio": served / local}


def wait_for_port(server):
    """The port `modeconn serve --port 0` logs when it listens."""
    deadline = time.time() + 120
    while time.time() < deadline:
        line = server.stderr.readline()
        if not line:
            if server.poll() is not None:
                sys.exit("gpu-check: the server ended before it listened")
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue
        fields = event.get("fields", {})
        if fields.get("message") == "listening":
            return int(str(fields["address"]).rsplit(":", 1)[1])
    sys.exit("gpu-check: the server did not say where it listens")


def post(url, body):
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        r.read()


class GpuMemory:
    """Peak memory used on the GPUs while the trainer runs, sampled with nvidia-smi."""

    def __init__(self):
        self.peak = None
        self.running = shutil.which("nvidia-smi") is not None
        if self.running:
            self.thread = threading.Thread(target=self.sample, daemon=True)
            self.thread.start()

    def sample(self):
        while self.running:
            out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used",
                                  "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True)
            used = [int(v) for v in out.stdout.split() if v.isdigit()]
            if used:
                self.peak = max(self.peak or 0, max(used))
            time.sleep(0.2)

    def stop(self):
        self.running = False
        return self.peak


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--arch")
    parser.add_argument("--work", default="gpu-check-work")
    parser.add_argument("--out")
    args = parser.parse_args()
    check = Check(args)
    check.report["doctor"] = json.loads(check.cli("doctor", "--json", "--trainer",
                                                  check.plugin))
    check.data()
    check.trainer()
    check.reproduced()
    check.runtime()
    check.serve()
    text = json.dumps(check.report, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)
    return 0 if check.report["bundles_reproduced"]["agree"] else 1


if __name__ == "__main__":
    sys.exit(main())
