"""Talk to a running `modeconn serve --grpc-port` with tritonclient.grpc, as a Triton or KServe
user would, and compare every answer with the same request over HTTP (tritonclient.http).

Usage:
  triton_grpc.py check GRPC HTTP MODEL LIMITED X.npy KEYED_MODEL GRID
      health and metadata; inference in every mode equal to HTTP bit for bit (randomised:
      each sample's answer is one of the randomised grid's points, GRID of them); the typed
      `fp32_contents` path; errors and their codes. LIMITED is a model allowing `ensemble`
      only, KEYED_MODEL one allowing `keyed`.
  triton_grpc.py burst GRPC MODEL X.npy EXPECTED.npy THREADS EACH
      THREADS clients sending EACH one-sample requests at once: every answer is right or
      RESOURCE_EXHAUSTED; prints `ok N exhausted M`.
  triton_grpc.py deadline GRPC MODEL X.npy POINTS
      one request at POINTS points of the curve, over the server's deadline: DEADLINE_EXCEEDED.

Prints one line per check; exits non-zero on a mismatch.
"""

import sys
import threading

import grpc
import numpy as np
import tritonclient.grpc as tg
import tritonclient.http as th
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException


def input_name(client, model):
    """The name of the model's input, from its metadata."""
    return client.get_model_metadata(model, as_json=True)["inputs"][0]["name"]


def infer_both(gc, hc, model, x, params, outputs=("probabilities",)):
    """The same request over gRPC and HTTP (binary tensors); the outputs of each."""
    name = input_name(gc, model)
    gi = tg.InferInput(name, list(x.shape), "FP32")
    gi.set_data_from_numpy(x)
    hi = th.InferInput(name, list(x.shape), "FP32")
    hi.set_data_from_numpy(x, binary_data=True)
    gr = gc.infer(model, [gi], outputs=[tg.InferRequestedOutput(o) for o in outputs],
                  parameters=params)
    hr = hc.infer(model, [hi], outputs=[th.InferRequestedOutput(o, binary_data=True)
                                        for o in outputs], parameters=params)
    return ({o: gr.as_numpy(o) for o in outputs}, {o: hr.as_numpy(o) for o in outputs}, gr)


def expect_code(call, code, needle):
    try:
        call()
    except InferenceServerException as e:
        assert e.status() == f"StatusCode.{code}", (e.status(), e.message())
        assert needle in e.message(), (code, e.message())
        return
    raise AssertionError(f"expected {code}")


