#!/usr/bin/env python3
"""Training throughput through the HTTP API on the peers' `mlp784` workload.

Starts the release server once per thread count (`--threads T`), uploads a 60,000 × 784 CSV
(10 classes), submits the mlp784 job (784-256-128-10 relu/relu/softmax, categorical
cross-entropy, Adam 1e-3, batch 128, no standardisation, no validation) and reads the epochs'
`samples_per_second` from the job's history: what a user of the API sees. Prints one JSON line
per run and the medians after the first (warm-up) epoch.

    cargo build --release && python3 bench/train_api.py            # 1 and 2 threads, 3 runs
    python3 bench/train_api.py --threads 1 --runs 1 --epochs 3 --rows 20000

Python's standard library only. The data imitates the peers' generator (class prototypes of
Gaussian strokes, shifted, noised, quantised to k/255; rows drawn from 640 such variants)
closely enough for throughput, which does not depend on the numbers.
"""
import argparse
import json
import math
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_csv(rows, seed=0):
    rnd = random.Random(seed)
    side = 28
    protos = []
    for _ in range(10):
        img = [0.0] * (side * side)
        for _ in range(4 + rnd.randrange(4)):
            x0, y0 = 6 + 16 * rnd.random(), 6 + 16 * rnd.random()
            dx, dy = 3 * rnd.random() - 1.5, 3 * rnd.random() - 1.5
            for t in range(6):
                cx, cy = x0 + t * dx, y0 + t * dy
                for i in range(side * side):
                    x, y = i % side, i // side
                    d2 = (x - cx) ** 2 + (y - cy) ** 2
                    if d2 < 40:
                        img[i] += math.exp(-d2 / (2 * 1.3**2))
        top = max(img) or 1.0
        protos.append([min(1.0, v / top) for v in img])
    # 64 noisy, shifted variants per class, then rows drawn from them: the same shape and
    # sparsity as fresh noise per row, in seconds instead of minutes of Python.
    variants = []
    for c in range(10):
        for _ in range(64):
            shift = rnd.randrange(-2, 3)
            cells = []
            for i in range(side * side):
                v = protos[c][(i + shift) % (side * side)] + rnd.gauss(0, 0.05)
                k = int(max(0.0, min(1.0, v)) * 255)
                cells.append("0" if k == 0 else f"{k / 255:.4f}")
            variants.append(",".join(cells) + f",{c}")
    out = [",".join(f"p{i}" for i in range(side * side)) + ",label"]
    out += [variants[rnd.randrange(len(variants))] for _ in range(rows)]
    return ("\n".join(out) + "\n").encode()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def call(base, method, path, body=None, ctype="application/json"):
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data, {"content-type": ctype}, method=method)
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.load(r)


def run(binary, threads, csv, epochs):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as data:
        server = subprocess.Popen(
            [binary, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", data,
             "--insecure-no-auth", "--threads", str(threads), "--max-concurrent-jobs", "1",
             "--max-body-bytes", str(1 << 30)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(200):
                try:
                    urllib.request.urlopen(base + "/readyz", timeout=1)
                    break
                except OSError:
                    time.sleep(0.05)
            ds = call(base, "POST", "/v1/datasets?name=mlp784&target=label", csv, "text/csv")
            job = call(base, "POST", "/v1/jobs", {
                "dataset_id": ds["id"],
                "layers": [{"units": 256, "activation": "relu"},
                           {"units": 128, "activation": "relu"},
                           {"units": 10, "activation": "softmax"}],
                "loss": "categorical_crossentropy",
                "optimizer": {"type": "adam", "learning_rate": 0.001},
                "epochs": epochs, "batch_size": 128, "standardize": False,
                "validation_split": 0.0, "seed": 0})
            while True:
                status = call(base, "GET", f"/v1/jobs/{job['id']}")["status"]
                if status not in ("queued", "running"):
                    break
                time.sleep(0.2)
            if status != "succeeded":
                sys.exit(f"job ended {status}")
            hist = call(base, "GET", f"/v1/jobs/{job['id']}/history")
            epochs_ = hist["epochs"] if isinstance(hist, dict) else hist
            return [round(e["samples_per_second"]) for e in epochs_]
        finally:
            server.terminate()
            server.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, action="append")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--rows", type=int, default=60000)
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "backprop"))
    a = ap.parse_args()
    t0 = time.time()
    csv = make_csv(a.rows)
    print(f"# {a.rows} rows, {len(csv) / 1e6:.0f} MB of CSV in {time.time() - t0:.0f} s",
          file=sys.stderr)
    for threads in a.threads or [1, 2]:
        after_first = []
        for r in range(a.runs):
            sps = run(a.binary, threads, csv, a.epochs)
            print(json.dumps({"bench": "train_api", "workload": "mlp784", "threads": threads,
                              "run": r + 1, "samples_per_second": sps}))
            after_first += sps[1:] or sps
        print(json.dumps({"bench": "train_api", "threads": threads,
                          "median_after_epoch_1": round(statistics.median(after_first))}))


if __name__ == "__main__":
    main()
