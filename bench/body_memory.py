#!/usr/bin/env python3
"""Issue 23, item 2: what one small request costs in memory. Each case sends one body (most
gzip-compressed, as the attacker did) to a fresh server and reads how far the request raised
the server's peak resident memory (VmHWM) and what it held afterwards (VmRSS), against the
decoded body's size. The promise: every route's peak stays within 8x the decoded body (plus
32 MB, what a fresh process's first request costs whatever its size: a blocking thread, an
allocator arena, the model loaded), and a refused body is refused while it is read.

    cargo build --release && python3 bench/body_memory.py --bin target/release/backprop

Exits non-zero when a case goes past that. Only the standard library.
"""

import argparse
import gzip
import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def status(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def request(base, method, path, body=None, gz=False, ctype="application/json"):
    headers = {"content-type": ctype}
    if gz:
        body = gzip.compress(body, 6)
        headers["content-encoding"] = "gzip"
    req = urllib.request.Request(base + path, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=600) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Node:
    def __init__(self, binary):
        self.tmp = tempfile.TemporaryDirectory()
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [binary, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", self.tmp.name],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(300):
            try:
                urllib.request.urlopen(self.base + "/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.1)

    def stop(self):
        self.proc.terminate()
        self.proc.wait()
        self.tmp.cleanup()


MODEL = {"input_dim": 2, "feature_names": ["x", "y"], "classes": ["no", "yes"],
         "class_encoding": "categorical",
         "layers": [{"units": 2, "activation": "softmax", "weights": [[1.0, -1.0], [0.5, 0.2]],
                     "bias": [0.0, 0.0]}]}


FIXED = 32e6


def zeros(n):
    return b"[" + b"0," * (n - 1) + b"0]"


def cases(elements):
    rows = elements // 2
    v2 = (b'{"inputs": [{"name": "input", "shape": [%d, 2], "datatype": "FP32", "data": '
          % rows + zeros(elements) + b"}]}")
    tf_columns = b'{"inputs": {"x": ' + zeros(rows) + b', "y": ' + zeros(rows) + b"}}"
    features = b"[" + b"[0,1]," * (rows - 1) + b"[0,1]]"
    targets = zeros(rows)
    dataset = b'{"features": ' + features + b', "targets": ' + targets + b"}"
    job = (b'{"layers": [{}], "loss": "mse", "epochs": 1, "dataset": ' + dataset + b"}")
    # The attacker's CSV: three columns of a million distinct strings each (29 MB).
    n = min(elements // 20, 1_000_000)
    csv = b"a,b,c,y\n" + b"".join(b"a%07d,b%07d,c%07d,%d\n" % (i, i, i, i % 2) for i in range(n))
    return [
        ("CSV distinct strings", "POST", "/v1/datasets?target=y", csv),
        ("v2 infer", "POST", "/v2/models/m/infer", v2),
        ("TF :predict columns", "POST", "/v1/models/m:predict", tf_columns),
        ("POST /v1/datasets", "POST", "/v1/datasets", dataset),
        ("POST /v1/jobs inline", "POST", "/v1/jobs?dry_run=true", job),
        ("POST /v1/lr-range-tests", "POST", "/v1/lr-range-tests", job),
    ]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default="target/release/backprop")
    ap.add_argument("--elements", type=int, default=20_000_000,
                    help="numbers in each body (the attacker's v2 body had 100 million)")
    ap.add_argument("--plain", action="store_true", help="send the bodies uncompressed")
    a = ap.parse_args()
    worst = 0.0
    print(f"{'case':24} {'sent':>10} {'decoded':>10} {'status':>6} {'peak rise':>10} "
          f"{'x decoded':>9} {'held after':>10}")
    for name, method, path, body in cases(a.elements):
        node = Node(a.bin)
        st, doc = request(node.base, "POST", "/v1/models", json.dumps(MODEL).encode())
        model = json.loads(doc)["id"]
        request(node.base, "PUT", "/v1/deployments/m",
                json.dumps({"model_id": model}).encode())
        time.sleep(0.3)
        before = status(node.proc.pid, "VmHWM")
        rss_before = status(node.proc.pid, "VmRSS")
        sent = len(gzip.compress(body, 6)) if not a.plain else len(body)
        ctype = "text/csv" if path.startswith("/v1/datasets?") else "application/json"
        st, answer = request(node.base, method, path, body, gz=not a.plain, ctype=ctype)
        time.sleep(0.5)
        rise = status(node.proc.pid, "VmHWM") - before
        held = status(node.proc.pid, "VmRSS") - rss_before
        ratio = rise / len(body)
        worst = max(worst, (rise - FIXED) / len(body))
        print(f"{name:24} {sent / 1e6:9.2f}M {len(body) / 1e6:9.1f}M {st:6} "
              f"{rise / 1e6:9.1f}M {ratio:9.1f} {held / 1e6:9.1f}M", flush=True)
        if st >= 500:
            print("   ", answer[:300])
        node.stop()
    print(f"worst: {worst:.1f}x the decoded body beyond the first 32 MB", flush=True)
    sys.exit(0 if worst <= 8.0 else 1)


if __name__ == "__main__":
    main()
