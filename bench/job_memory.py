#!/usr/bin/env python3
"""The dry run's `estimated_memory_bytes` against the memory a job really takes, on the
reference workloads of issue 23: one-hot wide, numeric wide, a million rows. For each: upload
the CSV, restart the server on the same data directory (so the upload's peak is gone), read
its resident memory, run the job to its end, and read its peak (VmHWM). The job's measured
peak is the difference; the estimate should be within 2x of it, on the large side.

    cargo build --release && python3 bench/job_memory.py --bin target/release/backprop

Only the standard library.
"""

import argparse
import io
import json
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


def status_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def call(base, method, path, body=None, ctype="application/json"):
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"content-type": ctype})
    try:
        with urllib.request.urlopen(req, timeout=1800) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


class Node:
    def __init__(self, binary, data_dir):
        self.binary, self.dir, self.proc = binary, data_dir, None

    def start(self):
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", self.dir,
             "--max-job-memory", "0", "--max-concurrent-jobs", "1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(300):
            try:
                urllib.request.urlopen(self.base + "/healthz", timeout=1)
                return
            except OSError:
                time.sleep(0.1)
        sys.exit("the server did not start")

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def one_hot_wide(rows, categories):
    rng = random.Random(1)
    out = io.StringIO()
    out.write("cat,x,y\n")
    for i in range(rows):
        out.write(f"c{rng.randrange(categories)},{rng.random():.4f},{i % 2}\n")
    return out.getvalue(), {"columns": {"cat": "categorical"}, "max_categories": categories,
                            "loss": "binary_crossentropy"}


def numeric(rows, cols):
    rng = random.Random(2)
    out = io.StringIO()
    out.write(",".join(f"f{j}" for j in range(cols)) + ",y\n")
    for _ in range(rows):
        vals = [rng.random() for _ in range(cols)]
        out.write(",".join(f"{v:.4f}" for v in vals) + f",{sum(vals[:3]):.4f}\n")
    return out.getvalue(), {"loss": "mse"}


def measure(binary, name, csv, extra):
    with tempfile.TemporaryDirectory() as d:
        node = Node(binary, d)
        node.start()
        st, ds = call(node.base, "POST", "/v1/datasets?target=y", csv.encode(), "text/csv")
        assert st == 201, ds
        node.stop()
        node.start()
        time.sleep(0.5)
        spec = {"dataset_id": ds["id"], "layers": [{"units": 64, "activation": "relu"}, {}],
                "epochs": 1, "batch_size": 256, **extra}
        st, dry = call(node.base, "POST", "/v1/jobs?dry_run=true", spec)
        assert st == 200, dry
        before = status_kb(node.proc.pid, "VmRSS")
        st, job = call(node.base, "POST", "/v1/jobs", spec)
        assert st == 202, job
        while True:
            st, j = call(node.base, "GET", f"/v1/jobs/{job['id']}")
            if j["status"] in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(0.05)
        assert j["status"] == "succeeded", j
        peak = status_kb(node.proc.pid, "VmHWM") - before
        node.stop()
    est = dry["estimated_memory_bytes"]
    print(f"{name:14} estimate {est / 1e6:9.1f} MB   measured peak {peak / 1e6:9.1f} MB   "
          f"ratio {est / peak:5.2f}", flush=True)
    return est / peak


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default="target/release/backprop")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every row count")
    a = ap.parse_args()
    s = a.scale
    ratios = [
        measure(a.bin, "one-hot wide", *one_hot_wide(int(50_000 * s), 2000)),
        measure(a.bin, "numeric wide", *numeric(int(20_000 * s), 500)),
        measure(a.bin, "1M rows", *numeric(int(1_000_000 * s), 10)),
    ]
    ok = all(0.5 <= r <= 2.0 for r in ratios)
    print("within 2x on every workload" if ok else "OUTSIDE 2x", flush=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
