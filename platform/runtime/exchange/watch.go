package exchange

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/runtime/kubewatch"
)

// Watcher follows one Import object's matched streams.
type Watcher interface {
	// Watch calls update with the streams now and after every change,
	// until ctx ends. An Import that does not exist (yet, or any more)
	// has no streams.
	Watch(ctx context.Context, update func([]v1alpha1.ImportedStream)) error
}

// WatchFunc gives the Watcher of the Import object named resource.
type WatchFunc func(resource string) (Watcher, error)

// changes calls update when streams differ from the last ones sent.
type changes struct {
	sent   bool
	last   []v1alpha1.ImportedStream
	update func([]v1alpha1.ImportedStream)
}

func (c *changes) send(streams []v1alpha1.ImportedStream) {
	if c.sent && slices.Equal(c.last, streams) {
		return
	}
	c.sent, c.last = true, slices.Clone(streams)
	c.update(slices.Clone(streams))
}

// ImportFile is where local mode keeps an Import's object (JSON, as the
// API would return it; only status.streams is read).
func ImportFile(dir, resource string) string {
	return filepath.Join(dir, "import-"+resource+".json")
}

// Files watches an Import through ImportFile, by polling.
type Files struct {
	Dir   string
	Every time.Duration // default 50ms
}

// For is a WatchFunc.
func (f Files) For(resource string) (Watcher, error) {
	return fileWatcher{path: ImportFile(f.Dir, resource), every: f.Every}, nil
}

type fileWatcher struct {
	path  string
	every time.Duration
}

// ReadImportFile reads an Import written for local mode.
func ReadImportFile(path string) (*v1alpha1.Import, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var im v1alpha1.Import
	if err := json.Unmarshal(b, &im); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &im, nil
}

// Watch implements Watcher. A missing file means no streams; a file that
// does not parse is ignored until a good write replaces it (writers write
// atomically, so that is a stranger's write).
func (w fileWatcher) Watch(ctx context.Context, update func([]v1alpha1.ImportedStream)) error {
	every := w.every
	if every <= 0 {
		every = 50 * time.Millisecond
	}
	c := changes{update: update}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		im, err := ReadImportFile(w.path)
		switch {
		case err == nil:
			c.send(im.Status.Streams)
		case errors.Is(err, os.ErrNotExist):
			c.send(nil)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// KubeOptions configures the in-cluster watcher.
type KubeOptions struct {
	// Config of the API client; nil means rest.InClusterConfig().
	Config *rest.Config
	// Namespace of the Imports; empty means $POD_NAMESPACE.
	Namespace string
	Log       *slog.Logger
	// MinBackoff and MaxBackoff bound the waits between watch retries
	// (defaults 100ms and 5s).
	MinBackoff, MaxBackoff time.Duration
}

// Kube watches Import objects through the API server: a list then a
// watch of the one object by field selector (what the PE's ServiceAccount
// may do: get, list, watch streamsimports), listing again after a back-off
// when the watch fails.
type Kube struct {
	o KubeOptions
	c client.WithWatch
}

// NewKube builds the client; it does not contact the API server.
func NewKube(o KubeOptions) (*Kube, error) {
	if o.Namespace == "" {
		o.Namespace = os.Getenv("POD_NAMESPACE")
	}
	if o.Namespace == "" {
		return nil, fmt.Errorf("import watch: a namespace is required")
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 100 * time.Millisecond
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(5*time.Second, o.MinBackoff)
	}
	c, err := kubewatch.Client(o.Config)
	if err != nil {
		return nil, fmt.Errorf("import watch: %w", err)
	}
	return &Kube{o: o, c: c}, nil
}

// For is a WatchFunc.
func (k *Kube) For(resource string) (Watcher, error) {
	if resource == "" {
		return nil, fmt.Errorf("import watch: no Import resource named")
	}
	return kubeWatcher{k: k, name: resource}, nil
}

type kubeWatcher struct {
	k    *Kube
	name string
}

// Watch implements Watcher.
func (w kubeWatcher) Watch(ctx context.Context, update func([]v1alpha1.ImportedStream)) error {
	c := changes{update: update}
	one := kubewatch.One{Client: w.k.c, Namespace: w.k.o.Namespace, Name: w.name, Log: w.k.o.Log, What: "import watch",
		NewList: func() client.ObjectList { return &v1alpha1.ImportList{} }}
	one.Run(ctx, &kubewatch.Backoff{Min: w.k.o.MinBackoff, Max: w.k.o.MaxBackoff}, func(obj client.Object) {
		if im, ok := obj.(*v1alpha1.Import); ok {
			c.send(im.Status.Streams)
		} else {
			c.send(nil) // absent or deleted: no streams
		}
	})
	return nil
}
