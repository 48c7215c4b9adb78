#!/usr/bin/env python3
"""Upload speed and memory against pandas, in one sitting.

Makes a numeric CSV (default 30,000 rows × 784 features of 4-decimal numbers plus a label:
about 165 MB), times `pandas.read_csv` on it, starts the server, times `POST /v1/datasets` of
the same file, and reads the server's peak resident memory (VmHWM) from /proc. Prints one
JSON line with both ratios (medians of `--repeat` runs, pandas and the upload alternating):

- `time_ratio` = upload seconds / pandas seconds (the target is ≤ 1);
- `memory_ratio` = (server peak RSS − its RSS before the upload) / (rows × columns × 4 bytes,
  the data as float32) (the target is ≤ 2).

    cargo build --release && python3 bench/tabular_upload.py
    python3 bench/tabular_upload.py --rows 1000000 --cols 20      # a million-row file
    python3 bench/tabular_upload.py --parquet     # the same file as Parquet (pandas writes it,
                                                  # snappy) against pandas.read_parquet

Needs pandas (and pyarrow for --parquet). The load average is printed: run it on a quiet machine.
"""
import argparse
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_csv(path, rows, cols, seed=0, european=False):
    """With `european`, a semicolon file with decimal commas (as a German spreadsheet writes
    it): the server sniffs and transcodes it, pandas is told `sep=";", decimal=","`."""
    rnd = random.Random(seed)
    sep = ";" if european else ","
    # A pool of rows keeps generation fast; the parser sees 4-decimal numbers either way.
    pool = []
    for _ in range(64):
        cells = (f"{rnd.random():.4f}" for _ in range(cols))
        pool.append(sep.join(c.replace(".", ",") if european else c for c in cells))
    with open(path, "w") as f:
        f.write(sep.join(f"x{j}" for j in range(cols)) + f"{sep}label\n")
        for i in range(rows):
            f.write(pool[(i * 7 + i // 64) % 64] + f"{sep}{i % 10}\n")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def rss_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=30000)
    ap.add_argument("--cols", type=int, default=784)
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "backprop"))
    ap.add_argument("--csv", help="use this file instead of making one")
    ap.add_argument("--european", action="store_true",
                    help="semicolons and decimal commas (pandas is given sep and decimal)")
    ap.add_argument("--parquet", action="store_true",
                    help="upload the file as Parquet (written by pandas, snappy); the peer is "
                         "pandas.read_parquet")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each; the medians are printed")
    args = ap.parse_args()
    import pandas

    tmp = tempfile.mkdtemp()
    path = args.csv or os.path.join(tmp, "data.csv")
    if not args.csv:
        make_csv(path, args.rows, args.cols, european=args.european)
    ctype = "text/csv"
    if args.parquet:
        frame = (pandas.read_csv(path, sep=";", decimal=",") if args.european
                 else pandas.read_csv(path))
        path = os.path.join(tmp, "data.parquet")
        frame.to_parquet(path, index=False)
        del frame
        ctype = "application/vnd.apache.parquet"
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        body = f.read()

    def read_pandas():
        if args.parquet:
            return pandas.read_parquet(path)
        if args.european:
            return pandas.read_csv(path, sep=";", decimal=",")
        return pandas.read_csv(path)

    # Alternating, `--repeat` times each: pandas, then a fresh server's upload; medians.
    pandas_runs, uploads = [], []
    rows = cols = 0
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        frame = read_pandas()
        pandas_runs.append(time.perf_counter() - t0)
        rows, cols = frame.shape
        del frame
        uploads.append(upload(args, tmp, body, ctype))
    f32 = rows * cols * 4
    pandas_s = statistics.median(pandas_runs)
    upload_s = statistics.median(u["seconds"] for u in uploads)
    before = statistics.median(u["before_kb"] for u in uploads)
    peak = statistics.median(u["peak_kb"] for u in uploads)
    print(json.dumps({
        "rows": rows, "columns": cols, "file_mb": round(size / 1e6, 1),
        "float32_mb": round(f32 / 1e6, 1), "repeat": args.repeat,
        "format": "parquet" if args.parquet else "csv",
        "pandas_read_s": round(pandas_s, 3), "upload_s": round(upload_s, 3),
        "time_ratio": round(upload_s / pandas_s, 2),
        "pandas_runs_s": [round(t, 3) for t in pandas_runs],
        "upload_runs_s": [round(u["seconds"], 3) for u in uploads],
        "server_rss_before_mb": round(before / 1e3, 1), "server_peak_rss_mb": round(peak / 1e3, 1),
        "memory_ratio": round((peak - before) * 1e3 / f32, 2),
        "memory_ratio_runs": [round((u["peak_kb"] - u["before_kb"]) * 1e3 / f32, 2) for u in uploads],
        "peak_rss_ratio": round(peak * 1e3 / f32, 2),
        "dataset_rows": uploads[-1]["rows"], "loadavg": os.getloadavg(),
    }))


def upload(args, tmp, body, ctype):
    """One upload to a fresh server: seconds, RSS before and peak (kB), rows stored."""
    port = free_port()
    data_dir = tempfile.mkdtemp(dir=tmp)
    server = subprocess.Popen(
        [args.binary, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", data_dir,
         "--insecure-no-auth", "--max-body-bytes", str(1 << 31)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                urllib.request.urlopen(base + "/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.05)
        before = rss_kb(server.pid, "VmRSS")
        req = urllib.request.Request(base + "/v1/datasets?name=bench&target=label", data=body,
                                     headers={"content-type": ctype}, method="POST")
        t0 = time.perf_counter()
        with urllib.request.urlopen(req, timeout=600) as r:
            answer = json.loads(r.read())
        seconds = time.perf_counter() - t0
        peak = rss_kb(server.pid, "VmHWM")
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(data_dir, ignore_errors=True)
    return {"seconds": seconds, "before_kb": before, "peak_kb": peak, "rows": answer.get("rows")}


if __name__ == "__main__":
    sys.exit(main())
