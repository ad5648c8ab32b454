#!/usr/bin/env bash
# The BGP receive benchmark (issue #5): the same pre-encoded stream of IPv4
# prefixes (1,000,000 by default) fed to Starling, BIRD 2 and FRR in turn,
# each in its own network namespaces and installing nothing into the
# kernel; prints seconds from Established until all are held, routes/s,
# peak RSS and the ratios to BIRD. Needs root. Release builds only.
#
#   tests/bench.sh                                  # all three, 1,000,000 prefixes
#   tests/bench.sh --prefixes 200000 --receivers starling,bird
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
