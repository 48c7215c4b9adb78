"""Drives Backprop's Open Inference Protocol v2 routes with NVIDIA's own client.

Run by tests/interop.rs as `python triton_client.py URL KEY CASES_JSON`, where CASES_JSON
lists deployments: {"name", "model_id", "kind": "plain" | "tabular", "rows": [...]}. For each
one: the server is live and ready, the model is ready, its metadata describes its tensors,
and `infer` (JSON data, binary_data=False) answers exactly what Backprop's own
`POST /v1/models/{id}/predict` answers for the same rows. Exits non-zero on any difference.
"""

import json
import sys
import urllib.request

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException


def predict_v1(base, key, model_id, rows):
    req = urllib.request.Request(
        f"{base}/v1/models/{model_id}/predict",
        data=json.dumps({"inputs": rows}).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req) as r:
        return json.load(r)


def check(cond, what):
    if not cond:
        raise SystemExit(f"FAILED: {what}")


def run_case(client, base, key, case):
    headers = {"Authorization": f"Bearer {key}"}
    name, rows = case["name"], case["rows"]
    check(client.is_model_ready(name, headers=headers), f"{name} is ready")
    meta = client.get_model_metadata(name, headers=headers)
    check(meta["name"] == name, f"metadata names {name}: {meta}")
    out_names = [o["name"] for o in meta["outputs"]]
    inputs = []
    if case["kind"] == "plain":
        (spec,) = meta["inputs"]
        check(spec["datatype"] == "FP32" and spec["shape"] == [-1, len(rows[0])], f"{spec}")
        arr = np.array(rows, dtype=np.float32)
        inp = httpclient.InferInput(spec["name"], list(arr.shape), "FP32")
        inp.set_data_from_numpy(arr, binary_data=False)
        inputs.append(inp)
    else:
        # One tensor per column, as the metadata lists them; rows are records.
        for spec in meta["inputs"]:
            col = spec["name"]
            values = [r.get(col) for r in rows]
            if spec["datatype"] == "BYTES":
                arr = np.array([[v] for v in values], dtype=np.object_)
            elif spec["datatype"] == "FP64":
                arr = np.array([[v] for v in values], dtype=np.float64)
            else:
                continue
            inp = httpclient.InferInput(col, list(arr.shape), spec["datatype"])
            inp.set_data_from_numpy(arr, binary_data=False)
            inputs.append(inp)
    outputs = [httpclient.InferRequestedOutput(n, binary_data=False) for n in out_names]
    res = client.infer(name, inputs, outputs=outputs, request_id="req-42", headers=headers)
    check(res.get_response()["id"] == "req-42", "the request id is echoed")
    want = predict_v1(base, key, case["model_id"], rows)
    numbers = "probabilities" if "probabilities" in out_names else "values"
    got = res.as_numpy(numbers)
    expected = np.array(want["outputs"], dtype=np.float32)
    check(got.dtype == np.float32, f"{numbers} is FP32")
    check(np.array_equal(got, expected), f"{name} {numbers}: {got} != {expected}")
    if "label" in out_names:
        labels = [b.decode() if isinstance(b, bytes) else str(b) for b in res.as_numpy("label")]
        check(labels == [str(l) for l in want["labels"]], f"{name} labels: {labels} != {want['labels']}")
    # A tensor of the wrong shape is the server's {"error": …}, which the client raises.
    bad = httpclient.InferInput(inputs[0].name(), [1, 99], inputs[0].datatype())
    bad.set_data_from_numpy(
        np.zeros((1, 99), dtype=np.float32 if inputs[0].datatype() == "FP32" else np.float64)
        if inputs[0].datatype() != "BYTES"
        else np.array([["x"] * 99], dtype=np.object_),
        binary_data=False,
    )
    try:
        client.infer(name, [bad], headers=headers)
        check(False, f"{name}: a [1, 99] tensor was accepted")
    except InferenceServerException as e:
        check("shape" in str(e) or "values" in str(e), f"the error says what is wrong: {e}")
    print(f"ok {name}: {len(rows)} rows, outputs {out_names}")


def main():
    base, key, cases = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    client = httpclient.InferenceServerClient(url=base.removeprefix("http://"))
    check(client.is_server_live(), "the server is live")
    check(client.is_server_ready(), "the server is ready")
    check(client.get_server_metadata()["name"] == "backprop", "server metadata")
    for case in cases:
        run_case(client, base, key, case)
    # Another key sees no such model: the client raises the server's error message.
    try:
        client.get_model_metadata(cases[0]["name"], headers={"Authorization": "Bearer nope"})
        check(False, "a wrong key read metadata")
    except InferenceServerException as e:
        check("not valid" in str(e), f"a wrong key is refused: {e}")
    print("ok")


if __name__ == "__main__":
    main()
