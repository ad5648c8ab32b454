#!/usr/bin/env bash
# Starling's lab: a rack in network namespaces (switch, FRR top-of-rack, three
# nodes running starling-agent, two pods per node).
#
#   examples/lab/lab.sh up [--keep] [--kubernetes]   build, converge, show, check pod traffic, tear down
#   examples/lab/lab.sh down                         remove a lab left by --keep or a crash
#
# --kubernetes: a real control plane (etcd, kube-apiserver,
# kube-controller-manager, built once by tests/control-plane/build.sh, which
# needs Go) is the datastore of every component.
#
# Needs root. Installs FRR, nftables, iproute2 and ping if missing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

usage() {
    echo "usage: $0 up [--keep] [--kubernetes] | down" >&2
    exit 2
}

[ $# -ge 1 ] || usage
case "$1" in
    up | down) ;;
    -h | --help) usage ;;
    *) usage ;;
esac

if [ "$(id -u)" -ne 0 ]; then
    echo "lab.sh: needs root (network namespaces, veths, FRR)" >&2
    exit 1
fi

# Install what is missing: apt-get update only when something is.
missing=()
[ -x /usr/lib/frr/bgpd ] && [ -x /usr/lib/frr/zebra ] && command -v vtysh >/dev/null || missing+=(frr)
command -v nft >/dev/null || missing+=(nftables)
command -v ip >/dev/null || missing+=(iproute2)
command -v ping >/dev/null || missing+=(iputils-ping)
if [ ${#missing[@]} -gt 0 ]; then
    echo "lab.sh: installing ${missing[*]}" >&2
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y frr nftables iproute2 iputils-ping
fi

cd "$ROOT"
for a in "$@"; do
    if [ "$a" = "--kubernetes" ]; then
        # Builds the control plane's binaries once (long: see the README),
        # then only finds them in its cache.
        tests/control-plane/build.sh >/dev/null
    fi
done
cargo build --workspace --bins
BIN_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/debug"
export STARLING_BIN_DIR="${STARLING_BIN_DIR:-$BIN_DIR}"
exec "$BIN_DIR/starling-lab" "$@"
