#!/usr/bin/env python3
"""Soak: several client processes keep uploading datasets, submitting small jobs, streaming
their events, predicting, listing and deleting against one server for --duration seconds
(20 minutes by default), while the server's resident memory, open file descriptors and
database size are sampled. At the end everything left is deleted through the API and the
database's rows are counted.

    cargo build --release && bench/soak.py                       # 20 minutes, SQLite
    bench/soak.py --duration 90 --bin target/debug/backprop      # what .ci/run does
    bench/soak.py --database-url postgres://postgres@127.0.0.1:5432/test   # a fresh schema
    bench/soak.py --url http://127.0.0.1:8080 --pid 1234 --db data/backprop.db   # a running server

Exits non-zero when any request failed that was not a deliberate one (an invalid spec must
answer 422, an unknown id 404), when resident memory grows after warm-up (least-squares
slope over the samples after --warmup, projected over that window, beyond --rss-tolerance-mb
or 10 %), when file descriptors grow after warm-up (beyond --fd-tolerance), or when the
database does not shrink back to what is stored: after the final deletes no dataset, job,
epoch, checkpoint or model row may remain, and (SQLite) the file may not grow in the second
half of the run by more than 25 % + 2 MB (deleted rows' pages are reused; the file itself only
shrinks with VACUUM). The curve goes to --csv (default: soak-<date>.csv in the working
directory). Only the Python standard library is needed (psql for --database-url).
"""

import argparse
import csv
import json
import multiprocessing as mp
import os
import random
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TABLES = ["datasets", "dataset_parts", "jobs", "epochs", "checkpoints", "models", "idempotency"]


# ---------------------------------------------------------------- HTTP

class Client:
    """Counts every request by (kind, status); anything unexpected is a failure."""

    def __init__(self, base, total):
        self.base = base
        self.total = total
        self.counts = Counter()
        self.failures = []

    def call(self, kind, method, path, body=None, ctype="application/json", expect=(200,), timeout=60):
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data, {"content-type": ctype}, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        except Exception as e:  # connection refused, reset, timeout
            status, raw = 0, str(e).encode()
        self.counts[(kind, status)] += 1
        with self.total.get_lock():
            self.total.value += 1
        if status not in expect:
            self.failures.append(f"{method} {path}: {status} {raw[:300]!r}")
            return None
        try:
            return json.loads(raw) if raw else {}
        except ValueError:
            return {}

    def stream_events(self, job_id, timeout=300):
        """Reads the job's SSE stream until its final status event; returns that status."""
        req = urllib.request.Request(f"{self.base}/v1/jobs/{job_id}/events")
        status, final = 0, None
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                status = r.status
                event, epochs = None, 0
                for line in r:
                    line = line.decode().rstrip("\n")
                    if line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:") and event == "epoch":
                        epochs += 1
                    elif line.startswith("data:") and event == "status":
                        final = json.loads(line[5:]).get("status")
                        break
        except Exception as e:
            self.failures.append(f"events {job_id}: {e}")
        self.counts[("events", status)] += 1
        with self.total.get_lock():
            self.total.value += 1
        if status != 200:
            self.failures.append(f"events {job_id}: {status}")
        return final


def dataset(rng, rows):
    """Two features, class 1 inside a circle; sometimes as CSV."""
    feats = [[round(rng.uniform(-2, 2), 4), round(rng.uniform(-2, 2), 4)] for _ in range(rows)]
    targets = [1 if x * x + y * y < 1.5 else 0 for x, y in feats]
    if rng.random() < 0.5:
        lines = ["x,y,target"] + [f"{x},{y},{t}" for (x, y), t in zip(feats, targets)]
        return "\n".join(lines).encode(), "text/csv"
    return {"features": feats, "targets": targets}, "application/json"


