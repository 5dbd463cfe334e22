package dataplane

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/peconfig"
	"sluice.dev/sluice/sim/engine"
	"sluice.dev/sluice/sim/kubelet"
	"sluice.dev/sluice/sim/network"
)

// fakeCluster stands in for the kubelet and network models: pods placed on
// nodes by hand, CPU divided by the kubelet package's CFS water-filling.
type fakeCluster struct {
	e      *engine.Engine
	d      *DataPlane
	node   map[types.NamespacedName]string
	weight map[types.NamespacedName]float64
	cores  map[string]float64
	net    network.Params
}

func newFake(seed uint64, cores map[string]float64) *fakeCluster {
	f := &fakeCluster{e: engine.New(seed), node: map[types.NamespacedName]string{}, weight: map[types.NamespacedName]float64{}, cores: cores, net: network.DefaultParams()}
	f.d = New(f.e, DefaultParams(), Env{
		NodeOf: func(p types.NamespacedName) string { return f.node[p] },
		Path: func(a, b types.NamespacedName) network.Path {
			switch {
			case a == b:
				return f.net.PathOf(network.Fused)
			case f.node[a] == f.node[b]:
				return f.net.PathOf(network.SameNode)
			}
			return f.net.PathOf(network.CrossNode)
		},
		Shares: func(node string) map[types.NamespacedName]float64 {
			var keys []types.NamespacedName
			for k, n := range f.node {
				if n == node {
					keys = append(keys, k)
				}
			}
			sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
			claims := make([]kubelet.Claim, len(keys))
			for i, k := range keys {
				claims[i] = kubelet.Claim{Weight: f.weight[k], Cap: f.d.Demand(k)}
			}
			sh := kubelet.WaterFill(f.cores[node], claims)
			out := map[types.NamespacedName]float64{}
			for i, k := range keys {
				out[k] = sh[i]
			}
			return out
		},
		ConnectTime: func(a, b types.NamespacedName) time.Duration { return time.Millisecond },
	})
	return f
}

func i64(v int64) *int64 { return &v }
func i32(v int32) *int32 { return &v }

// job builds PE configs of a source -> map -> sink pipeline; fuse says
// which PE each operator goes to (0, 1, 2...).
func job(name string, rate int64, work int32, fuse [3]int) []*peconfig.PE {
	ops := []v1alpha1.Operator{
		{Name: name + "-src", Kind: v1alpha1.KindSource, Params: &v1alpha1.OperatorParams{Rate: i64(rate), TupleSize: i32(100)}},
		{Name: name + "-map", Kind: v1alpha1.KindMap, Params: &v1alpha1.OperatorParams{Work: i32(work)}},
		{Name: name + "-sink", Kind: v1alpha1.KindSink},
	}
	streams := []peconfig.Stream{
		{ID: 0, From: v1alpha1.Endpoint{Operator: ops[0].Name}, To: v1alpha1.Endpoint{Operator: ops[1].Name}},
		{ID: 1, From: v1alpha1.Endpoint{Operator: ops[1].Name}, To: v1alpha1.Endpoint{Operator: ops[2].Name}},
	}
	var pes []*peconfig.PE
	for i, op := range ops {
		idx := fuse[i]
		for len(pes) <= idx {
			pes = append(pes, &peconfig.PE{Version: 1, Job: name, Namespace: "ns", Name: fmt.Sprintf("%s-pe-%d", name, len(pes)), Index: int32(len(pes))})
		}
		pes[idx].Operators = append(pes[idx].Operators, op)
	}
	for _, pe := range pes {
		for _, s := range streams {
			in := func(op string) bool {
				for _, o := range pe.Operators {
					if o.Name == op {
						return true
					}
				}
				return false
			}
			if in(s.From.Operator) || in(s.To.Operator) {
				pe.Streams = append(pe.Streams, s)
			}
		}
	}
	return pes
}

func (f *fakeCluster) run(pe *peconfig.PE, node string, milliCPU int64) types.NamespacedName {
	f.d.AddPE(pe)
	key := types.NamespacedName{Namespace: "ns", Name: pe.Name + "-pod"}
	f.node[key] = node
	f.weight[key] = kubelet.Shares(milliCPU)
	f.d.PodRunning(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: key.Name, Labels: map[string]string{v1alpha1.LabelPE: pe.Name}}})
	return key
}

