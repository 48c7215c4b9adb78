#!/usr/bin/env bash
# Serving by name against serving by id, in one sitting: single-row predictions on a 64-64-64-10
# model with wrk (64 connections), round-robin over three routes so the machine's drift hits
# them alike — POST /v1/models/{id}/predict, POST /v1/deployments/{name}/predict and the Open
# Inference Protocol's POST /v2/models/{name}/infer — ROUNDS times each; prints each run and
# the median requests/s and p99 per route.
#   bench/serving_load.sh            (DURATION=10 ROUNDS=3 CONNECTIONS=64 THREADS=1 to change)
# Needs wrk (Debian: apt-get install wrk) and a release build (cargo build --release).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-1}
PORT=${PORT:-18182}
BIN=${BIN:-target/release/backprop}
DATA=$(mktemp -d)
trap 'kill $SERVER 2>/dev/null || true; rm -rf "$DATA"' EXIT
KEY=bench-secret-0123456789
export KEY
RUST_LOG=warn BACKPROP_API_KEYS="bench:admin:$KEY" $BIN serve --listen 127.0.0.1:$PORT --data-dir "$DATA" > "$DATA/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 100); do curl -sf localhost:$PORT/healthz >/dev/null && break; sleep 0.1; done

MODEL=$(python3 - "$PORT" <<'PY'
import json, os, random, sys, urllib.request
random.seed(0)
def layer(i, o, act):
    return {"units": o, "activation": act, "weights": [[random.gauss(0, 0.1) for _ in range(o)] for _ in range(i)], "bias": [0.0] * o}
doc = {"input_dim": 64, "layers": [layer(64, 64, "relu"), layer(64, 64, "relu"), layer(64, 10, "softmax")]}
def call(method, path, body):
    r = urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{sys.argv[1]}{path}", json.dumps(body).encode(),
        {"content-type": "application/json", "authorization": "Bearer " + os.environ["KEY"]}, method=method))
    return json.load(r)
model = call("POST", "/v1/models", doc)["id"]
call("PUT", "/v1/deployments/bench", {"model_id": model})
print(model)
PY
)
ROW=$(python3 -c "print([round(0.01*i, 2) for i in range(64)])")
lua() {  # $1: the body
  local f
  f=$(mktemp --suffix .lua)
  cat > "$f" <<LUA
wrk.method = "POST"
wrk.body = '$1'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $KEY"
LUA
  echo "$f"
}
PREDICT=$(lua "{\"inputs\": [$ROW]}")
INFER=$(lua "{\"inputs\": [{\"name\": \"input\", \"shape\": [1, 64], \"datatype\": \"FP32\", \"data\": $ROW}]}")
declare -A URL=([by-id]="/v1/models/$MODEL/predict" [by-name]="/v1/deployments/bench/predict" [v2-infer]="/v2/models/bench/infer")
declare -A SCRIPT=([by-id]=$PREDICT [by-name]=$PREDICT [v2-infer]=$INFER)
RESULTS=$(mktemp)
for round in $(seq "$ROUNDS"); do
  for route in by-id by-name v2-infer; do
    out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "${SCRIPT[$route]}" "http://127.0.0.1:$PORT${URL[$route]}")
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
    bad=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
    echo "round $round $route: ${rps} req/s, p99 ${p99}${bad:+, non-2xx $bad}"
    echo "$route $rps $p99" >> "$RESULTS"
  done
done
python3 - "$RESULTS" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
def ms(t):
    return float(t[:-2]) if t.endswith("ms") else float(t[:-2]) / 1000 if t.endswith("us") else float(t[:-1]) * 1000
base = None
for route in ("by-id", "by-name", "v2-infer"):
    r = [float(x[1]) for x in rows if x[0] == route]
    p = [ms(x[2]) for x in rows if x[0] == route]
    rps, p99 = statistics.median(r), statistics.median(p)
    base = base or (rps, p99)
    print(f"median {route}: {rps:.0f} req/s ({rps / base[0]:.3f} of by-id), p99 {p99:.2f} ms ({p99 / base[1]:.2f} of by-id)")
PY
rm -f "$PREDICT" "$INFER" "$RESULTS"
