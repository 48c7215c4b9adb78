"""Runs Backprop's ONNX exports in onnxruntime and compares them with Backprop's predict.

Run by tests/interop.rs as `python onnx_check.py URL KEY CASES_JSON`; CASES_JSON lists
{"model_id", "rows"}. For each: GET /v1/models/{id}/export?format=onnx, run it in
onnxruntime on the rows (arrays for a plain model's `input`; records for a tabular model,
one input per column: float with NaN for missing, or text with "" for missing), and require every output within 1e-5 of
POST /v1/models/{id}/predict's, and `label_index` to pick the same class. Exits non-zero
on any difference.
"""

import json
import sys
import urllib.request

import numpy as np
import onnx
import onnxruntime as ort


def call(base, key, path, body=None):
    req = urllib.request.Request(
        f"{base}{path}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        method="GET" if body is None else "POST",
    )
    with urllib.request.urlopen(req) as r:
        return r.read()


def main():
    base, key, cases = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    for case in cases:
        mid, rows = case["model_id"], case["rows"]
        blob = call(base, key, f"/v1/models/{mid}/export?format=onnx")
        # The checker refuses a malformed graph before the runtime sees it.
        onnx.checker.check_model(onnx.load_from_string(blob), full_check=True)
        sess = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
        want = json.loads(call(base, key, f"/v1/models/{mid}/predict", {"inputs": rows}))
        feeds = {}
        for i in sess.get_inputs():
            if i.name == "input" and isinstance(rows[0], list):
                feeds["input"] = np.array(rows, dtype=np.float32)
            elif i.type == "tensor(string)":
                # A tabular model's categorical column: text, "" for missing.
                feeds[i.name] = np.array([[r.get(i.name) or ""] for r in rows], dtype=np.object_)
            else:
                # A numeric or yes/no column: NaN for missing; a date column: days since
                # 1970 as doubles.
                vals = [r.get(i.name) for r in rows]
                dtype = np.float64 if i.type == "tensor(double)" else np.float32
                feeds[i.name] = np.array([[np.nan if v is None else v] for v in vals], dtype=dtype)
        names = [o.name for o in sess.get_outputs()]
        got = dict(zip(names, sess.run(None, feeds)))
        main_out = "probabilities" if "probabilities" in got else "values"
        expected = np.array(want["outputs"], dtype=np.float32)
        diff = float(np.max(np.abs(got[main_out] - expected)))
        if diff > 1e-5:
            raise SystemExit(f"FAILED {case.get('label', mid)}: max |onnx - predict| = {diff}")
        if "labels" in want:
            meta = sess.get_modelmeta().custom_metadata_map
            classes = json.loads(meta["classes"])
            labels = [classes[i] for i in got["label_index"]]
            if labels != want["labels"]:
                raise SystemExit(f"FAILED {case.get('label', mid)}: labels {labels} != {want['labels']}")
        print(f"ok {case.get('label', mid)}: max diff {diff:.2e}")
    print("ok")


if __name__ == "__main__":
    main()
