"""Talk to a running `modeconn serve` with tritonclient, the reference client of the Open
Inference Protocol, used as any Triton or KServe user would: health, metadata, inference in
JSON and with binary tensors, a mode chosen through request parameters, the repository index,
errors.

Usage: triton_client.py HOST:PORT MODEL X.npy ENSEMBLE.npy AT T AT.npy

ENSEMBLE.npy and AT.npy are `modeconn predict` on X.npy for the default mode and for
`--at T` (T comma-separated). Prints one line per check; exits non-zero on a mismatch.
"""

import sys

import numpy as np
import tritonclient.http as th
from tritonclient.utils import InferenceServerException

TOL = 1e-5


def main():
    url, model, x_path, ens_path, at, at_path = sys.argv[1:7]
    x = np.load(x_path)
    expected = np.load(ens_path)
    expected_at = np.load(at_path)
    client = th.InferenceServerClient(url)

    assert client.is_server_live(), "not live"
    assert client.is_server_ready(), "not ready"
    assert client.is_model_ready(model), "model not ready"
    meta = client.get_model_metadata(model)
    (spec,) = meta["inputs"]
    assert spec["datatype"] == "FP32" and spec["shape"][1:] == list(x.shape[1:]), spec
    index = client.get_model_repository_index()
    assert index == [{"name": model, "version": "1", "state": "READY", "reason": ""}], index
    print("health and metadata ok")

    for binary in (False, True):
        inp = th.InferInput(spec["name"], list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=binary)
        outputs = [
            th.InferRequestedOutput(name, binary_data=binary)
            for name in ("probabilities", "class", "entropy")
        ]
        result = client.infer(model, [inp], outputs=outputs, request_id="triton-1")
        p = result.as_numpy("probabilities")
        assert p.dtype == np.float32 and p.shape == expected.shape, (p.dtype, p.shape)
        err = float(np.abs(p - expected).max())
        assert err <= TOL, f"probabilities differ from predict by {err}"
        assert (result.as_numpy("class") == expected.argmax(1)).all(), "class"
        h = -(expected * np.log(expected)).sum(1)
        assert np.abs(result.as_numpy("entropy") - h).max() < 1e-4, "entropy"
        assert result.get_response()["id"] == "triton-1"

        # Triton's parameters are scalars: t goes as a comma-separated string.
        result = client.infer(
            model,
            [inp],
            outputs=[th.InferRequestedOutput("probabilities", binary_data=binary)],
            parameters={"mode": "at", "t": at},
        )
        err = float(np.abs(result.as_numpy("probabilities") - expected_at).max())
        assert err <= TOL, f"mode at differs from predict --at by {err}"
        print(f"inference ok (binary={binary})")

    inp = th.InferInput(spec["name"], list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    for call, status, needle in [
        (lambda: client.infer("no-such-model", [inp]), "404", "unknown model"),
        (lambda: client.infer(model, [inp], parameters={"mode": "keyed"}), "403", "not allowed"),
    ]:
        try:
            call()
        except InferenceServerException as e:
            assert e.status() == status and needle in e.message(), (e.status(), e.message())
        else:
            raise AssertionError(f"expected {status}")
    bad = th.InferInput(spec["name"], [1, 2], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 2), np.float32))
    try:
        client.infer(model, [bad])
    except InferenceServerException as e:
        assert e.status() == "400" and "shape" in e.message(), e.message()
    else:
        raise AssertionError("a wrong shape was accepted")
    print("errors ok")


if __name__ == "__main__":
    main()
