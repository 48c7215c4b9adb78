#!/usr/bin/env bash
# Renders the Kubernetes manifests (deploy/kubernetes: the base and every overlay) with
# `kubectl kustomize` and validates each rendering offline, strictly (unknown fields are
# errors), against the Kubernetes schemas of the oldest and newest versions we support, with
# kubernetes-validate (pinned in .ci/requirements-kubernetes.txt, installed into a virtual
# environment under target/). tests/kubernetes.rs checks the same renderings against the
# binary. Needs no cluster and no network beyond the package registries.
#
# Settings (environment): K8S_VERSIONS (default "1.30.0 1.37.0"), K8S_VENV
# (target/kubernetes-venv), K8S_OUT (target/kubernetes-rendered: the rendered YAML).
set -euo pipefail
cd "$(dirname "$0")/.."

versions=${K8S_VERSIONS:-1.30.0 1.37.0}
venv=${K8S_VENV:-target/kubernetes-venv}
out=${K8S_OUT:-target/kubernetes-rendered}

# kubectl carries kustomize; Debian's package is kubernetes-client.
if ! command -v kubectl >/dev/null 2>&1; then
  echo "== installing kubectl (Debian's kubernetes-client)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubernetes-client >/dev/null
fi
kubectl version --client

reqs=.ci/requirements-kubernetes.txt
stamp="$venv/.requirements"
if ! cmp -s "$reqs" "$stamp" 2>/dev/null; then
  echo "== installing kubernetes-validate into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$reqs"
  cp "$reqs" "$stamp"
fi

mkdir -p "$out"
for dir in deploy/kubernetes/base deploy/kubernetes/overlays/*/; do
  name=$(basename "$dir")
  file="$out/$name.yaml"
  kubectl kustomize "$dir" >"$file"
  for v in $versions; do
    echo "== $name against Kubernetes $v"
    "$venv/bin/kubernetes-validate" --strict --quiet -k "$v" "$file"
  done
done
echo "== every rendering is valid"
