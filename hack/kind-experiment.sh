#!/usr/bin/env bash
# Runs experiment definitions on a real kind cluster with their
# plain-Kubernetes baselines, then deletes the cluster (unless KEEP_CLUSTER=1).
#
#   hack/kind-experiment.sh submission -points pes=2,pes=4,pes=8,pes=16 -reps 5
#   hack/kind-experiment.sh recovery -points fault=deletePod,fault=killContainer -reps 5
#   WORKERS=1 hack/kind-experiment.sh checkpoint -baseline=false -reps 5 -tag filesystem \
#       -points 'store=filesystem;stateKiB=1,store=filesystem;stateKiB=64'
#
# WORKERS (default 3) is the kind cluster's worker count when this script
# creates it: the checkpoint experiment's filesystem store is a hostPath of
# the node, which keeps checkpoints across a pod replacement only on one
# worker. The checkpoint experiment's S3 store needs the MinIO image
# (hack/minio/build.sh image), built here for it.
#
# Runs `go run ./cmd/experiment -backend kind -baseline` (other flags of
# cmd/experiment after the name; -baseline=false drops the baselines):
# writes results/<name>/kind.csv and kind-baseline.csv (+ .json metadata)
# and prints the medians with the platform/baseline ratio. The runner waits
# for a quiet host and refuses a busy one (see experiments/README.md).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
name=${1:?usage: hack/kind-experiment.sh <experiment> [cmd/experiment flags]}
shift
shared=${SHARED_KIND:-}
for d in "$repo/../shared/kind" /work/shared/kind; do
	if [[ -z $shared && -x $d/cluster-up ]]; then shared=$(cd "$d" && pwd); fi
done
cluster=${SLUICE_KIND_CLUSTER:-sluice-exp}
if [[ -n $shared ]]; then
	"$shared/docker-up" >/tmp/sluice-kind-docker-up.log 2>&1
	trap '[[ ${KEEP_CLUSTER:-0} == 1 ]] || "$shared/cluster-down" "$cluster"' EXIT
	"$shared/cluster-up" "$cluster" "${WORKERS:-3}"
fi
make image
if [[ $name == checkpoint ]]; then
	hack/minio/build.sh image
fi
SLUICE_KIND_CLUSTER=$cluster go run ./cmd/experiment -backend kind -baseline -name "$name" "$@"
