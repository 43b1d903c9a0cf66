#!/usr/bin/env bash
# Create the kind cluster `imagebatch` with a local image registry on localhost:5001, which Tilt
# finds by itself (the local-registry-hosting ConfigMap below) and pushes the image to.
#
#   kind/create-cluster.sh              # cluster + registry (idempotent: re-running is fine)
#   kind/create-cluster.sh --with-keda  # also install KEDA with helm
#   tilt up                             # then: build, deploy, live-update
#
# Needs docker, kind and kubectl (and helm for --with-keda). Delete everything with
#   kind delete cluster --name imagebatch && docker rm -f kind-registry
set -euo pipefail

cluster_name="${CLUSTER_NAME:-imagebatch}"
registry_name="${REGISTRY_NAME:-kind-registry}"
registry_port="${REGISTRY_PORT:-5001}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
with_keda=false

for arg in "$@"; do
    case "$arg" in
        --with-keda) with_keda=true ;;
        -h | --help) sed -n '2,11p' "$0"; exit 0 ;;
        *) echo "unknown argument: $arg (try --help)" >&2; exit 2 ;;
    esac
done

for tool in docker kind kubectl; do
    command -v "$tool" >/dev/null || { echo "$tool is not installed" >&2; exit 1; }
done
if $with_keda; then
    command -v helm >/dev/null || { echo "helm is not installed (needed for --with-keda)" >&2; exit 1; }
fi

# 1. The registry container, published on the host's loopback only.
if [ "$(docker inspect -f '{{.State.Running}}' "$registry_name" 2>/dev/null || true)" != "true" ]; then
    docker rm -f "$registry_name" >/dev/null 2>&1 || true
    docker run -d --restart=always --name "$registry_name" \
        -p "127.0.0.1:${registry_port}:5000" --network bridge registry:2
fi

# 2. The cluster.
if kind get clusters 2>/dev/null | grep -qx "$cluster_name"; then
    echo "kind cluster '$cluster_name' already exists"
else
    kind create cluster --name "$cluster_name" --config "$here/cluster.yaml"
fi

# 3. Inside the nodes, localhost is the node itself: map localhost:<port> to the registry container.
registry_dir="/etc/containerd/certs.d/localhost:${registry_port}"
for node in $(kind get nodes --name "$cluster_name"); do
    docker exec "$node" mkdir -p "$registry_dir"
    printf '[host."http://%s:5000"]\n' "$registry_name" |
        docker exec -i "$node" cp /dev/stdin "$registry_dir/hosts.toml"
done

# 4. Put the registry on the cluster's network (once).
if [ "$(docker inspect -f '{{json .NetworkSettings.Networks.kind}}' "$registry_name")" = "null" ]; then
    docker network connect kind "$registry_name"
fi

# 5. Tell Tilt (and anyone else) where the cluster's local registry is (KEP-1755).
kubectl --context "kind-${cluster_name}" apply -f - <<YAML
apiVersion: v1
kind: ConfigMap
metadata:
  name: local-registry-hosting
  namespace: kube-public
data:
  localRegistryHosting.v1: |
    host: "localhost:${registry_port}"
    help: "https://kind.sigs.k8s.io/docs/user/local-registry/"
YAML

# 6. Optional: KEDA, so the operator's ScaledObjects scale batch workers on queue length.
if $with_keda; then
    helm repo add kedacore https://kedacore.github.io/charts >/dev/null
    helm repo update kedacore >/dev/null
    helm upgrade --install keda kedacore/keda --namespace keda --create-namespace \
        --kube-context "kind-${cluster_name}" --wait
fi

echo
echo "Cluster ready: kubectl context kind-${cluster_name}, registry localhost:${registry_port}."
echo "Next: tilt up   (or: docker build -t imagebatch:dev . && kind load docker-image imagebatch:dev --name ${cluster_name}"
echo "      && kubectl apply -f crds/ && kubectl apply -k manifests/)"