func near(got, want, tol float64) bool { return math.Abs(got-want) <= tol*math.Abs(want) }

func TestThroughputSaturatesAtCPUShare(t *testing.T) {
	p := DefaultParams()
	perTuple := p.SourceCost.D().Seconds() + p.MapCost.D().Seconds() + 100*p.MapRoundCost.D().Seconds() + p.SinkCost.D().Seconds()
	for _, tc := range []struct {
		name  string
		reqs  []int64
		cores float64
	}{
		{"fits", []int64{500, 500}, 2}, // 1 core each, capped by the PE's one core
		{"oversubscribed", []int64{500, 500, 500, 500, 500, 500}, 2},
		{"unequal requests", []int64{1000, 500, 500}, 1},
	} {
		f := newFake(1, map[string]float64{"n1": tc.cores})
		var total float64
		for _, r := range tc.reqs {
			total += kubelet.Shares(r)
		}
		names := []string{}
		for i, r := range tc.reqs {
			name := fmt.Sprintf("j%d", i)
			f.run(job(name, 0, 100, [3]int{0, 0, 0})[0], "n1", r)
			names = append(names, name+"-pe-0")
		}
		f.e.RunUntil(3 * time.Second)
		for i, name := range names {
			got := f.d.DeliveredBy(name, time.Second, 3*time.Second) / 2
			share := math.Min(tc.cores*kubelet.Shares(tc.reqs[i])/total, p.PEMaxCores)
			if want := share / perTuple; !near(got, want, 0.02) {
				t.Errorf("%s: %s delivers %.0f/s, want %.0f/s (share %.3f cores)", tc.name, name, got, want, share)
			}
		}
	}
}

func TestBottleneckLimitsPipeline(t *testing.T) {
	// source on n1, a heavy map on n2, sink on n1: the map's core decides.
	f := newFake(2, map[string]float64{"n1": 4, "n2": 4})
	pes := job("j", 0, 5000, [3]int{0, 1, 2})
	f.run(pes[0], "n1", 1000)
	f.run(pes[1], "n2", 1000)
	f.run(pes[2], "n1", 1000)
	f.e.RunUntil(3 * time.Second)
	p := DefaultParams()
	tb := float64(p.TupleHeaderBytes + 100)
	mapCost := p.DeserializeCost.D().Seconds() + p.MapCost.D().Seconds() + 5000*p.MapRoundCost.D().Seconds() +
		p.SerializeCost.D().Seconds() + 2*tb*p.ByteCostNanos*1e-9
	got := f.d.Delivered(time.Second, 3*time.Second) / 2
	if want := 1 / mapCost; !near(got, want, 0.02) {
		t.Fatalf("pipeline delivers %.0f/s, want the map's %.0f/s", got, want)
	}
	// Backpressure: the source is not running flat out, so its node's CPU
	// is mostly idle.
	if f.d.Lost() != 0 {
		t.Fatalf("lost %v tuples without failures", f.d.Lost())
	}
}

func TestLatencyGrowsWithPath(t *testing.T) {
	type res struct{ p50, p99 time.Duration }
	measure := func(fuse [3]int, nodes []string) res {
		f := newFake(3, map[string]float64{"n1": 4, "n2": 4})
		pes := job("j", 1000, 0, fuse)
		for i, pe := range pes {
			f.run(pe, nodes[i], 1000)
		}
		f.e.RunUntil(12 * time.Second)
		return res{f.d.LatencyQuantile(0.5, 2*time.Second, 12*time.Second), f.d.LatencyQuantile(0.99, 2*time.Second, 12*time.Second)}
	}
	fused := measure([3]int{0, 0, 0}, []string{"n1"})
	same := measure([3]int{0, 0, 1}, []string{"n1", "n1"})
	cross := measure([3]int{0, 0, 1}, []string{"n1", "n2"})
	t.Logf("p50/p99 fused %v/%v same-node %v/%v cross-node %v/%v", fused.p50, fused.p99, same.p50, same.p99, cross.p50, cross.p99)
	if !(fused.p50 < same.p50 && same.p50 < cross.p50) {
		t.Fatalf("median latency not ordered: fused %v same %v cross %v", fused.p50, same.p50, cross.p50)
	}
	// A distribution, not a constant: the network tail shows at p99.
	if !(cross.p99 > cross.p50) {
		t.Fatalf("cross-node p99 %v not above p50 %v", cross.p99, cross.p50)
	}
	// The difference across nodes is the path's latency, roughly.
	np := network.DefaultParams()
	diff := cross.p50 - same.p50
	if want := np.CrossNodeLatency.D() - np.SameNodeLatency.D(); diff < want/2 || diff > 2*want {
		t.Fatalf("cross - same = %v, want about %v", diff, want)
	}
}

