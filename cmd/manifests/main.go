// Command manifests prints Sluice's install manifests: config/default
// built with kustomize (the library kubectl's -k uses) and the images
// given, or config/crd alone. `make deploy` and `make install` pipe it
// into kubectl apply; the e2e suite and the experiment backends apply the
// same objects from Go (config.Render).
//
//	go run ./cmd/manifests -img REGISTRY/sluice-operator:TAG -pe-img REGISTRY/sluice-pe:TAG | kubectl apply --server-side -f -
//	go run ./cmd/manifests -crds | kubectl apply --server-side -f -
package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"sluice.dev/sluice/config"
)

func main() {
	img := flag.String("img", config.DefaultOperatorImage, "operator image")
	peImg := flag.String("pe-img", config.DefaultPEImage, "default PE image of Jobs that name none")
	crds := flag.Bool("crds", false, "print only the CustomResourceDefinitions (config/crd)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: manifests [-img IMAGE] [-pe-img IMAGE] [-crds]\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	var objs []*unstructured.Unstructured
	var err error
	if *crds {
		objs, err = config.RenderCRDs()
	} else {
		objs, err = config.Render(config.Images{Operator: *img, PE: *peImg})
	}
	if err == nil {
		err = write(os.Stdout, objs)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "manifests:", err)
		os.Exit(1)
	}
}

// write prints objects as a YAML stream.
func write(w io.Writer, objs []*unstructured.Unstructured) error {
	for _, o := range objs {
		b, err := yaml.Marshal(o.Object)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "---\n%s", b); err != nil {
			return err
		}
	}
	return nil
}
