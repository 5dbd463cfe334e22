// Package network models the pod network for the simulator: the latency
// and bandwidth of a path between two pods (fused in one PE, on one node,
// across nodes), the time for a Service's endpoints to be programmed
// (EndpointSlice controller, then kube-proxy's rate-limited rule sync) and
// for its DNS name to resolve, and the cost of a connection through it.
package network

import (
	"math/rand/v2"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sluice.dev/sluice/sim/apiserver"
	"sluice.dev/sluice/sim/engine"
)

// Kind classifies a path between two PEs.
type Kind int

const (
	// Unreachable: one end has no node (yet).
	Unreachable Kind = iota
	// Fused: both operators are in one PE process.
	Fused
	// SameNode: two pods on one node (veth through the node).
	SameNode
	// CrossNode: two pods on different nodes.
	CrossNode
)

func (k Kind) String() string {
	return [...]string{"unreachable", "fused", "same-node", "cross-node"}[k]
}

// Path is the network between two PEs.
type Path struct {
	Kind Kind
	// Latency is the base one-way latency.
	Latency time.Duration
	// Bandwidth in bytes per second of one stream.
	Bandwidth float64
	jitter    float64
}

// Sample draws one one-way latency: the base plus an exponential tail.
func (p Path) Sample(r *rand.Rand) time.Duration {
	if p.jitter <= 0 || p.Latency <= 0 {
		return p.Latency
	}
	return p.Latency + time.Duration(r.ExpFloat64()*p.jitter*float64(p.Latency))
}

// Mean is the mean one-way latency.
func (p Path) Mean() time.Duration {
	return p.Latency + time.Duration(p.jitter*float64(p.Latency))
}

// Transfer is the time to push n bytes through the path.
func (p Path) Transfer(n int64) time.Duration {
	if p.Bandwidth <= 0 {
		return 0
	}
	return time.Duration(float64(n) / p.Bandwidth * float64(time.Second))
}

// PathOf returns the parameters of a kind of path.
func (p Params) PathOf(k Kind) Path {
	switch k {
	case Fused:
		return Path{Kind: k, Latency: p.FusedLatency.D(), Bandwidth: p.FusedBandwidth, jitter: p.JitterFraction}
	case SameNode:
		return Path{Kind: k, Latency: p.SameNodeLatency.D(), Bandwidth: p.SameNodeBandwidth, jitter: p.JitterFraction}
	case CrossNode:
		return Path{Kind: k, Latency: p.CrossNodeLatency.D(), Bandwidth: p.CrossNodeBandwidth, jitter: p.JitterFraction}
	}
	return Path{Kind: Unreachable}
}

type service struct {
	svc *corev1.Service
	// desired is what the EndpointSlice controller would publish now.
	desired []types.NamespacedName
	// slice is the published EndpointSlice content.
	slice []types.NamespacedName
	// programmed is what kube-proxy has in its rules.
	programmed []types.NamespacedName
	dnsAt      time.Duration
	// dnsNext is when the last scheduled DNS answer change applies.
	dnsNext time.Duration
}

// Network is the cluster network model.
type Network struct {
	e   *engine.Engine
	p   Params
	pod map[types.NamespacedName]*corev1.Pod
	svc map[types.NamespacedName]*service
	// Indexes by "namespace/key=value" label pair, so that a pod event
	// recomputes only Services whose selector can match it, and a recompute
	// scans only pods carrying the selector's indexed pair: a 10,000-PE Job
	// has 10,000 Services.
	svcByPair map[string]map[types.NamespacedName]bool
	podByPair map[string]map[types.NamespacedName]bool

	lastSync time.Duration
	synced   bool
	sync     *engine.Timer

	// OnProgrammed, if set, is called when a Service's programmed endpoints
	// change (connections to it may now succeed or must fail).
	OnProgrammed func(svc types.NamespacedName)
}

