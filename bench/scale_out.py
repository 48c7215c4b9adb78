#!/usr/bin/env python3
"""Scale-out throughput: the same 200 tiny training jobs on 1 node and on 3 nodes sharing one
PostgreSQL database. Prints jobs/minute (first submission to last finish) and claim latency
(queued -> running: started_at - created_at from GET /v1/jobs), p50 and p99.

    cargo build --release
    BACKPROP_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test bench/scale_out.py

Options (environment): JOBS=200, NODES="1 3", EPOCHS=20, MAX_CONCURRENT=2, THREADS=1.
Each run gets a fresh schema (created with psql, dropped afterwards). Only the standard
library and psql are needed. Jobs are submitted round-robin to the nodes, as a load balancer
in front of them would.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "backprop")
BASE = os.environ.get("BACKPROP_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")
JOBS = int(os.environ.get("JOBS", "200"))
NODES = [int(n) for n in os.environ.get("NODES", "1 3").split()]
EPOCHS = int(os.environ.get("EPOCHS", "20"))
MAX_CONCURRENT = os.environ.get("MAX_CONCURRENT", "2")
THREADS = os.environ.get("THREADS", "1")


def call(method, url, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data, {"content-type": "application/json"}, method=method)
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ms(rfc3339):
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp() * 1000


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def run(n_nodes):
    os.environ["PGOPTIONS"] = "-c client_min_messages=warning"
    schema = f"bp_bench_{uuid.uuid4().hex}"
    subprocess.run(["psql", BASE, "-qXc", f"CREATE SCHEMA {schema}"], check=True)
    sep = "&" if "?" in BASE else "?"
    url = f"{BASE}{sep}options=-csearch_path%3D{schema}"
    tmp = tempfile.mkdtemp()
    procs, bases = [], []
    try:
        for i in range(n_nodes):
            port = free_port()
            log = open(os.path.join(tmp, f"node{i}.log"), "w")
            procs.append(subprocess.Popen(
                [BIN, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", os.path.join(tmp, str(i)),
                 "--database-url", url, "--max-concurrent-jobs", MAX_CONCURRENT, "--threads", THREADS],
                stdout=log, stderr=log, env={**os.environ, "RUST_LOG": "warn"}))
            bases.append(f"http://127.0.0.1:{port}")
        for b in bases:
            for _ in range(200):
                try:
                    call("GET", f"{b}/readyz")
                    break
                except Exception:
                    time.sleep(0.05)
        ds = call("POST", f"{bases[0]}/v1/datasets", {
            "name": "xor", "features": [[0, 0], [0, 1], [1, 0], [1, 1]] * 8, "targets": [0, 1, 1, 0] * 8})
        spec = {"dataset_id": ds["id"], "layers": [{"units": 8, "activation": "tanh"}, {"units": 1}],
                "loss": "binary_crossentropy", "epochs": EPOCHS, "batch_size": 4}
        t0 = time.time()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: call("POST", f"{bases[i % n_nodes]}/v1/jobs", {**spec, "seed": i}),
                          range(JOBS)))
        submitted = time.time() - t0
        while True:
            done = sum(call("GET", f"{bases[0]}/v1/jobs?status={s}&limit=500")["items"].__len__()
                       for s in ("succeeded", "failed", "cancelled"))
            if done >= JOBS:
                break
            if time.time() - t0 > 600:
                sys.exit(f"{n_nodes} node(s): only {done}/{JOBS} jobs finished in 600 s")
            time.sleep(0.2)
        jobs, cursor = [], None
        while True:
            page = call("GET", f"{bases[0]}/v1/jobs?limit=500" + (f"&cursor={cursor}" if cursor else ""))
            jobs += page["items"]
            cursor = page.get("next_cursor") or page.get("next")
            if not cursor:
                break
        failed = [j for j in jobs if j["status"] != "succeeded"]
        if failed:
            sys.exit(f"{len(failed)} jobs did not succeed: {failed[0]}")
        first = min(ms(j["created_at"]) for j in jobs)
        last = max(ms(j["finished_at"]) for j in jobs)
        claim = [ms(j["started_at"]) - ms(j["created_at"]) for j in jobs]
        per_min = len(jobs) / ((last - first) / 60000)
        print(f"{n_nodes} node(s): {len(jobs)} jobs in {(last - first) / 1000:.1f} s = {per_min:.0f} jobs/min; "
              f"claim latency p50 {pct(claim, 50):.0f} ms, p99 {pct(claim, 99):.0f} ms "
              f"(submission took {submitted:.1f} s)")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=15)
        subprocess.run(["psql", BASE, "-qXc", f"DROP SCHEMA {schema} CASCADE"], check=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    if not os.path.exists(BIN):
        sys.exit("build first: cargo build --release")
    print(f"{JOBS} jobs of {EPOCHS} epochs (xor, 2-8-1), --max-concurrent-jobs {MAX_CONCURRENT} "
          f"--threads {THREADS} per node, {os.cpu_count()} cores on this machine")
    for n in NODES:
        run(n)
