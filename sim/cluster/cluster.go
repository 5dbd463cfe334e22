// Package cluster assembles a simulated Kubernetes cluster: one engine and
// virtual clock, the simulated API server, nodes of a given shape, and the
// component models wired together (scheduler, a kubelet and heartbeat per
// node, node lifecycle and taint eviction controllers, network, data
// plane). It offers accessors for each and fault injection helpers. The
// platform's controllers are not part of it: the experiment backend runs
// them on the cluster's API server with sim/driver.
package cluster

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/peconfig"
	"sluice.dev/sluice/sim/apiserver"
	"sluice.dev/sluice/sim/checkpointing"
	"sluice.dev/sluice/sim/clock"
	"sluice.dev/sluice/sim/cluster/paramfile"
	"sluice.dev/sluice/sim/dataplane"
	"sluice.dev/sluice/sim/engine"
	"sluice.dev/sluice/sim/kubelet"
	"sluice.dev/sluice/sim/network"
	"sluice.dev/sluice/sim/nodelifecycle"
	"sluice.dev/sluice/sim/scheduler"
)

// NodeShape is one node.
type NodeShape struct {
	// Name; empty means kind's naming (<cluster>-worker, -worker2, ...).
	Name   string
	CPU    string // cores, as a quantity ("4", "3500m")
	Memory string // bytes, as a quantity ("8Gi")
	Pods   int64  // 0 means 110, the kubelet's maxPods default
	Labels map[string]string
	Taints []corev1.Taint
}

// Shape is the cluster's nodes.
type Shape struct {
	// Name of the cluster, for node names (kind's default cluster is "kind").
	Name string
	// Nodes is the number of workers of the uniform shape below, used when
	// NodeList is empty.
	Nodes  int
	CPU    string
	Memory string
	Pods   int64
	Labels map[string]string
	Taints []corev1.Taint
	// NodeList gives every node explicitly instead.
	NodeList []NodeShape
	// ControlPlane adds kind's control-plane node, tainted NoSchedule.
	ControlPlane bool
	// Images are present on every node from the start (kind load).
	Images []string
	// HostCPU, if set, is the number of cores of the one host every node
	// runs on, as kind's nodes are containers on one machine: busy nodes
	// then share those cores (equal container weights) before their pods
	// share what their node got. Each node still reports its own CPU.
	HostCPU float64
}

// Params are every model's parameters.
type Params struct {
	APIServer     apiserver.Params
	Scheduler     scheduler.Params
	Kubelet       kubelet.Params
	NodeLifecycle nodelifecycle.Params
	Network       network.Params
	DataPlane     dataplane.Params
	Checkpointing checkpointing.Params
	// Epoch is the wall-clock time of virtual time 0.
	Epoch time.Time
	// Scheme; nil means client-go's kinds plus Sluice's API.
	Scheme *runtime.Scheme
	// Overrides are the parameter files applied with Override, by model.
	Overrides map[string]map[string]paramfile.Entry
	// Trace keeps a line per API change (Cluster.Trace), for golden traces
	// and determinism checks; off by default as it grows with the run.
	Trace bool
}

// DefaultParams are the embedded defaults of every model.
func DefaultParams() Params {
	return Params{
		APIServer:     apiserver.DefaultParams(),
		Scheduler:     scheduler.DefaultParams(),
		Kubelet:       kubelet.DefaultParams(),
		NodeLifecycle: nodelifecycle.DefaultParams(),
		Network:       network.DefaultParams(),
		DataPlane:     dataplane.DefaultParams(),
		Checkpointing: checkpointing.DefaultParams(),
		Epoch:         time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
	}
}

// Scheme returns client-go's scheme with Sluice's kinds added.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err)
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}

// Cluster is a simulated cluster.
type Cluster struct {
	e     *engine.Engine
	clk   *clock.Clock
	api   *apiserver.Server
	c     client.Client
	p     Params
	nodes []string

	sched    *scheduler.Scheduler
	kubelets map[string]*kubelet.Kubelet
	beats    map[string]*nodelifecycle.Heartbeat
	nlc      *nodelifecycle.Controller
	evictor  *nodelifecycle.Evictor
	net      *network.Network
	dp       *dataplane.DataPlane
	ckpt     *checkpointing.Model

	trace   []string
	hostCPU float64
}

