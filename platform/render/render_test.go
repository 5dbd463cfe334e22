package render

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/app"
	"sluice.dev/sluice/platform/peconfig"
)

func testPE() *v1alpha1.ProcessingElement {
	return &v1alpha1.ProcessingElement{
		ObjectMeta: metav1.ObjectMeta{Name: "job-pe-2", Namespace: "ns", UID: types.UID("pe-uid")},
		Spec: v1alpha1.ProcessingElementSpec{
			JobName:     "job",
			Index:       2,
			Operators:   []string{"m"},
			InputPorts:  3,
			LaunchCount: 4,
			Template: v1alpha1.PETemplate{
				ImagePullPolicy: corev1.PullNever,
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
					corev1.ResourceCPU: resource.MustParse("250m")}},
				TerminationGracePeriodSeconds: ptr.To[int64](7),
			},
		},
	}
}

func testJob() *v1alpha1.Job {
	return &v1alpha1.Job{ObjectMeta: metav1.ObjectMeta{Name: "job", Namespace: "ns", UID: types.UID("job-uid")}}
}

func TestPodShape(t *testing.T) {
	pe := testPE()
	pod := Pod(pe, nil, "")
	if pod.Name != "job-pe-2-4" || pod.Namespace != "ns" {
		t.Errorf("pod %s/%s, want ns/job-pe-2-4", pod.Namespace, pod.Name)
	}
	wantLabels := map[string]string{
		v1alpha1.LabelJob:    "job",
		v1alpha1.LabelPE:     "job-pe-2",
		v1alpha1.LabelLaunch: "4",
		v1alpha1.LabelRole:   v1alpha1.RolePEPod,
	}
	if d := cmp.Diff(wantLabels, pod.Labels); d != "" {
		t.Errorf("labels (-want +got):\n%s", d)
	}
	wantOwner := []metav1.OwnerReference{{
		APIVersion: "streams.sluice.dev/v1alpha1", Kind: "ProcessingElement", Name: "job-pe-2", UID: "pe-uid",
		Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
	}}
	if d := cmp.Diff(wantOwner, pod.OwnerReferences); d != "" {
		t.Errorf("owner references (-want +got):\n%s", d)
	}
	// The default policy restarts failed PEs: in place, by the kubelet.
	if pod.Spec.RestartPolicy != corev1.RestartPolicyOnFailure {
		t.Errorf("restart policy %q, want OnFailure", pod.Spec.RestartPolicy)
	}
	if got := pod.Spec.TerminationGracePeriodSeconds; got == nil || *got != 7 {
		t.Errorf("grace period %v", got)
	}
	if pod.Spec.Affinity != nil || pod.Spec.Tolerations != nil {
		t.Errorf("placement without pools or tags: %+v %+v", pod.Spec.Affinity, pod.Spec.Tolerations)
	}
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("%d containers", len(pod.Spec.Containers))
	}
	c := pod.Spec.Containers[0]
	if c.ImagePullPolicy != corev1.PullNever || !c.Resources.Requests.Cpu().Equal(resource.MustParse("250m")) {
		t.Errorf("template not applied: %q %v", c.ImagePullPolicy, c.Resources)
	}
	rp := c.ReadinessProbe
	if rp == nil || rp.HTTPGet == nil || rp.HTTPGet.Path != "/readyz?hold=800ms" || rp.HTTPGet.Port.IntValue() != 9090 {
		t.Errorf("readiness probe %+v", rp)
	}
	// A held answer must come back before the kubelet gives up on it.
	if hold := time.Duration(rp.TimeoutSeconds) * time.Second; hold <= ReadyProbeHold {
		t.Errorf("probe timeout %v does not exceed the hold %v", hold, ReadyProbeHold)
	}
	lp := c.LivenessProbe
	if lp == nil || lp.HTTPGet == nil || lp.HTTPGet.Path != "/healthz" || lp.HTTPGet.Port.IntValue() != 9090 {
		t.Errorf("liveness probe %+v", lp)
	}
	wantPorts := []corev1.ContainerPort{
		{Name: "health", ContainerPort: 9090, Protocol: corev1.ProtocolTCP},
		{Name: "in-0", ContainerPort: 10000, Protocol: corev1.ProtocolTCP},
		{Name: "in-1", ContainerPort: 10001, Protocol: corev1.ProtocolTCP},
		{Name: "in-2", ContainerPort: 10002, Protocol: corev1.ProtocolTCP},
	}
	if d := cmp.Diff(wantPorts, c.Ports); d != "" {
		t.Errorf("container ports (-want +got):\n%s", d)
	}
	for _, p := range c.Ports {
		if errs := validation.IsValidPortName(p.Name); len(errs) > 0 {
			t.Errorf("port name %q: %v", p.Name, errs)
		}
	}
	// Both ConfigMaps are mounted where the runtime's args point.
	vols := map[string]string{}
	for _, v := range pod.Spec.Volumes {
		if v.ConfigMap == nil {
			t.Errorf("volume %s is not a ConfigMap", v.Name)
			continue
		}
		vols[v.Name] = v.ConfigMap.Name
	}
	if d := cmp.Diff(map[string]string{"pe-config": "job-pe-2", "port-table": "job-ports"}, vols); d != "" {
		t.Errorf("volumes (-want +got):\n%s", d)
	}
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m.MountPath
		if !m.ReadOnly {
			t.Errorf("mount %s is writable", m.Name)
		}
	}
	if d := cmp.Diff(map[string]string{"pe-config": v1alpha1.ConfigMountPath, "port-table": v1alpha1.PortTableMountPath}, mounts); d != "" {
		t.Errorf("mounts (-want +got):\n%s", d)
	}
	args := strings.Join(c.Args, " ")
	for _, want := range []string{v1alpha1.ConfigMountPath + "/" + v1alpha1.PEConfigKey, v1alpha1.PortTableMountPath + "/" + v1alpha1.PortTableKey} {
		if !strings.Contains(args, want) {
			t.Errorf("args %q do not name %s", args, want)
		}
	}
	if errs := validation.IsDNS1123Subdomain(pod.Name); len(errs) > 0 {
		t.Errorf("pod name: %v", errs)
	}
}

