package integration

// The user's path: Jobs as YAML files, sent to the API server the way
// kubectl sends them (unstructured JSON of what the file says, strict field
// validation, no Go struct and no defaulting by the test), then driven by
// the operator. Go structs serialize every optional section, so the other
// tests of this package cannot see what a Job without them does.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/integration/realapi"
)

// strict is kubectl's default field validation (--validate=strict).
var strict = client.FieldValidation(metav1.FieldValidationStrict)

// readJobFile reads a Job file as kubectl does: YAML to JSON to an
// unstructured object, nothing added.
func readJobFile(t *testing.T, path string) *unstructured.Unstructured {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	j, err := yaml.YAMLToJSON(b)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(j); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if u.GetKind() != "Job" || u.GetAPIVersion() != v1alpha1.GroupVersion.String() {
		t.Fatalf("%s: a %s %s, not a Job", path, u.GetAPIVersion(), u.GetKind())
	}
	return u
}

// jobFiles lists every Job file users are shown: the workloads and the
// samples.
func jobFiles(t *testing.T) []string {
	t.Helper()
	root := realapi.RepoRoot()
	var files []string
	for _, pattern := range []string{"workloads/*.yaml", "config/samples/streams_*.yaml"} {
		m, err := filepath.Glob(filepath.Join(root, pattern))
		if err != nil || len(m) == 0 {
			t.Fatalf("no files %s: %v", pattern, err)
		}
		files = append(files, m...)
	}
	return files
}

// submitJob creates u in namespace ns as kubectl would.
func submitJob(ns string, u *unstructured.Unstructured) error {
	u = u.DeepCopy()
	u.SetNamespace(ns)
	return k8s.Create(context.Background(), u, strict)
}

// jobChildren counts, by kind, the objects in ns that a Job's submission
// creates.
func jobChildren(t *testing.T, ns string) map[string]int {
	t.Helper()
	ctx := context.Background()
	out := map[string]int{}
	for kind, l := range map[string]client.ObjectList{
		"ProcessingElement": &v1alpha1.ProcessingElementList{}, "HostPool": &v1alpha1.HostPoolList{},
		"ConsistentRegion": &v1alpha1.ConsistentRegionList{}, "ParallelRegion": &v1alpha1.ParallelRegionList{},
		"Export": &v1alpha1.ExportList{}, "Import": &v1alpha1.ImportList{}, "Service": &corev1.ServiceList{},
		"Pod": &corev1.PodList{}, "ServiceAccount": &corev1.ServiceAccountList{},
	} {
		if err := k8s.List(ctx, l, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		if n := meta.LenList(l); n > 0 {
			if kind == "ServiceAccount" {
				n-- // the namespace's default
			}
			if n > 0 {
				out[kind] = n
			}
		}
	}
	var cms corev1.ConfigMapList
	if err := k8s.List(ctx, &cms, client.InNamespace(ns), client.HasLabels{v1alpha1.LabelJob}); err != nil {
		t.Fatal(err)
	}
	if len(cms.Items) > 0 {
		out["ConfigMap"] = len(cms.Items)
	}
	return out
}

// Every Job file users are shown, applied as written, is valid, gets its
// PEs, and (with the test playing scheduler and kubelet) is Submitted.
func TestUserJobFilesAreSubmitted(t *testing.T) {
	defer startOperator(t)()
	files := jobFiles(t)
	nsOf := map[string]string{}
	jobOf := map[string]string{}
	for _, f := range files {
		u := readJobFile(t, f)
		ns := namespace(t)
		if err := submitJob(ns, u); err != nil {
			t.Fatalf("%s: kubectl apply would fail: %v", f, err)
		}
		nsOf[f], jobOf[f] = ns, u.GetName()
	}
	pending := slices.Clone(files)
	started := time.Now()
	err := realapi.Eventually(4*time.Minute, func() (bool, string) {
		var still []string
		var state string
		for _, f := range pending {
			ns := nsOf[f]
			if _, err := realapi.Kubelet(context.Background(), k8s, ns, "node-a"); err != nil {
				return false, err.Error()
			}
			j := &v1alpha1.Job{}
			if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: jobOf[f]}, j); err != nil {
				return false, err.Error()
			}
			if c := meta.FindStatusCondition(j.Status.Conditions, v1alpha1.ConditionValid); c != nil && c.Status == metav1.ConditionFalse {
				t.Errorf("%s: Valid=False: %s", filepath.Base(f), c.Message)
				continue
			}
			if j.Status.Phase != v1alpha1.JobSubmitted {
				still = append(still, f)
				state += fmt.Sprintf("%s: phase %q, %d/%d connected; ", filepath.Base(f), j.Status.Phase, j.Status.ConnectedPEs, j.Status.PEs)
				continue
			}
			var pes v1alpha1.ProcessingElementList
			if err := k8s.List(context.Background(), &pes, client.InNamespace(ns)); err != nil {
				return false, err.Error()
			}
			if j.Status.PEs == 0 || len(pes.Items) != int(j.Status.PEs) {
				t.Errorf("%s: Submitted with status.pes %d and %d PE objects", filepath.Base(f), j.Status.PEs, len(pes.Items))
			}
		}
		pending = still
		return len(still) == 0, state
	})
	if err != nil {
		t.Fatalf("Job files not Submitted: %v", err)
	}
	t.Logf("%d Job files submitted in %v", len(files), time.Since(started).Round(time.Millisecond))
}

