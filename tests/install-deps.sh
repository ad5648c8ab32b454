#!/usr/bin/env bash
# Installs what the lab and the tests need, once: FRR (the peer router),
# nftables, iproute2 and ping; openssl and curl (the control plane's PKI, etcd's
# HTTP API); and the real Kubernetes control plane the tests run
# (tests/control-plane/build.sh: built once with Go, then cached).
# Idempotent: does nothing when all is there.
set -euo pipefail
need=()
command -v ip >/dev/null || need+=(iproute2)
command -v nft >/dev/null || need+=(nftables)
command -v ping >/dev/null || need+=(iputils-ping)
command -v openssl >/dev/null || need+=(openssl)
command -v curl >/dev/null || need+=(curl)
[ -x /usr/lib/frr/bgpd ] && [ -x /usr/lib/frr/zebra ] && command -v vtysh >/dev/null || need+=(frr)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: need root to install: ${need[*]}" >&2
    exit 1
  fi
  echo "install-deps: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
"$(dirname "$0")/control-plane/build.sh" >/dev/null
