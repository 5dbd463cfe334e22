package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/app"
)

func exportJob(ns, name, stream string, props map[string]string) *v1alpha1.Job {
	j := &v1alpha1.Job{}
	j.Namespace, j.Name = ns, name
	j.Spec.Application = v1alpha1.Application{
		Operators: []v1alpha1.Operator{{Name: "src", Kind: v1alpha1.KindSource},
			{Name: "out", Kind: v1alpha1.KindExport, Params: &v1alpha1.OperatorParams{StreamName: stream, Properties: props}}},
		Streams: []v1alpha1.Stream{{From: v1alpha1.Endpoint{Operator: "src"}, To: v1alpha1.Endpoint{Operator: "out"}}},
	}
	return j
}

func importJob(ns, name string, params v1alpha1.OperatorParams) *v1alpha1.Job {
	j := &v1alpha1.Job{}
	j.Namespace, j.Name = ns, name
	j.Spec.Application = v1alpha1.Application{
		Operators: []v1alpha1.Operator{{Name: "in", Kind: v1alpha1.KindImport, Params: &params},
			{Name: "sink", Kind: v1alpha1.KindSink}},
		Streams: []v1alpha1.Stream{{From: v1alpha1.Endpoint{Operator: "in"}, To: v1alpha1.Endpoint{Operator: "sink"}}},
	}
	return j
}

func importStreams(t *testing.T, ns, name string, want int) *v1alpha1.Import {
	t.Helper()
	im := &v1alpha1.Import{}
	eventually(t, 30*time.Second, fmt.Sprintf("import %s with %d streams", name, want), func() (bool, string) {
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, im); err != nil {
			return false, err.Error()
		}
		return len(im.Status.Streams) == want && im.Status.ObservedGeneration == im.Generation, fmt.Sprintf("%+v", im.Status)
	})
	return im
}

func TestBrokerMatchesExportsByNameAndProperties(t *testing.T) {
	defer startOperator(t)()
	ns := namespace(t)
	ctx := context.Background()
	for _, j := range []*v1alpha1.Job{
		importJob(ns, "byname", v1alpha1.OperatorParams{StreamName: "trades"}),
		importJob(ns, "byprops", v1alpha1.OperatorParams{Subscription: "kind=trades,region in (eu,us)"}),
		exportJob(ns, "eu", "trades", map[string]string{"kind": "trades", "region": "eu"}),
		exportJob(ns, "asia", "other", map[string]string{"kind": "trades", "region": "asia"}),
	} {
		if err := k8s.Create(ctx, j); err != nil {
			t.Fatal(err)
		}
	}
	byName := importStreams(t, ns, app.ImportResourceName("byname", "in"), 1)
	s := byName.Status.Streams[0]
	if s.Export != app.ExportResourceName("eu", "out") || s.JobName != "eu" || s.Host != app.PEName("eu", 1)+"."+ns+".svc" || s.Port != 10001 {
		t.Fatalf("matched stream %+v", s)
	}
	importStreams(t, ns, app.ImportResourceName("byprops", "in"), 1)
	// The exporting PE's Service serves its input (10000) and the export port after it.
	svc := podService(t, ns, app.PEName("eu", 1))
	if len(svc) != 2 || svc[0] != 10000 || svc[1] != 10001 {
		t.Fatalf("exporting PE's Service ports %v", svc)
	}

	// A new matching export reaches the running import; a deleted one leaves it.
	if err := k8s.Create(ctx, exportJob(ns, "us", "trades-us", map[string]string{"kind": "trades", "region": "us"})); err != nil {
		t.Fatal(err)
	}
	importStreams(t, ns, app.ImportResourceName("byprops", "in"), 2)
	eu := getJob(t, ns, "eu")
	if err := k8s.Delete(ctx, eu); err != nil {
		t.Fatal(err)
	}
	if haveGC {
		importStreams(t, ns, app.ImportResourceName("byprops", "in"), 1)
		importStreams(t, ns, app.ImportResourceName("byname", "in"), 0)
		// Re-created, the exporting Job is matched again.
		if err := k8s.Create(ctx, exportJob(ns, "eu", "trades", map[string]string{"kind": "trades", "region": "eu"})); err != nil {
			t.Fatal(err)
		}
		importStreams(t, ns, app.ImportResourceName("byname", "in"), 1)
	}
	ex := &v1alpha1.Export{}
	eventually(t, 30*time.Second, "importer count of the us export", func() (bool, string) {
		_ = k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: app.ExportResourceName("us", "out")}, ex)
		return ex.Status.Importers == 1, fmt.Sprintf("%+v", ex.Status)
	})
}

func podService(t *testing.T, ns, name string) []int32 {
	t.Helper()
	var out []int32
	eventually(t, 30*time.Second, "service "+name, func() (bool, string) {
		svc := &corev1.Service{}
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, svc); err != nil {
			return false, err.Error()
		}
		out = nil
		for _, p := range svc.Spec.Ports {
			out = append(out, p.Port)
		}
		return true, ""
	})
	return out
}

func TestImportExportValidation(t *testing.T) {
	cases := map[string]v1alpha1.OperatorParams{
		"import with neither name nor subscription": {},
		"import with both":                          {StreamName: "a", Subscription: "x=y"},
		"bad subscription":                          {Subscription: "x in (("},
		"remainder out of range":                    {StreamName: "a", Filter: &v1alpha1.ImportFilter{KeyModulo: 2, KeyRemainders: []int64{2}}},
	}
	for name, params := range cases {
		j := importJob("ns", "imp", params)
		if _, errs := app.Build("ns", "imp", &j.Spec); len(errs) == 0 {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, errs := app.Build("ns", "exp", &exportJob("ns", "exp", "", nil).Spec); len(errs) == 0 {
		t.Errorf("export without a name or properties accepted")
	}
}