func TestPodLaunchZeroAndNoInputs(t *testing.T) {
	pe := testPE()
	pe.Spec.LaunchCount, pe.Spec.InputPorts = 0, 0
	pod := Pod(pe, nil, "")
	if pod.Name != "job-pe-2-0" || pod.Labels[v1alpha1.LabelLaunch] != "0" {
		t.Errorf("name %s launch label %q", pod.Name, pod.Labels[v1alpha1.LabelLaunch])
	}
	if d := cmp.Diff([]corev1.ContainerPort{{Name: "health", ContainerPort: 9090, Protocol: corev1.ProtocolTCP}}, pod.Spec.Containers[0].Ports); d != "" {
		t.Errorf("ports (-want +got):\n%s", d)
	}
}

func TestPodImage(t *testing.T) {
	for _, tc := range []struct{ template, def, want string }{
		{"tmpl:1", "def:1", "tmpl:1"},
		{"tmpl:1", "", "tmpl:1"},
		{"", "def:1", "def:1"},
		{"", "", DefaultPEImage},
	} {
		pe := testPE()
		pe.Spec.Template.Image = tc.template
		if got := Pod(pe, nil, tc.def).Spec.Containers[0].Image; got != tc.want {
			t.Errorf("template %q default %q: image %q, want %q", tc.template, tc.def, got, tc.want)
		}
	}
}

func pool(name string, exclusive bool, sel map[string]string) *v1alpha1.HostPool {
	return &v1alpha1.HostPool{
		ObjectMeta: metav1.ObjectMeta{Name: app.HostPoolName("job", name), Namespace: "ns"},
		Spec:       v1alpha1.HostPoolSpec{Name: name, Exclusive: exclusive, NodeSelector: sel},
	}
}

func req(k, v string) corev1.NodeSelectorRequirement {
	return corev1.NodeSelectorRequirement{Key: k, Operator: corev1.NodeSelectorOpIn, Values: []string{v}}
}

