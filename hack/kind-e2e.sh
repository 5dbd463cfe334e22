#!/usr/bin/env bash
# End-to-end tests on a real kind cluster: starts Docker, creates a
# one-control-plane/three-worker cluster from the offline node image,
# builds the operator and PE images, runs the e2e-tagged tests of
# test/e2e and deletes the cluster on exit (also on failure).
#
#   hack/kind-e2e.sh                 # the whole suite
#   hack/kind-e2e.sh -run Recovery   # extra arguments go to go test
#
# Skips (exit 0, with the reason) when no Docker engine can be started.
# Env: SLUICE_E2E_CLUSTER (default sluice-e2e-$$), KEEP_CLUSTER=1 keeps it,
# SHARED_KIND (default ../shared/kind or /work/shared/kind), KIND_NODE_IMAGE,
# SLUICE_REQUIRE_S3=1 fails (not skips) the S3 tests without a MinIO image.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
shared=${SHARED_KIND:-}
for d in "$repo/../shared/kind" /work/shared/kind; do
	if [[ -z $shared && -x $d/cluster-up ]]; then shared=$(cd "$d" && pwd); fi
done
name=${SLUICE_E2E_CLUSTER:-sluice-e2e-$$}
export SLUICE_E2E_CLUSTER=$name

if [[ -n $shared ]]; then
	if ! "$shared/docker-up" >/tmp/sluice-kind-docker-up.log 2>&1; then
		echo "kind-e2e: SKIP: no Docker engine could be started (see /tmp/sluice-kind-docker-up.log)"
		exit 0
	fi
elif ! docker info >/dev/null 2>&1; then
	echo "kind-e2e: SKIP: no Docker engine answers and no offline kind scripts to start one"
	exit 0
fi

cleanup() {
	rc=$?
	if [[ ${KEEP_CLUSTER:-0} != 1 ]]; then
		if [[ -n $shared ]]; then "$shared/cluster-down" "$name" || true
		else go run sigs.k8s.io/kind@v0.27.0 delete cluster --name "$name" || true; fi
	fi
	exit $rc
}
trap cleanup EXIT INT TERM

if [[ -n $shared ]]; then
	# Builds the node image the first time (cached afterwards).
	"$shared/cluster-up" "$name" 3
	export SLUICE_SHARED_KIND=$shared
fi
make image
# The FROM-scratch MinIO image of the S3 checkpoint store tests (the
# binary is cached; a cold build takes long). Without it those tests skip,
# or fail with the reason when SLUICE_REQUIRE_S3=1 (CI).
if ! hack/minio/build.sh image >/tmp/sluice-minio-image.log 2>&1; then
	echo "kind-e2e: no MinIO image (see /tmp/sluice-minio-image.log): the S3 checkpoint tests skip, or fail under SLUICE_REQUIRE_S3=1"
fi
# Without the shared scripts the suite creates the cluster itself
# (kindconfig.Ensure with the standard node image). pipefail makes the
# script fail when go test fails.
go test -tags e2e -count=1 -timeout 45m -v ./test/e2e/... "$@" 2>&1 | tee /tmp/sluice-kind-e2e.log