func TestFlowStopsAndResumesOnPEFailure(t *testing.T) {
	f := newFake(4, map[string]float64{"n1": 4, "n2": 4})
	pes := job("j", 10000, 0, [3]int{0, 0, 1})
	f.run(pes[0], "n1", 1000)
	sink := f.run(pes[1], "n2", 1000)
	var readyLog []string
	f.d.OnReadyChange = func(p types.NamespacedName, ready bool) {
		readyLog = append(readyLog, fmt.Sprintf("%v %s %v", f.e.Now(), p.Name, ready))
	}
	f.e.RunUntil(5 * time.Second)
	if !f.d.Connected("ns", pes[0].Name) || !f.d.Connected("ns", pes[1].Name) {
		t.Fatal("not connected")
	}
	before := f.d.Delivered(4*time.Second, 5*time.Second)
	if !near(before, 10000, 0.02) {
		t.Fatalf("delivered %v/s before failure, want 10000", before)
	}
	f.d.PodStopped(sink)
	if f.d.Ready(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "j-pe-0-pod", Labels: map[string]string{v1alpha1.LabelPE: pes[0].Name}}}, "pe") {
		t.Fatal("upstream PE ready with its output down")
	}
	f.e.RunUntil(10 * time.Second)
	if got := f.d.Delivered(5*time.Second+100*time.Millisecond, 10*time.Second); got != 0 {
		t.Fatalf("%v tuples delivered while the sink PE was down", got)
	}
	// A replacement pod (new name) comes up: the writer's back-off has grown
	// to its 2 s cap while the peer was down, so flow resumes within it.
	restart := f.e.Now()
	newPod := types.NamespacedName{Namespace: "ns", Name: "j-pe-1-pod-b"}
	f.node[newPod] = "n2"
	f.weight[newPod] = kubelet.Shares(1000)
	f.d.PodRunning(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: newPod.Name, Labels: map[string]string{v1alpha1.LabelPE: pes[1].Name}}})
	f.e.RunUntil(restart + 5*time.Second)
	var resumed time.Duration
	for _, s := range f.d.Samples() {
		if s.At > restart {
			resumed = s.At
			break
		}
	}
	maxWait := DefaultParams().ReconnectMax.D() * 12 / 10
	if resumed == 0 || resumed-restart > maxWait+10*time.Millisecond {
		t.Fatalf("flow resumed at %v after restart at %v (max back-off %v)", resumed, restart, maxWait)
	}
	if got := f.d.Delivered(restart+4*time.Second, restart+5*time.Second); !near(got, 10000, 0.02) {
		t.Fatalf("after recovery %v/s", got)
	}
	if len(readyLog) < 3 {
		t.Fatalf("ready changes %v", readyLog)
	}
}

func TestDeterministic(t *testing.T) {
	run := func() []Sample {
		f := newFake(9, map[string]float64{"n1": 1, "n2": 1})
		for i := 0; i < 3; i++ {
			pes := job(fmt.Sprintf("j%d", i), 2000, 200, [3]int{0, 1, 1})
			f.run(pes[0], "n1", 300)
			f.run(pes[1], "n2", 300)
		}
		f.e.RunUntil(2 * time.Second)
		return f.d.Samples()
	}
	a, b := run(), run()
	if len(a) == 0 || len(a) != len(b) {
		t.Fatalf("%d vs %d samples", len(a), len(b))
	}
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("sample %d differs: %+v vs %+v", i, a[i], b[i])
		}
	}
}

func TestRemovePE(t *testing.T) {
	f := newFake(5, map[string]float64{"n1": 2})
	pes := job("j", 1000, 0, [3]int{0, 0, 1})
	f.run(pes[0], "n1", 500)
	f.run(pes[1], "n1", 500)
	f.e.RunUntil(time.Second)
	f.d.RemovePE("ns", pes[1].Name)
	f.e.RunUntil(2 * time.Second)
	if got := f.d.Delivered(time.Second+10*time.Millisecond, 2*time.Second); got != 0 {
		t.Fatalf("%v delivered after the sink PE was removed", got)
	}
	if f.d.Connected("ns", pes[0].Name) {
		t.Fatal("upstream still connected to a removed PE")
	}
}