func TestPodHostPools(t *testing.T) {
	for _, tc := range []struct {
		name  string
		pools []*v1alpha1.HostPool
		exprs []corev1.NodeSelectorRequirement // one term, ANDed
		tols  []corev1.Toleration
	}{
		{name: "no pools"},
		{name: "pool without selector", pools: []*v1alpha1.HostPool{pool("any", false, nil)}},
		{name: "selector keys sorted",
			pools: []*v1alpha1.HostPool{pool("p", false, map[string]string{"zone": "a", "disk": "ssd", "m": "x"})},
			exprs: []corev1.NodeSelectorRequirement{req("disk", "ssd"), req("m", "x"), req("zone", "a")}},
		{name: "every pool must match",
			pools: []*v1alpha1.HostPool{pool("a", false, map[string]string{"tier": "edge"}), pool("b", false, map[string]string{"gpu": "yes", "arch": "arm"})},
			exprs: []corev1.NodeSelectorRequirement{req("tier", "edge"), req("arch", "arm"), req("gpu", "yes")}},
		{name: "exclusive pool tolerates its taint",
			pools: []*v1alpha1.HostPool{pool("gold", true, map[string]string{"tier": "gold"})},
			exprs: []corev1.NodeSelectorRequirement{req("tier", "gold")},
			tols:  []corev1.Toleration{{Key: "streams.sluice.dev/pool", Operator: corev1.TolerationOpEqual, Value: "gold", Effect: corev1.TaintEffectNoSchedule}}},
		{name: "exclusive pool without selector still tolerates",
			pools: []*v1alpha1.HostPool{pool("gold", true, nil), pool("silver", false, nil)},
			tols:  []corev1.Toleration{{Key: "streams.sluice.dev/pool", Operator: corev1.TolerationOpEqual, Value: "gold", Effect: corev1.TaintEffectNoSchedule}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pe := testPE()
			for _, p := range tc.pools {
				pe.Spec.Placement.HostPools = append(pe.Spec.Placement.HostPools, p.Spec.Name)
			}
			pod := Pod(pe, tc.pools, "")
			var got []corev1.NodeSelectorRequirement
			if a := pod.Spec.Affinity; a != nil && a.NodeAffinity != nil {
				terms := a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
				// Terms are ORed by Kubernetes: all pools must be in one term.
				if len(terms) != 1 {
					t.Fatalf("%d node selector terms, want 1", len(terms))
				}
				got = terms[0].MatchExpressions
				if a.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution != nil {
					t.Errorf("preferred node affinity set")
				}
			}
			if d := cmp.Diff(tc.exprs, got); d != "" {
				t.Errorf("node affinity (-want +got):\n%s", d)
			}
			if tc.exprs == nil && pod.Spec.Affinity != nil {
				t.Errorf("affinity without selectors: %+v", pod.Spec.Affinity)
			}
			if d := cmp.Diff(tc.tols, pod.Spec.Tolerations); d != "" {
				t.Errorf("tolerations (-want +got):\n%s", d)
			}
			// The toleration matches the taint nodes of the pool carry.
			for _, p := range tc.pools {
				taint := corev1.Taint{Key: v1alpha1.TaintPool, Value: p.Spec.Name, Effect: corev1.TaintEffectNoSchedule}
				tolerated := false
				for _, tol := range pod.Spec.Tolerations {
					tolerated = tolerated || tol.ToleratesTaint(&taint)
				}
				if tolerated != p.Spec.Exclusive {
					t.Errorf("pool %s exclusive=%v but tolerated=%v", p.Spec.Name, p.Spec.Exclusive, tolerated)
				}
			}
		})
	}
}

