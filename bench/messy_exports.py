#!/usr/bin/env python3
"""The automatic mode on files as people export them, against the same files cleaned by hand.

Six exports made from public data, each in two forms on the same rows and the same splits:

- `penguins_de`: Palmer penguins (tests/data/penguins.csv, CC0) as a German spreadsheet
  writes it: semicolons, decimal commas, points grouping thousands (`3.750`), Windows-1252,
  a running number `Nr.` (an identifier).
- `wine_tsv`: scikit-learn's wine set (UCI, CC BY 4.0) as a tab-separated export with the
  class as the whole number 0/1/2, alcohol as a percentage (`14.23%`) and a sample id.
- `digits_ids`: scikit-learn's digits (UCI, CC BY 4.0): 64 pixel counts, the class 0–9 as a
  whole number, an image id.
- `cancer_pct`: the breast cancer set (tests/data, UCI, CC BY 4.0) with the areas and
  perimeters written with thousands separators (`"1,001.0"`), the smoothness and symmetry
  columns as percentages, the diagnosis as text, a patient id.
- `diabetes_usd`: the diabetes set (tests/data, Efron et al. 2004) with the target written as
  money (`"$1,510,000.00"`, the progression × 10,000: a large regression target) and sex as
  F/M.
- `seattle_weather`: Seattle's daily weather 2012–2015 (vega_datasets, BSD-3-Clause; NOAA
  data) with the date as `MM/DD/YYYY`; the class is the weather.

"Cleaned by hand" is what a careful user does in pandas before uploading: plain comma-
separated numbers, no identifiers, text labels, and for the weather the date turned into year,
month and day-of-year columns. For each export and seed the rows are split 80/20 (stratified
for classes); the training part of each form is uploaded and given to
`POST /v1/sweeps {"dataset_id", "max_trials", "seed"}`; the test rows are predicted by record
(the messy form's cells as the file writes them, as text) and scored (accuracy, or R²).

    cargo build --release --bin backprop
    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install scikit-learn pandas vega_datasets
    /tmp/venv/bin/python bench/messy_exports.py --seeds 0 1 2

Prints one JSON line per export and seed, then the means (and the spread) per export.
"""
import argparse
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data")


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
    try:
        with urllib.request.urlopen(req, timeout=900) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        raise SystemExit(f"{method} {path}: {e.code} {e.read()[:2000]!r}")


# ---- the exports: name → (clean frame, target, task, messy writer, upload query, media type)

def penguins():
    import pandas as pd
    f = pd.read_csv(os.path.join(DATA, "penguins.csv"))
    return f, "species", "classification"


def penguins_de(f):
    m = f.copy()
    m.insert(0, "Nr.", range(1, len(m) + 1))
    m["island"] = m["island"].replace({"Dream": "Träum"})

    def de(x, digits):
        if x != x:
            return ""
        s = f"{x:,.{digits}f}"
        return s.replace(",", "X").replace(".", ",").replace("X", ".")
    for c, d in [("bill_length_mm", 1), ("bill_depth_mm", 1), ("flipper_length_mm", 0),
                 ("body_mass_g", 0)]:
        m[c] = m[c].map(lambda x, d=d: de(x, d))
    return m.to_csv(index=False, sep=";", na_rep="").encode("cp1252"), "text/csv", {}


def wine():
    import pandas as pd
    from sklearn.datasets import load_wine
    b = load_wine(as_frame=True)
    f = b.frame.rename(columns={"od280/od315_of_diluted_wines": "od280_od315"})
    return f, "target", "classification"


def wine_tsv(f):
    m = f.copy()
    m.insert(0, "sample_id", [f"W{i:04d}" for i in range(len(m))])
    m["alcohol"] = m["alcohol"].map(lambda x: f"{x:.2f}%")
    return m.to_csv(index=False, sep="\t").encode(), "text/tab-separated-values", {}