def client_loop(n, base, deadline, pause, keep, total, results):
    rng = random.Random(n)
    c = Client(base, total)
    mine = {"datasets": [], "jobs": [], "models": []}
    i = 0
    while time.time() < deadline:
        i += 1
        body, ctype = dataset(rng, rng.randint(60, 400))
        q = "?name=soak&target=target" if ctype == "text/csv" else "?name=soak"
        ds = c.call("upload", "POST", "/v1/datasets" + q, body, ctype, expect=(201,))
        if ds is None:
            time.sleep(pause)
            continue
        mine["datasets"].append(ds["id"])
        spec = {"dataset_id": ds["id"], "layers": [{"units": rng.choice([4, 8, 16]), "activation": "tanh"}, {"units": 1}],
                "loss": "binary_crossentropy", "optimizer": {"type": "adam", "learning_rate": 0.02},
                "epochs": rng.randint(10, 40), "batch_size": 16, "seed": i, "validation_split": 0.2}
        job = c.call("submit", "POST", "/v1/jobs", spec, expect=(202,))
        if job is not None:
            mine["jobs"].append(job["id"])
            final = c.stream_events(job["id"])
            j = c.call("job", "GET", f"/v1/jobs/{job['id']}")
            if j is not None and (final != "succeeded" or j.get("status") != "succeeded"):
                c.failures.append(f"job {job['id']} ended {final} / {j.get('status')}: {j.get('error')}")
            elif j is not None:
                c.call("history", "GET", f"/v1/jobs/{job['id']}/history")
                model = j["model_id"]
                mine["models"].append(model)
                for _ in range(5):
                    c.call("predict", "POST", f"/v1/models/{model}/predict",
                           {"inputs": [[rng.uniform(-2, 2), rng.uniform(-2, 2)] for _ in range(rng.randint(1, 64))]})
        c.call("list", "GET", "/v1/jobs?limit=20")
        c.call("list", "GET", "/v1/datasets?limit=20")
        c.call("list", "GET", "/v1/models?limit=20")
        if i % 5 == 0:
            # Deliberate failures: they must fail exactly so.
            c.call("deliberate", "POST", "/v1/jobs", {"dataset_id": ds["id"], "layers": [{"units": 2, "activation": "rleu"}],
                                                    "loss": "mse"}, expect=(422,))
            c.call("deliberate", "GET", f"/v1/models/{uuid.uuid4()}", expect=(404,))
        # Keep only the last `keep` of each: deletes at the rate of creates.
        for kind in ("models", "jobs", "datasets"):
            while len(mine[kind]) > keep:
                c.call("delete", "DELETE", f"/v1/{kind}/{mine[kind].pop(0)}", expect=(204,))
        time.sleep(pause)
    results.put((n, dict(c.counts), c.failures, mine))


# ---------------------------------------------------------------- sampling

def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


class Db:
    def __init__(self, sqlite_path=None, pg_url=None):
        self.path, self.pg = sqlite_path, pg_url

    def sizes(self):
        """(database bytes, WAL bytes)."""
        if self.pg:
            return int(self.psql("SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c "
                                 "JOIN pg_namespace n ON n.oid = c.relnamespace "
                                 "WHERE n.nspname = current_schema() AND c.relkind = 'r'") or 0), 0
        if not self.path:
            return 0, 0
        size = lambda p: os.path.getsize(p) if os.path.exists(p) else 0
        return size(self.path), size(self.path + "-wal")

    def rows(self):
        if self.pg:
            q = " UNION ALL ".join(f"SELECT '{t}', count(*) FROM {t}" for t in TABLES)
            out = self.psql(q)
            return {line.split("|")[0]: int(line.split("|")[1]) for line in out.splitlines() if "|" in line}
        if not self.path:
            return {}
        con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10)
        try:
            return {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}
        finally:
            con.close()

    def free_pages(self):
        if self.pg or not self.path:
            return None
        con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10)
        try:
            return con.execute("PRAGMA freelist_count").fetchone()[0], con.execute("PRAGMA page_count").fetchone()[0]
        finally:
            con.close()

    def psql(self, q):
        return subprocess.run(["psql", self.pg, "-AtXqc", q], check=True, capture_output=True, text=True).stdout.strip()


