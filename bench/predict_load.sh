#!/usr/bin/env bash
# Predict under load: single-row predictions on a 64-64-64-10 model with wrk (64 connections),
# first with nothing training, then while two training jobs run.
#   bench/predict_load.sh            (DURATION=20 CONNECTIONS=64 THREADS=1 to change)
# Needs wrk (Debian: apt-get install wrk) and a release build (cargo build --release).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-20}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-1}
PORT=${PORT:-18181}
BIN=target/release/backprop
DATA=$(mktemp -d)
trap 'kill $SERVER 2>/dev/null || true; rm -rf "$DATA"' EXIT
# With an API key, as a deployment runs (auth, metrics and request ids are always on).
KEY=bench-secret-0123456789
export KEY
RUST_LOG=${RUST_LOG:-info} BACKPROP_API_KEYS="bench:admin:$KEY" $BIN serve --listen 127.0.0.1:$PORT --data-dir "$DATA" --max-concurrent-jobs 2 > "$DATA/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 100); do curl -sf localhost:$PORT/healthz >/dev/null && break; sleep 0.1; done

MODEL=$(python3 - "$PORT" <<'PY'
import json, random, sys, urllib.request
random.seed(0)
def layer(i, o, act):
    return {"units": o, "activation": act, "weights": [[random.gauss(0, 0.1) for _ in range(o)] for _ in range(i)], "bias": [0.0] * o}
doc = {"input_dim": 64, "layers": [layer(64, 64, "relu"), layer(64, 64, "relu"), layer(64, 10, "softmax")]}
import os
r = urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{sys.argv[1]}/v1/models", json.dumps(doc).encode(), {"content-type": "application/json", "authorization": "Bearer " + os.environ["KEY"]}))
print(json.load(r)["id"])
PY
)
ROW=$(python3 -c "import json; print(json.dumps({'inputs': [[round(0.01*i, 2) for i in range(64)]]}))")
LUA=$(mktemp --suffix .lua)
cat > "$LUA" <<LUA
wrk.method = "POST"
wrk.body = '$ROW'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $KEY"
LUA
echo "== idle: wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency"
wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$LUA" "http://127.0.0.1:$PORT/v1/models/$MODEL/predict" | grep -E "Requests/sec|50%|90%|99%|Non-2xx|errors"

# Two long training jobs on a 20,000 x 64 dataset.
python3 - "$PORT" <<'PY'
import json, random, sys, urllib.request
random.seed(1)
X = [[random.random() for _ in range(64)] for _ in range(20000)]
y = [int(sum(r[:8]) > 4) for r in X]
import os
def post(path, body):
    r = urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{sys.argv[1]}{path}", json.dumps(body).encode(), {"content-type": "application/json", "authorization": "Bearer " + os.environ["KEY"]}))
    return json.load(r)
ds = post("/v1/datasets", {"name": "load", "features": X, "targets": y})["id"]
for seed in (1, 2):
    post("/v1/jobs", {"dataset_id": ds, "layers": [{"units": 256, "activation": "relu"}, {"units": 256, "activation": "relu"}, {"units": 1}],
                      "loss": "binary_crossentropy", "epochs": 100000, "batch_size": 256, "seed": seed})
PY
sleep 3
echo "running jobs: $(curl -s -H "Authorization: Bearer $KEY" "localhost:$PORT/v1/jobs?status=running" | python3 -c 'import sys,json; print(len(json.load(sys.stdin)["items"]))')"
echo "== while two jobs train: wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency"
wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$LUA" "http://127.0.0.1:$PORT/v1/models/$MODEL/predict" | grep -E "Requests/sec|50%|90%|99%|Non-2xx|errors"
curl -s -H "Authorization: Bearer $KEY" "localhost:$PORT/v1/jobs?status=running" | python3 -c 'import sys,json; [print("job epoch", j["epoch"], "samples/s", round(j["metrics"]["samples_per_second"])) for j in json.load(sys.stdin)["items"]]'
rm -f "$LUA"
