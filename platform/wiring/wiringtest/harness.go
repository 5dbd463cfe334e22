// Package wiringtest runs the platform's reconcilers over controller-runtime's
// fake client, one reconcile at a time, in a deterministic order. It is a
// test double for unit tests, fake-client error-injection tests and the
// write-count benchmark; it is not an API server (there is no garbage
// collector, no admission, no watch delay). Tests that claim a real API
// server use envtest; the simulator lives in sim/.
package wiringtest

import (
	"context"
	"fmt"
	"reflect"
	"sort"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	testingclock "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/operator"
	"sluice.dev/sluice/platform/wiring"
)

// Epoch is the fake clock's start.
var Epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

type item struct {
	ctrl int
	req  reconcile.Request
}

// FailFunc may fail a write: verb is create, update, status-update, delete
// or patch. A nil error lets the write through.
type FailFunc func(verb string, obj client.Object) error

// Harness drives the platform's reconcilers over a fake client.
type Harness struct {
	Client client.Client
	Clock  *testingclock.FakeClock
	Coord  *wiring.Coordinators
	Ctrls  []wiring.Controller
	// Fail, when set, is asked before every write of the platform.
	Fail FailFunc
	// Reconciles counts Reconcile calls; Errors counts those that failed.
	Reconciles, Errors int
	// Trace records "controller key" for every reconcile, in order.
	Trace []string
	// ClientCPU is the thread CPU time spent inside the fake client's calls:
	// the fake API server's own cost, which benchmarks subtract.
	ClientCPU time.Duration

	queue   []item
	queued  map[item]bool
	delayed map[item]time.Time
	// external marks writes made by the harness itself (kubelet, user).
	external bool
}

// New builds a harness with objs already in the fake API server.
func New(tb testing.TB, objs ...client.Object) *Harness {
	tb.Helper()
	h := &Harness{Clock: testingclock.NewFakeClock(Epoch), queued: map[item]bool{}, delayed: map[item]time.Time{}}
	scheme := operator.Scheme()
	base := fake.NewClientBuilder().WithScheme(scheme).
		WithStatusSubresource(&v1alpha1.Job{}, &v1alpha1.ProcessingElement{}, &v1alpha1.HostPool{}, &corev1.Pod{}).
		WithObjects(objs...).
		WithInterceptorFuncs(interceptor.Funcs{
			Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
				defer h.timeClient(ThreadCPU())
				return c.Get(ctx, key, obj, opts...)
			},
			List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
				defer h.timeClient(ThreadCPU())
				return c.List(ctx, list, opts...)
			},
			Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
				if err := h.fail("create", obj); err != nil {
					return err
				}
				if ts := obj.GetCreationTimestamp(); ts.IsZero() {
					obj.SetCreationTimestamp(metav1.NewTime(h.Clock.Now()))
				}
				start := ThreadCPU()
				err := c.Create(ctx, obj, opts...)
				h.timeClient(start)
				if err != nil {
					return err
				}
				h.notify(obj)
				return nil
			},
			Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
				if err := h.fail("update", obj); err != nil {
					return err
				}
				start := ThreadCPU()
				err := c.Update(ctx, obj, opts...)
				h.timeClient(start)
				if err != nil {
					return err
				}
				h.notify(obj)
				return nil
			},
			Delete: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.DeleteOption) error {
				if err := h.fail("delete", obj); err != nil {
					return err
				}
				start := ThreadCPU()
				err := c.Delete(ctx, obj, opts...)
				h.timeClient(start)
				if err != nil {
					return err
				}
				h.notify(obj)
				return nil
			},
			SubResourceUpdate: func(ctx context.Context, c client.Client, sub string, obj client.Object, opts ...client.SubResourceUpdateOption) error {
				if err := h.fail("status-update", obj); err != nil {
					return err
				}
				start := ThreadCPU()
				err := c.SubResource(sub).Update(ctx, obj, opts...)
				h.timeClient(start)
				if err != nil {
					return err
				}
				h.notify(obj)
				return nil
			},
		}).Build()
	h.Client = base
	deps := wiring.Deps{Client: base, Clock: h.Clock, Recorder: record.NewFakeRecorder(1 << 16), PEImage: "sluice-pe:test"}
	h.Coord = wiring.NewCoordinators(deps)
	h.Ctrls = wiring.Controllers(deps, h.Coord)
	for _, o := range objs {
		h.notify(o)
	}
	return h
}

