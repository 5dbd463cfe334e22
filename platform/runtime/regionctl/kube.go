package regionctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sluice.dev/sluice/platform/api/v1alpha1"
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

func kubeScheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, err
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		return nil, err
	}
	return s, nil
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
	cfg := o.Config
	if cfg == nil {
		var err error
		if cfg, err = rest.InClusterConfig(); err != nil {
			return nil, fmt.Errorf("region control: %w", err)
		}
	}
	if cfg.QPS == 0 {
		// client-go's default of 5 QPS is tight for short checkpoint
		// periods; the same limits as controller-runtime's GetConfig.
		cfg = rest.CopyConfig(cfg)
		cfg.QPS, cfg.Burst = 20, 30
	}
	scheme, err := kubeScheme()
	if err != nil {
		return nil, err
	}
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("region control: %w", err)
	}
	return &Kube{o: o, c: c, cmds: make(chan Command, 1)}, nil
}

// Commands implements Control.
func (k *Kube) Commands() <-chan Command { return k.cmds }

// backoff doubles a wait up to the maximum.
type backoff struct{ cur, min, max time.Duration }

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(2*b.cur, b.max)
	}
	return b.cur
}

func (b *backoff) reset() { b.cur = 0 }

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

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
	b := backoff{min: k.o.MinBackoff, max: k.o.MaxBackoff}
	for attempt := 1; ; attempt++ {
		err := k.c.Patch(ctx, pod, client.RawPatch(types.MergePatchType, patch))
		if err == nil {
			k.last = &p
			return nil
		}
		k.o.Log.Warn("region progress: patching pod", "pod", k.o.Pod, "attempt", attempt, "err", err)
		if attempt >= k.o.ReportAttempts || !sleepCtx(ctx, b.next()) {
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
	send := func(cr *v1alpha1.ConsistentRegion) {
		c := FromStatus(&cr.Status)
		if last == nil || *last != c {
			deliver(k.cmds, c)
			last = &c
		}
	}
	b := backoff{min: k.o.MinBackoff, max: k.o.MaxBackoff}
	for ctx.Err() == nil {
		err := k.watchOnce(ctx, send, &b)
		if ctx.Err() != nil {
			break
		}
		k.o.Log.Warn("region control: watch ended; listing again", "region", k.o.Resource, "err", err)
		if !sleepCtx(ctx, b.next()) {
			break
		}
	}
	return nil
}

func (k *Kube) listOptions(rv string, watch bool) *client.ListOptions {
	return &client.ListOptions{Namespace: k.o.Namespace,
		FieldSelector: fields.OneTermEqualSelector("metadata.name", k.o.Resource),
		Raw:           &metav1.ListOptions{ResourceVersion: rv, Watch: watch, AllowWatchBookmarks: watch}}
}

var errWatchClosed = errors.New("watch channel closed")

// watchOnce lists and then watches until the watch fails.
func (k *Kube) watchOnce(ctx context.Context, send func(*v1alpha1.ConsistentRegion), b *backoff) error {
	var list v1alpha1.ConsistentRegionList
	if err := k.c.List(ctx, &list, k.listOptions("", false)); err != nil {
		return fmt.Errorf("list: %w", err)
	}
	for i := range list.Items {
		send(&list.Items[i])
	}
	w, err := k.c.Watch(ctx, &v1alpha1.ConsistentRegionList{}, k.listOptions(list.ResourceVersion, true))
	if err != nil {
		return fmt.Errorf("watch: %w", err)
	}
	defer w.Stop()
	b.reset()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev, ok := <-w.ResultChan():
			if !ok {
				return errWatchClosed
			}
			switch ev.Type {
			case watch.Added, watch.Modified:
				if cr, ok := ev.Object.(*v1alpha1.ConsistentRegion); ok {
					send(cr)
				}
			case watch.Error:
				return fmt.Errorf("watch error: %v", ev.Object)
			}
		}
	}
}
