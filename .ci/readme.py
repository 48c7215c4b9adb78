#!/usr/bin/env python3
"""Runs every shell block of README.md against a fresh server, so no example can drift.

    python3 .ci/readme.py --bin target/debug/backprop

Each ```sh block is split into commands (a command runs on while a quote is open or a line
ends in a backslash) and run in order with bash, in a scratch directory holding the files the
README names (`examples/`, `tests/data/`), with `backprop` on the PATH:

- `curl` runs against a fresh server on a free port instead of `localhost:8080`, with `-sS`,
  a time limit and the status written after the body; anything but a 2xx fails the run.
- The ids the README writes as placeholders (MODEL_ID, JOB_ID, DATASET_ID, BATCH_ID,
  SWEEP_ID, KEY_ID, TEST_DATASET_ID) are replaced by the ids the earlier commands answered:
  an upload sets DATASET_ID, a job JOB_ID, and MODEL_ID is that job's model once it is done
  (the runner waits for it when a command needs it), and so on.
- `cargo run` is the server itself: the runner starts `backprop` (with the command's
  environment) and the block's later commands talk to it. `cargo test`, `cargo install`,
  `cargo +nightly`, `cd` and `docker` are skipped with the reason: CI runs the tests itself,
  the fuzzing needs a nightly toolchain, and this machine has no container engine.
- Some blocks rely on what the text around them set up (a deployment named `iris`, a binary
  dataset for the range test, a file of new penguins). FIXTURES below makes that state, each
  entry keyed by a string its block contains, through the public API.

Exit status 0 when every command succeeded; otherwise the block's README line, the command
and the answer are printed.
"""

import argparse
import csv
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLACEHOLDERS = ["TEST_DATASET_ID", "DATASET_ID", "MODEL_ID", "JOB_ID", "BATCH_ID", "SWEEP_ID", "KEY_ID"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def blocks(text):
    """(line number, [lines]) of each ```sh block."""
    out, cur, start = [], None, 0
    for i, line in enumerate(text.splitlines(), 1):
        if cur is None and line.strip() == "```sh":
            cur, start = [], i + 1
        elif cur is not None and line.strip() == "```":
            out.append((start, cur))
            cur = None
        elif cur is not None:
            cur.append(line)
    return out


def code_of(line, quote):
    """The line without its trailing comment, and the quote open at its end (None, ' or ")."""
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), None
    return line, quote


def commands(lines):
    """Whole commands, comments dropped: joined while a quote is open or a line ends in a
    backslash."""
    out, cur, quote = [], [], None
    for line in lines:
        if not cur and (not line.strip() or line.lstrip().startswith("#")):
            continue
        code, quote = code_of(line, quote)
        cur.append(code)
        if quote is None and not code.endswith("\\"):
            out.append("\n".join(cur))
            cur = []
    if cur:
        out.append("\n".join(cur))
    return out


class Failure(Exception):
    pass