func (h *Harness) timeClient(start time.Duration) { h.ClientCPU += ThreadCPU() - start }

func (h *Harness) fail(verb string, obj client.Object) error {
	if h.external || h.Fail == nil {
		return nil
	}
	return h.Fail(verb, obj)
}

// notify enqueues the requests an event of obj causes, as watches would.
func (h *Harness) notify(obj client.Object) {
	t := reflect.TypeOf(obj)
	for i, c := range h.Ctrls {
		if reflect.TypeOf(c.For) == t {
			h.enqueue(item{i, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(obj)}})
		}
		for _, w := range c.Watches {
			if reflect.TypeOf(w.Object) != t {
				continue
			}
			m := w.Map
			if m == nil {
				m = wiring.Self
			}
			for _, r := range m(context.Background(), obj) {
				h.enqueue(item{i, r})
			}
		}
	}
}

func (h *Harness) enqueue(it item) {
	if h.queued[it] {
		return
	}
	h.queued[it] = true
	h.queue = append(h.queue, it)
}

// Run reconciles until the queue is empty or maxSteps reconciles have run.
// Failed reconciles are retried (at the back of the queue), as a work
// queue's rate limiter would, up to maxSteps.
func (h *Harness) Run(tb testing.TB, maxSteps int) {
	tb.Helper()
	for steps := 0; len(h.queue) > 0; steps++ {
		if steps >= maxSteps {
			tb.Fatalf("reconcilers did not settle within %d steps; queue holds %d items", maxSteps, len(h.queue))
		}
		it := h.queue[0]
		h.queue = h.queue[1:]
		delete(h.queued, it)
		c := h.Ctrls[it.ctrl]
		h.Reconciles++
		h.Trace = append(h.Trace, c.Name+" "+it.req.String())
		res, err := c.Reconciler.Reconcile(context.Background(), it.req)
		switch {
		case err != nil:
			h.Errors++
			h.enqueue(it)
		case res.RequeueAfter > 0:
			h.delayed[it] = h.Clock.Now().Add(res.RequeueAfter)
		case res.Requeue: //nolint:staticcheck // the harness honours what reconcilers may still return
			h.enqueue(it)
		}
	}
}

// Advance moves the fake clock and enqueues the requests whose RequeueAfter
// has come due.
func (h *Harness) Advance(d time.Duration) {
	h.Clock.Step(d)
	now := h.Clock.Now()
	var due []item
	for it, at := range h.delayed {
		if !at.After(now) {
			due = append(due, it)
		}
	}
	sort.Slice(due, func(i, j int) bool {
		if due[i].ctrl != due[j].ctrl {
			return due[i].ctrl < due[j].ctrl
		}
		return due[i].req.String() < due[j].req.String()
	})
	for _, it := range due {
		delete(h.delayed, it)
		h.enqueue(it)
	}
}

// External runs fn as a writer outside the platform (a user, the kubelet):
// its writes are neither failed by Fail nor counted as the platform's.
func (h *Harness) External(fn func()) {
	h.external = true
	defer func() { h.external = false }()
	fn()
}

// Pods returns the PE pods of a job, by name.
func (h *Harness) Pods(tb testing.TB, ns, job string) []corev1.Pod {
	tb.Helper()
	var pods corev1.PodList
	if err := h.Client.List(context.Background(), &pods, client.InNamespace(ns), client.MatchingLabels{v1alpha1.LabelJob: job}); err != nil {
		tb.Fatal(err)
	}
	sort.Slice(pods.Items, func(i, j int) bool { return pods.Items[i].Name < pods.Items[j].Name })
	return pods.Items
}

