#!/usr/bin/env bash
# Runs every Starling test: codec, FSM and RIB unit and property tests, the
# kernel tests in network namespaces, and the lab tests against real FRR.
# Needs root (network namespaces). Usage: tests/run.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."
tests/install-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace --bins
cargo test --workspace "$@"
