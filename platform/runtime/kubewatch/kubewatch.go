// Package kubewatch is how a PE process follows one Kubernetes object (its
// ConsistentRegion, its Import): a client built for a process inside a pod,
// and a list-then-watch loop of one object by name that lists again, after
// a back-off, whenever the watch ends. It is runtime code, not reconcile
// code: it blocks and sleeps.
package kubewatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sluice.dev/sluice/platform/api/v1alpha1"
)

// Client is a client for a PE process: cfg, or the pod's in-cluster
// configuration when cfg is nil, with 20 QPS and a burst of 30 when cfg
// sets no limit (client-go's 5 QPS is tight for short checkpoint periods;
// these are controller-runtime's GetConfig limits). It knows the platform's
// kinds and the core kinds.
func Client(cfg *rest.Config) (client.WithWatch, error) {
	if cfg == nil {
		var err error
		if cfg, err = rest.InClusterConfig(); err != nil {
			return nil, err
		}
	}
	if cfg.QPS == 0 {
		cfg = rest.CopyConfig(cfg)
		cfg.QPS, cfg.Burst = 20, 30
	}
	s := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(s); err != nil {
		return nil, err
	}
	if err := corev1.AddToScheme(s); err != nil {
		return nil, err
	}
	return client.NewWithWatch(cfg, client.Options{Scheme: s})
}

// Backoff doubles a wait from Min up to Max.
type Backoff struct {
	Min, Max time.Duration
	cur      time.Duration
}

// Next is the next wait.
func (b *Backoff) Next() time.Duration {
	if b.cur == 0 {
		b.cur = b.Min
	} else {
		b.cur = min(2*b.cur, b.Max)
	}
	return b.cur
}

// Reset starts the doubling over.
func (b *Backoff) Reset() { b.cur = 0 }

// Sleep waits d or until ctx ends; false means ctx ended.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// One is one object to follow.
type One struct {
	Client    client.WithWatch
	Namespace string
	Name      string
	// NewList makes an empty list of the object's kind.
	NewList func() client.ObjectList
	Log     *slog.Logger
	// What names the object in log lines ("region", "import").
	What string
}

// Run delivers the object whenever it is listed, added or modified, and
// nil when it does not exist or was deleted, until ctx ends. A watch that
// ends or fails is replaced by a new list and watch after a back-off that
// restarts once a watch was established.
func (o One) Run(ctx context.Context, b *Backoff, on func(client.Object)) {
	for ctx.Err() == nil {
		err := o.once(ctx, b, on)
		if ctx.Err() != nil {
			return
		}
		o.Log.Warn(o.What+": watch ended; listing again", "name", o.Name, "err", err)
		if !Sleep(ctx, b.Next()) {
			return
		}
	}
}

func (o One) options(rv string, watch bool) *client.ListOptions {
	return &client.ListOptions{Namespace: o.Namespace,
		FieldSelector: fields.OneTermEqualSelector("metadata.name", o.Name),
		Raw:           &metav1.ListOptions{ResourceVersion: rv, Watch: watch, AllowWatchBookmarks: watch}}
}

func (o One) once(ctx context.Context, b *Backoff, on func(client.Object)) error {
	list := o.NewList()
	if err := o.Client.List(ctx, list, o.options("", false)); err != nil {
		return fmt.Errorf("list: %w", err)
	}
	items, err := meta.ExtractList(list)
	if err != nil {
		return err
	}
	if len(items) == 0 {
		on(nil)
	}
	for _, it := range items {
		if obj, ok := it.(client.Object); ok {
			on(obj)
		}
	}
	w, err := o.Client.Watch(ctx, o.NewList(), o.options(list.GetResourceVersion(), true))
	if err != nil {
		return fmt.Errorf("watch: %w", err)
	}
	defer w.Stop()
	b.Reset()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev, ok := <-w.ResultChan():
			if !ok {
				return errors.New("watch channel closed")
			}
			switch ev.Type {
			case watch.Added, watch.Modified:
				if obj, ok := ev.Object.(client.Object); ok {
					on(obj)
				}
			case watch.Deleted:
				on(nil)
			case watch.Error:
				return fmt.Errorf("watch error: %v", ev.Object)
			}
		}
	}
}