// A fault put into a Job file, and what the platform must answer: the API
// server refuses the Job naming the field (refused), or the operator marks
// it Valid=False naming the field and creates nothing (marked).
type fault struct {
	name string
	// base is the sample (config/samples) the fault is put into.
	base string
	// needs lists the optional spec sections the fault depends on; the
	// bare form keeps them.
	needs  []string
	mutate func(spec map[string]any)
	// refused or marked is the field path the answer must name.
	refused, marked string
	// message, when set, must be part of the answer too.
	message string
}

// Optional sections of a Job's spec and application.
var (
	optionalSpec = []string{"fusion", "placement", "pe", "submissionTimeout", "checkpointStore", "retry"}
	optionalApp  = []string{"consistentRegions", "parallelRegions"}
)

// bare removes every optional section the fault does not need.
func bare(spec map[string]any, needs []string) {
	for _, s := range optionalSpec {
		if !slices.Contains(needs, s) {
			delete(spec, s)
		}
	}
	app := spec["application"].(map[string]any)
	for _, s := range optionalApp {
		if !slices.Contains(needs, s) {
			delete(app, s)
		}
	}
}

// explicit writes out every optional section the file left out, with the
// values a user would write for "the default".
func explicit(spec map[string]any, _ []string) {
	explicitSpec(spec)
	app := spec["application"].(map[string]any)
	for _, s := range optionalApp {
		if _, ok := app[s]; !ok {
			app[s] = []any{}
		}
	}
}

// explicitSpec writes out the optional sections of the spec itself.
func explicitSpec(spec map[string]any) {
	defaults := map[string]any{
		"fusion": map[string]any{"mode": "perOperator"}, "placement": map[string]any{}, "pe": map[string]any{},
		"submissionTimeout": "5m", "retry": int64(0),
		"checkpointStore": map[string]any{"type": "filesystem", "path": "/var/lib/sluice/checkpoints"},
	}
	for k, v := range defaults {
		if _, ok := spec[k]; !ok {
			spec[k] = v
		}
	}
}

func ops(spec map[string]any) []any {
	return spec["application"].(map[string]any)["operators"].([]any)
}

func operator(spec map[string]any, i int) map[string]any { return ops(spec)[i].(map[string]any) }

func streams(spec map[string]any) []any {
	return spec["application"].(map[string]any)["streams"].([]any)
}

func stream(spec map[string]any, i int) map[string]any { return streams(spec)[i].(map[string]any) }

func params(op map[string]any) map[string]any {
	p, ok := op["params"].(map[string]any)
	if !ok {
		p = map[string]any{}
		op["params"] = p
	}
	return p
}

func setApp(spec map[string]any, key string, v any) { spec["application"].(map[string]any)[key] = v }