def digits():
    from sklearn.datasets import load_digits
    b = load_digits(as_frame=True)
    return b.frame, "target", "classification"


def digits_ids(f):
    m = f.copy()
    m.insert(0, "image_id", [f"IMG-{i:05d}" for i in range(len(m))])
    return m.to_csv(index=False).encode(), "text/csv", {}


def cancer():
    import pandas as pd
    f = pd.concat([pd.read_csv(os.path.join(DATA, "breast_cancer.train.csv")),
                   pd.read_csv(os.path.join(DATA, "breast_cancer.test.csv"))], ignore_index=True)
    f["target"] = f["target"].map({0: "malignant", 1: "benign"})
    return f, "target", "classification"


def cancer_pct(f):
    m = f.copy()
    m.insert(0, "patient", [f"P{i:05d}" for i in range(len(m))])
    for c in m.columns:
        if "area" in c or "perimeter" in c:
            m[c] = m[c].map(lambda x: f"{x:,.1f}")
        elif "smoothness" in c or "symmetry" in c:
            m[c] = m[c].map(lambda x: f"{100 * x:.2f}%")
    return m.to_csv(index=False).encode(), "text/csv", {}


def diabetes():
    import pandas as pd
    f = pd.concat([pd.read_csv(os.path.join(DATA, "diabetes.train.csv")),
                   pd.read_csv(os.path.join(DATA, "diabetes.test.csv"))], ignore_index=True)
    f["target"] = f["target"] * 10000
    return f, "target", "regression"


def diabetes_usd(f):
    m = f.copy()
    sex = m.columns[1]
    m[sex] = m[sex].map(lambda x: "F" if x == 1 else "M")
    m["target"] = m["target"].map(lambda x: f"${x:,.2f}")
    return m.to_csv(index=False).encode(), "text/csv", {}


def weather():
    import pandas as pd
    from vega_datasets import data
    w = data.seattle_weather()
    d = pd.to_datetime(w["date"])
    clean = pd.DataFrame({"year": d.dt.year, "month": d.dt.month, "day_of_year": d.dt.day_of_year,
                          "precipitation": w["precipitation"], "temp_max": w["temp_max"],
                          "temp_min": w["temp_min"], "wind": w["wind"], "weather": w["weather"]})
    clean.attrs["dates"] = d.dt.strftime("%m/%d/%Y").tolist()
    return clean, "weather", "classification"


def weather_us(f):
    m = f.drop(columns=["year", "month", "day_of_year"])
    m.insert(0, "date", f.attrs["dates_rows"])
    return m.to_csv(index=False).encode(), "text/csv", {}


EXPORTS = {
    "penguins_de": (penguins, penguins_de),
    "wine_tsv": (wine, wine_tsv),
    "digits_ids": (digits, digits_ids),
    "cancer_pct": (cancer, cancer_pct),
    "diabetes_usd": (diabetes, diabetes_usd),
    "seattle_weather": (weather, weather_us),
}


def read_messy(raw, ctype):
    """The messy file's rows as the text cells a client would send."""
    import csv
    text = raw.decode("cp1252") if b";" in raw.split(b"\n")[0] else raw.decode()
    delim = "\t" if ctype == "text/tab-separated-values" else (";" if ";" in text.split("\n")[0] else ",")
    rows = list(csv.reader(io.StringIO(text), delimiter=delim))
    return rows[0], rows[1:]


def sweep(base, dataset_id, seed, max_trials):
    s = call(base, "POST", "/v1/sweeps", {"dataset_id": dataset_id, "max_trials": max_trials,
                                          "seed": seed})
    t0 = time.time()
    while s["status"] not in ("succeeded", "failed", "cancelled"):
        time.sleep(0.5)
        s = call(base, "GET", f"/v1/sweeps/{s['id']}")
    assert s["status"] == "succeeded", s
    return s["best"]["model_id"], time.time() - t0