// New starts the network model, following pods and Services.
func New(api *apiserver.Server, p Params) *Network {
	n := &Network{e: api.Engine(), p: p, pod: map[types.NamespacedName]*corev1.Pod{}, svc: map[types.NamespacedName]*service{},
		svcByPair: map[string]map[types.NamespacedName]bool{}, podByPair: map[string]map[types.NamespacedName]bool{}}
	api.WatchShared(&corev1.Pod{}, func(ev apiserver.WatchEvent) {
		pod := ev.Object.(*corev1.Pod)
		k := client.ObjectKeyFromObject(pod)
		cand := map[types.NamespacedName]bool{}
		if old := n.pod[k]; old != nil {
			for lk, lv := range old.Labels {
				pair := labelPair(k.Namespace, lk, lv)
				delete(n.podByPair[pair], k)
				for sk := range n.svcByPair[pair] {
					cand[sk] = true
				}
			}
		}
		if ev.Type == watch.Deleted {
			delete(n.pod, k)
		} else {
			n.pod[k] = pod
			for lk, lv := range pod.Labels {
				pair := labelPair(k.Namespace, lk, lv)
				if n.podByPair[pair] == nil {
					n.podByPair[pair] = map[types.NamespacedName]bool{}
				}
				n.podByPair[pair][k] = true
				for sk := range n.svcByPair[pair] {
					cand[sk] = true
				}
			}
		}
		// In a fixed order: recomputing schedules events and draws numbers.
		keys := make([]types.NamespacedName, 0, len(cand))
		for sk := range cand {
			keys = append(keys, sk)
		}
		sort.Slice(keys, func(i, j int) bool { return keys[i].Name < keys[j].Name })
		for _, sk := range keys {
			n.recompute(sk, n.svc[sk])
		}
	})
	api.WatchShared(&corev1.Service{}, func(ev apiserver.WatchEvent) {
		svc := ev.Object.(*corev1.Service)
		k := client.ObjectKeyFromObject(svc)
		if old := n.svc[k]; old != nil && old.svc != nil {
			if pair, ok := indexPair(old.svc); ok {
				delete(n.svcByPair[pair], k)
			}
		}
		if ev.Type == watch.Deleted {
			if s := n.svc[k]; s != nil {
				s.desired = nil
				n.publish(k, s)
			}
			delete(n.svc, k)
			return
		}
		s := n.svc[k]
		if s == nil {
			s = &service{dnsAt: n.e.Now() + p.DNSRecordDelay.D()}
			n.svc[k] = s
		}
		s.svc = svc
		if pair, ok := indexPair(svc); ok {
			if n.svcByPair[pair] == nil {
				n.svcByPair[pair] = map[types.NamespacedName]bool{}
			}
			n.svcByPair[pair][k] = true
		}
		n.recompute(k, s)
	})
	return n
}

// Params returns the model's parameters.
func (n *Network) Params() Params { return n.p }

// NodeOf is the node a pod is bound to, empty if none.
func (n *Network) NodeOf(pod types.NamespacedName) string {
	if p := n.pod[pod]; p != nil {
		return p.Spec.NodeName
	}
	return ""
}

// Path is the path from one PE's pod to another's; the same pod means
// operators fused in one PE.
func (n *Network) Path(from, to types.NamespacedName) Path {
	if from == to {
		return n.p.PathOf(Fused)
	}
	a, b := n.NodeOf(from), n.NodeOf(to)
	switch {
	case a == "" || b == "":
		return n.p.PathOf(Unreachable)
	case a == b:
		return n.p.PathOf(SameNode)
	default:
		return n.p.PathOf(CrossNode)
	}
}

// Resolvable reports whether a Service's DNS name resolves now.
func (n *Network) Resolvable(svc types.NamespacedName) bool {
	s := n.svc[svc]
	return s != nil && n.e.Now() >= s.dnsAt
}

// Backends are the pods a connection to the Service can reach now: the
// endpoints kube-proxy has programmed.
func (n *Network) Backends(svc types.NamespacedName) []types.NamespacedName {
	if s := n.svc[svc]; s != nil {
		return s.programmed
	}
	return nil
}

// ConnectTime is how long a client pod takes to open a TCP connection to a
// backend: a DNS lookup and the handshake round trips.
func (n *Network) ConnectTime(from, backend types.NamespacedName) time.Duration {
	p := n.Path(from, backend)
	return n.p.DNSLookup.D() + time.Duration(2*n.p.ConnectRoundTrips)*p.Latency
}

