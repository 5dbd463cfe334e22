package spec

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const workloads = "../../workloads"

const valid = `
name: demo
workload: pipeline-${pes}.yaml
pe:
  cpu: ${cpu}
cluster:
  name: small
  nodes:
  - {name: worker, count: 2, cpu: "2", memory: 4Gi, labels: {zone: a}}
faults:
- {at: 20s, action: "${fault}", pe: "1"}
- {at: 10s, action: stopNode, node: worker-1}
observe: 30s
timeout: 5m
sweep:
- {name: pes, values: [2, 4]}
- {name: cpu, values: [100m, 1]}
- {name: fault, values: [deletePod, killContainer]}
repetitions: 3
seed: 7
metrics: [submission, recovery_connected]
plot: {x: pes, xLabel: PEs (count), series: [cpu], metrics: [submission]}
`

func mustParse(t *testing.T, s string) *Definition {
	t.Helper()
	d, err := Parse([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestValidDefinition(t *testing.T) {
	d := mustParse(t, valid)
	if errs := d.Validate(workloads); len(errs) > 0 {
		t.Fatal(errs)
	}
	// Numbers in YAML lists are kept as their text.
	if diff := cmp.Diff([]string{"2", "4"}, d.Sweep[0].Values); diff != "" {
		t.Error(diff)
	}
}

func TestStrictDecoding(t *testing.T) {
	for name, tc := range map[string]struct{ doc, want string }{
		"unknown top-level": {strings.Replace(valid, "seed: 7", "seed: 7\nrepetitons: 2", 1), `unknown field "repetitons"`},
		"unknown nested":    {strings.Replace(valid, "count: 2", "count: 2, gpus: 1", 1), `unknown field "gpus"`},
		"duplicate field":   {strings.Replace(valid, "seed: 7", "seed: 7\nseed: 8", 1), `"seed" already set`},
		"wrong type":        {strings.Replace(valid, "repetitions: 3", "repetitions: three", 1), "repetitions"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestValidationErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		from, to string
		want     []string
	}{
		"bad name":            {"name: demo", "name: Demo_1", []string{"name: Invalid value"}},
		"no timeout":          {"timeout: 5m", "timeout: 0s", []string{"timeout: Required"}},
		"no repetitions":      {"repetitions: 3", "repetitions: 0", []string{"repetitions: Invalid value: 0: must be at least 1"}},
		"unknown metric":      {"metrics: [submission, ", "metrics: [submisson, ", []string{`metrics[0]: Unsupported value: "submisson"`, "plot.metrics[0]"}},
		"undeclared ref":      {"pipeline-${pes}", "pipeline-${n}", []string{"workload: Invalid value", "${n} is not a sweep parameter", "sweep[0].name"}},
		"duplicate value":     {"values: [2, 4]", "values: [2, 2]", []string{"sweep[0].values[1]: Duplicate value"}},
		"bad quantity":        {`cpu: "2"`, `cpu: two`, []string{"cluster.nodes[0].cpu: Invalid value"}},
		"zero nodes":          {"count: 2", "count: 0", []string{"cluster.nodes[0].count"}},
		"bad plot x":          {"x: pes", "x: size", []string{"plot.x: Not found"}},
		"missing workload":    {"pipeline-${pes}", "missing-${pes}", []string{"sweep point pes=2;cpu=100m;fault=deletePod: workload", "no such file"}},
		"bad fault value":     {"values: [deletePod, killContainer]", "values: [deletePod, explode]", []string{`sweep point pes=2;cpu=100m;fault=explode: faults[0].action: Unsupported value: "explode"`}},
		"pe out of range":     {`pe: "1"`, `pe: "5"`, []string{"faults[0].pe: Invalid value", "the workload has 2 PEs"}},
		"unknown node":        {"node: worker-1", "node: worker-9", []string{`faults[1].node: Unsupported value: "worker-9"`}},
		"propagation on pod":  {`pe: "1"}`, `pe: "1", propagation: Foreground}`, []string{"only deleteJob has a propagation"}},
		"bad swept quantity":  {"values: [100m, 1]", "values: [100m, lots]", []string{"cpu=lots", "pe.cpu: Invalid value"}},
		"negative fault time": {"at: 20s", "at: -1s", []string{"faults[0].at: Invalid value"}},
		"limit below request": {"cpu: ${cpu}", "cpu: ${cpu}\n  cpuLimit: 200m", []string{"cpu=1;", "pe.cpuLimit: Invalid value: \"200m\": below the CPU request 1"}},
	} {
		t.Run(name, func(t *testing.T) {
			if !strings.Contains(valid, tc.from) {
				t.Fatalf("fixture lacks %q", tc.from)
			}
			d := mustParse(t, strings.Replace(valid, tc.from, tc.to, 1))
			errs := d.Validate(workloads)
			if len(errs) == 0 {
				t.Fatal("no error")
			}
			got := errs.ToAggregate().Error()
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("errors %q lack %q", got, w)
				}
			}
		})
	}
}

func TestUnusedParameter(t *testing.T) {
	d := mustParse(t, strings.Replace(valid, "- {name: fault", "- {name: extra, values: [a]}\n- {name: fault", 1))
	errs := d.Validate(workloads)
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "not referenced as ${extra}") {
		t.Fatalf("got %v", errs)
	}
}

func TestSweepExpansion(t *testing.T) {
	d := mustParse(t, valid)
	var got []string
	for _, p := range d.Points() {
		got = append(got, p.String())
	}
	want := []string{
		"pes=2;cpu=100m;fault=deletePod", "pes=2;cpu=100m;fault=killContainer",
		"pes=2;cpu=1;fault=deletePod", "pes=2;cpu=1;fault=killContainer",
		"pes=4;cpu=100m;fault=deletePod", "pes=4;cpu=100m;fault=killContainer",
		"pes=4;cpu=1;fault=deletePod", "pes=4;cpu=1;fault=killContainer",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Error(diff)
	}
	d.Sweep = nil
	if p := d.Points(); len(p) != 1 || len(p[0]) != 0 {
		t.Errorf("no sweep: %v, want one empty point", p)
	}
}

func TestTrials(t *testing.T) {
	d := mustParse(t, valid)
	trials, err := d.Trials(workloads)
	if err != nil {
		t.Fatal(err)
	}
	if len(trials) != 8*3 {
		t.Fatalf("%d trials", len(trials))
	}
	seeds := map[int64]bool{}
	for i, tr := range trials {
		if tr.Index != i || tr.Total != 24 || tr.Repetition != i%3 {
			t.Errorf("trial %d: index %d total %d rep %d", i, tr.Index, tr.Total, tr.Repetition)
		}
		seeds[tr.Seed] = true
	}
	if len(seeds) != 24 {
		t.Errorf("%d distinct seeds of 24 trials", len(seeds))
	}
	// pes=4, cpu=1, killContainer, rep 2.
	tr := trials[7*3+2]
	sc := tr.Scenario
	if tr.Point.String() != "pes=4;cpu=1;fault=killContainer" || sc.WorkloadFile != "pipeline-4.yaml" || sc.PEs != 4 {
		t.Fatalf("trial %v: workload %s with %d PEs", tr.Point, sc.WorkloadFile, sc.PEs)
	}
	if got := sc.Job.Spec.PE.Resources.Requests.Cpu().String(); got != "1" {
		t.Errorf("cpu request %s, want the swept 1", got)
	}
	if got := sc.Job.Spec.PE.Resources.Limits.Cpu().String(); got != "1" {
		t.Errorf("cpu limit %s, want the request without cpuLimit", got)
	}
	// Faults are sorted by time and typed.
	want := []ResolvedFault{
		{At: 10e9, Action: StopNode, PE: -1, Node: "worker-1", Propagation: "Background"},
		{At: 20e9, Action: KillContainer, PE: 1, Propagation: "Background"},
	}
	if diff := cmp.Diff(want, sc.Faults); diff != "" {
		t.Error(diff)
	}
	// Resolving one point must not leak the override into another's Job.
	if got := trials[0].Scenario.Job.Spec.PE.Resources.Requests.Cpu().String(); got != "100m" {
		t.Errorf("first trial cpu %s", got)
	}
}

func TestDeriveSeed(t *testing.T) {
	p := Point{{"pes", "4"}}
	a := DeriveSeed(1, p, 0)
	if a != DeriveSeed(1, p, 0) {
		t.Fatal("not a function of its inputs")
	}
	for _, other := range []int64{DeriveSeed(2, p, 0), DeriveSeed(1, p, 1), DeriveSeed(1, Point{{"pes", "8"}}, 0)} {
		if other == a {
			t.Errorf("seed collision %d", a)
		}
		if other < 0 {
			t.Errorf("negative seed %d", other)
		}
	}
	// Pinned: a change of the derivation changes every golden file.
	if got := DeriveSeed(42, Point{{"fault", "deletePod"}}, 3); got != pinnedSeed {
		t.Errorf("DeriveSeed(42, fault=deletePod, 3) = %d, pinned %d", got, pinnedSeed)
	}
}

func TestPointRoundTrip(t *testing.T) {
	p := Point{{"pes", "4"}, {"cpu", "500m"}}
	q, err := ParsePoint(p.String())
	if err != nil || !cmp.Equal(p, q) {
		t.Fatalf("%v %v", q, err)
	}
	if _, err := ParsePoint("pes"); err == nil {
		t.Error("accepted a pair without =")
	}
}

// Every committed definition loads and validates against the committed workloads.
func TestCommittedDefinitions(t *testing.T) {
	names, err := Names("../defs")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"checkpoint", "gc", "latency", "oversubscription", "recovery", "submission"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Fatal(diff)
	}
	for _, n := range names {
		d, err := LoadNamed("../defs", n, workloads)
		if err != nil {
			t.Fatal(err)
		}
		if d.Name != n {
			t.Errorf("%s defines %q", filepath.Join("defs", n), d.Name)
		}
		if _, err := d.Trials(workloads); err != nil {
			t.Error(err)
		}
	}
}

const pinnedSeed = 4329528493111833663

func TestCPULimit(t *testing.T) {
	d := mustParse(t, strings.Replace(valid, "cpu: ${cpu}", "cpu: ${cpu}\n  cpuLimit: \"2\"", 1))
	trials, err := d.Trials(workloads)
	if err != nil {
		t.Fatal(err)
	}
	r := trials[0].Scenario.Job.Spec.PE.Resources
	if r.Requests.Cpu().String() != "100m" || r.Limits.Cpu().String() != "2" {
		t.Errorf("requests %v limits %v", r.Requests, r.Limits)
	}
}
