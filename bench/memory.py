#!/usr/bin/env python3
"""Peak memory of an API node and a worker for the Kubernetes resource sizes
(docs/kubernetes.md): an API node (`serve --no-workers`) takes a large CSV upload and large
predict batches, a worker (`worker`) trains on that dataset; both on one PostgreSQL schema.
Prints each process's peak resident memory (VmHWM) after each phase.

    BACKPROP_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test \
        python3 bench/memory.py --bin target/release/backprop --rows 20000 --cols 300

Only the standard library, psql for the schema.
"""

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

KEY = "memory-bench-secret"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def peak_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def call(base, method, path, body=None, ctype="application/json"):
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"authorization": f"Bearer {KEY}", "content-type": ctype})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())


def wait_http(url):
    for _ in range(300):
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"{url} did not answer")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", default="target/release/backprop")
    p.add_argument("--rows", type=int, default=20000)
    p.add_argument("--cols", type=int, default=300)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--predict-rows", type=int, default=10000)
    p.add_argument("--postgres-url", default=os.environ.get("BACKPROP_TEST_POSTGRES_URL"))
    a = p.parse_args()
    schema = f"bp_memory_{os.getpid()}"
    subprocess.run(["psql", a.postgres_url, "-qc", f"CREATE SCHEMA {schema}"], check=True)
    sep = "&" if "?" in a.postgres_url else "?"
    url = f"{a.postgres_url}{sep}options=-csearch_path%3D{schema}"
    tmp = tempfile.mkdtemp()
    port, hport = free_port(), free_port()
    env = dict(os.environ, DATABASE_URL=url, BACKPROP_API_KEYS=f"m:admin:{KEY}", RUST_LOG="warn")
    log = open(os.path.join(tmp, "log"), "w")
    api = subprocess.Popen([a.bin, "serve", "--no-workers", "--listen", f"127.0.0.1:{port}",
                            "--data-dir", tmp], env=env, stdout=log, stderr=log)
    worker = subprocess.Popen([a.bin, "worker", "--health-listen", f"127.0.0.1:{hport}",
                               "--data-dir", tmp, "--threads", "2", "--max-concurrent-jobs", "2"],
                              env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/healthz")
        wait_http(f"http://127.0.0.1:{hport}/healthz")
        print(f"idle: api {peak_mb(api.pid):.0f} MB, worker {peak_mb(worker.pid):.0f} MB")
        rnd = random.Random(1)
        lines = [",".join(f"x{j}" for j in range(a.cols)) + ",target"]
        for _ in range(a.rows):
            row = [rnd.random() for _ in range(a.cols)]
            lines.append(",".join(f"{v:.6f}" for v in row) + f",{'ab'[row[0] > 0.5]}")
        csv = ("\n".join(lines) + "\n").encode()
        d = call(base, "POST", "/v1/datasets?name=big&target=target", csv, "text/csv")
        print(f"upload of {len(csv) / 1e6:.0f} MB CSV ({a.rows}x{a.cols}): api {peak_mb(api.pid):.0f} MB")
        spec = {"dataset_id": d["id"], "layers": [{"units": 256, "activation": "relu"},
                {"units": 128, "activation": "relu"}, {"units": 1}],
                "loss": "binary_crossentropy", "epochs": a.epochs, "batch_size": 128,
                "validation_split": 0.1}
        jobs = [call(base, "POST", "/v1/jobs", spec)["id"] for _ in range(2)]
        t0 = time.time()
        while True:
            st = [call(base, "GET", f"/v1/jobs/{j}")["status"] for j in jobs]
            if all(s in ("succeeded", "failed", "cancelled") for s in st):
                break
            time.sleep(0.5)
        print(f"two jobs training at once ({time.time() - t0:.0f} s): worker {peak_mb(worker.pid):.0f} MB, statuses {st}")
        model = call(base, "GET", f"/v1/jobs/{jobs[0]}")["model_id"]
        inputs = [[rnd.random() for _ in range(a.cols)] for _ in range(a.predict_rows)]
        for _ in range(3):
            call(base, "POST", f"/v1/models/{model}/predict", {"inputs": inputs})
        print(f"3 predicts of {a.predict_rows} rows: api {peak_mb(api.pid):.0f} MB")
    finally:
        api.terminate()
        worker.terminate()
        api.wait()
        worker.wait()
        subprocess.run(["psql", a.postgres_url, "-qc", f"SET client_min_messages = warning; DROP SCHEMA {schema} CASCADE"], check=True)


if __name__ == "__main__":
    main()
