#!/usr/bin/env bash
# MinIO, the S3-compatible server the checkpoint store's S3 tests run
# against, built from the Go module proxy (no container registry needed).
#
#   hack/minio/build.sh [binary]   build once into the cache; print the binary's path
#   hack/minio/build.sh image [TAG] also build a FROM-scratch image (default
#                                   sluice/minio:<version>) for a kind cluster
#
# Cache: ${SLUICE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice}/minio/<version>/minio,
# which platform/checkpoint/miniotest finds by itself; or export
# SLUICE_S3_SERVER=$(hack/minio/build.sh).
#
# MINIO_VERSION is a Go module version of github.com/minio/minio. MinIO's
# RELEASE.* tags are not semantic versions, so the module proxy only serves
# pseudo-versions; the default is the last commit of the archived
# repository (2026-02-12), which builds with Go 1.26.
set -Eeuo pipefail
MINIO_VERSION=${MINIO_VERSION:-v0.0.0-20260212201848-7aac2a2c5b7c}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CACHE=${SLUICE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice}/minio/$MINIO_VERSION
log() { echo "minio: $*" >&2; }

binary() {
  if [[ -x $CACHE/minio ]]; then
    echo "$CACHE/minio"; return
  fi
  log "building github.com/minio/minio@$MINIO_VERSION into $CACHE (a large build: ~37 min cold on a shared 2-core machine, about 1 min with a warm Go build cache)"
  mkdir -p "$CACHE"
  local tmp start
  tmp=$(mktemp -d "$CACHE/.build-XXXXXX")
  trap 'rm -rf "$tmp"' RETURN
  start=$SECONDS
  # Static (CGO_ENABLED=0) so that the same file runs in a FROM-scratch
  # image; built outside any module so that the repository's go.mod plays
  # no part.
  (cd "$tmp" && GOBIN=$tmp CGO_ENABLED=0 GOFLAGS=-buildvcs=false \
    go install -trimpath -ldflags "-s -w" "github.com/minio/minio@$MINIO_VERSION")
  mv "$tmp/minio" "$CACHE/minio" # atomic: a concurrent reader never sees half a binary
  log "built in $((SECONDS - start)) s"
  echo "$CACHE/minio"
}

image() {
  local tag=${1:-sluice/minio:${MINIO_VERSION##*-}} bin ctx
  bin=$(binary)
  ctx=$(mktemp -d)
  trap 'rm -rf "$ctx"' RETURN
  cp "$bin" "$ctx/minio"
  docker build -q -f "$HERE/build/minio/Dockerfile" -t "$tag" "$ctx" >&2
  log "image $tag (load into kind with: kind load docker-image $tag --name <cluster>)"
  echo "$tag"
}

case ${1:-binary} in
  binary) binary ;;
  image) shift; image "$@" ;;
  *) echo "usage: $0 [binary | image [TAG]]" >&2; exit 2 ;;
esac
