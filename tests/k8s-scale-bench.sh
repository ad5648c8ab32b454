#!/usr/bin/env bash
# The scale benchmark on a real API server (issue #12): by default 1,000
# Nodes and 10,000 Pods in 1,000 namespaces with 1,000 NetworkPolicies,
# created through kube-apiserver (etcd + kube-apiserver +
# kube-controller-manager from tests/control-plane/build.sh), then one
# starling-agent (node 0; full mesh, then route reflectors) and one
# starling-policy with their own ServiceAccounts' tokens. Prints the time
# each took to converge, its CPU time and peak RSS, and the API requests
# it made (until converged, and per minute while idle, from the API
# server's audit log), then a Markdown table for the README.
# Needs root (one network namespace, s1-cp). Release builds only.
#
#   tests/k8s-scale-bench.sh                          # the full run (about 15 min)
#   tests/k8s-scale-bench.sh --nodes 100 --pods 1000 --namespaces 100 --policies 100 --idle 60
#
# Measure on a quiet machine (`uptime`: load average below ~1).
set -euo pipefail
cd "$(dirname "$0")/.."
tests/install-deps.sh
cargo build --release -p starling-agent -p starling-policy -p starling-lab
export STARLING_BIN_DIR="${CARGO_TARGET_DIR:-$PWD/target}/release"
exec "$STARLING_BIN_DIR/starling-k8s-bench" "$@"