// Kubelet plays scheduler and kubelet for every pending PE pod of a job: it
// binds it to node (one write) and marks it Running and Ready, that is
// connected (one status write). It returns how many pods it started.
func (h *Harness) Kubelet(tb testing.TB, ns, job, node string) int {
	tb.Helper()
	n := 0
	h.External(func() {
		for _, p := range h.Pods(tb, ns, job) {
			if p.Status.Phase != "" && p.Status.Phase != corev1.PodPending || p.DeletionTimestamp != nil {
				continue
			}
			p.Spec.NodeName = node // the scheduler's binding
			if err := h.Client.Update(context.Background(), &p); err != nil {
				tb.Fatalf("scheduler: %v", err)
			}
			SetPodRunning(&p, node, true)
			if err := h.Client.Status().Update(context.Background(), &p); err != nil {
				tb.Fatalf("kubelet: %v", err)
			}
			n++
		}
	})
	return n
}

// SetPodRunning makes a pod Running on node, Ready or not.
func SetPodRunning(p *corev1.Pod, node string, ready bool) {
	p.Spec.NodeName = node
	p.Status.Phase = corev1.PodRunning
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	p.Status.Conditions = []corev1.PodCondition{
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue},
		{Type: corev1.PodReady, Status: st},
	}
}

// Get fetches an object by namespace and name.
func (h *Harness) Get(tb testing.TB, ns, name string, obj client.Object) {
	tb.Helper()
	if err := h.Client.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, obj); err != nil {
		tb.Fatalf("get %s/%s: %v", ns, name, err)
	}
}

// Conflict is an error the API server returns for a stale resourceVersion.
func Conflict(obj client.Object) error {
	return apierrors.NewConflict(v1alpha1.GroupVersion.WithResource("objects").GroupResource(), obj.GetName(),
		fmt.Errorf("the object has been modified"))
}

// PipelineJob is a Job of n operators in a line: source, n-2 maps, sink.
func PipelineJob(ns, name string, n int) *v1alpha1.Job {
	job := &v1alpha1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-" + name), Generation: 1}}
	ops := make([]v1alpha1.Operator, n)
	for i := range ops {
		ops[i] = v1alpha1.Operator{Name: fmt.Sprintf("op%d", i), Kind: v1alpha1.KindMap}
	}
	ops[0].Kind, ops[n-1].Kind = v1alpha1.KindSource, v1alpha1.KindSink
	streams := make([]v1alpha1.Stream, n-1)
	for i := range streams {
		streams[i] = v1alpha1.Stream{From: v1alpha1.Endpoint{Operator: ops[i].Name}, To: v1alpha1.Endpoint{Operator: ops[i+1].Name}}
	}
	job.Spec.Application = v1alpha1.Application{Operators: ops, Streams: streams}
	job.Spec.Fusion.Mode = v1alpha1.FusionPerOperator
	job.Spec.PE.RestartPolicy = &v1alpha1.PERestartPolicy{RestartFailed: true, RestartDeleted: true}
	return job
}

// Restart simulates an operator crash: every coordinator and queue is lost,
// new reconcilers are built over the same API server, and every object is
// re-listed into the queues as a new manager's informers would.
func (h *Harness) Restart(tb testing.TB) {
	tb.Helper()
	deps := wiring.Deps{Client: h.Client, Clock: h.Clock, Recorder: record.NewFakeRecorder(1 << 16), PEImage: "sluice-pe:test"}
	h.Coord = wiring.NewCoordinators(deps)
	h.Ctrls = wiring.Controllers(deps, h.Coord)
	h.queue, h.queued, h.delayed = nil, map[item]bool{}, map[item]time.Time{}
	ctx := context.Background()
	lists := []client.ObjectList{&v1alpha1.JobList{}, &v1alpha1.ProcessingElementList{}, &v1alpha1.HostPoolList{},
		&corev1.ConfigMapList{}, &corev1.PodList{}, &corev1.ServiceList{}, &v1alpha1.ConsistentRegionList{}}
	for _, l := range lists {
		if err := h.Client.List(ctx, l); err != nil {
			tb.Fatal(err)
		}
		items, err := meta.ExtractList(l)
		if err != nil {
			tb.Fatal(err)
		}
		for _, o := range items {
			h.notify(o.(client.Object))
		}
	}
}