const (
	sampleJob        = "streams_v1alpha1_job.yaml"               // src -> work (map) -> sink
	samplePlaced     = "streams_v1alpha1_hostpool.yaml"          // split, union, host pool, exlocation
	sampleFused      = "streams_v1alpha1_processingelement.yaml" // manual fusion
	sampleParallel   = "streams_v1alpha1_parallelregion.yaml"
	sampleConsistent = "streams_v1alpha1_consistentregion.yaml"
	sampleExport     = "streams_v1alpha1_export.yaml"
	sampleImport     = "streams_v1alpha1_import.yaml"
)

// faults has at least one fault per validation rule, of the schema (CEL
// and OpenAPI) and of app.Validate and its planners.
var faults = []fault{
	// Refused by the API server.
	{name: "unknown operator kind", base: sampleJob, refused: "spec.application.operators[1].kind",
		mutate: func(s map[string]any) { operator(s, 1)["kind"] = "teleport" }},
	{name: "duplicate operator name", base: sampleJob, refused: "spec.application.operators[1]", message: "Duplicate value",
		mutate: func(s map[string]any) { operator(s, 1)["name"] = "src" }},
	{name: "no operators", base: sampleJob, refused: "spec.application.operators",
		mutate: func(s map[string]any) { setApp(s, "operators", []any{}); setApp(s, "streams", []any{}) }},
	{name: "operator name not a DNS label", base: sampleJob, refused: "spec.application.operators[0].name",
		mutate: func(s map[string]any) { operator(s, 0)["name"] = "Src_0" }},
	{name: "absurd source rate", base: sampleJob, refused: "spec.application.operators[0].params.rate",
		mutate: func(s map[string]any) { params(operator(s, 0))["rate"] = int64(1) << 40 }},
	{name: "misspelt field", base: sampleJob, refused: "spec.application.stream",
		mutate: func(s map[string]any) { setApp(s, "stream", streams(s)) }},
	{name: "outputs on a map", base: sampleJob, refused: "spec.application.operators[1]", message: "params.outputs is only valid for split",
		mutate: func(s map[string]any) { params(operator(s, 1))["outputs"] = int64(3) }},
	{name: "inputs on a map", base: sampleJob, refused: "spec.application.operators[1]", message: "params.inputs is only valid for union",
		mutate: func(s map[string]any) { params(operator(s, 1))["inputs"] = int64(3) }},
	{name: "fusion target without targetPEs", base: sampleJob, needs: []string{"fusion"}, refused: "spec.fusion",
		message: "fusion mode target needs targetPEs", mutate: func(s map[string]any) { s["fusion"] = map[string]any{"mode": "target"} }},
	{name: "fusion groups without mode manual", base: sampleFused, needs: []string{"fusion"}, refused: "spec.fusion",
		message: "fusion groups are only valid with mode manual",
		mutate:  func(s map[string]any) { s["fusion"].(map[string]any)["mode"] = "perOperator" }},
	{name: "s3 store without bucket", base: sampleConsistent, needs: []string{"checkpointStore", "consistentRegions"},
		refused: "spec.checkpointStore", message: "an s3 store needs endpoint and bucket",
		mutate: func(s map[string]any) { s["checkpointStore"] = map[string]any{"type": "s3", "endpoint": "minio:9000"} }},
	{name: "filesystem store without path", base: sampleConsistent, needs: []string{"checkpointStore", "consistentRegions"},
		refused: "spec.checkpointStore", message: "a filesystem store needs path",
		mutate: func(s map[string]any) { s["checkpointStore"] = map[string]any{"type": "filesystem"} }},
	{name: "host pool name not a DNS label", base: samplePlaced, needs: []string{"placement"},
		refused: "spec.placement.hostPools[0].name",
		mutate: func(s map[string]any) {
			s["placement"].(map[string]any)["hostPools"].([]any)[0].(map[string]any)["name"] = "Linux Nodes"
			operator(s, 0)["hostPool"] = "Linux Nodes"
		}},
	{name: "unknown PE restart policy field", base: sampleJob, needs: []string{"pe"}, refused: "spec.pe.restartPolicy.restartAll",
		mutate: func(s map[string]any) { s["pe"] = map[string]any{"restartPolicy": map[string]any{"restartAll": true}} }},

	// Marked Valid=False by the operator.
	{name: "job name not a DNS-1035 label", base: sampleJob, marked: "metadata.name"},
	{name: "job name too long", base: sampleJob, marked: "metadata.name"},
	{name: "stream to a missing operator", base: sampleJob, marked: "spec.application.streams[1].to.operator",
		mutate: func(s map[string]any) { stream(s, 1)["to"].(map[string]any)["operator"] = "ghost" }},
	{name: "stream from a missing port", base: sampleJob, marked: "spec.application.streams[0].from.port",
		mutate: func(s map[string]any) { stream(s, 0)["from"].(map[string]any)["port"] = int64(3) }},
	{name: "unfed input port", base: sampleJob, marked: "spec.application.operators[1]", message: "input port 0 is not fed",
		mutate: func(s map[string]any) { setApp(s, "streams", streams(s)[1:]) }},
	{name: "duplicate stream", base: sampleJob, marked: "spec.application.streams[2]",
		mutate: func(s map[string]any) { setApp(s, "streams", append(streams(s), streams(s)[1])) }},
	{name: "cycle", base: sampleJob, marked: "spec.application.streams", message: "cycle",
		mutate: func(s map[string]any) {
			operator(s, 1)["kind"] = "union"
			setApp(s, "streams", append(streams(s), map[string]any{
				"from": map[string]any{"operator": "work"}, "to": map[string]any{"operator": "work", "port": int64(1)}}))
		}},
	{name: "unknown host pool", base: samplePlaced, needs: []string{"placement"}, marked: "spec.application.operators[0].hostPool",
		mutate: func(s map[string]any) { operator(s, 0)["hostPool"] = "nowhere" }},
	{name: "node selector key not a label key", base: samplePlaced, needs: []string{"placement"},
		marked: "spec.placement.hostPools[0].nodeSelector", message: "bad key!!",
		mutate: func(s map[string]any) {
			s["placement"].(map[string]any)["hostPools"].([]any)[0].(map[string]any)["nodeSelector"] = map[string]any{"bad key!!": "x"}
		}},
	{name: "colocated and exlocated alike", base: samplePlaced, marked: "spec.application.operators[2].exlocate",
		mutate: func(s map[string]any) { operator(s, 2)["colocate"] = "spread" }},
	{name: "exlocated operators fused", base: samplePlaced, needs: []string{"fusion", "placement"}, marked: "spec.application.operators[3].exlocate",
		mutate: func(s map[string]any) {
			s["fusion"] = map[string]any{"mode": "manual", "groups": []any{map[string]any{"operators": []any{"left", "right"}}}}
		}},
	{name: "fusion group names an unknown operator", base: sampleFused, needs: []string{"fusion"},
		marked: "spec.fusion.groups[0].operators[1]",
		mutate: func(s map[string]any) {
			s["fusion"].(map[string]any)["groups"] = []any{map[string]any{"operators": []any{"src", "ghost"}}}
		}},
	{name: "consistent region without a store", base: sampleConsistent, needs: []string{"consistentRegions"},
		marked: "spec.checkpointStore", mutate: func(s map[string]any) { delete(s, "checkpointStore") }},
	{name: "consistent region names an unknown operator", base: sampleConsistent, needs: []string{"checkpointStore", "consistentRegions"},
		marked: "spec.application.consistentRegions[0].operators[3]",
		mutate: func(s map[string]any) {
			r := s["application"].(map[string]any)["consistentRegions"].([]any)[0].(map[string]any)
			r["operators"] = append(r["operators"].([]any), "ghost")
		}},
	{name: "consistent region open upstream", base: sampleConsistent, needs: []string{"checkpointStore", "consistentRegions"},
		marked: "spec.application.streams[0]",
		mutate: func(s map[string]any) {
			s["application"].(map[string]any)["consistentRegions"].([]any)[0].(map[string]any)["operators"] = []any{"agg", "sink"}
		}},
	{name: "parallel region replicates a source", base: sampleParallel, needs: []string{"parallelRegions"},
		marked: "spec.application.parallelRegions[0].operators[1]", message: "a source cannot be replicated",
		mutate: func(s map[string]any) {
			s["application"].(map[string]any)["parallelRegions"].([]any)[0].(map[string]any)["operators"] = []any{"hash", "src"}
		}},
	{name: "parallel region names an unknown operator", base: sampleParallel, needs: []string{"parallelRegions"},
		marked: "spec.application.parallelRegions[0].operators[0]",
		mutate: func(s map[string]any) {
			s["application"].(map[string]any)["parallelRegions"].([]any)[0].(map[string]any)["operators"] = []any{"ghost"}
		}},
	{name: "export without a name or properties", base: sampleExport, marked: "spec.application.operators[1].params.streamName",
		mutate: func(s map[string]any) { delete(operator(s, 1), "params") }},
	{name: "export property key not a label key", base: sampleExport, marked: "spec.application.operators[1].params.properties",
		mutate: func(s map[string]any) { params(operator(s, 1))["properties"] = map[string]any{"asset class": "fx"} }},
	{name: "import subscription not a selector", base: sampleImport, marked: "spec.application.operators[0].params.subscription",
		mutate: func(s map[string]any) { params(operator(s, 0))["subscription"] = "kind in (trades" }},
	{name: "import with a name and a subscription", base: sampleImport, marked: "spec.application.operators[0].params.subscription",
		message: "not both", mutate: func(s map[string]any) { params(operator(s, 0))["streamName"] = "trades" }},
}

