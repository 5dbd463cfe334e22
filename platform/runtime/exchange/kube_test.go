package exchange

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/integration/realapi"
)

// The Kube watcher against a real kube-apiserver (envtest); skipped
// without assets unless SLUICE_REQUIRE_ENVTEST is set.
func TestKubeWatcherAgainstAPIServer(t *testing.T) {
	// Watches end after 1-2 s, so that the watcher has to list again.
	cfg := realapi.APIServer(t, true)
	s := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: s})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const ns = "default"
	k, err := NewKube(KubeOptions{Config: cfg, Namespace: ns, MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	w, err := k.For("consumer-imp")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan []v1alpha1.ImportedStream, 16)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go w.Watch(wctx, func(s []v1alpha1.ImportedStream) { got <- s })
	recv := func(what string) []v1alpha1.ImportedStream {
		t.Helper()
		select {
		case s := <-got:
			return s
		case <-time.After(15 * time.Second):
			t.Fatalf("no update: %s", what)
		}
		return nil
	}
	if s := recv("before the Import exists"); len(s) != 0 {
		t.Errorf("no Import yet, got %+v", s)
	}
	mk := func(name string) *v1alpha1.Import {
		return &v1alpha1.Import{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: v1alpha1.ImportSpec{JobName: "consumer", Operator: "imp", StreamName: "trades", PE: "consumer-pe-0"}}
	}
	// Another Import's changes are not ours.
	other := mk("consumer-other")
	if err := c.Create(ctx, other); err != nil {
		t.Fatal(err)
	}
	other.Status.Streams = []v1alpha1.ImportedStream{{Export: "x", Host: "h", Port: 1}}
	if err := c.Status().Update(ctx, other); err != nil {
		t.Fatal(err)
	}
	im := mk("consumer-imp")
	if err := c.Create(ctx, im); err != nil {
		t.Fatal(err)
	}
	want := []v1alpha1.ImportedStream{{Export: "producer-ex", JobName: "producer", Host: "producer-pe-1.default.svc", Port: 10001}}
	im.Status.Streams = want
	if err := c.Status().Update(ctx, im); err != nil {
		t.Fatal(err)
	}
	if s := recv("status set"); len(s) != 1 || s[0] != want[0] {
		t.Fatalf("streams %+v, want %+v", s, want)
	}
	// Outlive a watch timeout: nothing is delivered twice.
	select {
	case s := <-got:
		t.Errorf("update without a change: %+v", s)
	case <-time.After(2500 * time.Millisecond):
	}
	if err := c.Get(ctx, client.ObjectKeyFromObject(im), im); err != nil {
		t.Fatal(err)
	}
	im.Status.Streams = append(im.Status.Streams, v1alpha1.ImportedStream{Export: "p2-ex", JobName: "p2", Host: "h2", Port: 10000})
	if err := c.Status().Update(ctx, im); err != nil {
		t.Fatal(err)
	}
	if s := recv("second export"); len(s) != 2 || s[1].Export != "p2-ex" {
		t.Errorf("streams %+v", s)
	}
	if err := c.Delete(ctx, im); err != nil {
		t.Fatal(err)
	}
	if s := recv("deleted"); len(s) != 0 {
		t.Errorf("deleted Import gave %+v", s)
	}
}
