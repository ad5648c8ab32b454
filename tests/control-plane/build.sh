#!/usr/bin/env bash
# Builds the real Kubernetes control plane the tests run against: kube-apiserver,
# kube-controller-manager, kubectl (Kubernetes v1.37.2) and etcd (v3.6.16), from the
# Go modules beside this script, and caches the binaries in
#   ${XDG_CACHE_HOME:-$HOME/.cache}/starling/control-plane-k8s1.37.2-etcd3.6.16/
# A second run finds them there and costs nothing. Prints that directory on stdout.
# Go is only a test dependency: Starling itself is Rust.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
k8s_version=v1.37.2
etcd_version=v3.6.16
out="${XDG_CACHE_HOME:-$HOME/.cache}/starling/control-plane-k8s${k8s_version#v}-etcd${etcd_version#v}"
bins=(kube-apiserver kube-controller-manager kubectl etcd)

complete() {
  for b in "${bins[@]}"; do [ -x "$out/$b" ] || return 1; done
}
if complete; then
  echo "$out"
  exit 0
fi

if ! command -v go >/dev/null; then
  for g in /usr/local/go/bin/go /usr/lib/go/bin/go; do
    [ -x "$g" ] && PATH="$(dirname "$g"):$PATH" && break
  done
fi
command -v go >/dev/null || { echo "control-plane: need Go (>= 1.26) to build the control plane" >&2; exit 1; }

mkdir -p "$out"
tmp="$(mktemp -d "$out/.build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
build() { # module dir, package, binary name
  (cd "$here/$1" && nice -n 5 go build -mod=readonly -buildvcs=false -trimpath -ldflags='-s -w' -o "$tmp/$3" "$2")
}
echo "control-plane: building Kubernetes $k8s_version and etcd $etcd_version into $out (once)" >&2
build kubernetes k8s.io/kubernetes/cmd/kube-apiserver kube-apiserver
build kubernetes k8s.io/kubernetes/cmd/kube-controller-manager kube-controller-manager
build kubernetes k8s.io/kubernetes/cmd/kubectl kubectl
build etcd go.etcd.io/etcd/server/v3 etcd
# Move into place only when all are built, so an interrupted build is never taken as done.
for b in "${bins[@]}"; do mv -f "$tmp/$b" "$out/$b"; done
echo "$out"
