#!/usr/bin/env bash
# Builds the envtest binaries (etcd, kube-apiserver, kube-controller-manager, and a version-matched
# kubectl) from the Go module
# proxy into a cache folder and prints that folder. Docker-free machines cannot fetch kind images,
# and no prebuilt binaries can be downloaded here, so the binaries come from source.
#
# Usage: hack/envtest/build.sh [DEST_DIR]
#   DEST_DIR defaults to $ENVTEST_DIR, else ~/.cache/imagebatch/envtest/k8s-<ver>_etcd-<ver>.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"

dest="${1:-${ENVTEST_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/imagebatch/envtest/k8s-${KUBERNETES_VERSION}_etcd-${ETCD_VERSION}}}"
mkdir -p "$dest"

kube_cmds=(kube-apiserver kube-controller-manager kubectl)
missing=0
for bin in etcd "${kube_cmds[@]}"; do [[ -x "$dest/$bin" ]] || missing=1; done
if (( missing == 0 )); then
  echo "$dest"
  exit 0
fi

command -v go >/dev/null || { echo "build.sh: Go is needed to build the envtest binaries" >&2; exit 1; }

export CGO_ENABLED=0 GOFLAGS="-mod=mod -trimpath -buildvcs=false"
k8s_ver="v${KUBERNETES_VERSION}"
major="${KUBERNETES_VERSION%%.*}"
minor="${KUBERNETES_VERSION#*.}"; minor="${minor%%.*}"
kube_ldflags="-s -w \
 -X k8s.io/component-base/version.gitVersion=${k8s_ver} \
 -X k8s.io/component-base/version.gitMajor=${major} \
 -X k8s.io/component-base/version.gitMinor=${minor} \
 -X k8s.io/component-base/version.gitTreeState=clean \
 -X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z"

start=$(date +%s)
if [[ ! -x "$dest/etcd" ]]; then
  echo "build.sh: building etcd v${ETCD_VERSION} into $dest" >&2
  (cd "$here/etcd" && go build -ldflags "-s -w" -o "$dest/etcd.tmp" go.etcd.io/etcd/server/v3)
  mv "$dest/etcd.tmp" "$dest/etcd"
fi

for cmd in "${kube_cmds[@]}"; do
  [[ -x "$dest/${cmd}" ]] && continue
  echo "build.sh: building ${cmd} ${k8s_ver} into $dest" >&2
  (cd "$here/kube" && go build -ldflags "$kube_ldflags" -o "$dest/${cmd}.tmp" "k8s.io/kubernetes/cmd/${cmd}")
  mv "$dest/${cmd}.tmp" "$dest/${cmd}"
done
echo "build.sh: done in $(( $(date +%s) - start ))s" >&2
echo "$dest"
