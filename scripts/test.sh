#!/usr/bin/env bash
# The README's test command: installs the real tools the tests use when missing, checks formatting
# and lints, then runs every unit, property, integration and e2e test of every crate of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-tools.sh
export SLUICE_KUBECTL=${SLUICE_KUBECTL:-${SLUICE_TOOLS_DIR:-/opt/sluice-tools}/bin/kubectl}
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi
