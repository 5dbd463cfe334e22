package coordinator_test

import (
	"context"
	"errors"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	testingclock "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"sluice.dev/sluice/platform/coordinator"
)

// laggingClient is a unit-test double of a manager's client: writes go to
// the fake API server at once, but reads come from a cache that only
// catches up when the test calls sync, as an informer's would.
type laggingClient struct {
	client.Client
	cache map[types.NamespacedName]*corev1.ConfigMap
}

func (l *laggingClient) Get(_ context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	cm, ok := l.cache[key]
	if !ok {
		return apierrors.NewNotFound(schema.GroupResource{Resource: "configmaps"}, key.Name)
	}
	cm.DeepCopyInto(obj.(*corev1.ConfigMap))
	return nil
}

func (l *laggingClient) sync(t *testing.T) {
	t.Helper()
	var list corev1.ConfigMapList
	if err := l.Client.List(context.Background(), &list); err != nil {
		t.Fatal(err)
	}
	l.cache = map[types.NamespacedName]*corev1.ConfigMap{}
	for i := range list.Items {
		l.cache[client.ObjectKeyFromObject(&list.Items[i])] = &list.Items[i]
	}
}

func setup(t *testing.T, funcs interceptor.Funcs) (*laggingClient, *testingclock.FakeClock, *coordinator.Coordinator[*corev1.ConfigMap]) {
	t.Helper()
	base := fake.NewClientBuilder().WithInterceptorFuncs(funcs).Build()
	lc := &laggingClient{Client: base}
	clk := testingclock.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	return lc, clk, coordinator.New[*corev1.ConfigMap](lc, clk, func() *corev1.ConfigMap { return &corev1.ConfigMap{} })
}

var key = types.NamespacedName{Namespace: "ns", Name: "cm"}

func setValue(v string) coordinator.Command[*corev1.ConfigMap] {
	return coordinator.Command[*corev1.ConfigMap]{Name: "set " + v, Apply: func(cm *corev1.ConfigMap) bool {
		if cm.Data["k"] == v {
			return false
		}
		if cm.Data == nil {
			cm.Data = map[string]string{}
		}
		cm.Data["k"] = v
		return true
	}}
}

func TestCommandIsDoneOnlyWhenSeenBack(t *testing.T) {
	lc, _, co := setup(t, interceptor.Funcs{})
	ctx := context.Background()
	if out, err := co.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "cm"}}); out != coordinator.Written || err != nil {
		t.Fatalf("create: %v %v", out, err)
	}
	// Not yet in the cache: a second create must not write again.
	if out, _ := co.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "cm"}}); out != coordinator.Pending {
		t.Fatalf("create before seen back: %v, want Pending", out)
	}
	lc.sync(t)
	if out, err := co.Submit(ctx, key, setValue("a")); out != coordinator.Written || err != nil {
		t.Fatalf("first command: %v %v", out, err)
	}
	// The cache still shows the old object: the next command waits.
	if out, err := co.Submit(ctx, key, setValue("b")); out != coordinator.Pending || err != nil {
		t.Fatalf("command before the first is seen back: %v %v, want Pending", out, err)
	}
	lc.sync(t)
	// Seen back: the first command is now Done, the second can be applied.
	if out, _ := co.Submit(ctx, key, setValue("a")); out != coordinator.Done {
		t.Fatalf("first command after seen back: %v, want Done", out)
	}
	if out, _ := co.Submit(ctx, key, setValue("b")); out != coordinator.Written {
		t.Fatalf("second command: %v, want Written", out)
	}
	if got := co.Writes(); got != 3 {
		t.Fatalf("%d writes, want 3 (create, a, b)", got)
	}
}

func TestUnseenWriteIsForgottenAfterTimeout(t *testing.T) {
	lc, clk, co := setup(t, interceptor.Funcs{})
	ctx := context.Background()
	_, _ = co.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "cm"}})
	lc.sync(t)
	if out, _ := co.Submit(ctx, key, setValue("a")); out != coordinator.Written {
		t.Fatal("first command not written")
	}
	// The watch event is lost; after the timeout the coordinator tries
	// again against what it sees (which still lacks "a").
	clk.Step(coordinator.SeenBackTimeout + time.Second)
	if out, err := co.Submit(ctx, key, setValue("b")); err == nil || out != coordinator.Pending {
		t.Fatalf("after timeout with a stale cache: %v %v; want a conflict error", out, err)
	}
}

func TestErrorsAreReturnedAndReleaseTheObject(t *testing.T) {
	fail := true
	lc, _, co := setup(t, interceptor.Funcs{Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
		if fail {
			return apierrors.NewInternalError(errors.New("etcd timeout"))
		}
		return c.Update(ctx, obj, opts...)
	}})
	ctx := context.Background()
	_, _ = co.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "cm"}})
	lc.sync(t)
	if _, err := co.Submit(ctx, key, setValue("a")); err == nil {
		t.Fatal("the injected error was swallowed")
	}
	fail = false
	if out, err := co.Submit(ctx, key, setValue("a")); out != coordinator.Written || err != nil {
		t.Fatalf("retry after an error: %v %v", out, err)
	}
}

func TestIdempotentCreateAndDelete(t *testing.T) {
	lc, _, co := setup(t, interceptor.Funcs{})
	ctx := context.Background()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "cm"}}
	if err := lc.Client.Create(ctx, cm.DeepCopy()); err != nil { // made by an earlier operator
		t.Fatal(err)
	}
	if out, err := co.Create(ctx, cm.DeepCopy()); out != coordinator.Done || err != nil {
		t.Fatalf("create of an object the server has: %v %v, want Done", out, err)
	}
	lc.sync(t)
	got := lc.cache[key]
	if out, err := co.Delete(ctx, got); out != coordinator.Written || err != nil {
		t.Fatalf("delete: %v %v", out, err)
	}
	lc.sync(t)
	if out, err := co.Delete(ctx, got); out != coordinator.Done || err != nil {
		t.Fatalf("delete of a gone object: %v %v, want Done", out, err)
	}
	if _, err := co.Submit(ctx, key, setValue("a")); !apierrors.IsNotFound(err) {
		t.Fatalf("command to a vanished object: %v, want NotFound", err)
	}
}

func TestResult(t *testing.T) {
	if r := coordinator.Result(coordinator.Done, coordinator.Written); r.RequeueAfter != 0 {
		t.Fatalf("no pending outcome but requeue %v", r)
	}
	if r := coordinator.Result(coordinator.Done, coordinator.Pending); r.RequeueAfter != coordinator.PendingRetry {
		t.Fatalf("pending outcome gave %v", r)
	}
}