def slope(points):
    """Least-squares slope of (x, y) points."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    den = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / den if den else 0.0


# ---------------------------------------------------------------- main

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def default_bin():
    for profile in ("release", "debug"):
        p = os.path.join(ROOT, "target", profile, "backprop")
        if os.path.exists(p):
            return p
    return os.path.join(ROOT, "target", "release", "backprop")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=1200, help="seconds of load (default 1200)")
    ap.add_argument("--clients", type=int, default=4, help="client processes (default 4)")
    ap.add_argument("--sample-secs", type=float, default=None, help="sampling period (default duration/60, 2..20 s)")
    ap.add_argument("--warmup", type=float, default=0.25, help="fraction of the run before memory must be flat")
    ap.add_argument("--pause", type=float, default=0.05, help="seconds each client waits between rounds")
    ap.add_argument("--keep", type=int, default=3, help="datasets/jobs/models each client keeps before deleting")
    ap.add_argument("--rss-tolerance-mb", type=float, default=16, help="allowed RSS growth after warm-up")
    ap.add_argument("--fd-tolerance", type=int, default=16, help="allowed fd growth after warm-up")
    ap.add_argument("--bin", default=default_bin(), help="the backprop binary to start")
    ap.add_argument("--threads", default="1", help="--threads of the started server")
    ap.add_argument("--database-url", help="postgres://… : run on a fresh schema of this database")
    ap.add_argument("--url", help="target a running server instead of starting one (needs --pid)")
    ap.add_argument("--pid", type=int, help="the running server's pid, for RSS and fds")
    ap.add_argument("--db", help="the running server's SQLite file, for sizes and rows")
    ap.add_argument("--csv", default=f"soak-{time.strftime('%Y-%m-%d')}.csv", help="where the curve goes")
    a = ap.parse_args()
    sample_secs = a.sample_secs or min(20.0, max(2.0, a.duration / 60))

    tmp = tempfile.mkdtemp(prefix="backprop-soak-")
    server, schema = None, None
    if a.url:
        if not a.pid:
            sys.exit("--url needs --pid (the server's process id) to sample memory and fds")
        base, pid, db = a.url.rstrip("/"), a.pid, Db(sqlite_path=a.db)
    else:
        if not os.path.exists(a.bin):
            sys.exit(f"no binary at {a.bin}: cargo build --release (or pass --bin)")
        port = free_port()
        args = [a.bin, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", tmp, "--threads", a.threads,
                "--checkpoint-secs", "1"]
        if a.database_url:
            schema = f"bp_soak_{uuid.uuid4().hex}"
            os.environ["PGOPTIONS"] = "-c client_min_messages=warning"
            subprocess.run(["psql", a.database_url, "-qXc", f"CREATE SCHEMA {schema}"], check=True)
            sep = "&" if "?" in a.database_url else "?"
            url = f"{a.database_url}{sep}options=-csearch_path%3D{schema}"
            args += ["--database-url", url]
            db = Db(pg_url=url)
        else:
            db = Db(sqlite_path=os.path.join(tmp, "backprop.db"))
        log = open(os.path.join(tmp, "server.log"), "w")
        server = subprocess.Popen(args, stdout=log, stderr=log, env={**os.environ, "RUST_LOG": "warn"})
        base, pid = f"http://127.0.0.1:{port}", server.pid
        for _ in range(400):
            try:
                urllib.request.urlopen(base + "/readyz", timeout=2).read()
                break
            except Exception:
                if server.poll() is not None:
                    sys.exit(f"server exited: {open(os.path.join(tmp, 'server.log')).read()}")
                time.sleep(0.05)

    print(f"soak: {a.clients} clients for {a.duration:.0f} s against {base} (pid {pid}), "
          f"sampling every {sample_secs:.0f} s, {os.cpu_count()} cores", flush=True)
    total = mp.Value("q", 0)
    results = mp.Queue()
    t0 = time.time()
    deadline = t0 + a.duration
    procs = [mp.Process(target=client_loop, args=(n, base, deadline, a.pause, a.keep, total, results))
             for n in range(a.clients)]
    for p in procs:
        p.start()
    samples = []
    fields = ["t_s", "rss_kb", "fds", "db_bytes", "wal_bytes", "requests"] + TABLES
    print(" ".join(f"{f:>11}" for f in fields), flush=True)

    def sample():
        size, wal = db.sizes()
        rows = db.rows()
        s = {"t_s": round(time.time() - t0, 1), "rss_kb": rss_kb(pid), "fds": fds(pid), "db_bytes": size,
             "wal_bytes": wal, "requests": total.value, **{t: rows.get(t, "") for t in TABLES}}
        samples.append(s)
        print(" ".join(f"{s[f]:>11}" for f in fields), flush=True)

    exit_code = 0
    try:
        while time.time() < deadline:
            sample()
            time.sleep(max(0.0, min(sample_secs, deadline - time.time())))
        outcomes = [results.get(timeout=a.duration + 600) for _ in procs]
        for p in procs:
            p.join(timeout=30)
        sample()  # clients done, their last items still stored

        counts, failures, left = Counter(), [], {"datasets": [], "jobs": [], "models": []}
        for _, c, f, mine in outcomes:
            counts.update(c)
            failures += f
            for k in left:
                left[k] += mine[k]
        # Delete what is left (what the clients kept, then anything listed), then count rows.
        cleaner = Client(base, total)
        for kind in ("models", "jobs", "datasets"):
            for i in left[kind]:
                cleaner.call("delete", "DELETE", f"/v1/{kind}/{i}", expect=(204,))
            page = cleaner.call("list", "GET", f"/v1/{kind}?limit=500") or {"items": []}
            for item in page["items"]:
                cleaner.call("delete", "DELETE", f"/v1/{kind}/{item['id']}", expect=(204,))
        counts.update(cleaner.counts)
        failures += cleaner.failures
        sample()
        final_rows = samples[-1]

        with open(a.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            w.writerows(samples)

        print("\nrequests by kind and status:")
        for (kind, status), n in sorted(counts.items()):
            print(f"  {kind:<10} {status:>3} {n:>8}")
        deliberate = sum(n for (k, s), n in counts.items() if k == "deliberate" and s in (404, 422))
        print(f"total {sum(counts.values())} requests, {deliberate} deliberate failures, "
              f"{len(failures)} unexpected failures")
        for f in failures[:20]:
            print("  UNEXPECTED", f)
        problems = []
        if failures:
            problems.append(f"{len(failures)} unexpected failures")

        during = [s for s in samples[:-2] if s["t_s"] >= a.warmup * a.duration]
        if len(during) >= 3:
            window = (during[-1]["t_s"] - during[0]["t_s"]) / 60
            rss = slope([(s["t_s"] / 60, s["rss_kb"] / 1024) for s in during])
            fd = slope([(s["t_s"] / 60, s["fds"]) for s in during])
            median_rss = sorted(s["rss_kb"] for s in during)[len(during) // 2] / 1024
            grow_mb = rss * window
            print(f"after warm-up ({len(during)} samples over {window:.1f} min): RSS {during[0]['rss_kb'] / 1024:.1f} → "
                  f"{during[-1]['rss_kb'] / 1024:.1f} MB, slope {rss:+.3f} MB/min ({grow_mb:+.1f} MB over the window); "
                  f"fds {during[0]['fds']} → {during[-1]['fds']} (max {max(s['fds'] for s in during)}), slope {fd:+.2f}/min")
            if grow_mb > max(a.rss_tolerance_mb, 0.10 * median_rss):
                problems.append(f"RSS grows {grow_mb:.1f} MB after warm-up")
            if fd * window > a.fd_tolerance or max(s["fds"] for s in during) - during[0]["fds"] > 2 * a.fd_tolerance:
                problems.append("file descriptors grow after warm-up")
            if db.path:
                half = [s for s in samples[:-2] if s["t_s"] >= a.duration / 2]
                if half and during[-1]["db_bytes"] > 1.25 * half[0]["db_bytes"] + 2 * 2**20:
                    problems.append(f"database file grows in the second half: {half[0]['db_bytes']} → {during[-1]['db_bytes']} bytes")
        else:
            print("run too short for a memory verdict (fewer than 3 samples after warm-up)")
        leftover = {t: final_rows[t] for t in TABLES[:-1] if final_rows.get(t) not in ("", 0)}
        print(f"rows after deleting everything: {({t: final_rows[t] for t in TABLES})}")
        if leftover:
            problems.append(f"rows left after deleting everything: {leftover}")
        pages = db.free_pages()
        if pages:
            print(f"SQLite: {pages[0]} of {pages[1]} pages free for reuse; file {final_rows['db_bytes']} bytes, "
                  f"WAL {final_rows['wal_bytes']} bytes")
        print(f"curve written to {a.csv}")
        if problems:
            print("FAIL: " + "; ".join(problems))
            exit_code = 1
        else:
            print("PASS")
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
        if server:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
            if server.returncode not in (0, None):
                print(f"server exited with {server.returncode}; log in {tmp}/server.log")
                exit_code = 1
        if schema:
            subprocess.run(["psql", a.database_url, "-qXc", f"DROP SCHEMA {schema} CASCADE"], check=False)
        if exit_code == 0:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"server data and log kept in {tmp}")
    sys.exit(exit_code)


if __name__ == "__main__":
    main()
