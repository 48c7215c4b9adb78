"""Checks POST /v1/models/{id}/evaluate against scikit-learn's metrics on the same predictions.

Usage: evaluate.py BASE_URL MODEL_ID DATASET_ID CSV_PATH [MODEL_ID DATASET_ID CSV_PATH ...]

For each case it reads the CSV (the target is the column named `target`), asks the server for
the model's outputs on its feature rows (POST /v1/models/{id}/predict), computes the metrics
with scikit-learn from those outputs and the CSV's targets, and compares them with the
server's evaluation of the same rows (POST /v1/models/{id}/evaluate). Exits non-zero, saying
which number differs, on any disagreement. Driven by tests/tuning.rs.
"""

import csv
import json
import sys
import urllib.request

import numpy as np
from sklearn import metrics

TOL = 1e-6


def call(base, path, body):
    req = urllib.request.Request(
        base + path,
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())


def number(s):
    try:
        return float(s)
    except ValueError:
        return s


def near(name, ours, theirs, failures, tol=TOL):
    ours, theirs = np.asarray(ours, dtype=float), np.asarray(theirs, dtype=float)
    if ours.shape != theirs.shape or not np.allclose(ours, theirs, rtol=tol, atol=tol):
        failures.append(f"{name}: server {ours.tolist()} vs scikit-learn {theirs.tolist()}")


def check(base, model_id, dataset_id, path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    names = [c for c in rows[0].keys() if c != "target"]
    x = [[float(r[c]) for c in names] for r in rows]
    y_raw = [number(r["target"]) for r in rows]
    pred = call(base, f"/v1/models/{model_id}/predict", {"inputs": x})
    ours = call(base, f"/v1/models/{model_id}/evaluate", {"dataset_id": dataset_id})
    out = np.asarray(pred["outputs"], dtype=float)
    failures = []
    if ours["task"] == "classification":
        labels = ours["confusion_matrix"]["labels"]
        index = {str(l): i for i, l in enumerate(labels)}
        key = lambda v: str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)
        y = np.array([index[key(v)] for v in y_raw])
        k = len(labels)
        p = np.column_stack([1 - out[:, 0], out[:, 0]]) if out.shape[1] == 1 else out
        y_hat = np.argmax(p, axis=1)
        near("accuracy", ours["accuracy"], metrics.accuracy_score(y, y_hat), failures)
        near("log_loss", ours["log_loss"], metrics.log_loss(y, p, labels=list(range(k))), failures)
        cm = metrics.confusion_matrix(y, y_hat, labels=list(range(k)))
        if ours["confusion_matrix"]["matrix"] != cm.tolist():
            failures.append(f"confusion matrix: {ours['confusion_matrix']['matrix']} vs {cm.tolist()}")
        prec, rec, f1, sup = metrics.precision_recall_fscore_support(
            y, y_hat, labels=list(range(k)), zero_division=0
        )
        pc = ours["per_class"]
        near("precision", [c["precision"] for c in pc], prec, failures)
        near("recall", [c["recall"] for c in pc], rec, failures)
        near("f1", [c["f1"] for c in pc], f1, failures)
        near("support", [c["support"] for c in pc], sup, failures)
        if k == 2:
            auc = metrics.roc_auc_score(y, p[:, 1])
        else:
            auc = metrics.roc_auc_score(y, p, multi_class="ovr", average="macro", labels=list(range(k)))
        near("roc_auc", ours["roc_auc"], auc, failures)
    else:
        y = np.asarray(y_raw, dtype=float).reshape(out.shape)
        near("r2", ours["r2"], metrics.r2_score(y, out), failures)
        near("mae", ours["mae"], metrics.mean_absolute_error(y, out), failures)
        near("rmse", ours["rmse"], metrics.root_mean_squared_error(y, out), failures)
    if ours["rows"] != len(rows):
        failures.append(f"rows: {ours['rows']} vs {len(rows)}")
    return failures


def main():
    base, cases = sys.argv[1].rstrip("/"), sys.argv[2:]
    if not cases or len(cases) % 3:
        sys.exit(__doc__)
    bad = []
    for i in range(0, len(cases), 3):
        model_id, dataset_id, path = cases[i : i + 3]
        for f in check(base, model_id, dataset_id, path):
            bad.append(f"{path}: {f}")
        print(f"checked {path}")
    if bad:
        print("\n".join(bad))
        sys.exit(1)
    print("the server's evaluation agrees with scikit-learn")


if __name__ == "__main__":
    main()