// jobName is the name a fault's Job gets in a form (two faults break the
// name itself).
func (f *fault) jobName(form string) string {
	switch f.name {
	case "job name not a DNS-1035 label":
		return "1st-job-" + form
	case "job name too long":
		return "job-with-a-name-longer-than-forty-characters-" + form
	}
	return "faulty-" + form
}

// Every fault, in a Job with none of the optional sections it does not
// need and in one with all of them written out, gets its answer naming the
// field, and nothing is created for it.
func TestUserJobFaultsAreAnswered(t *testing.T) {
	defer startOperator(t)()
	samples := filepath.Join(realapi.RepoRoot(), "config", "samples")
	forms := map[string]func(map[string]any, []string){"bare": bare, "explicit": explicit}
	type pending struct {
		f        *fault
		form, ns string
	}
	var marked []pending
	var covered []string
	for i := range faults {
		f := &faults[i]
		for form, shape := range forms {
			u := readJobFile(t, filepath.Join(samples, f.base))
			spec := u.Object["spec"].(map[string]any)
			shape(spec, f.needs)
			if f.mutate != nil {
				f.mutate(spec)
			}
			u.SetName(f.jobName(form))
			ns := namespace(t)
			err := submitJob(ns, u)
			label := fmt.Sprintf("%s (%s)", f.name, form)
			switch {
			case f.refused != "":
				if err == nil || !(apierrors.IsInvalid(err) || apierrors.IsBadRequest(err)) {
					t.Errorf("%s: create: %v, want a refusal naming %s", label, err, f.refused)
					continue
				}
				if !strings.Contains(err.Error(), f.refused) || !strings.Contains(err.Error(), f.message) {
					t.Errorf("%s: refusal %q does not name %s %q", label, err, f.refused, f.message)
				}
			case err != nil:
				t.Errorf("%s: create: %v, want the Job accepted and marked invalid", label, err)
				continue
			default:
				marked = append(marked, pending{f, form, ns})
			}
			covered = append(covered, label)
		}
	}
	// Wait for every marked fault at once: one deadline, not one each.
	msgs := map[int]string{}
	_ = realapi.Eventually(time.Minute, func() (bool, string) {
		for i, p := range marked {
			if _, done := msgs[i]; done {
				continue
			}
			j := &v1alpha1.Job{}
			if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: p.ns, Name: p.f.jobName(p.form)}, j); err != nil {
				return false, err.Error()
			}
			c := meta.FindStatusCondition(j.Status.Conditions, v1alpha1.ConditionValid)
			if c != nil && c.Status == metav1.ConditionFalse && j.Status.Phase == v1alpha1.JobInvalid {
				msgs[i] = c.Message
			}
		}
		return len(msgs) == len(marked), fmt.Sprintf("%d of %d marked", len(msgs), len(marked))
	})
	for i, p := range marked {
		label := fmt.Sprintf("%s (%s)", p.f.name, p.form)
		msg, ok := msgs[i]
		if !ok {
			j := &v1alpha1.Job{}
			_ = k8s.Get(context.Background(), client.ObjectKey{Namespace: p.ns, Name: p.f.jobName(p.form)}, j)
			t.Errorf("%s: not marked invalid within a minute: phase %q, conditions %+v", label, j.Status.Phase, j.Status.Conditions)
			continue
		}
		if !strings.Contains(msg, p.f.marked) || !strings.Contains(msg, p.f.message) {
			t.Errorf("%s: Valid=False %q does not name %s %q", label, msg, p.f.marked, p.f.message)
		}
		var events corev1.EventList
		if err := k8s.List(context.Background(), &events, client.InNamespace(p.ns)); err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(events.Items, func(e corev1.Event) bool {
			return e.Reason == "InvalidApplication" && e.Type == corev1.EventTypeWarning
		}) {
			t.Errorf("%s: no InvalidApplication event for kubectl describe", label)
		}
	}
	time.Sleep(time.Second) // give a wrong controller the time to create something
	for _, p := range marked {
		if got := jobChildren(t, p.ns); len(got) > 0 {
			t.Errorf("%s (%s): an invalid Job has children %v", p.f.name, p.form, got)
		}
	}
	sort.Strings(covered)
	t.Logf("%d faults x %d forms answered:\n  %s", len(faults), len(forms), strings.Join(covered, "\n  "))
}