// New builds and starts a cluster. Nothing runs until the engine does.
func New(seed uint64, shape Shape, p Params) (*Cluster, error) {
	if p.Scheme == nil {
		p.Scheme = Scheme()
	}
	e := engine.New(seed)
	clk := clock.New(e, p.Epoch)
	api := apiserver.New(e, clk, p.Scheme, p.APIServer)
	c := &Cluster{e: e, clk: clk, api: api, c: api.Client("sim:cluster"), p: p,
		kubelets: map[string]*kubelet.Kubelet{}, beats: map[string]*nodelifecycle.Heartbeat{}}
	if p.Trace {
		api.WatchAll(func(ev apiserver.WatchEvent) {
			c.trace = append(c.trace, fmt.Sprintf("%v %s %s %s/%s rv=%d", e.Now(), ev.Type, ev.GVK.Kind, ev.Object.GetNamespace(), ev.Object.GetName(), ev.ResourceVersion))
		})
	}

	c.hostCPU = shape.HostCPU
	nodes, err := nodeShapes(shape)
	if err != nil {
		return nil, err
	}
	ctx := context.Background()
	now := metav1.NewTime(clk.Now())
	for i, ns := range nodes {
		node, err := nodeObject(i, ns, now)
		if err != nil {
			return nil, err
		}
		if err := c.c.Create(ctx, node); err != nil {
			return nil, err
		}
		c.nodes = append(c.nodes, node.Name)
	}

	c.net = network.New(api, p.Network)
	c.dp = dataplane.New(e, p.DataPlane, dataplane.Env{
		Path:      c.net.Path,
		NodeOf:    c.net.NodeOf,
		Shares:    c.shares,
		SharedCPU: shape.HostCPU > 0,
		Capacity: func(node string) float64 {
			if k := c.kubelets[node]; k != nil {
				return k.CPU
			}
			return 0
		},
		Limit: func(pod types.NamespacedName) float64 {
			if k := c.kubelets[c.net.NodeOf(pod)]; k != nil {
				return k.Limit(pod)
			}
			return -1
		},
		Reachable: func(svc, pod types.NamespacedName) bool {
			for _, b := range c.net.Backends(svc) {
				if b == pod {
					return c.net.Resolvable(svc)
				}
			}
			return false
		},
		ConnectTime: c.net.ConnectTime,
	})
	for i, ns := range nodes {
		name := c.nodes[i]
		q, _ := resource.ParseQuantity(ns.CPU)
		k := kubelet.New(api, p.Kubelet, kubelet.Config{Node: name, Index: i, CPU: float64(q.MilliValue()) / 1000, Images: shape.Images})
		// A PE restoring a checkpoint has closed its connections until it
		// has applied the reset.
		k.Ready = func(pod *corev1.Pod, container string) bool {
			return c.dp.Ready(pod, container) && c.ckpt.Ready(pod)
		}
		k.ReadyHold, k.ReadyPoll = dataplane.ReadyHold, p.DataPlane.ReadyPoll.D()
		k.Demand = c.dp.Demand
		k.OnRunning = c.dp.PodRunning
		k.OnStopped = c.dp.PodStopped
		c.kubelets[name] = k
		c.beats[name] = nodelifecycle.NewHeartbeat(api, p.NodeLifecycle, name)
	}
	// The PE processes' side of consistent regions.
	c.ckpt = checkpointing.New(api, p.Checkpointing, checkpointing.Env{
		HopLatency:   func(a, b types.NamespacedName) time.Duration { return c.net.Path(a, b).Mean() },
		ConnectTime:  c.net.ConnectTime,
		Backlog:      c.dp.Backlog,
		PatchLatency: p.APIServer.RequestLatency,
	})
	c.sched = scheduler.New(api, p.Scheduler)
	c.nlc = nodelifecycle.NewController(api, p.NodeLifecycle)
	c.evictor = nodelifecycle.NewEvictor(api, p.NodeLifecycle)

	// The PE runtime reads its configuration from the PE's ConfigMap; the
	// data plane does the same.
	api.Watch(&corev1.ConfigMap{}, func(ev apiserver.WatchEvent) {
		cm := ev.Object.(*corev1.ConfigMap)
		if cm.Labels[v1alpha1.LabelRole] != v1alpha1.RolePEConfig {
			return
		}
		if ev.Type == watch.Deleted {
			c.dp.RemovePE(cm.Namespace, cm.Labels[v1alpha1.LabelPE])
			return
		}
		if cfg, err := peconfig.ParsePE([]byte(cm.Data[v1alpha1.PEConfigKey])); err == nil {
			c.dp.AddPE(cfg)
		}
	})
	return c, nil
}