class Server:
    def __init__(self, bin_path, cwd, env_extra):
        self.port = free_port()
        self.cwd = cwd
        os.makedirs(cwd, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("BACKPROP_")}
        env.update(RUST_LOG="warn", **env_extra)
        self.proc = subprocess.Popen(
            [bin_path, "serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir", "./data"],
            cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=sys.stderr)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2)
                return
            except Exception:
                if self.proc.poll() is not None:
                    raise Failure(f"the server exited with {self.proc.returncode}")
                time.sleep(0.2)
        raise Failure("the server did not become ready in 60 s")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class Runner:
    def __init__(self, bin_path, work):
        self.bin = os.path.abspath(bin_path)
        self.work = work
        self.ids = {}
        self.pending_job = None  # a job whose model MODEL_ID will be once it is done
        self.dataset_names = {}  # dataset id -> the name it was uploaded under
        self.models_by_dataset = {}  # dataset name -> the last model trained on it
        self.main = Server(self.bin, os.path.join(work, "main"), {})
        self.server = self.main
        self.extra = []
        self.sweeps = []
        bindir = os.path.join(work, "bin")
        os.makedirs(bindir, exist_ok=True)
        os.symlink(self.bin, os.path.join(bindir, "backprop"))
        self.path = f"{bindir}:{os.environ.get('PATH', '')}"
        for d in ("examples", "tests/data"):
            shutil.copytree(os.path.join(ROOT, d), os.path.join(self.main.cwd, d))

    # --- the API, for fixtures and waits ---
    def api(self, method, path, body=None, content_type="application/json"):
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        req = urllib.request.Request(f"http://127.0.0.1:{self.main.port}{path}", data=data, method=method)
        if data is not None:
            req.add_header("content-type", content_type)
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                raw = r.read()
        except urllib.error.HTTPError as e:
            raise Failure(f"{method} {path}: {e.code} {e.read()[:500]!r}")
        return json.loads(raw) if raw else None

    def upload(self, name, path, target):
        with open(os.path.join(ROOT, path), "rb") as f:
            d = self.api("POST", f"/v1/datasets?name={name}&target={target}", f.read(), "text/csv")
        self.dataset_names[d["id"]] = name
        return d["id"]

    def wait_job(self, job_id):
        deadline = time.time() + 600
        while time.time() < deadline:
            j = self.api("GET", f"/v1/jobs/{job_id}")
            if j["status"] in ("failed", "cancelled"):
                raise Failure(f"job {job_id} {j['status']}: {j.get('error')}")
            if j["status"] == "succeeded":
                name = self.dataset_names.get(j.get("dataset_id"))
                if name:
                    self.models_by_dataset[name] = j["model_id"]
                return j["model_id"]
            time.sleep(0.3)
        raise Failure(f"job {job_id} did not finish in 10 minutes")

    def settle_job(self):
        """Waits for the last job a command made; its model becomes MODEL_ID."""
        if self.pending_job:
            self.ids["MODEL_ID"] = self.wait_job(self.pending_job)
            self.pending_job = None

    def model_of(self, name):
        self.settle_job()
        return self.models_by_dataset[name]

    def deploy(self, name, dataset, times=1):
        for _ in range(times):
            self.api("PUT", f"/v1/deployments/{name}", {"model_id": self.model_of(dataset)})

    # --- running a command ---
    def run(self, line, cmd):
        stripped = cmd.strip()
        env_prefix = re.match(r"^((?:[A-Z_]+=\S+\s+)+)(.*)$", stripped, re.S)
        env_extra = {}
        if env_prefix:
            for pair in env_prefix.group(1).split():
                k, v = pair.split("=", 1)
                env_extra[k] = v
            stripped = env_prefix.group(2)
        if stripped.startswith("cargo run"):
            if env_extra:
                # A server of its own, with the command's environment, for the rest of the block.
                self.server = Server(self.bin, os.path.join(self.work, f"server{len(self.extra)}"), env_extra)
                self.extra.append(self.server)
            print(f"  (the server: backprop serve{' with ' + ', '.join(env_extra) if env_extra else ''})")
            return
        for skip, why in (("cargo test", "CI runs the test suite itself"),
                          ("cargo install", "installs a tool (fuzzing)"),
                          ("cargo +nightly", "needs a nightly toolchain"),
                          ("cd ", "changes directory for the fuzzing commands"),
                          ("docker ", "no container engine on this machine")):
            if stripped.startswith(skip):
                print(f"  skipped ({why}): {stripped.splitlines()[0]}")
                return
        needs = [p for p in PLACEHOLDERS if re.search(rf"\b{p}\b", stripped)]
        if "MODEL_ID" in needs:
            self.settle_job()
        if "BATCH_ID" in needs and "/result" in stripped:
            self.wait_batch()
        for p in needs:
            if p not in self.ids:
                raise Failure(f"README line {line}: {p} is used before any command made it")
            stripped = re.sub(rf"\b{p}\b", self.ids[p], stripped)
        curl = stripped.startswith("curl ")
        if curl:
            stripped = stripped.replace("localhost:8080", f"127.0.0.1:{self.server.port}", 1)
            stripped = "curl -sS --max-time 300 -w '\\n%{http_code}' " + stripped[len("curl "):]
        out = subprocess.run(["bash", "-c", stripped], cwd=self.server.cwd, capture_output=True, text=True,
                             env=dict(os.environ, PATH=self.path), timeout=620)
        shown = stripped if len(stripped) < 300 else stripped[:300] + " …"
        if out.returncode != 0:
            raise Failure(f"README line {line}: exit {out.returncode}\n$ {shown}\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
        if curl:
            body, _, status = out.stdout.rpartition("\n")
            if not status.isdigit() or not 200 <= int(status) < 300:
                raise Failure(f"README line {line}: HTTP {status}\n$ {shown}\n{body[-2000:]}")
            print(f"  {status} {stripped.splitlines()[0][:110]}")
            self.learn(stripped, body)
        else:
            print(f"  ok {stripped.splitlines()[0][:110]}")
            m = re.search(r"key (\S+) for tenant", out.stderr)
            if m:
                self.ids["KEY_ID"] = m.group(1)

    def learn(self, cmd, body):
        """Takes the ids an answer names into the placeholders."""
        try:
            v = json.loads(body)
        except ValueError:
            return
        if not isinstance(v, dict):
            return
        url = re.search(r"127\.0\.0\.1:\d+(/[^\s'\"]*)", cmd).group(1)
        path = url.split("?")[0]
        posted = " -d " in cmd or "--data-binary" in cmd or "-X POST" in cmd
        if path == "/v1/datasets" and "id" in v:
            self.ids["DATASET_ID"] = v["id"]
            name = re.search(r"name=([^&'\s]+)", url)
            if name:
                self.dataset_names[v["id"]] = name.group(1)
        elif path == "/v1/jobs" and posted and "id" in v:
            self.ids["JOB_ID"] = v["id"]
            self.pending_job = v["id"]
        elif path == "/v1/models" and posted and "id" in v:
            self.ids["MODEL_ID"] = v["id"]
            self.pending_job = None
        elif path.endswith("/predictions") and "id" in v:
            self.ids["BATCH_ID"] = v["id"]
        elif path == "/v1/sweeps" and "id" in v:
            self.ids["SWEEP_ID"] = v["id"]
            self.sweeps.append(v["id"])

    def wait_batch(self):
        path = f"/v1/models/{self.ids['MODEL_ID']}/predictions/{self.ids['BATCH_ID']}"
        deadline = time.time() + 300
        while time.time() < deadline:
            b = self.api("GET", path)
            if b["status"] == "succeeded":
                return
            if b["status"] in ("failed", "cancelled"):
                raise Failure(f"batch {b}")
            time.sleep(0.3)
        raise Failure("the batch did not finish in 5 minutes")

    def end_block(self):
        for s in self.extra:
            s.stop()
        self.extra = []
        self.server = self.main

    def close(self):
        for sweep in self.sweeps:
            try:
                self.api("POST", f"/v1/sweeps/{sweep}/cancel")
            except Failure:
                pass
        self.end_block()
        self.main.stop()


def new_penguins(r):
    """Penguins as new records: the training file's first rows without the species."""
    with open(os.path.join(ROOT, "tests/data/penguins.csv"), newline="") as f:
        rows = list(csv.reader(f))
    drop = rows[0].index("species")
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    for row in rows[:6]:
        w.writerow([c for i, c in enumerate(row) if i != drop])
    with open(os.path.join(r.main.cwd, "new_penguins.csv"), "w") as f:
        f.write(out.getvalue())
    r.deploy("penguins", "penguins")


def test_dataset(r):
    r.ids["MODEL_ID"] = r.model_of("iris")
    r.ids["TEST_DATASET_ID"] = r.upload("iris-test", "tests/data/iris.test.csv", "target")


def binary_dataset(r):
    r.ids["DATASET_ID"] = r.upload("titanic", "tests/data/titanic.csv", "survived")


# What a block relies on that the README's text, not its commands, sets up: keyed by a string
# the block contains.
FIXTURES = [
    ("-d '{\"model_id\": \"MODEL_ID\"}'", lambda r: r.deploy("penguins", "penguins", times=2)),
    ("new_penguins.csv", new_penguins),
    ("/v2/models/iris/infer", lambda r: r.deploy("iris", "iris", times=2)),
    ("TEST_DATASET_ID", test_dataset),
    ("/v1/lr-range-tests", binary_dataset),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/debug/backprop"))
    ap.add_argument("--readme", default=os.path.join(ROOT, "README.md"))
    args = ap.parse_args()
    with open(args.readme) as f:
        text = f.read()
    work = tempfile.mkdtemp(prefix="backprop-readme-")
    started = time.time()
    runner = None
    try:
        runner = Runner(args.bin, work)
        count = 0
        for line, lines in blocks(text):
            print(f"README.md:{line}")
            body = "\n".join(lines)
            for key, fixture in FIXTURES:
                if key in body:
                    fixture(runner)
            for cmd in commands(lines):
                runner.run(line, cmd)
                count += 1
            runner.end_block()
        print(f"README: {count} commands in {len(blocks(text))} shell blocks ran, {time.time() - started:.0f} s")
    except Failure as e:
        print(f"README example failed: {e}", file=sys.stderr)
        return 1
    finally:
        if runner:
            runner.close()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