func TestAggregateEmitsPerWindowAndKey(t *testing.T) {
	f := newFake(6, map[string]float64{"n1": 4})
	win := int64(100)
	ops := []v1alpha1.Operator{
		{Name: "src", Kind: v1alpha1.KindSource, Params: &v1alpha1.OperatorParams{Rate: i64(20000), Keys: i64(50)}},
		{Name: "keep", Kind: v1alpha1.KindFilter, Params: &v1alpha1.OperatorParams{KeepPercent: i32(50)}},
		{Name: "agg", Kind: v1alpha1.KindAggregate, Params: &v1alpha1.OperatorParams{WindowMillis: &win, Function: "count"}},
		{Name: "out", Kind: v1alpha1.KindSink},
	}
	var streams []peconfig.Stream
	for i := 0; i+1 < len(ops); i++ {
		streams = append(streams, peconfig.Stream{ID: int32(i), From: v1alpha1.Endpoint{Operator: ops[i].Name}, To: v1alpha1.Endpoint{Operator: ops[i+1].Name}})
	}
	f.run(&peconfig.PE{Version: 1, Job: "a", Namespace: "ns", Name: "a-pe-0", Operators: ops, Streams: streams}, "n1", 1000)
	f.e.RunUntil(3 * time.Second)
	// 20000/s, half kept: 1000 tuples per 100 ms window over 50 keys, so 50
	// results per window, 500 per second.
	if got := f.d.Delivered(time.Second, 3*time.Second) / 2; !near(got, 500, 0.01) {
		t.Fatalf("aggregate output %v/s, want 500", got)
	}
	// With fewer tuples than keys in a window, one result per tuple.
	f2 := newFake(6, map[string]float64{"n1": 4})
	ops[0].Params.Rate = i64(400) // 20 kept per window < 50 keys
	f2.run(&peconfig.PE{Version: 1, Job: "a", Namespace: "ns", Name: "a-pe-0", Operators: ops, Streams: streams}, "n1", 1000)
	f2.e.RunUntil(3 * time.Second)
	if got := f2.d.Delivered(time.Second, 3*time.Second) / 2; !near(got, 200, 0.05) {
		t.Fatalf("sparse aggregate output %v/s, want 200", got)
	}
}

// The fast path (no Shares call while a node has room) must give exactly
// what Shares gives.
func TestFastPathMatchesShares(t *testing.T) {
	run := func(fast bool) []Sample {
		f := newFake(10, map[string]float64{"n1": 2, "n2": 1})
		limit := map[types.NamespacedName]float64{}
		if fast {
			f.d.env.Capacity = func(n string) float64 { return f.cores[n] }
			f.d.env.Limit = func(p types.NamespacedName) float64 {
				if l, ok := limit[p]; ok {
					return l
				}
				return -1
			}
		}
		// n1: light pipelines (room); n2: two unlimited sources (oversubscribed).
		for i := 0; i < 3; i++ {
			pes := job(fmt.Sprintf("l%d", i), 3000, 500, [3]int{0, 1, 1})
			f.run(pes[0], "n1", 200)
			f.run(pes[1], "n1", 200)
		}
		f.run(job("h0", 0, 100, [3]int{0, 0, 0})[0], "n2", 500)
		f.run(job("h1", 0, 100, [3]int{0, 0, 0})[0], "n2", 300)
		f.e.RunUntil(2 * time.Second)
		return f.d.Samples()
	}
	a, b := run(false), run(true)
	if len(a) != len(b) || len(a) == 0 {
		t.Fatalf("%d vs %d samples", len(a), len(b))
	}
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("sample %d: %+v vs %+v", i, a[i], b[i])
		}
	}
}