func nodeShapes(s Shape) ([]NodeShape, error) {
	cluster := s.Name
	if cluster == "" {
		cluster = "kind"
	}
	var out []NodeShape
	if s.ControlPlane {
		out = append(out, NodeShape{Name: cluster + "-control-plane", CPU: s.CPU, Memory: s.Memory, Pods: s.Pods,
			Labels: map[string]string{"node-role.kubernetes.io/control-plane": ""},
			Taints: []corev1.Taint{{Key: "node-role.kubernetes.io/control-plane", Effect: corev1.TaintEffectNoSchedule}}})
	}
	list := s.NodeList
	if len(list) == 0 {
		for i := 0; i < s.Nodes; i++ {
			list = append(list, NodeShape{CPU: s.CPU, Memory: s.Memory, Pods: s.Pods, Labels: s.Labels, Taints: s.Taints})
		}
	}
	for i, n := range list {
		if n.Name == "" {
			n.Name = cluster + "-worker"
			if i > 0 {
				n.Name += fmt.Sprint(i + 1)
			}
		}
		if n.CPU == "" || n.Memory == "" {
			return nil, fmt.Errorf("node %s: cpu and memory are required", n.Name)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("cluster shape has no nodes")
	}
	return out, nil
}

func nodeObject(i int, ns NodeShape, now metav1.Time) (*corev1.Node, error) {
	cpu, err := resource.ParseQuantity(ns.CPU)
	if err != nil {
		return nil, fmt.Errorf("node %s cpu: %w", ns.Name, err)
	}
	mem, err := resource.ParseQuantity(ns.Memory)
	if err != nil {
		return nil, fmt.Errorf("node %s memory: %w", ns.Name, err)
	}
	pods := ns.Pods
	if pods == 0 {
		pods = 110
	}
	labels := map[string]string{
		corev1.LabelHostname: ns.Name, corev1.LabelOSStable: "linux", corev1.LabelArchStable: "amd64",
	}
	for k, v := range ns.Labels {
		labels[k] = v
	}
	res := corev1.ResourceList{corev1.ResourceCPU: cpu, corev1.ResourceMemory: mem, corev1.ResourcePods: *resource.NewQuantity(pods, resource.DecimalSI)}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: ns.Name, Labels: labels},
		Spec:       corev1.NodeSpec{Taints: append([]corev1.Taint(nil), ns.Taints...), PodCIDR: fmt.Sprintf("10.244.%d.0/24", i+1)},
		Status: corev1.NodeStatus{
			Capacity: res, Allocatable: res.DeepCopy(),
			Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: fmt.Sprintf("172.18.0.%d", i+2)}, {Type: corev1.NodeHostName, Address: ns.Name}},
			Conditions: []corev1.NodeCondition{{
				Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", Message: "kubelet is posting ready status",
				LastHeartbeatTime: now, LastTransitionTime: now,
			}},
		},
	}, nil
}

// shares is the CPU of each running pod of a node. On a shared host the
// node containers first divide the host's cores by equal weight (docker's
// default cpu.shares), each taking no more than its pods want.
func (c *Cluster) shares(node string) map[types.NamespacedName]float64 {
	k := c.kubelets[node]
	if k == nil {
		return nil
	}
	if c.hostCPU <= 0 {
		return k.CPUShares()
	}
	claims := make([]kubelet.Claim, len(c.nodes))
	mine := -1
	for i, n := range c.nodes {
		kn := c.kubelets[n]
		claims[i] = kubelet.Claim{Weight: 1024, Cap: 0}
		if kn.Running() {
			claims[i].Cap = kn.CPUDemand()
		}
		if n == node {
			mine = i
		}
	}
	got := kubelet.WaterFill(c.hostCPU, claims)
	return k.CPUSharesOf(min(got[mine], k.CPU))
}

