package regionctl

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/runtime/kubewatch"
)

// KubeOptions configures the in-cluster Control.
type KubeOptions struct {
	// Config of the API client; nil means rest.InClusterConfig().
	Config *rest.Config
	// Namespace of the ConsistentRegion and of the pod.
	Namespace string
	// Resource is the ConsistentRegion's name (peconfig.Region.Resource).
	Resource string
	// Pod is the PE's own pod, whose annotation carries the progress;
	// empty means $POD_NAME.
	Pod string
	Log *slog.Logger
	// MinBackoff and MaxBackoff bound the waits between retries of a watch
	// or a patch (defaults 100ms and 5s).
	MinBackoff, MaxBackoff time.Duration
	// ReportAttempts bounds the patches one Report tries (default 4), so
	// that a caller retrying on error sends its latest progress rather
	// than wait behind an old one.
	ReportAttempts int
}

// Kube is the in-cluster Control: it watches the PE's ConsistentRegion and
// reports progress as an annotation on the PE's own pod.
type Kube struct {
	o    KubeOptions
	c    client.WithWatch
	cmds chan Command

	mu   sync.Mutex
	last *v1alpha1.RegionProgress
}

// NewKube builds the client; it does not contact the API server.
func NewKube(o KubeOptions) (*Kube, error) {
	if o.Pod == "" {
		o.Pod = os.Getenv("POD_NAME")
	}
	if o.Namespace == "" {
		o.Namespace = os.Getenv("POD_NAMESPACE")
	}
	if o.Namespace == "" || o.Resource == "" || o.Pod == "" {
		return nil, fmt.Errorf("region control: namespace %q, region resource %q and pod %q are all required", o.Namespace, o.Resource, o.Pod)
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
	if o.ReportAttempts <= 0 {
		o.ReportAttempts = 4
	}
	c, err := kubewatch.Client(o.Config)
	if err != nil {
		return nil, fmt.Errorf("region control: %w", err)
	}
	return &Kube{o: o, c: c, cmds: make(chan Command, 1)}, nil
}

// Commands implements Control.
func (k *Kube) Commands() <-chan Command { return k.cmds }

// Report implements Control: a merge patch of the pod's progress
// annotation, skipped when this process already wrote the same progress.
// It retries with back-off, up to ReportAttempts patches or until ctx
// ends, and then returns the last error; nil means the report is stored.
func (k *Kube) Report(ctx context.Context, p v1alpha1.RegionProgress) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.last != nil && *k.last == p {
		return nil
	}
	val, err := json.Marshal(p)
	if err != nil {
		return err
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{
		"annotations": map[string]string{v1alpha1.AnnotationRegionProgress: string(val)}}})
	if err != nil {
		return err
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: k.o.Pod, Namespace: k.o.Namespace}}
	b := kubewatch.Backoff{Min: k.o.MinBackoff, Max: k.o.MaxBackoff}
	for attempt := 1; ; attempt++ {
		err := k.c.Patch(ctx, pod, client.RawPatch(types.MergePatchType, patch))
		if err == nil {
			k.last = &p
			return nil
		}
		k.o.Log.Warn("region progress: patching pod", "pod", k.o.Pod, "attempt", attempt, "err", err)
		if attempt >= k.o.ReportAttempts || !kubewatch.Sleep(ctx, b.Next()) {
			return fmt.Errorf("region progress: %w", err)
		}
	}
}

// Run implements Control: list the region (to deliver its current command
// and learn the resource version), watch from there, and on any watch
// error or end list again after a back-off.
func (k *Kube) Run(ctx context.Context) error {
	defer close(k.cmds)
	var last *Command
	one := kubewatch.One{Client: k.c, Namespace: k.o.Namespace, Name: k.o.Resource, Log: k.o.Log, What: "region control",
		NewList: func() client.ObjectList { return &v1alpha1.ConsistentRegionList{} }}
	one.Run(ctx, &kubewatch.Backoff{Min: k.o.MinBackoff, Max: k.o.MaxBackoff}, func(obj client.Object) {
		cr, ok := obj.(*v1alpha1.ConsistentRegion)
		if !ok {
			return // absent or deleted: the last command stands
		}
		c := FromStatus(&cr.Status)
		if last == nil || *last != c {
			deliver(k.cmds, c)
			last = &c
		}
	})
	return nil
}
