#!/usr/bin/env bash
# The BGP benchmarks (issue #5): the same pre-encoded streams of IPv4
# prefixes (1,000,000 by default) fed to Starling, BIRD 2 and FRR in turn,
# each in its own network namespaces, in three figures: receive (one peer,
# held in the RIB), kernel (installed into the kernel; BIRD and Starling)
# and fan-in (50 peers x 20,000). Prints seconds from Established until all
# are held, routes/s, peak RSS, the ratios to BIRD, whether a 1 s / 3 s
# session stayed up, and at the end a Markdown table for the README.
# Needs root. Release builds only.
#
#   tests/bench.sh                                  # all figures, all receivers
#   tests/bench.sh --figures receive --prefixes 200000 --receivers starling,bird
#
# Measure on a quiet machine (`uptime`: load average below ~1).
set -euo pipefail
cd "$(dirname "$0")/.."
tests/install-deps.sh
if ! [ -x /usr/sbin/bird ] || ! command -v birdc >/dev/null; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "bench: need root to install bird2" >&2
    exit 1
  fi
  echo "bench: installing bird2"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends bird2 >/dev/null
fi
cargo build --release -p starling-agent -p starling-lab
export STARLING_BIN_DIR="$PWD/target/release"
exec "$STARLING_BIN_DIR/starling-bench" "$@"