// Engine, Clock, API, Client and the models.
func (c *Cluster) Engine() *engine.Engine                      { return c.e }
func (c *Cluster) Clock() *clock.Clock                         { return c.clk }
func (c *Cluster) API() *apiserver.Server                      { return c.api }
func (c *Cluster) Client() client.Client                       { return c.c }
func (c *Cluster) Params() Params                              { return c.p }
func (c *Cluster) Scheduler() *scheduler.Scheduler             { return c.sched }
func (c *Cluster) Kubelet(node string) *kubelet.Kubelet        { return c.kubelets[node] }
func (c *Cluster) Heartbeat(n string) *nodelifecycle.Heartbeat { return c.beats[n] }
func (c *Cluster) NodeLifecycle() *nodelifecycle.Controller    { return c.nlc }
func (c *Cluster) Evictor() *nodelifecycle.Evictor             { return c.evictor }
func (c *Cluster) Network() *network.Network                   { return c.net }
func (c *Cluster) DataPlane() *dataplane.DataPlane             { return c.dp }
func (c *Cluster) Checkpointing() *checkpointing.Model         { return c.ckpt }

// Nodes lists the node names in creation order.
func (c *Cluster) Nodes() []string { return append([]string(nil), c.nodes...) }

// Trace is every change seen on the API server so far, one line each
// (empty unless Params.Trace).
func (c *Cluster) Trace() []string { return c.trace }

// RunFor advances virtual time by d.
func (c *Cluster) RunFor(d time.Duration) { c.e.RunUntil(c.e.Now() + d) }

// StopNode powers a node off: its kubelet, containers and heartbeats stop.
func (c *Cluster) StopNode(name string) error {
	k, h := c.kubelets[name], c.beats[name]
	if k == nil {
		return fmt.Errorf("no node %q", name)
	}
	k.Stop()
	h.Stop()
	return nil
}

// StartNode powers a node on again.
func (c *Cluster) StartNode(name string) error {
	k, h := c.kubelets[name], c.beats[name]
	if k == nil {
		return fmt.Errorf("no node %q", name)
	}
	k.Start()
	h.Start()
	return nil
}

// KillContainer makes a container of a pod exit with a code (a crash). An
// empty container name means the pod's first container.
func (c *Cluster) KillContainer(pod types.NamespacedName, container string, exitCode int32) error {
	var p corev1.Pod
	if err := c.c.Get(context.Background(), pod, &p); err != nil {
		return err
	}
	if container == "" && len(p.Spec.Containers) > 0 {
		container = p.Spec.Containers[0].Name
	}
	k := c.kubelets[p.Spec.NodeName]
	if k == nil || !k.Kill(pod, container, exitCode) {
		return fmt.Errorf("container %s of %s is not running", container, pod)
	}
	return nil
}

// DeletePod deletes a pod as kubectl would; grace nil means the pod's own
// grace period.
func (c *Cluster) DeletePod(pod types.NamespacedName, grace *int64) error {
	var p corev1.Pod
	if err := c.c.Get(context.Background(), pod, &p); err != nil {
		return err
	}
	return c.c.Delete(context.Background(), &p, &client.DeleteOptions{GracePeriodSeconds: grace})
}

// AdmitPod applies the admission defaults the sim API server lacks
// (DefaultTolerationSeconds) to a pod before it is created.
func (c *Cluster) AdmitPod(p *corev1.Pod) {
	nodelifecycle.AddDefaultTolerations(p, c.p.NodeLifecycle.DefaultTolerationSeconds)
}

// Describe is a short summary of the cluster's nodes.
func (c *Cluster) Describe() string {
	var b strings.Builder
	names := c.Nodes()
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(&b, "%s cpu=%g\n", n, c.kubelets[n].CPU)
	}
	return b.String()
}
