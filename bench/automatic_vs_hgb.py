#!/usr/bin/env python3
"""The automatic mode against scikit-learn's HistGradientBoosting, on the same splits.

For each dataset and seed: starts nothing new (one server for the whole run), uploads the
training part, runs `POST /v1/sweeps {"dataset_id", "max_trials", "seed"}` with nothing else,
waits, and scores the sweep's model on the test part with `POST /v1/models/{id}/evaluate`
(accuracy for classifiers, R² for regression). It also scores the chosen trial's own model
(`best.trial_model_id`, trained on 80 % of the rows, before the refit on all of them), so the
refit's effect is visible. scikit-learn gets the same parts:
`HistGradientBoostingClassifier` (or `…Regressor`) with text columns ordinal-encoded and
named in `categorical_features`, missing cells left as NaN — what a tabular user would try.

The splits: `tests/data/{breast_cancer,iris,diabetes}.{train,test}.csv` as shipped (fixed);
`penguins.csv` and `titanic.csv` split as `bench/tabular_peer.py` does (80 / 20,
stratified, `random_state=0`, R's unnamed row-name column dropped).

    cargo build --release --bin backprop
    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install scikit-learn pandas
    /tmp/venv/bin/python bench/automatic_vs_hgb.py --seeds 0 1 2

Prints one line per dataset and seed, then the means.
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data")

# name → (target, task)
DATASETS = {
    "breast_cancer": ("target", "classification"),
    "iris": ("target", "classification"),
    "diabetes": ("target", "regression"),
    "penguins": ("species", "classification"),
    "titanic": ("survived", "classification"),
}


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def call(base, method, path, body=None, ctype="application/json"):
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"content-type": ctype})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())


def split(name):
    import pandas
    target, _ = DATASETS[name]
    if os.path.exists(os.path.join(DATA, f"{name}.train.csv")):
        return (pandas.read_csv(os.path.join(DATA, f"{name}.train.csv")),
                pandas.read_csv(os.path.join(DATA, f"{name}.test.csv")))
    from sklearn.model_selection import train_test_split
    frame = pandas.read_csv(os.path.join(DATA, f"{name}.csv"))
    # R's row names (an unnamed first column) are no feature for either side.
    frame = frame.drop(columns=[c for c in frame.columns if c.startswith("Unnamed")])
    return train_test_split(frame, test_size=0.2, random_state=0, stratify=frame[target])


def score(evaluation):
    return evaluation["accuracy"] if evaluation["task"] == "classification" else evaluation["r2"]


def ours(base, name, train, test, seed, max_trials, metric=None):
    target, _ = DATASETS[name]
    q = f"/v1/datasets?target={target}&name={name}"
    tr = call(base, "POST", q, train.to_csv(index=False).encode(), "text/csv")
    te = call(base, "POST", q, test.to_csv(index=False).encode(), "text/csv")
    t0 = time.time()
    body = {"dataset_id": tr["id"], "max_trials": max_trials, "seed": seed}
    if metric:
        body["metric"] = metric
    s = call(base, "POST", "/v1/sweeps", body)
    while s["status"] not in ("succeeded", "failed", "cancelled"):
        time.sleep(0.25)
        s = call(base, "GET", f"/v1/sweeps/{s['id']}")
    took = time.time() - t0
    assert s["status"] == "succeeded", s
    best = s["best"]
    ev = lambda m: score(call(base, "POST", f"/v1/models/{m}/evaluate", {"dataset_id": te["id"]}))
    refit = ev(best["model_id"])
    trial = ev(best["trial_model_id"]) if best.get("trial_model_id") else refit
    return {"test": refit, "trial_model_test": trial, "val_metric": best["metric"],
            "seconds": round(took, 1), "params": best["params"]}


def hgb(name, train, test):
    import numpy as np
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.preprocessing import OrdinalEncoder
    target, task = DATASETS[name]
    x, xt = train.drop(columns=[target]).copy(), test.drop(columns=[target]).copy()
    from pandas.api.types import is_numeric_dtype
    text = [c for c in x.columns if not is_numeric_dtype(x[c])]
    if text:
        enc = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan)
        x[text] = enc.fit_transform(x[text])
        xt[text] = enc.transform(xt[text])
    cat = [c in text for c in x.columns]
    if task == "regression":
        m = HistGradientBoostingRegressor(random_state=0).fit(x, train[target])
        return float(m.score(xt, test[target]))
    m = HistGradientBoostingClassifier(categorical_features=cat, random_state=0)
    m.fit(x, train[target].astype(str))
    return float((m.predict(xt) == test[target].astype(str)).mean())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "backprop"))
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--max-trials", type=int, default=20)
    ap.add_argument("--metric", help="override the automatic mode's validation metric")
    ap.add_argument("--max-concurrent-jobs", type=int, default=os.cpu_count() or 2)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = open(os.path.join(tmp, "server.log"), "w")
    server = subprocess.Popen(
        [a.bin, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", tmp,
         "--insecure-no-auth", "--max-concurrent-jobs", str(a.max_concurrent_jobs)],
        stdout=log, stderr=log)
    summary = {}
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(base + "/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.05)
        for name in a.datasets:
            train, test = split(name)
            theirs = hgb(name, train, test)
            kind = "r2" if DATASETS[name][1] == "regression" else "accuracy"
            for seed in a.seeds:
                r = ours(base, name, train, test, seed, a.max_trials, a.metric)
                summary.setdefault(name, []).append(r)
                print(json.dumps({"dataset": name, "seed": seed, "metric": kind,
                                  "automatic": round(r["test"], 4),
                                  "chosen_trial_before_refit": round(r["trial_model_test"], 4),
                                  "hgb": round(theirs, 4), "sweep_seconds": r["seconds"],
                                  "params": r["params"]}), flush=True)
            runs = summary[name]
            print(json.dumps({"dataset": name, "metric": kind, "seeds": a.seeds,
                              "automatic_mean": round(sum(r["test"] for r in runs) / len(runs), 4),
                              "automatic_per_seed": [round(r["test"], 4) for r in runs],
                              "before_refit_mean": round(
                                  sum(r["trial_model_test"] for r in runs) / len(runs), 4),
                              "hgb": round(theirs, 4),
                              "sweep_seconds_mean": round(
                                  sum(r["seconds"] for r in runs) / len(runs), 1)}), flush=True)
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    sys.exit(main())
