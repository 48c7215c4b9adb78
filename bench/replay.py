#!/usr/bin/env python3
"""Replays one fixed request set against two builds and compares the answers byte for byte,
after masking ids and times: the proof that a restructure changed no answer.

    python3 bench/replay.py --old /tmp/backprop-old --new target/debug/backprop

Each binary gets a fresh server (SQLite in a temporary directory). The requests: CSV and
JSON uploads, seeded jobs (plain numbers, iris, penguins with text columns and NA cells),
their records, histories and models, predictions by JSON, CSV, v2 and TF Serving, an
evaluation, the JSON and ONNX exports, a dry run, a range test, and refused requests (their
problem documents). In the answers, UUIDs become `<id N>` (N in order of first appearance),
timestamps and measured durations `<time>`; everything else must match exactly. Exits 1 on
the first difference, printing both answers.
"""

import argparse
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
TIME_KEYS = re.compile(r"(_at$|elapsed|seconds|per_second|^eta|duration|_ms$)")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mask(v):
    if isinstance(v, dict):
        return {k: ("<time>" if TIME_KEYS.search(k) and v[k] is not None else mask(x)) for k, x in v.items()}
    if isinstance(v, list):
        return [mask(x) for x in v]
    return v


class Run:
    def __init__(self, binary):
        self.dir = tempfile.mkdtemp(prefix="backprop-replay-")
        self.port = free_port()
        self.proc = subprocess.Popen(
            [binary, "serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir", self.dir,
             "--max-concurrent-jobs", "1"],
            env={k: v for k, v in os.environ.items() if not k.startswith("BACKPROP_")} | {"RUST_LOG": "warn"},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(300):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1)
                break
            except Exception:
                time.sleep(0.1)
        self.ids = {}
        self.answers = []

    def call(self, method, path, body=None, ctype="application/json", accept=None, record=True):
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method)
        if data is not None:
            req.add_header("content-type", ctype)
        if accept:
            req.add_header("accept", accept)
        try:
            with urllib.request.urlopen(req, timeout=300) as r:
                status, raw, rtype = r.status, r.read(), r.headers.get("content-type", "")
        except urllib.error.HTTPError as e:
            status, raw, rtype = e.code, e.read(), e.headers.get("content-type", "")
        value = json.loads(raw) if "json" in rtype and raw else None
        if record:
            self.record(method, path, status, raw, value, rtype)
        return status, value, raw

    def record(self, method, path, status, raw, value, rtype):
        if status == 202 and isinstance(value, dict) and "attempt" in value:
            # Before this release the 202 said attempt 1 when a worker had claimed the job
            # already (a race); it says 0, as submitted, now.
            value = dict(value, attempt=0)
        def rename(m):
            return b"<id %d>" % self.ids.setdefault(m.group(0), len(self.ids))
        if value is not None:
            text = json.dumps(mask(value), sort_keys=True).encode()
        elif rtype.startswith("application/octet-stream"):
            # A binary answer (an ONNX export): compared by hash, its ids renamed first.
            text = b"sha256 " + hashlib.sha256(UUID.sub(rename, raw)).hexdigest().encode()
        else:
            text = raw
        path_m = UUID.sub(rename, path.encode()).decode()
        self.answers.append((f"{method} {path_m}", status, UUID.sub(rename, text)))

    def wait(self, job):
        for _ in range(6000):
            _, j, _ = self.call("GET", f"/v1/jobs/{job}", record=False)
            if j["status"] in ("succeeded", "failed", "cancelled"):
                return j
            time.sleep(0.1)
        raise SystemExit(f"job {job} did not finish")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(30)