// The application of a Job is immutable in every form a user writes it,
// and the rule never stands in the way of the operator's status writes
// (it failed on a Job without placement: "no such key: placement").
func TestUserJobIsImmutableInEveryForm(t *testing.T) {
	defer startOperator(t)()
	u := readJobFile(t, filepath.Join(realapi.RepoRoot(), "config", "samples", sampleJob))
	for form, shape := range map[string]func(map[string]any, []string){"bare": bare, "explicit": explicit} {
		t.Run(form, func(t *testing.T) {
			ctx := context.Background()
			ns := namespace(t)
			job := u.DeepCopy()
			shape(job.Object["spec"].(map[string]any), nil)
			if err := submitJob(ns, job); err != nil {
				t.Fatal(err)
			}
			waitPods(t, ns, 3)
			kubelet(t, ns, "node-a")
			waitPhase(t, ns, job.GetName(), v1alpha1.JobSubmitted, 30*time.Second)

			get := func() *unstructured.Unstructured {
				cur := &unstructured.Unstructured{}
				cur.SetGroupVersionKind(v1alpha1.GroupVersion.WithKind("Job"))
				if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: job.GetName()}, cur); err != nil {
					t.Fatal(err)
				}
				return cur
			}
			for _, change := range []struct {
				what   string
				mutate func(spec map[string]any)
			}{
				{"the application", func(s map[string]any) { operator(s, 1)["kind"] = "filter" }},
				{"the fusion", func(s map[string]any) { s["fusion"] = map[string]any{"mode": "target", "targetPEs": int64(1)} }},
				{"the placement", func(s map[string]any) {
					s["placement"] = map[string]any{"hostPools": []any{map[string]any{"name": "p"}}}
				}},
			} {
				cur := get()
				change.mutate(cur.Object["spec"].(map[string]any))
				err := k8s.Update(ctx, cur, strict)
				if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "cannot change after submission") {
					t.Errorf("changing %s: %v, want the immutability message", change.what, err)
				}
			}
			// Unchanged sections written out, and a retry, are allowed.
			cur := get()
			spec := cur.Object["spec"].(map[string]any)
			explicitSpec(spec)
			delete(spec, "checkpointStore")
			spec["retry"] = int64(1)
			if err := k8s.Update(ctx, cur, strict); err != nil {
				b, _ := json.Marshal(get().Object["spec"])
				c, _ := json.Marshal(spec)
				t.Fatalf("writing out the defaults and raising retry: %v\nstored %s\nsent %s", err, b, c)
			}
		})
	}
}
