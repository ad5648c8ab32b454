#!/usr/bin/env bash
# The NetworkPolicy benchmark (issues #7, #16): 10,000 pods in 1,000
# namespaces with 1,000 policies compiled by starling-policy's controller and
# applied to nftables in a namespace; then events of five kinds (pod added,
# deleted, relabelled; namespace relabelled; policy changed), each timed until
# its rules are in force (median, 99th percentile, CPU of the controller and
# of nft), memory, and TCP throughput between two pods without and with that
# ruleset. --full-recompile measures the previous algorithm.
# Needs root and nft. Release build. Prints the README's table rows.
#
#   tests/policy-bench.sh
#   tests/policy-bench.sh --namespaces 100 --policies 100 --events 50
#   tests/policy-bench.sh --events 20 --full-recompile
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
