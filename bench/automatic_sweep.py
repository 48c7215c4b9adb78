#!/usr/bin/env python3
"""The automatic mode end to end: starts a server (the binary given), uploads a training CSV,
runs `POST /v1/sweeps {"dataset_id", "max_trials"}` with nothing else, waits for it, and prints
how long the sweep took, how many trial jobs and epochs it ran, the best trial, and — with a
test CSV — the best model's evaluation on it (`POST /v1/models/{id}/evaluate`).

    python3 bench/automatic_sweep.py --bin target/debug/backprop \\
        --train tests/data/breast_cancer.train.csv --test tests/data/breast_cancer.test.csv
    python3 bench/automatic_sweep.py --bin target/debug/backprop --synthetic 3000

`--synthetic N` makes a deterministic N-row, 12-column classification set (two interleaved
noisy spirals and ten noise columns) and holds out its last 20% as the test set.
Only the standard library.
"""

import argparse
import json
import math
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def call(base, method, path, body=None, ctype="application/json"):
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method, headers={"content-type": ctype})
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())


def synthetic(n, seed=1):
    rnd = random.Random(seed)
    lines = [",".join([f"x{j}" for j in range(12)] + ["target"])]
    for i in range(n):
        c = i % 2
        t = rnd.uniform(0.5, 3.0 * math.pi)
        r = t / (3.0 * math.pi)
        a = t + c * math.pi
        x, y = r * math.cos(a) + rnd.gauss(0, 0.05), r * math.sin(a) + rnd.gauss(0, 0.05)
        noise = [rnd.gauss(0, 1) for _ in range(10)]
        lines.append(",".join(f"{v:.5f}" for v in [x, y] + noise) + f",{c}")
    cut = 1 + int(n * 0.8)
    return "\n".join(lines[:cut]) + "\n", "\n".join([lines[0]] + lines[cut:]) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/debug/backprop")
    ap.add_argument("--train")
    ap.add_argument("--test")
    ap.add_argument("--synthetic", type=int)
    ap.add_argument("--target", default="target")
    ap.add_argument("--max-trials", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-concurrent-jobs", type=int, default=os.cpu_count() or 2)
    a = ap.parse_args()
    if a.synthetic:
        train, test = synthetic(a.synthetic)
    else:
        train = open(a.train).read()
        test = open(a.test).read() if a.test else None
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as d:
        log = open(os.path.join(d, "server.log"), "w")
        srv = subprocess.Popen(
            [a.bin, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", d,
             "--max-concurrent-jobs", str(a.max_concurrent_jobs)],
            stdout=log, stderr=log)
        try:
            for _ in range(200):
                try:
                    call(base, "GET", "/healthz")
                    break
                except Exception:
                    time.sleep(0.1)
            q = f"/v1/datasets?target={a.target}"
            tr = call(base, "POST", q, train.encode(), "text/csv")
            te = call(base, "POST", q, test.encode(), "text/csv") if test else None
            t0 = time.time()
            s = call(base, "POST", "/v1/sweeps",
                     {"dataset_id": tr["id"], "max_trials": a.max_trials, "seed": a.seed})
            while s["status"] not in ("succeeded", "failed", "cancelled"):
                time.sleep(0.5)
                s = call(base, "GET", f"/v1/sweeps/{s['id']}")
            took = time.time() - t0
            # (with cross-validation every rung of a trial is one job per fold)
            jobs = sum(len(t["jobs"]) * (1 + len(t.get("fold_jobs", []))) for t in s["trials"])
            epochs = sum(t["epochs"] or 0 for t in s["trials"])
            print(f"rows: {tr['rows']} train, trials: {len(s['trials'])}, trial jobs: {jobs}, "
                  f"epochs (last jobs): {epochs}, rungs: {s['rungs']}")
            print(f"sweep {s['status']} in {took:.1f} s; best: {json.dumps(s['best'])}")
            if te and s.get("best") and s["best"].get("model_id"):
                e = call(base, "POST", f"/v1/models/{s['best']['model_id']}/evaluate",
                         {"dataset_id": te["id"]})
                keys = ["accuracy", "log_loss", "roc_auc"] if e["task"] == "classification" else ["r2", "mae", "rmse"]
                print("test set: " + ", ".join(f"{k} {e[k]:.4f}" for k in keys if e.get(k) is not None))
        finally:
            srv.terminate()
            srv.wait()


if __name__ == "__main__":
    sys.exit(main())
