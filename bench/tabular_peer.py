#!/usr/bin/env python3
"""Test accuracy of a default Backprop job against a scikit-learn pipeline, same split.

For each tabular file in tests/data (penguins, titanic) the rows are split once (80 / 20,
stratified, `random_state=0`). Backprop gets the training part as the CSV it is (text
categories, `NA` cells), trains the spec below with no column settings, and predicts the test
part by record (objects keyed by column name, `null` for a missing cell). scikit-learn gets the
same parts through the pipeline a careful user writes by hand: median imputation with missing
indicators and standardisation for numbers, "missing" as a category and one-hot for text,
then `MLPClassifier` with the same hidden layer. Prints one JSON line per dataset.

    cargo build --release && python3 bench/tabular_peer.py

Needs pandas and scikit-learn (pip install pandas scikit-learn).
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

DATASETS = [
    # file, target, loss, epochs
    ("penguins.csv", "species", "categorical_crossentropy", 60),
    ("titanic.csv", "survived", "binary_crossentropy", 60),
]
HIDDEN = 16


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


def backprop_accuracy(base, train, test, target, loss, epochs):
    ds = call(base, "POST", f"/v1/datasets?name=train&target={target}",
              train.to_csv(index=False).encode(), "text/csv")
    job = call(base, "POST", "/v1/jobs", {
        "dataset_id": ds["id"],
        "layers": [{"units": HIDDEN, "activation": "relu"}, {}],
        "loss": loss, "optimizer": {"type": "adam", "learning_rate": 0.01},
        "epochs": epochs, "batch_size": 16, "seed": 0,
    })
    while True:
        j = call(base, "GET", f"/v1/jobs/{job['id']}")
        if j["status"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.1)
    assert j["status"] == "succeeded", j
    features = test.drop(columns=[target])
    records = []
    for _, row in features.iterrows():
        rec = {}
        for k, v in row.items():
            if v != v:  # NaN: a missing cell
                rec[k] = None
            elif hasattr(v, "item"):
                rec[k] = v.item()
            else:
                rec[k] = v
        records.append(rec)
    p = call(base, "POST", f"/v1/models/{j['model_id']}/predict", {"inputs": records})
    truth = [str(t) for t in test[target]]
    return sum(a == b for a, b in zip(p["labels"], truth)) / len(truth)


def sklearn_accuracy(train, test, target):
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    x = train.drop(columns=[target])
    numeric = [c for c in x.columns if x[c].dtype.kind in "if"]
    text = [c for c in x.columns if c not in numeric]
    pre = ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(strategy="median", add_indicator=True),
                              StandardScaler()), numeric),
        ("cat", make_pipeline(SimpleImputer(strategy="constant", fill_value="missing"),
                              OneHotEncoder(handle_unknown="ignore")), text),
    ])
    model = make_pipeline(pre, MLPClassifier(hidden_layer_sizes=(HIDDEN,), max_iter=1000,
                                             random_state=0))
    model.fit(x, train[target])
    return float((model.predict(test.drop(columns=[target])) == test[target]).mean())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "backprop"))
    args = ap.parse_args()
    import pandas
    from sklearn.model_selection import train_test_split

    tmp = tempfile.mkdtemp()
    port = free_port()
    server = subprocess.Popen(
        [args.binary, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", tmp,
         "--insecure-no-auth"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(base + "/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.05)
        for name, target, loss, epochs in DATASETS:
            frame = pandas.read_csv(os.path.join(ROOT, "tests", "data", name))
            # R's row names (an unnamed first column) are no feature for either side.
            frame = frame.drop(columns=[c for c in frame.columns if c.startswith("Unnamed")])
            train, test = train_test_split(frame, test_size=0.2, random_state=0,
                                           stratify=frame[target])
            ours = backprop_accuracy(base, train, test, target, loss, epochs)
            theirs = sklearn_accuracy(train, test, target)
            print(json.dumps({"dataset": name, "train_rows": len(train), "test_rows": len(test),
                              "backprop_test_accuracy": round(ours, 4),
                              "sklearn_test_accuracy": round(theirs, 4)}))
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    sys.exit(main())