def score(task, truth, predicted):
    if task == "classification":
        return sum(str(a) == str(b) for a, b in zip(truth, predicted)) / len(truth)
    import numpy as np
    t, p = np.array(truth, dtype=float), np.array(predicted, dtype=float)
    return float(1 - ((t - p) ** 2).sum() / ((t - t.mean()) ** 2).sum())


def predict(base, model_id, records, task):
    out = []
    for i in range(0, len(records), 500):
        r = call(base, "POST", f"/v1/models/{model_id}/predict", {"inputs": records[i:i + 500]})
        out += r["labels"] if task == "classification" else [o[0] for o in r["outputs"]]
    return out


def run(base, name, seed, max_trials):
    import pandas as pd
    from sklearn.model_selection import train_test_split
    make, messy_of = EXPORTS[name]
    clean, target, task = make()
    idx = list(range(len(clean)))
    strat = clean[target] if task == "classification" else None
    tr, te = train_test_split(idx, test_size=0.2, random_state=seed, stratify=strat)
    result = {"export": name, "seed": seed, "metric": "accuracy" if task == "classification" else "r2"}
    for form in ("messy", "clean"):
        parts = {}
        for part, rows in (("train", tr), ("test", te)):
            f = clean.iloc[rows].reset_index(drop=True)
            f.attrs = dict(clean.attrs)
            if "dates" in clean.attrs:
                f.attrs["dates_rows"] = [clean.attrs["dates"][i] for i in rows]
            if form == "messy":
                raw, ctype, _ = messy_of(f)
            else:
                raw, ctype = f.to_csv(index=False).encode(), "text/csv"
            parts[part] = (f, raw, ctype)
        f, raw, ctype = parts["train"]
        q = urllib.parse.urlencode({"name": f"{name}-{form}", "target": target})
        ds = call(base, "POST", f"/v1/datasets?{q}", raw, ctype)
        model_id, took = sweep(base, ds["id"], seed, max_trials)
        f, raw, ctype = parts["test"]
        header, rows = read_messy(raw, ctype)
        t = header.index(target)
        truth = f[target].tolist()
        records = [{h: (None if c == "" else c) for j, (h, c) in enumerate(zip(header, r))
                    if j != t} for r in rows]
        if form == "clean":
            # Numbers as numbers, as a client of the cleaned file sends them.
            records = [{k: (float(v) if v is not None and _is_number(v) else v)
                        for k, v in r.items()} for r in records]
        got = predict(base, model_id, records, task)
        result[form] = round(score(task, truth, got), 4)
        result[f"{form}_seconds"] = round(took, 1)
        result[f"{form}_columns"] = {c["name"]: c["type"] for c in ds["columns"]}
    return result


def _is_number(s):
    try:
        float(s)
        return True
    except ValueError:
        return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "backprop"))
    ap.add_argument("--exports", nargs="+", default=list(EXPORTS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--max-trials", type=int, default=20)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = open(os.path.join(tmp, "server.log"), "w")
    server = subprocess.Popen(
        [a.bin, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", tmp,
         "--insecure-no-auth", "--max-concurrent-jobs", str(os.cpu_count() or 2)],
        stdout=log, stderr=log)
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(base + "/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.05)
        for name in a.exports:
            runs = []
            for seed in a.seeds:
                r = run(base, name, seed, a.max_trials)
                runs.append(r)
                print(json.dumps(r), flush=True)
            m = lambda k: [r[k] for r in runs]
            mean = lambda v: round(sum(v) / len(v), 4)
            diff = [x - y for x, y in zip(m("messy"), m("clean"))]
            print(json.dumps({"export": name, "metric": runs[0]["metric"], "seeds": a.seeds,
                              "messy_mean": mean(m("messy")), "clean_mean": mean(m("clean")),
                              "messy": m("messy"), "clean": m("clean"),
                              "messy_minus_clean_mean": mean(diff),
                              "within_1pct": mean(m("messy")) >= mean(m("clean")) - 0.01}),
                  flush=True)
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    sys.exit(main())
