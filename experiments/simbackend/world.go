package simbackend

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sluice.dev/sluice/experiments/spec"
	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/wiring"
	"sluice.dev/sluice/sim/apiserver"
	"sluice.dev/sluice/sim/clock"
	"sluice.dev/sluice/sim/driver"
	"sluice.dev/sluice/sim/engine"
	"sluice.dev/sluice/sim/gc"
	"sluice.dev/sluice/sim/kubelet"
	"sluice.dev/sluice/sim/nodelifecycle"
	"sluice.dev/sluice/sim/scheduler"
)

// PEImage is the PE image of simulated Jobs; nodes start with it present,
// as kind nodes do after `kind load docker-image`.
const PEImage = "sluice-pe:dev"

// Epoch is the virtual wall time at the start of every trial, so that no
// real time leaks into results.
var Epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// world is one simulated cluster for one trial: API server, scheduler, a
// kubelet and heartbeat per node, node lifecycle, garbage collector and
// the platform's operator (its real reconcilers) in a controller manager.
type world struct {
	e          *engine.Engine
	clk        *clock.Clock
	api        *apiserver.Server
	c          client.Client
	kubelets   map[string]*kubelet.Kubelet
	heartbeats map[string]*nodelifecycle.Heartbeat
	operator   *driver.Manager
}

func scheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, err
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		return nil, err
	}
	return s, nil
}

func newWorld(seed int64, cl spec.Cluster) (*world, error) {
	s, err := scheme()
	if err != nil {
		return nil, err
	}
	e := engine.New(uint64(seed))
	clk := clock.New(e, Epoch)
	api := apiserver.New(e, clk, s, apiserver.DefaultParams())
	w := &world{e: e, clk: clk, api: api, c: api.Client("experiment"),
		kubelets: map[string]*kubelet.Kubelet{}, heartbeats: map[string]*nodelifecycle.Heartbeat{}}
	ctx := context.Background()
	now := metav1.NewTime(clk.Now())
	idx := 0
	nlp := nodelifecycle.DefaultParams()
	for _, g := range cl.Nodes {
		cpu, mem := resource.MustParse(g.CPU), resource.MustParse(g.Memory)
		for i := 0; i < g.Count; i++ {
			name := fmt.Sprintf("%s-%d", g.Name, i)
			labels := map[string]string{"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}
			for k, v := range g.Labels {
				labels[k] = v
			}
			res := corev1.ResourceList{corev1.ResourceCPU: cpu, corev1.ResourceMemory: mem, corev1.ResourcePods: resource.MustParse("110")}
			n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
				Status: corev1.NodeStatus{Capacity: res, Allocatable: res, Conditions: []corev1.NodeCondition{{
					Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
					LastHeartbeatTime: now, LastTransitionTime: now}}}}
			if err := w.c.Create(ctx, n); err != nil {
				return nil, err
			}
			idx++
			w.kubelets[name] = kubelet.New(api, kubelet.DefaultParams(), kubelet.Config{Node: name, Index: idx,
				CPU: cpu.AsApproximateFloat64(), Images: []string{PEImage}})
			w.heartbeats[name] = nodelifecycle.NewHeartbeat(api, nlp, name)
		}
	}
	nodelifecycle.NewController(api, nlp)
	nodelifecycle.NewEvictor(api, nlp)
	scheduler.New(api, scheduler.DefaultParams())
	gc.New(api, gc.DefaultParams()).Start()
	w.operator = driver.New(api, driver.Options{Name: "sluice-operator", PEImage: PEImage})
	w.operator.Build(func(d wiring.Deps) []wiring.Controller {
		return wiring.Controllers(d, wiring.NewCoordinators(d))
	})
	w.operator.Start()
	return w, nil
}

// podOf returns the current pod of PE index i of the Job, by its PE status.
func (w *world) peOf(job *v1alpha1.Job, i int) (*v1alpha1.ProcessingElement, error) {
	var pe v1alpha1.ProcessingElement
	key := types.NamespacedName{Namespace: job.Namespace, Name: fmt.Sprintf("%s-pe-%d", job.Name, i)}
	if err := w.c.Get(context.Background(), key, &pe); err != nil {
		return nil, err
	}
	return &pe, nil
}

// inject performs one fault now.
func (w *world) inject(job *v1alpha1.Job, f spec.ResolvedFault) error {
	ctx := context.Background()
	var pe *v1alpha1.ProcessingElement
	if f.PE >= 0 {
		var err error
		if pe, err = w.peOf(job, f.PE); err != nil {
			return err
		}
	}
	switch f.Action {
	case spec.DeletePod, spec.KillContainer:
		if pe.Status.PodName == "" || pe.Status.NodeName == "" {
			return fmt.Errorf("%s has no running pod to hurt", pe.Name)
		}
		key := types.NamespacedName{Namespace: pe.Namespace, Name: pe.Status.PodName}
		if f.Action == spec.DeletePod {
			return w.c.Delete(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}})
		}
		k := w.kubelets[pe.Status.NodeName]
		if k == nil || !k.Kill(key, "pe", 1) {
			return fmt.Errorf("no running container pe of %s on %s", key, pe.Status.NodeName)
		}
	case spec.StopNode, spec.StartNode:
		node := f.Node
		if node == "" {
			node = pe.Status.NodeName
		}
		k, hb := w.kubelets[node], w.heartbeats[node]
		if k == nil {
			return fmt.Errorf("no node %q", node)
		}
		if f.Action == spec.StopNode {
			k.Stop()
			hb.Stop()
		} else {
			k.Start()
			hb.Start()
		}
	case spec.DeleteJob:
		return w.c.Delete(ctx, &v1alpha1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: job.Namespace, Name: job.Name}},
			client.PropagationPolicy(f.Propagation))
	default:
		return fmt.Errorf("unsupported fault %q", f.Action)
	}
	return nil
}
