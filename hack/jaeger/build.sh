#!/usr/bin/env bash
# Builds Jaeger v2 (`cmd/jaeger`, the trace store of the test ground) from the Go module proxy
# (through the wrapper module here) into a cache folder and prints that folder. Only the binary is
# kept: the build cache is a throwaway folder, removed afterwards. No UI is embedded (the `ui` build
# tag is off): the tests read the query API, and a person can read the same JSON.
#
# Usage: hack/jaeger/build.sh [DEST_DIR]
#   DEST_DIR defaults to $JAEGER_DIR, else ~/.cache/imagebatch/jaeger/<version>.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../envtest/versions.env
source "$here/../envtest/versions.env"

dest="${1:-${JAEGER_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/imagebatch/jaeger/${JAEGER_VERSION}}}"
if [[ -x "$dest/jaeger" ]]; then
  echo "$dest"
  exit 0
fi

command -v go >/dev/null || { echo "jaeger/build.sh: Go is needed to build Jaeger" >&2; exit 1; }
grep -q "github.com/jaegertracing/jaeger v${JAEGER_VERSION}\$" "$here/go.mod" || {
  echo "jaeger/build.sh: hack/jaeger/go.mod does not require Jaeger v${JAEGER_VERSION} (versions.env)" >&2
  exit 1
}

mkdir -p "$dest"
gocache="$(mktemp -d -t imagebatch-jaeger-gocache.XXXXXX)"
trap 'chmod -R u+w "$gocache" 2>/dev/null; rm -rf "$gocache" "$dest/jaeger.tmp"' EXIT
export CGO_ENABLED=0 GOCACHE="$gocache" GOFLAGS="-trimpath -buildvcs=false"

start=$(date +%s)
echo "jaeger/build.sh: building Jaeger (module v${JAEGER_VERSION}) into $dest" >&2
cd "$here"
go build -ldflags "-s -w -X=github.com/jaegertracing/jaeger/internal/version.latestVersion=v${JAEGER_VERSION}" \
  -o "$dest/jaeger.tmp" github.com/jaegertracing/jaeger/cmd/jaeger
mv "$dest/jaeger.tmp" "$dest/jaeger"
echo "jaeger/build.sh: done in $(( $(date +%s) - start ))s" >&2
echo "$dest"
