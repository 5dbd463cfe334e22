// Package kindconfig holds Sluice's kind cluster configurations and a small
// lifecycle API over kind's pkg/cluster: create or reuse a named cluster,
// load the locally built images into its nodes, deploy the CRDs, RBAC and
// the operator from config/, and wait for the operator to be ready.
package kindconfig

import (
	"os"
	"path/filepath"
	"strings"
)

// KubernetesVersion is the one place the Kubernetes version of kind
// clusters is pinned; the node images below must match it.
const KubernetesVersion = "v1.32.2"

// StandardNodeImage is kind v0.27.0's published node image for
// KubernetesVersion, pinned by digest.
const StandardNodeImage = "kindest/node:" + KubernetesVersion + "@sha256:f226345927d7e348497136874b6d207e0b32cc52154ad8323129352923a3142f"

// OfflineNodeImage is the node image built by shared/kind/node-image on
// machines without a container registry (nothing in it is pulled).
const OfflineNodeImage = "kindest/node:" + KubernetesVersion + "-offline"

// NodeImageEnv overrides the node image.
const NodeImageEnv = "KIND_NODE_IMAGE"

// NodeImage is the node image to create clusters with: $KIND_NODE_IMAGE if
// set; else the offline image when the offline kind scripts exist (shared
// dir given, or found beside the repository); else the standard image.
func NodeImage(repoDir string) string {
	if img := os.Getenv(NodeImageEnv); img != "" {
		return img
	}
	if SharedKindDir(repoDir) != "" {
		return OfflineNodeImage
	}
	return StandardNodeImage
}

// SharedKindDir returns the directory of the offline kind scripts
// (docker-up, cluster-up, node-stop, ...), or "" when there is none. It
// looks at $SLUICE_SHARED_KIND, /work/shared/kind and ../shared/kind
// relative to repoDir.
func SharedKindDir(repoDir string) string {
	cands := []string{os.Getenv("SLUICE_SHARED_KIND"), "/work/shared/kind"}
	if repoDir != "" {
		cands = append(cands, filepath.Join(repoDir, "..", "shared", "kind"))
	}
	for _, d := range cands {
		if d == "" {
			continue
		}
		if st, err := os.Stat(filepath.Join(d, "cluster-up")); err == nil && !st.IsDir() {
			return d
		}
	}
	return ""
}

// MinIOVersion is the Go module version of github.com/minio/minio that
// hack/minio/build.sh builds (its MINIO_VERSION default; a unit test keeps
// the two equal).
const MinIOVersion = "v0.0.0-20260212201848-7aac2a2c5b7c"

// MinIOImage is the FROM-scratch MinIO image `hack/minio/build.sh image`
// tags by default: sluice/minio:<the version's commit>.
var MinIOImage = "sluice/minio:" + MinIOVersion[strings.LastIndex(MinIOVersion, "-")+1:]