func TestPodColocationExlocation(t *testing.T) {
	pe := testPE()
	pe.Spec.Placement.Colocate = []string{"c1", "c2"}
	pe.Spec.Placement.Exlocate = []string{"x"}
	pod := Pod(pe, nil, "")
	for k, v := range map[string]string{
		"colocate.streams.sluice.dev/c1": "job",
		"colocate.streams.sluice.dev/c2": "job",
		"exlocate.streams.sluice.dev/x":  "job",
	} {
		if pod.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, pod.Labels[k], v)
		}
	}
	for k, v := range pod.Labels {
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			t.Errorf("label key %q: %v", k, errs)
		}
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			t.Errorf("label value %q: %v", v, errs)
		}
	}
	a := pod.Spec.Affinity
	if a == nil || a.PodAffinity == nil || a.PodAntiAffinity == nil || a.NodeAffinity != nil {
		t.Fatalf("affinity %+v", a)
	}
	term := func(key string) corev1.PodAffinityTerm {
		return corev1.PodAffinityTerm{LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{key: "job"}}, TopologyKey: "kubernetes.io/hostname"}
	}
	if d := cmp.Diff([]corev1.PodAffinityTerm{term("colocate.streams.sluice.dev/c1"), term("colocate.streams.sluice.dev/c2")},
		a.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution); d != "" {
		t.Errorf("pod affinity (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]corev1.PodAffinityTerm{term("exlocate.streams.sluice.dev/x")},
		a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution); d != "" {
		t.Errorf("pod anti-affinity (-want +got):\n%s", d)
	}
	if a.PodAffinity.PreferredDuringSchedulingIgnoredDuringExecution != nil || a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution != nil {
		t.Errorf("preferred terms set: placement must be required")
	}
	// A peer PE's pod with the same tag matches the selector; a pod of
	// another job with the same tag does not.
	peer := testPE()
	peer.Name = "job-pe-5"
	peer.Spec.Placement.Colocate = []string{"c1"}
	peerPod := Pod(peer, nil, "")
	other := testPE()
	other.Spec.JobName = "other"
	other.Spec.Placement.Colocate = []string{"c1"}
	otherPod := Pod(other, nil, "")
	sel, err := metav1.LabelSelectorAsSelector(a.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution[0].LabelSelector)
	if err != nil {
		t.Fatal(err)
	}
	// The first pod of a colocation group can only be scheduled if it
	// matches its own affinity term.
	if !sel.Matches(labels.Set(pod.Labels)) {
		t.Errorf("pod does not match its own colocation selector %v", sel)
	}
	if !sel.Matches(labels.Set(peerPod.Labels)) || sel.Matches(labels.Set(otherPod.Labels)) {
		t.Errorf("colocation selector %v: peer %v, other job %v", sel, sel.Matches(labels.Set(peerPod.Labels)), sel.Matches(labels.Set(otherPod.Labels)))
	}
}

func TestPodWithPoolsAndTags(t *testing.T) {
	pe := testPE()
	pe.Spec.Placement = v1alpha1.PEPlacement{HostPools: []string{"p"}, Exlocate: []string{"x"}}
	pod := Pod(pe, []*v1alpha1.HostPool{pool("p", true, map[string]string{"k": "v"})}, "")
	a := pod.Spec.Affinity
	if a == nil || a.NodeAffinity == nil || a.PodAntiAffinity == nil || a.PodAffinity != nil {
		t.Fatalf("affinity %+v", a)
	}
	if len(pod.Spec.Tolerations) != 1 {
		t.Errorf("tolerations %v", pod.Spec.Tolerations)
	}
}

func TestPodDeterministic(t *testing.T) {
	pe := testPE()
	pe.Spec.Placement = v1alpha1.PEPlacement{HostPools: []string{"a", "b"}, Colocate: []string{"c"}, Exlocate: []string{"x", "y"}}
	pools := []*v1alpha1.HostPool{
		pool("a", true, map[string]string{"z": "1", "y": "2", "x": "3", "w": "4"}),
		pool("b", false, map[string]string{"q": "1", "p": "2"}),
	}
	first := Pod(pe, pools, "img")
	for i := 0; i < 20; i++ { // map iteration order varies between calls
		if d := cmp.Diff(first, Pod(pe, pools, "img")); d != "" {
			t.Fatalf("Pod is not deterministic:\n%s", d)
		}
	}
}

