package operators

import (
	"strings"
	"testing"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/peconfig"
	"sluice.dev/sluice/platform/runtime/exchange"
	"sluice.dev/sluice/platform/runtime/wire"
)

func TestNewImportExportNeedTheirConfig(t *testing.T) {
	imp := &v1alpha1.Operator{Name: "imp", Kind: v1alpha1.KindImport}
	exp := &v1alpha1.Operator{Name: "ex", Kind: v1alpha1.KindExport}
	watch := exchange.Files{Dir: t.TempDir()}.For
	x := &ExchangeEnv{Imports: []peconfig.ImportRef{{Operator: "imp", Resource: "job-imp"}},
		Exports: []peconfig.ExportPort{{Port: 2, Operator: "ex"}}, Watch: watch}
	for _, tc := range []struct {
		name string
		op   *v1alpha1.Operator
		x    *ExchangeEnv
		p    *v1alpha1.OperatorParams
		want string
	}{
		{"import without env", imp, nil, nil, "no export/import environment"},
		{"import without watcher", imp, &ExchangeEnv{Imports: x.Imports}, nil, "no way to watch"},
		{"import without resource", imp, &ExchangeEnv{Watch: watch}, nil, "names no Import object"},
		{"import with zero modulo", imp, x, &v1alpha1.OperatorParams{Filter: &v1alpha1.ImportFilter{KeyModulo: 0}}, "keyModulo 0"},
		{"import with a remainder too big", imp, x, &v1alpha1.OperatorParams{Filter: &v1alpha1.ImportFilter{KeyModulo: 3, KeyRemainders: []int64{3}}}, "remainder 3"},
		{"export without env", exp, nil, nil, "no export/import environment"},
		{"export without port", exp, &ExchangeEnv{}, nil, "no export port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.op.Params = tc.p
			_, err := New(tc.op, Env{Out: &fakeOut{}, Exchange: tc.x})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one saying %q", err, tc.want)
			}
		})
	}
	imp.Params, exp.Params = nil, nil
	if o, err := New(imp, Env{Out: &fakeOut{}, Exchange: x}); err != nil {
		t.Errorf("import: %v", err)
	} else if _, ok := o.(Runner); !ok {
		t.Errorf("an import must run on its own goroutine")
	}
	o, err := New(exp, Env{Out: &fakeOut{}, Exchange: &ExchangeEnv{Job: "job", ListenHost: "127.0.0.1", ListenBase: 20000, Exports: x.Exports}})
	if err != nil {
		t.Fatal(err)
	}
	if e := o.(*Export); e.cfg.Addr != "127.0.0.1:20002" || e.cfg.Stream != "job-ex" {
		t.Errorf("export serves %q at %s, want job-ex at 127.0.0.1:20002", e.cfg.Stream, e.cfg.Addr)
	}
}

// The import joins each origin where it first hears it (earlier sequence
// numbers become a Skip for downstream), counts gaps and restarts per
// export, and its filter's drops become Skips too.
func TestImportSequenceAccountingAndFilter(t *testing.T) {
	out := &fakeOut{}
	x := &ExchangeEnv{Imports: []peconfig.ImportRef{{Operator: "imp", Resource: "job-imp"}}, Watch: exchange.Files{Dir: t.TempDir()}.For}
	o, err := New(&v1alpha1.Operator{Name: "imp", Kind: v1alpha1.KindImport,
		Params: &v1alpha1.OperatorParams{Filter: &v1alpha1.ImportFilter{KeyModulo: 2, KeyRemainders: []int64{0}}}},
		Env{PE: "pe", Out: out, Exchange: x})
	if err != nil {
		t.Fatal(err)
	}
	im := o.(*Import)
	tu := func(epoch uint32, seq uint64) wire.Tuple {
		return wire.Tuple{Origin: 5, Epoch: epoch, Seq: seq, Key: seq}
	}
	im.process(&exchange.Batch{Export: "e1", Tuples: []wire.Tuple{tu(1, 10), tu(1, 11), tu(1, 13), tu(1, 12)}})
	im.process(&exchange.Batch{Export: "e1", Tuples: []wire.Tuple{tu(2, 3), tu(2, 4)}})
	// The same origin ID from another export is another stream.
	im.process(&exchange.Batch{Export: "e2", Tuples: []wire.Tuple{tu(7, 100)}})
	got := out.port(0)
	type emitted struct {
		epoch uint32
		seq   uint64
		skip  uint32
	}
	want := []emitted{{1, 10, 10}, {1, 12, 2}, {2, 4, 1}, {7, 100, 100}}
	if len(got) != len(want) {
		t.Fatalf("emitted %+v", got)
	}
	for i, w := range want {
		if g := (emitted{got[i].Epoch, got[i].Seq, got[i].Skip}); g != w {
			t.Errorf("tuple %d: %+v, want %+v", i, g, w)
		}
	}
	s := im.Summary()
	if s.Received != 7 || s.Emitted != 4 || s.Filtered != 3 {
		t.Errorf("received %d emitted %d filtered %d, want 7, 4, 3", s.Received, s.Emitted, s.Filtered)
	}
	// e1: 12 missing when 13 came, then 12 came late (reordered, no longer
	// missing), and epoch 2 began at 3 where 0 was due.
	if s.Missing != 3 || s.Duplicates != 0 || s.Reordered != 1 || s.Restarts != 1 {
		t.Errorf("missing %d duplicates %d reordered %d restarts %d, want 3, 0, 1, 1", s.Missing, s.Duplicates, s.Reordered, s.Restarts)
	}
	if len(s.Streams) != 2 || s.Streams[0].Export != "e1" || s.Streams[0].Missing != 3 || s.Streams[1].Export != "e2" ||
		s.Streams[1].Missing != 0 || s.Streams[1].Restarts != 0 || s.Streams[1].Origins[0].Next != 101 {
		t.Errorf("streams %+v", s.Streams)
	}
}
