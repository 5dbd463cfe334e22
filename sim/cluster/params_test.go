package cluster

import (
	"strings"
	"testing"
	"time"
)

func TestEveryDefaultHasASource(t *testing.T) {
	p := DefaultParams()
	prov, err := p.Provenance()
	if err != nil {
		t.Fatal(err)
	}
	if len(prov) < 60 {
		t.Fatalf("only %d parameters", len(prov))
	}
	for _, k := range ProvenanceKeys(prov) {
		src := prov[k].Source
		if !(strings.HasPrefix(src, "kubernetes:") || strings.HasPrefix(src, "kind:") || strings.HasPrefix(src, "sluice:") || strings.HasPrefix(src, "guess:")) {
			t.Errorf("%s: source %q", k, src)
		}
	}
	// The Kubernetes 1.32 defaults the tests rely on are marked as such.
	for _, k := range []string{"nodelifecycle.nodeMonitorGracePeriod", "nodelifecycle.defaultTolerationSeconds", "kubelet.backoffInitial", "kubelet.backoffMax", "scheduler.podMaxInUnschedulablePodsDuration"} {
		if !strings.HasPrefix(prov[k].Source, "kubernetes:") {
			t.Errorf("%s: %q", k, prov[k].Source)
		}
	}
}

func TestOverride(t *testing.T) {
	p := DefaultParams()
	err := p.Override("nodelifecycle", []byte(`nodeMonitorGracePeriod: {value: 40s, source: "kubernetes: default before 1.32"}`))
	if err != nil {
		t.Fatal(err)
	}
	if p.NodeLifecycle.NodeMonitorGracePeriod.D() != 40*time.Second || p.NodeLifecycle.NodeMonitorPeriod.D() != 5*time.Second {
		t.Fatalf("%+v", p.NodeLifecycle)
	}
	prov, _ := p.Provenance()
	if prov["nodelifecycle.nodeMonitorGracePeriod"].Source != "kubernetes: default before 1.32" {
		t.Fatalf("%+v", prov["nodelifecycle.nodeMonitorGracePeriod"])
	}
	if err := p.Override("nope", nil); err == nil {
		t.Fatal("unknown model accepted")
	}
}