func plan(t *testing.T) *app.Plan {
	t.Helper()
	s := &v1alpha1.JobSpec{Application: v1alpha1.Application{
		Operators: []v1alpha1.Operator{
			{Name: "src", Kind: v1alpha1.KindSource, Params: &v1alpha1.OperatorParams{Rate: ptr.To[int64](10)}},
			{Name: "fork", Kind: v1alpha1.KindSplit},
			{Name: "join", Kind: v1alpha1.KindUnion, HostPool: "p"},
			{Name: "sink", Kind: v1alpha1.KindSink},
		},
		Streams: []v1alpha1.Stream{
			{From: v1alpha1.Endpoint{Operator: "src"}, To: v1alpha1.Endpoint{Operator: "fork"}},
			{From: v1alpha1.Endpoint{Operator: "fork", Port: 1}, To: v1alpha1.Endpoint{Operator: "join", Port: 1}},
			{From: v1alpha1.Endpoint{Operator: "fork"}, To: v1alpha1.Endpoint{Operator: "join"}},
			{From: v1alpha1.Endpoint{Operator: "join"}, To: v1alpha1.Endpoint{Operator: "sink"}},
		},
	},
		Placement: v1alpha1.Placement{HostPools: []v1alpha1.HostPoolSpec{{Name: "p", Exclusive: true}}},
		Fusion:    v1alpha1.Fusion{Mode: v1alpha1.FusionManual, Groups: []v1alpha1.FusionGroup{{Operators: []string{"src", "fork"}}}},
	}
	p, errs := app.Build("ns", "job", s)
	if len(errs) > 0 {
		t.Fatal(errs.ToAggregate())
	}
	return p
}

func checkJobOwned(t *testing.T, what string, m metav1.ObjectMeta, name, role string) {
	t.Helper()
	if m.Name != name || m.Namespace != "ns" {
		t.Errorf("%s: %s/%s, want ns/%s", what, m.Namespace, m.Name, name)
	}
	if m.Labels[v1alpha1.LabelJob] != "job" || m.Labels[v1alpha1.LabelRole] != role {
		t.Errorf("%s: labels %v", what, m.Labels)
	}
	want := []metav1.OwnerReference{{APIVersion: "streams.sluice.dev/v1alpha1", Kind: "Job", Name: "job", UID: "job-uid",
		Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}}
	if d := cmp.Diff(want, m.OwnerReferences); d != "" {
		t.Errorf("%s: owner (-want +got):\n%s", what, d)
	}
}

func TestConfigMapsReadBack(t *testing.T) {
	p := plan(t)
	job := testJob()
	cm := PortTable(job, p)
	checkJobOwned(t, "port table", cm.ObjectMeta, "job-ports", v1alpha1.RolePortTable)
	table, err := peconfig.ParsePortTable([]byte(cm.Data[v1alpha1.PortTableKey]))
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(&p.PortTable, table); d != "" {
		t.Errorf("port table read back (-plan +parsed):\n%s", d)
	}
	if e, ok := table.Lookup("join", 1); !ok || e.PE != "job-pe-1" || e.PEPort != 0 {
		t.Errorf("Lookup(join, 1) on the parsed table: %+v %v", e, ok)
	}
	if len(cm.Data) != 1 {
		t.Errorf("port table keys: %v", cm.Data)
	}
	for i := range p.PEs {
		pe := &p.PEs[i]
		cm := PEConfig(job, pe)
		checkJobOwned(t, "pe config", cm.ObjectMeta, pe.Name, v1alpha1.RolePEConfig)
		if cm.Labels[v1alpha1.LabelPE] != pe.Name {
			t.Errorf("pe config %s: pe label %q", pe.Name, cm.Labels[v1alpha1.LabelPE])
		}
		got, err := peconfig.ParsePE([]byte(cm.Data[v1alpha1.PEConfigKey]))
		if err != nil {
			t.Fatalf("%s: %v", pe.Name, err)
		}
		if d := cmp.Diff(&pe.Config, got); d != "" {
			t.Errorf("%s read back (-plan +parsed):\n%s", pe.Name, d)
		}
	}
}

