#!/usr/bin/env bash
# Builds the KEDA operator from the Go module proxy (through the wrapper module here) into a cache
# folder, copies KEDA's own CRDs from the same module beside it, and prints that folder. Only the
# binary and the CRDs are kept: the build cache is a throwaway folder, removed afterwards.
#
# Usage: hack/keda/build.sh [DEST_DIR]
#   DEST_DIR defaults to $KEDA_DIR, else ~/.cache/imagebatch/keda/<version>.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../envtest/versions.env
source "$here/../envtest/versions.env"

dest="${1:-${KEDA_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/imagebatch/keda/${KEDA_VERSION}}}"
if [[ -x "$dest/keda" && -f "$dest/crds/keda.sh_scaledobjects.yaml" ]]; then
  echo "$dest"
  exit 0
fi

command -v go >/dev/null || { echo "keda/build.sh: Go is needed to build the KEDA operator" >&2; exit 1; }
grep -q "github.com/kedacore/keda/v2 v${KEDA_VERSION}\$" "$here/go.mod" || {
  echo "keda/build.sh: hack/keda/go.mod does not require KEDA v${KEDA_VERSION} (versions.env)" >&2
  exit 1
}

mkdir -p "$dest/crds"
gocache="$(mktemp -d -t imagebatch-keda-gocache.XXXXXX)"
trap 'chmod -R u+w "$gocache" 2>/dev/null; rm -rf "$gocache" "$dest/keda.tmp"' EXIT
export CGO_ENABLED=0 GOCACHE="$gocache" GOFLAGS="-trimpath -buildvcs=false"

start=$(date +%s)
echo "keda/build.sh: building the KEDA operator v${KEDA_VERSION} into $dest" >&2
cd "$here"
go build -ldflags "-s -w -X=github.com/kedacore/keda/v2/version.Version=${KEDA_VERSION}" \
  -o "$dest/keda.tmp" github.com/kedacore/keda/v2/cmd/operator
module="$(go list -m -f '{{.Dir}}' github.com/kedacore/keda/v2)"
install -m 0644 "$module"/config/crd/bases/*.yaml "$dest/crds/"
mv "$dest/keda.tmp" "$dest/keda"
echo "keda/build.sh: done in $(( $(date +%s) - start ))s" >&2
echo "$dest"