func podReady(p *corev1.Pod) bool {
	if p.DeletionTimestamp != nil || p.Status.PodIP == "" {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func labelPair(ns, k, v string) string { return ns + "/" + k + "=" + v }

// indexPair is the label pair a Service is indexed under: the first of its
// selector's pairs by key. A pod can match the selector only if it carries
// that pair. A Service without a selector has no endpoints from pods.
func indexPair(svc *corev1.Service) (string, bool) {
	sel := svc.Spec.Selector
	if len(sel) == 0 {
		return "", false
	}
	first := ""
	for k := range sel {
		if first == "" || k < first {
			first = k
		}
	}
	return labelPair(svc.Namespace, first, sel[first]), true
}

// recompute is the EndpointSlice controller: the ready pods the selector
// matches (or every pod with an IP when publishNotReadyAddresses is set).
func (n *Network) recompute(k types.NamespacedName, s *service) {
	var want []types.NamespacedName
	if pair, ok := indexPair(s.svc); ok {
		ls := labels.SelectorFromSet(s.svc.Spec.Selector)
		for pk := range n.podByPair[pair] {
			p := n.pod[pk]
			if !ls.Matches(labels.Set(p.Labels)) {
				continue
			}
			if podReady(p) || (s.svc.Spec.PublishNotReadyAddresses && p.Status.PodIP != "" && p.DeletionTimestamp == nil &&
				p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed) {
				want = append(want, pk)
			}
		}
	}
	sort.Slice(want, func(i, j int) bool { return want[i].String() < want[j].String() })
	if equal(want, s.desired) {
		return
	}
	s.desired = want
	n.e.After(n.p.EndpointSliceDelay.D(), func() { n.publish(k, s) })
}

// publish writes the EndpointSlice. A ClusterIP Service then waits for
// kube-proxy's rules; a headless Service (the PEs') is served by CoreDNS
// from the slices, and clients holding a cached answer (kubernetes plugin
// TTL) see a replaced endpoint only when their cache entry expires.
func (n *Network) publish(k types.NamespacedName, s *service) {
	s.slice = append([]types.NamespacedName(nil), s.desired...)
	if s.svc != nil && s.svc.Spec.ClusterIP == corev1.ClusterIPNone {
		d := n.p.DNSRecordDelay.D()
		if len(s.programmed) > 0 && n.p.DNSCacheTTL.D() > 0 {
			d += time.Duration(n.e.Rand().Float64() * float64(n.p.DNSCacheTTL.D()))
		}
		// Answers change in order: a later change is never seen before an
		// earlier one.
		at := max(n.e.Now()+d, s.dnsNext)
		s.dnsNext = at
		eps := s.slice
		n.e.At(at, func() {
			if !equal(s.programmed, eps) {
				s.programmed = eps
				if n.OnProgrammed != nil {
					n.OnProgrammed(k)
				}
			}
		})
		return
	}
	n.requestSync()
}

// requestSync runs kube-proxy's bounded-frequency sync: at once if the last
// sync is older than minSyncPeriod, else when it will be.
func (n *Network) requestSync() {
	if n.sync != nil && n.sync.Pending() {
		return
	}
	at := n.e.Now()
	if n.synced && n.lastSync+n.p.KubeProxyMinSyncPeriod.D() > at {
		at = n.lastSync + n.p.KubeProxyMinSyncPeriod.D()
	}
	n.sync = n.e.At(at, func() {
		n.lastSync, n.synced = n.e.Now(), true
		type snap struct {
			k   types.NamespacedName
			s   *service
			eps []types.NamespacedName
		}
		var snaps []snap
		keys := make([]types.NamespacedName, 0, len(n.svc))
		for k := range n.svc {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
		for _, k := range keys {
			s := n.svc[k]
			if s.svc != nil && s.svc.Spec.ClusterIP == corev1.ClusterIPNone {
				continue
			}
			snaps = append(snaps, snap{k, s, s.slice})
		}
		n.e.After(n.p.KubeProxySyncDuration.D(), func() {
			for _, sn := range snaps {
				if !equal(sn.s.programmed, sn.eps) {
					sn.s.programmed = sn.eps
					if n.OnProgrammed != nil {
						n.OnProgrammed(sn.k)
					}
				}
			}
		})
	})
}

func equal(a, b []types.NamespacedName) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