func TestPEService(t *testing.T) {
	p := plan(t)
	job := testJob()
	// PE 0 (src, fork) has no inputs: no Service.
	if svc := PEService(job, &p.PEs[0]); svc != nil {
		t.Errorf("service for a PE without inputs: %+v", svc)
	}
	join := &p.PEs[1]
	svc := PEService(job, join)
	if svc == nil {
		t.Fatal("no service for a PE with inputs")
	}
	checkJobOwned(t, "service", svc.ObjectMeta, "job-pe-1", v1alpha1.RolePEService)
	if errs := validation.IsDNS1035Label(svc.Name); len(errs) > 0 {
		t.Errorf("service name: %v", errs)
	}
	if svc.Spec.ClusterIP != corev1.ClusterIPNone || !svc.Spec.PublishNotReadyAddresses {
		t.Errorf("service not headless with not-ready addresses: %q %v", svc.Spec.ClusterIP, svc.Spec.PublishNotReadyAddresses)
	}
	wantPorts := []corev1.ServicePort{
		{Name: "in-0", Port: 10000, Protocol: corev1.ProtocolTCP},
		{Name: "in-1", Port: 10001, Protocol: corev1.ProtocolTCP},
	}
	if d := cmp.Diff(wantPorts, svc.Spec.Ports); d != "" {
		t.Errorf("ports (-want +got):\n%s", d)
	}
	// Every service port is a port the pod listens on.
	peObj := ProcessingElement(job, join)
	peObj.UID = "pe-uid"
	pod := Pod(peObj, nil, "")
	listening := map[int32]bool{}
	for _, cp := range pod.Spec.Containers[0].Ports {
		listening[cp.ContainerPort] = true
	}
	for _, sp := range svc.Spec.Ports {
		if !listening[sp.Port] {
			t.Errorf("service port %d has no container port", sp.Port)
		}
	}
	// The selector picks this PE's pods of any launch, not its ConfigMap's
	// or another PE's.
	sel := labels.SelectorFromSet(svc.Spec.Selector)
	if !sel.Matches(labels.Set(pod.Labels)) {
		t.Errorf("selector %v does not match the PE's pod %v", sel, pod.Labels)
	}
	if sel.Matches(labels.Set(PEConfig(job, join).Labels)) {
		t.Errorf("selector matches the PE's ConfigMap")
	}
	peObj.Spec.LaunchCount = 9
	if !sel.Matches(labels.Set(Pod(peObj, nil, "").Labels)) {
		t.Errorf("selector misses a later launch")
	}
	other := ProcessingElement(job, &p.PEs[2])
	if sel.Matches(labels.Set(Pod(other, nil, "").Labels)) {
		t.Errorf("selector matches another PE's pod")
	}
}

func TestHostPoolAndProcessingElement(t *testing.T) {
	p := plan(t)
	job := testJob()
	job.Spec.PE = v1alpha1.PETemplate{Image: "img", RestartPolicy: &v1alpha1.PERestartPolicy{RestartFailed: true}}
	hp := HostPool(job, p.HostPools[0])
	checkJobOwned(t, "host pool", hp.ObjectMeta, "job-p", "host-pool")
	if d := cmp.Diff(p.HostPools[0], hp.Spec); d != "" {
		t.Errorf("host pool spec (-want +got):\n%s", d)
	}
	for i := range p.PEs {
		plan := &p.PEs[i]
		pe := ProcessingElement(job, plan)
		checkJobOwned(t, "pe", pe.ObjectMeta, plan.Name, "pe")
		want := v1alpha1.ProcessingElementSpec{
			JobName: "job", Index: plan.Index, Operators: plan.Operators,
			InputPorts: int32(len(plan.Config.Inputs)), LaunchCount: 0,
			Placement: plan.Placement, Template: job.Spec.PE,
		}
		if d := cmp.Diff(want, pe.Spec); d != "" {
			t.Errorf("%s spec (-want +got):\n%s", plan.Name, d)
		}
	}
}

func TestPodRestartPolicyFollowsRestartFailed(t *testing.T) {
	for _, c := range []struct {
		policy *v1alpha1.PERestartPolicy
		want   corev1.RestartPolicy
	}{
		{nil, corev1.RestartPolicyOnFailure},
		{&v1alpha1.PERestartPolicy{RestartFailed: true}, corev1.RestartPolicyOnFailure},
		{&v1alpha1.PERestartPolicy{RestartFailed: false, RestartDeleted: true, RestartCompleted: true}, corev1.RestartPolicyNever},
	} {
		pe := &v1alpha1.ProcessingElement{}
		pe.Name, pe.Namespace, pe.Spec.LaunchCount = "j-pe-0", "ns", 1
		pe.Spec.Template.RestartPolicy = c.policy
		if got := Pod(pe, nil, "img").Spec.RestartPolicy; got != c.want {
			t.Errorf("policy %+v: pod restart policy %q, want %q", c.policy, got, c.want)
		}
	}
}
