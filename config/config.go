// Package config holds Sluice's install manifests, the kustomize bases of
// this folder (CRDs and RBAC generated from markers by controller-gen, the
// operator's Deployment, config/default that puts them together), and
// renders them with kustomize's own library, the one kubectl's `-k` uses.
//
// Everything that installs Sluice goes through Render: `make deploy`
// (cmd/manifests), the kind e2e suite and the experiment backends, so that
// what users run is what is tested.
package config

import (
	"embed"
	"fmt"
	"io/fs"
	"path"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// The bases, embedded so that a binary can install Sluice without a
// checkout of this repository.
//
//go:embed crd rbac manager default
var bases embed.FS

// Names config/default installs under.
const (
	Namespace          = "sluice-system"
	OperatorDeployment = "sluice-operator"
	// OperatorConfig is the ConfigMap (name before kustomize's hash
	// suffix) that carries the PE image to the operator.
	OperatorConfig = "sluice-operator-config"
	// The images of config/manager, as `make image` tags them.
	DefaultOperatorImage = "sluice-operator:dev"
	DefaultPEImage       = "sluice-pe:dev"
)

// Images are the two images of an installation.
type Images struct {
	Operator string
	PE       string
}

// DefaultImages are those `make image` builds.
var DefaultImages = Images{Operator: DefaultOperatorImage, PE: DefaultPEImage}

// Overlay is the kustomization of an overlay on config/default (at
// base, a path relative to the overlay) that sets the images.
func Overlay(base string, im Images) ([]byte, error) {
	name, tag, digest, err := splitImage(im.Operator)
	if err != nil {
		return nil, fmt.Errorf("operator image: %w", err)
	}
	if _, _, _, err := splitImage(im.PE); err != nil {
		return nil, fmt.Errorf("PE image: %w", err)
	}
	img := map[string]string{"name": "sluice-operator", "newName": name}
	if digest != "" {
		img["digest"] = digest
	} else {
		img["newTag"] = tag
	}
	k := map[string]any{
		"apiVersion": "kustomize.config.k8s.io/v1beta1",
		"kind":       "Kustomization",
		"resources":  []string{base},
		"images":     []map[string]string{img},
		"configMapGenerator": []map[string]any{{
			"name": OperatorConfig, "namespace": Namespace, "behavior": "merge",
			"literals": []string{"peImage=" + im.PE},
		}},
	}
	return yaml.Marshal(k)
}

// splitImage splits an image reference into name and tag or digest (a
// tag defaults to latest, as the container runtime takes it).
func splitImage(ref string) (name, tag, digest string, err error) {
	if ref == "" || strings.ContainsAny(ref, " \t\n") {
		return "", "", "", fmt.Errorf("%q is not an image reference", ref)
	}
	if i := strings.Index(ref, "@"); i >= 0 {
		return ref[:i], "", ref[i+1:], nil
	}
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		return ref[:i], ref[i+1:], "", nil
	}
	return ref, "latest", "", nil
}

// Render builds config/default with the images set and returns its
// objects in kustomize's order (Namespace and CRDs first), ready to apply.
func Render(im Images) ([]*unstructured.Unstructured, error) {
	fsys, err := inMemory()
	if err != nil {
		return nil, err
	}
	overlay, err := Overlay("../default", im)
	if err != nil {
		return nil, err
	}
	if err := fsys.WriteFile("/sluice/overlay/kustomization.yaml", overlay); err != nil {
		return nil, err
	}
	return build(fsys, "/sluice/overlay")
}

// RenderCRDs builds config/crd: what `make install` applies.
func RenderCRDs() ([]*unstructured.Unstructured, error) {
	fsys, err := inMemory()
	if err != nil {
		return nil, err
	}
	return build(fsys, "/sluice/crd")
}

// inMemory copies the embedded bases into a kustomize file system.
func inMemory() (filesys.FileSystem, error) {
	fsys := filesys.MakeFsInMemory()
	err := fs.WalkDir(bases, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := bases.ReadFile(p)
		if err != nil {
			return err
		}
		return fsys.WriteFile(path.Join("/sluice", p), b)
	})
	return fsys, err
}

func build(fsys filesys.FileSystem, dir string) ([]*unstructured.Unstructured, error) {
	opts := krusty.MakeDefaultOptions()
	// kubectl's order: Namespace, CRDs, RBAC, ConfigMaps before workloads.
	opts.Reorder = krusty.ReorderOptionLegacy
	rm, err := krusty.MakeKustomizer(opts).Run(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", strings.TrimPrefix(dir, "/sluice/"), err)
	}
	var out []*unstructured.Unstructured
	for _, r := range rm.Resources() {
		// Through JSON: numbers become int64 and float64, as the
		// apimachinery helpers expect.
		b, err := r.MarshalJSON()
		if err != nil {
			return nil, err
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(b); err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, nil
}
