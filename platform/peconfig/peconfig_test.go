package peconfig

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"sluice.dev/sluice/platform/api/v1alpha1"
)

func samplePE() PE {
	return PE{
		Version: Version, Job: "job", Namespace: "ns", Name: "job-pe-1", Index: 1,
		Operators: []v1alpha1.Operator{{Name: "m", Kind: v1alpha1.KindMap}, {Name: "k", Kind: v1alpha1.KindSink}},
		Streams: []Stream{
			{ID: 0, From: v1alpha1.Endpoint{Operator: "src"}, To: v1alpha1.Endpoint{Operator: "m"}},
			{ID: 1, From: v1alpha1.Endpoint{Operator: "m"}, To: v1alpha1.Endpoint{Operator: "k"}},
		},
		Inputs: []Input{{Port: 0, Operator: "m", OperatorPort: 0, Streams: []int32{0}}},
	}
}

func TestParsePE(t *testing.T) {
	good, err := json.Marshal(samplePE())
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParsePE(good)
	if err != nil {
		t.Fatalf("ParsePE of a written PE: %v", err)
	}
	if d := cmp.Diff(samplePE(), *got); d != "" {
		t.Errorf("round trip (-want +got):\n%s", d)
	}
	// A minimal document: only what ParsePE requires.
	if _, err := ParsePE([]byte(`{"version":1,"name":"p","operators":[{"name":"s","kind":"source"}]}`)); err != nil {
		t.Errorf("minimal PE: %v", err)
	}
	for _, tc := range []struct {
		name, doc, want string
	}{
		{"empty input", ``, "pe config:"},
		{"garbage", `not json`, "pe config:"},
		{"truncated", string(good[:len(good)/2]), "pe config:"},
		{"trailing garbage", string(good) + `}`, "pe config:"},
		{"array", `[1,2]`, "pe config:"},
		{"wrong type", `{"version":"1","name":"p","operators":[{"name":"s"}]}`, "pe config:"},
		{"missing version", `{"name":"p","operators":[{"name":"s","kind":"source"}]}`, "version 0"},
		{"future version", `{"version":2,"name":"p","operators":[{"name":"s","kind":"source"}]}`, "version 2, this runtime reads version 1"},
		{"missing name", `{"version":1,"operators":[{"name":"s","kind":"source"}]}`, "name and operators are required"},
		{"empty name", `{"version":1,"name":"","operators":[{"name":"s","kind":"source"}]}`, "name and operators are required"},
		{"missing operators", `{"version":1,"name":"p"}`, "name and operators are required"},
		{"empty operators", `{"version":1,"name":"p","operators":[]}`, "name and operators are required"},
		{"null", `null`, "version 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pe, err := ParsePE([]byte(tc.doc))
			if err == nil {
				t.Fatalf("accepted: %+v", pe)
			}
			if pe != nil {
				t.Errorf("returned a PE with the error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
		})
	}
}

func TestParsePortTable(t *testing.T) {
	// Written unsorted: ParsePortTable sorts so that Lookup works.
	doc := `{"version":1,"job":"job","namespace":"ns","operators":{"a":"job-pe-0","b":"job-pe-1"},
		"inputs":[{"operator":"b","operatorPort":1,"pe":"job-pe-1","pePort":0},
		          {"operator":"a","operatorPort":0,"pe":"job-pe-0","pePort":0},
		          {"operator":"b","operatorPort":0,"pe":"job-pe-1","pePort":1}]}`
	table, err := ParsePortTable([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if table.Job != "job" || table.Namespace != "ns" || table.Operators["b"] != "job-pe-1" {
		t.Errorf("header: %+v", table)
	}
	if e, ok := table.Lookup("b", 0); !ok || e.PEPort != 1 {
		t.Errorf("Lookup(b, 0) = %+v %v", e, ok)
	}
	if e, ok := table.Lookup("b", 1); !ok || e.PEPort != 0 {
		t.Errorf("Lookup(b, 1) = %+v %v", e, ok)
	}
	for _, tc := range []struct {
		name, doc, want string
	}{
		{"garbage", `{{`, "port table:"},
		{"empty input", ``, "port table:"},
		{"wrong type", `{"version":1,"inputs":{}}`, "port table:"},
		{"missing version", `{"job":"job","inputs":[]}`, "version 0"},
		{"future version", `{"version":7,"job":"job"}`, "version 7, this runtime reads version 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			table, err := ParsePortTable([]byte(tc.doc))
			if err == nil {
				t.Fatalf("accepted: %+v", table)
			}
			if table != nil {
				t.Errorf("returned a table with the error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
		})
	}
}

func TestLookup(t *testing.T) {
	entries := []PortEntry{
		{Operator: "a", OperatorPort: 0, PE: "pe-a", PEPort: 0},
		{Operator: "a-b", OperatorPort: 0, PE: "pe-ab", PEPort: 0},
		{Operator: "ab", OperatorPort: 0, PE: "pe-x", PEPort: 0},
		{Operator: "ab", OperatorPort: 2, PE: "pe-x", PEPort: 1},
		{Operator: "ab", OperatorPort: 10, PE: "pe-x", PEPort: 2},
		{Operator: "z", OperatorPort: 1, PE: "pe-z", PEPort: 4},
	}
	// Shuffled, then sorted as the platform does before writing.
	table := PortTable{Inputs: []PortEntry{entries[4], entries[0], entries[5], entries[2], entries[1], entries[3]}}
	table.Sort()
	if d := cmp.Diff(entries, table.Inputs); d != "" {
		t.Fatalf("Sort (-want +got):\n%s", d)
	}
	for _, e := range entries {
		got, ok := table.Lookup(e.Operator, e.OperatorPort)
		if !ok || got != e {
			t.Errorf("Lookup(%s, %d) = %+v %v, want %+v", e.Operator, e.OperatorPort, got, ok, e)
		}
	}
	for _, miss := range []struct {
		op   string
		port int32
	}{
		{"", 0}, {"0", 0}, {"a", 1}, {"a-", 0}, {"ab", 1}, {"ab", 3}, {"ab", 11}, {"b", 0}, {"z", 0}, {"z", 2}, {"zz", 0},
	} {
		if got, ok := table.Lookup(miss.op, miss.port); ok || got != (PortEntry{}) {
			t.Errorf("Lookup(%q, %d) = %+v %v, want a miss", miss.op, miss.port, got, ok)
		}
	}
	var empty PortTable
	if _, ok := empty.Lookup("a", 0); ok {
		t.Errorf("Lookup on an empty table hit")
	}
	// Port numbers sort as numbers, not as strings.
	numeric := PortTable{Inputs: []PortEntry{{Operator: "u", OperatorPort: 10}, {Operator: "u", OperatorPort: 9}, {Operator: "u", OperatorPort: 100}}}
	numeric.Sort()
	for i, want := range []int32{9, 10, 100} {
		if numeric.Inputs[i].OperatorPort != want {
			t.Errorf("sorted ports %v", numeric.Inputs)
		}
	}
}

func TestAddresses(t *testing.T) {
	if got := ServiceHost("job-pe-3", "ns"); got != "job-pe-3.ns.svc" {
		t.Errorf("ServiceHost = %q", got)
	}
	for _, tc := range []struct{ port, want int32 }{{0, 10000}, {1, 10001}, {1023, 11023}} {
		if got := TCPPort(tc.port); got != tc.want {
			t.Errorf("TCPPort(%d) = %d, want %d", tc.port, got, tc.want)
		}
	}
}
