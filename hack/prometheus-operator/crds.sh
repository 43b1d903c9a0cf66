#!/usr/bin/env bash
# Caches prometheus-operator's own CustomResourceDefinitions, taken from its Go module as the
# module proxy serves it (example/prometheus-operator-crd/ in the module), and prints the cache
# folder. Nothing is built: the tests dry-run manifests/monitoring/ against these CRDs.
#
# Usage: hack/prometheus-operator/crds.sh [DEST_DIR]
#   DEST_DIR defaults to $PROMETHEUS_OPERATOR_DIR, else
#   ~/.cache/imagebatch/prometheus-operator/<version>.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../envtest/versions.env
source "$here/../envtest/versions.env"
module="github.com/prometheus-operator/prometheus-operator"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/imagebatch/prometheus-operator/${PROMETHEUS_OPERATOR_VERSION}"
dest="${1:-${PROMETHEUS_OPERATOR_DIR:-$cache}}"
if compgen -G "$dest/crds/monitoring.coreos.com_*.yaml" >/dev/null; then
  echo "$dest"
  exit 0
fi

command -v go >/dev/null || {
  echo "prometheus-operator/crds.sh: Go is needed to download prometheus-operator's module" >&2
  exit 1
}
scratch="$(mktemp -d -t imagebatch-promop.XXXXXX)"
trap 'rm -rf "$scratch" "$dest/crds.tmp"' EXIT
# Outside any module, so that nothing here needs a go.mod; only the module's zip is fetched.
dir="$(cd "$scratch" && GOFLAGS=-mod=mod go mod download -json "$module@v${PROMETHEUS_OPERATOR_VERSION}" |
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
[[ -n "$dir" && -d "$dir/example/prometheus-operator-crd" ]] || {
  echo "prometheus-operator/crds.sh: no example/prometheus-operator-crd/ in $module@v${PROMETHEUS_OPERATOR_VERSION}" >&2
  exit 1
}
mkdir -p "$dest/crds.tmp"
install -m 0644 "$dir"/example/prometheus-operator-crd/monitoring.coreos.com_*.yaml "$dest/crds.tmp/"
rm -rf "$dest/crds"
mv "$dest/crds.tmp" "$dest/crds"
echo "prometheus-operator/crds.sh: $(ls "$dest/crds" | wc -l) CRDs of v${PROMETHEUS_OPERATOR_VERSION} in $dest/crds" >&2
echo "$dest"
