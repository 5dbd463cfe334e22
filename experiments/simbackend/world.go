package simbackend

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sluice.dev/sluice/experiments/metrics"
	"sluice.dev/sluice/experiments/spec"
	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/operator"
	"sluice.dev/sluice/platform/wiring"
	"sluice.dev/sluice/sim/cluster"
	"sluice.dev/sluice/sim/driver"
	"sluice.dev/sluice/sim/gc"
)

// PEImage is the PE image of simulated Jobs; nodes start with it present,
// as kind nodes do after `kind load docker-image`.
const PEImage = "sluice-pe:dev"

// world is one simulated cluster for one trial (sim/cluster: API server,
// scheduler, kubelets, node lifecycle, network, data plane) plus what
// runs on it as in a kind cluster: the garbage collector of
// kube-controller-manager and the platform's operator, its real
// reconcilers in a simulated controller manager.
type world struct {
	*cluster.Cluster
	operator *driver.Manager
}

// shape turns a definition's cluster into sim/cluster's node list; node
// names are the definition's (<group>-<i>), so faults can name them.
func shape(cl spec.Cluster) cluster.Shape {
	s := cluster.Shape{Name: cl.Name, Images: []string{PEImage}}
	for _, g := range cl.Nodes {
		for i := 0; i < g.Count; i++ {
			labels := map[string]string{}
			for k, v := range g.Labels {
				labels[k] = v
			}
			s.NodeList = append(s.NodeList, cluster.NodeShape{Name: fmt.Sprintf("%s-%d", g.Name, i),
				CPU: g.CPU, Memory: g.Memory, Labels: labels})
		}
	}
	return s
}

func newWorld(seed int64, cl spec.Cluster) (*world, error) {
	c, err := cluster.New(uint64(seed), shape(cl), cluster.DefaultParams())
	if err != nil {
		return nil, err
	}
	gc.New(c.API(), gc.DefaultParams()).Start()
	// The operator's client limits and cache selectors are the real
	// operator's (platform/operator, cmd/operator's defaults).
	op := driver.New(c.API(), driver.Options{Name: "sluice-operator", PEImage: PEImage,
		QPS: operator.ClientQPS, Burst: operator.ClientBurst, Cache: operator.CacheOptions()})
	op.Build(func(d wiring.Deps) []wiring.Controller {
		return wiring.Controllers(d, wiring.NewCoordinators(d))
	})
	op.Start()
	return &world{Cluster: c, operator: op}, nil
}

func (w *world) peOf(job *v1alpha1.Job, i int) (*v1alpha1.ProcessingElement, error) {
	var pe v1alpha1.ProcessingElement
	key := types.NamespacedName{Namespace: job.Namespace, Name: fmt.Sprintf("%s-pe-%d", job.Name, i)}
	if err := w.Client().Get(context.Background(), key, &pe); err != nil {
		return nil, err
	}
	return &pe, nil
}

// inject performs one fault now.
func (w *world) inject(job *v1alpha1.Job, f spec.ResolvedFault) error {
	var pe *v1alpha1.ProcessingElement
	if f.PE >= 0 {
		var err error
		if pe, err = w.peOf(job, f.PE); err != nil {
			return err
		}
	}
	switch f.Action {
	case spec.DeletePod, spec.KillContainer:
		if pe.Status.PodName == "" {
			return fmt.Errorf("%s has no pod to hurt", pe.Name)
		}
		key := types.NamespacedName{Namespace: pe.Namespace, Name: pe.Status.PodName}
		if f.Action == spec.DeletePod {
			return w.DeletePod(key, nil)
		}
		return w.KillContainer(key, "pe", 1)
	case spec.StopNode, spec.StartNode:
		node := f.Node
		if node == "" {
			node = pe.Status.NodeName
		}
		if f.Action == spec.StopNode {
			return w.StopNode(node)
		}
		return w.StartNode(node)
	case spec.DeleteJob:
		return w.Client().Delete(context.Background(),
			&v1alpha1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: job.Namespace, Name: job.Name}},
			client.PropagationPolicy(f.Propagation))
	}
	return fmt.Errorf("unsupported fault %q", f.Action)
}

// samples converts the data plane's sink deliveries into the metrics'
// data-plane samples: a cumulative tuple count per sink PE and each
// delivered batch's latency, weighted by its tuples. The kind backend
// derives the same two from the PE runtime's metrics.
func (w *world) samples() []metrics.Sample {
	epoch := w.Clock().Epoch()
	total := map[string]float64{}
	var out []metrics.Sample
	for _, s := range w.DataPlane().Samples() {
		at := epoch.Add(s.At)
		total[s.PE] += s.Tuples
		out = append(out,
			metrics.Sample{Time: at, Name: metrics.SinkTuples, Subject: s.PE, Value: total[s.PE]},
			metrics.Sample{Time: at, Name: metrics.TupleLatency, Subject: s.PE, Value: s.Latency.Seconds(), Weight: s.Tuples})
	}
	// Region sources' emitted-tuple counters (per process, as the kind
	// backend scrapes them), for replay_duration.
	for _, s := range w.Checkpointing().SourceSamples() {
		out = append(out, metrics.Sample{Time: epoch.Add(s.At), Name: metrics.SourceTuples,
			Subject: s.Pod.Name + "/" + s.Operator, Value: s.Emitted})
	}
	return out
}