// randomJob fuses a random acyclic graph of operators into PEs; each PE's
// configuration holds the streams out of and into its operators.
func randomJob(r *rand.Rand, job string) []*peconfig.PE {
	nOps := 2 + r.IntN(14)
	nPEs := 1 + r.IntN(nOps)
	var ops []v1alpha1.Operator
	var streams []peconfig.Stream
	for i := 0; i < nOps; i++ {
		op := v1alpha1.Operator{Name: fmt.Sprintf("%s-op%d", job, i), Kind: v1alpha1.KindMap}
		if i == 0 || r.IntN(4) == 0 {
			op.Kind = v1alpha1.KindSource
			op.Params = &v1alpha1.OperatorParams{TupleSize: i32(int32(1 + r.IntN(500)))}
			if r.IntN(3) == 0 {
				op.Params.TupleSize = nil
			}
		} else {
			for k := 0; k < 1+r.IntN(2); k++ {
				from := r.IntN(i)
				streams = append(streams, peconfig.Stream{ID: int32(len(streams)),
					From: v1alpha1.Endpoint{Operator: ops[from].Name}, To: v1alpha1.Endpoint{Operator: op.Name}})
			}
		}
		ops = append(ops, op)
	}
	pes := make([]*peconfig.PE, nPEs)
	owner := map[string]int{}
	for i := range pes {
		pes[i] = &peconfig.PE{Job: job, Namespace: "ns", Name: fmt.Sprintf("%s-pe-%d", job, i)}
	}
	for i, op := range ops {
		k := r.IntN(nPEs)
		if i < nPEs {
			k = i // no PE is empty
		}
		owner[op.Name] = k
		pes[k].Operators = append(pes[k].Operators, op)
	}
	for _, s := range streams {
		a, b := owner[s.From.Operator], owner[s.To.Operator]
		pes[a].Streams = append(pes[a].Streams, s)
		if b != a {
			pes[b].Streams = append(pes[b].Streams, s)
		}
	}
	return pes
}

// PEs registered in any order get exactly the cross-PE streams whose two
// ends are known, each with the tuple size a fresh walk of the graph gives
// at that moment (memoised walks are kept across additions only where they
// cannot have changed); removing a PE drops exactly its streams.
func TestAddPEStreamsAndSizes(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 4))
	for round := 0; round < 200; round++ {
		f := newFake(uint64(round), map[string]float64{"n": 4})
		job := fmt.Sprint("j", round)
		pes := randomJob(r, job)
		r.Shuffle(len(pes), func(a, b int) { pes[a], pes[b] = pes[b], pes[a] })
		known := map[string]int{} // operator -> index in pes
		seen := map[*stream]bool{}
		check := func(upTo int) {
			t.Helper()
			j := f.d.jobs["ns/"+job]
			want := map[string]bool{}
			for _, cfg := range pes[:upTo] {
				if f.d.pes["ns/"+cfg.Name] == nil {
					continue
				}
				for _, s := range cfg.Streams {
					a, okA := known[s.From.Operator]
					b, okB := known[s.To.Operator]
					if okA && okB && a != b && pes[a] == cfg {
						want[itoa(s.ID)] = true
					}
				}
			}
			got := map[string]bool{}
			for sk, st := range f.d.streams {
				id := sk[len("ns/"+job+"/"):]
				got[id] = true
				if seen[st] {
					continue
				}
				seen[st] = true
				fresh := *j
				fresh.payloadMemo, fresh.payloadMisses = nil, nil
				var fromOp string
				for _, s := range st.from.cfg.Streams {
					if s.ID == st.id {
						fromOp = s.From.Operator
					}
				}
				if w := f.d.wireBytes(&fresh, fromOp); st.bytes != w {
					t.Fatalf("round %d: stream %s carries %d-byte tuples, a fresh walk says %d", round, sk, st.bytes, w)
				}
				if (st.from.job != j) || st.to.job != j {
					t.Fatalf("stream %s between jobs", sk)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("round %d: streams %v, want %v", round, got, want)
			}
		}
		for i, cfg := range pes {
			for _, op := range cfg.Operators {
				known[op.Name] = i
			}
			f.d.AddPE(cfg)
			check(i + 1)
		}
		// Remove one PE, then add it back.
		k := r.IntN(len(pes))
		f.d.RemovePE("ns", pes[k].Name)
		for _, op := range pes[k].Operators {
			delete(known, op.Name)
		}
		check(len(pes))
		for _, x := range f.d.pes {
			for _, s := range append(append([]*stream(nil), x.outs...), x.ins...) {
				if s.from.name == pes[k].Name || s.to.name == pes[k].Name {
					t.Fatalf("round %d: stream %d of removed PE %s still on %s", round, s.id, pes[k].Name, x.name)
				}
			}
		}
		for _, op := range pes[k].Operators {
			known[op.Name] = k
		}
		f.d.AddPE(pes[k])
		check(len(pes))
	}
}
