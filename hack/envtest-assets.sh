#!/usr/bin/env bash
# Prints a directory holding kube-apiserver, etcd and kubectl for envtest
# (KUBEBUILDER_ASSETS), trying in order:
#   1. $KUBEBUILDER_ASSETS if it is already set;
#   2. ../shared/kind/envtest-assets (machines without a container registry:
#      builds from the Go module proxy, cached in /var/cache/offline-k8s);
#   3. setup-envtest (machines with ordinary internet access);
#   4. a build from the Go module proxy: a wrapper module requiring
#      k8s.io/kubernetes with every staging module replaced by its published
#      version, and etcd's server module; cached in $SLUICE_CACHE.
set -Eeuo pipefail
K8S_VERSION=${K8S_VERSION:-v1.32.2}
ETCD_VERSION=${ETCD_VERSION:-v3.5.16}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHARED=${SHARED_KIND:-$HERE/../shared/kind}
log() { echo "envtest-assets: $*" >&2; }

if [[ -n ${KUBEBUILDER_ASSETS:-} && -x ${KUBEBUILDER_ASSETS}/kube-apiserver ]]; then
  echo "$KUBEBUILDER_ASSETS"; exit 0
fi
if [[ -x $SHARED/envtest-assets ]]; then
  log "using $SHARED/envtest-assets (first run builds Kubernetes: ~15 min)"
  exec "$SHARED/envtest-assets" "$K8S_VERSION"
fi
minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
if dir=$(go run sigs.k8s.io/controller-runtime/tools/setup-envtest@release-0.20 use "1.$minor.x" -p path 2>/dev/null) && [[ -x $dir/kube-apiserver ]]; then
  echo "$dir"; exit 0
fi
CACHE=${SLUICE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice}/envtest/$K8S_VERSION
if [[ -x $CACHE/kube-apiserver && -x $CACHE/etcd && -x $CACHE/kubectl ]]; then
  echo "$CACHE"; exit 0
fi
log "building kube-apiserver, kubectl $K8S_VERSION and etcd $ETCD_VERSION from the Go module proxy into $CACHE"
mkdir -p "$CACHE/src/k8s" "$CACHE/src/etcd"
W=$CACHE/src/k8s
kmod=$(cd / && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
goline=$(awk '$1=="go"{print $2; exit}' "$kmod")
{
  echo "module sluiceenvtest"; echo; echo "go $goline"; echo
  echo "require k8s.io/kubernetes $K8S_VERSION"; echo; echo "replace ("
  awk -v v="v0.${K8S_VERSION#v1.}" '$2=="=>" && $3 ~ /^\.\/staging\/src\// {print "\t" $1 " => " $1 " " v}' "$kmod"
  echo ")"
} >"$W/go.mod"
printf '//go:build tools\npackage tools\nimport (\n\t_ "k8s.io/kubernetes/cmd/kube-apiserver"\n\t_ "k8s.io/kubernetes/cmd/kubectl"\n)\n' >"$W/tools.go"
(cd "$W" && go mod tidy && CGO_ENABLED=0 go build -trimpath -o "$CACHE/" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl)
GOBIN=$CACHE CGO_ENABLED=0 go install "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
mv "$CACHE/server" "$CACHE/etcd" 2>/dev/null || true
echo "$CACHE"