def check(grpc_url, http_url, model, limited, x_path, keyed, grid):
    x = np.load(x_path)
    gc = tg.InferenceServerClient(grpc_url)
    hc = th.InferenceServerClient(http_url)
    assert gc.is_server_live() and gc.is_server_ready(), "not live or not ready"
    assert gc.is_model_ready(model) and gc.is_model_ready(model, "1"), "model not ready"
    meta = gc.get_server_metadata()
    assert meta.name == "modeconn", meta
    m = gc.get_model_metadata(model, as_json=True)
    hm = hc.get_model_metadata(model)
    assert m["name"] == model and m["versions"] == ["1"], m
    (spec,) = m["inputs"]
    assert spec["datatype"] == "FP32", spec
    assert [int(d) for d in spec["shape"]] == hm["inputs"][0]["shape"], (spec, hm)
    assert [o["name"] for o in m["outputs"]] == [o["name"] for o in hm["outputs"]]
    print("health and metadata ok")

    outs = ("probabilities", "class", "entropy")
    for params in ({}, {"mode": "ensemble"}, {"mode": "at", "t": "0.1,0.63"},
                   {"mode": "at", "t": 0.25}):
        g, h, r = infer_both(gc, hc, model, x, params, outs)
        for o in outs:
            assert g[o].dtype == h[o].dtype and np.array_equal(g[o], h[o]), (params, o)
        assert r.get_response().model_name == model
    # Keyed: the same point for the same input, over either protocol.
    g, h, _ = infer_both(gc, hc, keyed, x, {"mode": "keyed"})
    assert np.array_equal(g["probabilities"], h["probabilities"]), "keyed differs"
    # Randomised: each sample's answer is that of one point of the randomised grid.
    ts = [i / (grid - 1) for i in range(grid)]
    points = [infer_both(gc, hc, model, x, {"mode": "at", "t": t})[1]["probabilities"]
              for t in ts]
    for _ in range(3):
        g, _, _ = infer_both(gc, hc, model, x, {"mode": "randomized"})
        p = g["probabilities"]
        for i in range(len(x)):
            assert any(np.array_equal(p[i], q[i]) for q in points), f"sample {i}"
    print("inference ok in every mode, equal to HTTP")

    # The typed contents path (fp32_contents), with the response in typed contents too.
    with grpc.insecure_channel(grpc_url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        req = service_pb2.ModelInferRequest(model_name=model, id="typed-1")
        t = req.inputs.add(name=input_name(gc, model), datatype="FP32", shape=list(x.shape))
        t.contents.fp32_contents.extend(x.ravel().tolist())
        req.outputs.add(name="probabilities")
        resp = stub.ModelInfer(req)
        assert resp.id == "typed-1" and not resp.raw_output_contents, resp.id
        (out,) = resp.outputs
        got = np.array(out.contents.fp32_contents, np.float32).reshape(list(out.shape))
        _, h, _ = infer_both(gc, hc, model, x, {})
        assert np.array_equal(got, h["probabilities"]), "typed contents differ"
        assert resp.parameters["mode"].string_param == "ensemble", resp.parameters
        # Both kinds of contents at once are refused.
        req.raw_input_contents.append(x.tobytes())
        try:
            stub.ModelInfer(req)
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e.code()
            assert "use one" in e.details(), e.details()
        else:
            raise AssertionError("contents and raw contents were both accepted")
    print("typed contents ok")

    name = input_name(gc, model)
    inp = tg.InferInput(name, list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    bad = tg.InferInput(name, [1, 2], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 2), np.float32))
    expect_code(lambda: gc.infer("no-such-model", [inp]), "NOT_FOUND", "unknown model")
    expect_code(lambda: gc.infer(model, [inp], model_version="7"), "NOT_FOUND", "version")
    expect_code(lambda: gc.get_model_metadata("no-such-model"), "NOT_FOUND", "unknown model")
    expect_code(lambda: gc.infer(limited, [inp], parameters={"mode": "at", "t": "0.5"}),
                "PERMISSION_DENIED", "not allowed")
    expect_code(lambda: gc.infer(model, [bad]), "INVALID_ARGUMENT", "shape")
    expect_code(lambda: gc.infer(model, [inp], parameters={"mode": "sideways"}),
                "INVALID_ARGUMENT", "unknown mode")
    print("errors ok")


def burst(grpc_url, model, x_path, expected_path, threads, each):
    x = np.load(x_path)
    expected = np.load(expected_path)
    results = []
    lock = threading.Lock()

    name = input_name(tg.InferenceServerClient(grpc_url), model)

    def client(t):
        c = tg.InferenceServerClient(grpc_url)
        for k in range(each):
            i = (t * each + k) % len(x)
            inp = tg.InferInput(name, [1] + list(x.shape[1:]), "FP32")
            inp.set_data_from_numpy(x[i:i + 1])
            try:
                r = c.infer(model, [inp], outputs=[tg.InferRequestedOutput("probabilities")])
                p = r.as_numpy("probabilities")
                ok = np.abs(p[0] - expected[i]).max() <= 1e-5
                with lock:
                    results.append("ok" if ok else f"wrong {i}")
            except InferenceServerException as e:
                with lock:
                    results.append(e.status())

    ts = [threading.Thread(target=client, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    ok = results.count("ok")
    exhausted = results.count("StatusCode.RESOURCE_EXHAUSTED")
    other = [r for r in results if r not in ("ok", "StatusCode.RESOURCE_EXHAUSTED")]
    assert len(results) == threads * each, len(results)
    assert not other, other[:5]
    print(f"ok {ok} exhausted {exhausted}")


def deadline(grpc_url, model, x_path, points):
    x = np.load(x_path)
    c = tg.InferenceServerClient(grpc_url)
    inp = tg.InferInput(input_name(c, model), list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    t = ",".join(str(i / (points - 1)) for i in range(points))
    expect_code(lambda: c.infer(model, [inp], parameters={"mode": "at", "t": t}),
                "DEADLINE_EXCEEDED", "no answer within 300 ms")
    print("deadline ok")


if __name__ == "__main__":
    what, args = sys.argv[1], sys.argv[2:]
    if what == "check":
        check(*args[:6], int(args[6]))
    elif what == "burst":
        burst(args[0], args[1], args[2], args[3], int(args[4]), int(args[5]))
    elif what == "deadline":
        deadline(args[0], args[1], args[2], int(args[3]))
    else:
        raise SystemExit(f"unknown check {what}")
