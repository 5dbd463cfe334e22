package paramfile

import (
	"testing"
	"time"
)

type testParams struct {
	Grace Duration `json:"grace"`
	Rate  float64  `json:"rate"`
}

func TestLoad(t *testing.T) {
	var p testParams
	err := Load([]byte(`
grace: {value: 50s, source: "kubernetes: default"}
rate: {value: 0.1, source: "guess: none measured"}
`), &p)
	if err != nil {
		t.Fatal(err)
	}
	if p.Grace.D() != 50*time.Second || p.Rate != 0.1 {
		t.Fatalf("got %+v", p)
	}
}

func TestLoadRefuses(t *testing.T) {
	cases := map[string]string{
		"no source":  "grace: {value: 1s}\nrate: {value: 1, source: \"guess: x\"}",
		"bad origin": "grace: {value: 1s, source: \"folklore: x\"}\nrate: {value: 1, source: \"guess: x\"}",
		"empty why":  "grace: {value: 1s, source: \"guess:\"}\nrate: {value: 1, source: \"guess: x\"}",
		"missing":    "grace: {value: 1s, source: \"guess: x\"}",
		"unknown":    "grace: {value: 1s, source: \"guess: x\"}\nrate: {value: 1, source: \"guess: x\"}\nother: {value: 1, source: \"guess: x\"}",
		"bad dur":    "grace: {value: 1, source: \"guess: x\"}\nrate: {value: 1, source: \"guess: x\"}",
	}
	for name, text := range cases {
		var p testParams
		if err := Load([]byte(text), &p); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestOverlay(t *testing.T) {
	p := testParams{Grace: Duration(50 * time.Second), Rate: 0.1}
	applied, err := Overlay([]byte(`rate: {value: 0.5, source: "kind: measured 2026-01-01"}`), &p)
	if err != nil {
		t.Fatal(err)
	}
	if p.Rate != 0.5 || p.Grace.D() != 50*time.Second || applied["rate"].Source != "kind: measured 2026-01-01" {
		t.Fatalf("%+v %+v", p, applied)
	}
	if _, err := Overlay([]byte(`rate: {value: 0.5}`), &p); err == nil {
		t.Fatal("override without a source accepted")
	}
	if _, err := Overlay([]byte(`typo: {value: 1, source: "guess: x"}`), &p); err == nil {
		t.Fatal("unknown parameter accepted")
	}
}
