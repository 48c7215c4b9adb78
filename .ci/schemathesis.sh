#!/usr/bin/env bash
# Spec fuzzing: runs schemathesis against a freshly started server and the repo's
# openapi.yaml — every operation, every check, the stateful phase following the spec's
# links (dataset → job → model → predict) — with a fixed number of examples per operation,
# a fixed seed and a time bound. Fails on any finding, and on a panic in the server's log.
#
#   .ci/schemathesis.sh                      # builds the debug binary if needed
#   BACKPROP_BIN=target/release/backprop .ci/schemathesis.sh
#
# Settings (environment): ST_MAX_EXAMPLES (default 100 per operation), ST_SEED (1),
# ST_TIMEOUT (seconds for the whole schemathesis run, 600), ST_VENV (the virtual environment,
# default target/schemathesis-venv), ST_REPORT_DIR (target/schemathesis-report).
set -euo pipefail
cd "$(dirname "$0")/.."

max_examples=${ST_MAX_EXAMPLES:-100}
seed=${ST_SEED:-1}
time_bound=${ST_TIMEOUT:-600}
venv=${ST_VENV:-target/schemathesis-venv}
report_dir=${ST_REPORT_DIR:-target/schemathesis-report}

# The tools, pinned; reinstalled only when the requirements change.
reqs=.ci/requirements-schemathesis.txt
stamp="$venv/.requirements"
if ! cmp -s "$reqs" "$stamp" 2>/dev/null; then
  echo "== installing schemathesis into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$reqs"
  cp "$reqs" "$stamp"
fi
"$venv/bin/schemathesis" --version

echo "== openapi.yaml is a valid OpenAPI document"
"$venv/bin/openapi-spec-validator" openapi.yaml

bin=${BACKPROP_BIN:-}
if [ -z "$bin" ]; then
  cargo build --locked --quiet
  bin=target/debug/backprop
fi

# A server of its own: temp data dir, loopback port, one admin key (so the 401 paths and
# schemathesis's ignored_auth check are exercised too). Limits are small so a generated job
# or dataset finishes in milliseconds and an event stream ends soon after it starts.
data=$(mktemp -d)
key="fuzz-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
"$bin" serve --listen "127.0.0.1:$port" --data-dir "$data" \
  --api-keys "fuzz:admin:$key" \
  --max-epochs 50 --max-parameters 20000 --max-rows 2000 --max-columns 100 \
  --max-predict-rows 1000 --max-layers 20 --max-body-bytes 1048576 \
  --request-timeout-secs 20 --max-concurrent-jobs 2 --threads 1 \
  >"$data/server.log" 2>&1 &
server=$!
cleanup() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  rm -rf "$data"
}
trap cleanup EXIT
for _ in $(seq 1 100); do
  curl -fsS "$base/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "$base/healthz" >/dev/null || { cat "$data/server.log"; exit 1; }

echo "== schemathesis: all operations, all checks, $max_examples examples each, seed $seed"
mkdir -p "$report_dir"
status=0
timeout --signal=INT "$time_bound" \
  "$venv/bin/schemathesis" --config-file .ci/schemathesis.toml run openapi.yaml \
    --url "$base" \
    -H "Authorization: Bearer $key" \
    --checks all \
    --phases examples,coverage,fuzzing,stateful \
    --max-examples "$max_examples" \
    --seed "$seed" \
    --generation-database none \
    --workers 1 \
    --request-timeout 30 \
    --suppress-health-check all \
    --report junit,ndjson --report-dir "$report_dir" \
    --no-color || status=$?

if grep -q "panicked" "$data/server.log"; then
  echo "the server panicked:"
  grep -B2 -A10 "panicked" "$data/server.log" | head -50
  status=1
fi
if grep -q "request failed" "$data/server.log"; then
  echo "the server answered 5xx (from its log):"
  grep 'request failed' "$data/server.log" | head -20
  status=1
fi
exit $status
