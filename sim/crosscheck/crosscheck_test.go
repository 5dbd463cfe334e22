package crosscheck

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/integration/realapi"
	"sluice.dev/sluice/platform/operator"
	"sluice.dev/sluice/platform/wiring"
	"sluice.dev/sluice/platform/wiring/wiringtest"
	"sluice.dev/sluice/sim/cluster"
	"sluice.dev/sluice/sim/driver"
)

// object is what must agree between the two: kind, name, labels and the
// owner it names (kind/name, controller or not).
type object struct {
	Kind, Name string
	Labels     map[string]string
	Owners     []string
}

// inventory lists the Job, its generated objects and pods in ns.
func inventory(ctx context.Context, t *testing.T, c client.Client, ns string) []object {
	t.Helper()
	lists := map[string]client.ObjectList{
		"Job": &v1alpha1.JobList{}, "ProcessingElement": &v1alpha1.ProcessingElementList{},
		"HostPool": &v1alpha1.HostPoolList{}, "ConfigMap": &corev1.ConfigMapList{},
		"Service": &corev1.ServiceList{}, "Pod": &corev1.PodList{},
	}
	var out []object
	for kind, l := range lists {
		if err := c.List(ctx, l, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		items, err := meta.ExtractList(l)
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range items {
			o := it.(client.Object)
			if kind == "ConfigMap" && o.GetLabels()[v1alpha1.LabelJob] == "" {
				continue // kube-root-ca.crt and the like
			}
			obj := object{Kind: kind, Name: o.GetName(), Labels: o.GetLabels()}
			for _, r := range o.GetOwnerReferences() {
				obj.Owners = append(obj.Owners, fmt.Sprintf("%s/%s controller=%v", r.Kind, r.Name, r.Controller != nil && *r.Controller))
			}
			out = append(out, obj)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Kind+"/"+out[i].Name < out[j].Kind+"/"+out[j].Name })
	return out
}

func job(ns string) *v1alpha1.Job {
	j := wiringtest.PipelineJob(ns, "pipe", 4)
	j.UID, j.Generation = "", 0
	return j
}

func simulated(t *testing.T, ns string) []object {
	c, err := cluster.New(7, cluster.Shape{Nodes: 3, CPU: "4", Memory: "8Gi", Images: []string{"sluice-pe:test"}}, cluster.DefaultParams())
	if err != nil {
		t.Fatal(err)
	}
	m := driver.New(c.API(), driver.Options{Name: "sluice-operator", PEImage: "sluice-pe:test", Cache: operator.CacheOptions(),
		QPS: operator.ClientQPS, Burst: operator.ClientBurst})
	m.Build(func(d wiring.Deps) []wiring.Controller { return wiring.Controllers(d, wiring.NewCoordinators(d)) })
	m.Start()
	ctx := context.Background()
	j := job(ns)
	if err := c.Client().Create(ctx, j); err != nil {
		t.Fatal(err)
	}
	submitted := func() bool {
		var got v1alpha1.Job
		return c.Client().Get(ctx, client.ObjectKeyFromObject(j), &got) == nil && got.Status.Phase == v1alpha1.JobSubmitted
	}
	if c.Engine().RunWhile(func() bool { return !submitted() }, 5*time.Minute) {
		t.Fatal("simulated job not Submitted within 5 virtual minutes")
	}
	return inventory(ctx, t, c.Client(), ns)
}

func real(t *testing.T, ns string) []object {
	env, err := realapi.Start()
	if errors.Is(err, realapi.ErrNoAssets) && !realapi.Required() {
		t.Skip("no envtest assets: run `make test`")
	}
	if err != nil {
		t.Fatal(err)
	}
	defer env.Stop()
	stop, err := env.StartOperator()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = stop() }()
	ctx := context.Background()
	if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	j := job(ns)
	if err := env.Client.Create(ctx, j); err != nil {
		t.Fatal(err)
	}
	err = realapi.Eventually(60*time.Second, func() (bool, string) {
		if _, err := realapi.Kubelet(ctx, env.Client, ns, "node-a"); err != nil {
			return false, err.Error()
		}
		var got v1alpha1.Job
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(j), &got); err != nil {
			return false, err.Error()
		}
		return got.Status.Phase == v1alpha1.JobSubmitted, string(got.Status.Phase)
	})
	if err != nil {
		t.Fatalf("real job: %v", err)
	}
	return inventory(ctx, t, env.Client, ns)
}

func TestSimulatorAndAPIServerCreateTheSameObjects(t *testing.T) {
	const ns = "crosscheck"
	sim := simulated(t, ns)
	api := real(t, ns)
	if len(sim) == 0 {
		t.Fatal("the simulator created nothing")
	}
	if diff := cmp.Diff(api, sim); diff != "" {
		t.Fatalf("objects differ (-envtest +simulator):\n%s", diff)
	}
	t.Logf("%d objects agree", len(sim))
}