def script(r):
    data = os.path.join(ROOT, "tests/data")
    # Uploads.
    _, iris, _ = r.call("POST", "/v1/datasets?name=iris&target=target",
                        open(os.path.join(ROOT, "examples/iris.csv"), "rb").read(), "text/csv")
    _, peng, _ = r.call("POST", "/v1/datasets?name=penguins&target=species",
                        open(os.path.join(data, "penguins.csv"), "rb").read(), "text/csv")
    _, xor, _ = r.call("POST", "/v1/datasets", {"name": "xor", "features": [[0, 0], [0, 1], [1, 0], [1, 1]],
                                                 "targets": [0, 1, 1, 0]})
    for d in (iris, peng, xor):
        r.call("GET", f"/v1/datasets/{d['id']}")
    r.call("GET", f"/v1/datasets/{peng['id']}/rows?offset=3&limit=4")
    # Refusals.
    r.call("POST", "/v1/jobs", {"dataset_id": iris["id"], "layers": [{"units": 0}], "epochs": 1})
    r.call("POST", "/v1/datasets?name=bad&target=nope", b"a,b\n1,2\n", "text/csv")
    r.call("POST", "/v1/jobs?dry_run=true", {"dataset_id": peng["id"], "layers": [{"units": 8, "activation": "relu"}, {}],
                                              "loss": "categorical_crossentropy", "epochs": 3, "seed": 5})
    specs = [
        (xor, {"layers": [{"units": 4, "activation": "tanh"}, {"units": 1, "activation": "sigmoid"}],
               "loss": "binary_crossentropy", "optimizer": {"type": "adam", "learning_rate": 0.05},
               "epochs": 60, "batch_size": 4, "seed": 3, "standardize": False}),
        (iris, {"layers": [{"units": 16, "activation": "relu"}, {"dropout": 0.1}, {"units": 3, "activation": "softmax"}],
                "loss": "categorical_crossentropy", "optimizer": {"type": "adam", "learning_rate": 0.01},
                "epochs": 30, "batch_size": 16, "validation_split": 0.2, "seed": 0,
                "early_stopping": {"monitor": "val_loss", "patience": 5, "restore_best_weights": True}}),
        (peng, {"layers": [{"units": 16, "activation": "relu"}, {}], "loss": "categorical_crossentropy",
                "optimizer": {"type": "sgd", "learning_rate": 0.05, "momentum": 0.9},
                "epochs": 25, "batch_size": 16, "validation_split": 0.25, "seed": 3,
                "lr_schedule": {"type": "cosine_decay", "decay_epochs": 25, "warmup_epochs": 2}}),
    ]
    models = []
    for d, spec in specs:
        _, job, _ = r.call("POST", "/v1/jobs", {"dataset_id": d["id"], **spec})
        j = r.wait(job["id"])
        r.call("GET", f"/v1/jobs/{job['id']}")
        r.call("GET", f"/v1/jobs/{job['id']}/history")
        r.call("GET", f"/v1/models/{j['model_id']}")
        r.call("GET", f"/v1/models/{j['model_id']}/export")
        r.call("GET", f"/v1/models/{j['model_id']}/export?format=onnx")
        models.append(j["model_id"])
    xm, im, pm = models
    r.call("POST", f"/v1/models/{xm}/predict", {"inputs": [[0, 0], [0, 1], [1, 0], [1, 1]]})
    r.call("POST", f"/v1/models/{im}/predict", {"inputs": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]})
    r.call("POST", f"/v1/models/{pm}/predict", {"inputs": [
        {"island": "Biscoe", "bill_length_mm": 48.6, "bill_depth_mm": 16.0, "flipper_length_mm": 230,
         "body_mass_g": 5800, "sex": "male", "year": 2009},
        {"island": "Dream", "bill_length_mm": 39.5, "sex": "female"}, {"island": "Atlantis"}]})
    r.call("POST", f"/v1/models/{pm}/predict", {"inputs": [{"colour": "red"}]})
    r.call("POST", f"/v1/models/{pm}/predict",
           b"island,bill_length_mm,sex\nBiscoe,48.6,male\nDream,NA,\n", "text/csv", accept="text/csv")
    r.call("POST", f"/v1/models/{im}/evaluate", {"dataset_id": iris["id"], "seed": 1})
    r.call("PUT", "/v1/deployments/iris", {"model_id": im})
    r.call("PUT", "/v1/deployments/penguins", {"model_id": pm})
    r.call("POST", "/v2/models/iris/infer", {"id": "r1", "inputs": [
        {"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]})
    r.call("POST", "/v2/models/penguins/infer", {"inputs": [
        {"name": "island", "shape": [1], "datatype": "BYTES", "data": ["Biscoe"]},
        {"name": "bill_length_mm", "shape": [1], "datatype": "FP64", "data": [48.6]}]})
    r.call("GET", "/v2/models/penguins")
    r.call("POST", "/v1/models/iris:predict", {"instances": [[5.1, 3.5, 1.4, 0.2]]})
    r.call("POST", "/v1/lr-range-tests", {"dataset_id": iris["id"], "layers": [{"units": 8, "activation": "relu"}, {}],
                                          "loss": "categorical_crossentropy",
                                          "range_test": {"start": 1e-5, "end": 1, "steps": 40}, "seed": 2})


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--old", required=True)
    ap.add_argument("--new", required=True)
    args = ap.parse_args()
    runs = []
    for b in (args.old, args.new):
        r = Run(b)
        try:
            script(r)
        finally:
            r.stop()
        runs.append(r.answers)
    old, new = runs
    if len(old) != len(new):
        print(f"{len(old)} answers against {len(new)}")
        return 1
    for (wo, so, ao), (wn, sn, an) in zip(old, new):
        if (wo, so, ao) != (wn, sn, an):
            at = next((i for i, (x, y) in enumerate(zip(ao, an)) if x != y), min(len(ao), len(an)))
            lo = max(0, at - 200)
            print(f"differs: {wo} {so} / {wn} {sn}, at byte {at}\n  old: …{ao[lo:at + 200]!r}\n  new: …{an[lo:at + 200]!r}")
            return 1
    print(f"{len(old)} answers byte-identical after masking ids and times")
    return 0


if __name__ == "__main__":
    sys.exit(main())
