#!/usr/bin/env bash
# Builds the versitygw S3 server (Apache-2.0) from the Go module proxy into a cache folder and
# prints that folder. `go install <module>/cmd/versitygw@<version>` works without a wrapper
# module (versitygw's go.mod has no replace directives). Only the binary is kept: the build cache
# is a throwaway folder, removed afterwards.
#
# Usage: hack/s3/build.sh [DEST_DIR]
#   DEST_DIR defaults to $S3_SERVER_DIR, else ~/.cache/imagebatch/versitygw/<version>.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../envtest/versions.env
source "$here/../envtest/versions.env"

dest="${1:-${S3_SERVER_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/imagebatch/versitygw/${VERSITYGW_VERSION}}}"
if [[ -x "$dest/versitygw" ]]; then
  echo "$dest"
  exit 0
fi

command -v go >/dev/null || { echo "s3/build.sh: Go is needed to build the versitygw S3 server" >&2; exit 1; }

mkdir -p "$dest"
gocache="$(mktemp -d -t imagebatch-versitygw-gocache.XXXXXX)"
trap 'chmod -R u+w "$gocache" 2>/dev/null; rm -rf "$gocache"' EXIT
# GOBIN inside the throwaway folder: `go install` has no -o, and the binary is moved into place
# only once it is whole, so an interrupted build never leaves a broken one in the cache.
export CGO_ENABLED=0 GOCACHE="$gocache" GOBIN="$gocache/bin" GOFLAGS="-trimpath -buildvcs=false"

start=$(date +%s)
echo "s3/build.sh: building versitygw v${VERSITYGW_VERSION} into $dest" >&2
cd "$gocache"
go install -ldflags "-s -w -X=main.Version=v${VERSITYGW_VERSION}" \
  "github.com/versity/versitygw/cmd/versitygw@v${VERSITYGW_VERSION}"
mv "$gocache/bin/versitygw" "$dest/versitygw"
echo "s3/build.sh: done in $(( $(date +%s) - start ))s" >&2
echo "$dest"
