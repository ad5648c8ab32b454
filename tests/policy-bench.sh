#!/usr/bin/env bash
# The NetworkPolicy benchmark (issue #7): 10,000 pods in 1,000 namespaces
# with 1,000 policies compiled by starling-policy's controller and applied to
# nftables in a namespace, the latency of a pod added until its rules are in
# force, and TCP throughput between two pods without and with that ruleset.
# Needs root and nft. Release build. Prints the README's table rows.
#
#   tests/policy-bench.sh
#   tests/policy-bench.sh --namespaces 100 --policies 100
#
# Measure on a quiet machine (`uptime`: load average below ~1).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v nft >/dev/null; then
  echo "policy-bench: installing nftables"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends nftables >/dev/null
fi
cargo build --release -p starling-lab --bin starling-policy-bench
exec "${CARGO_TARGET_DIR:-target}"/release/starling-policy-bench "$@"
