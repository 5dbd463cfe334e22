package health

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func get(t *testing.T, h http.Handler, path string) (int, string) {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	b, _ := io.ReadAll(rec.Body)
	return rec.Code, string(b)
}

func TestEndpoints(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_test_total", Help: "x"})
	reg.MustRegister(c)
	c.Add(3)
	ready, why := false, "not connected: output stream 2"
	h := Handler(reg, func() (bool, string) { return ready, why }, func() any { return map[string]int{"tuples": 5} })
	if code, _ := get(t, h, "/healthz"); code != 200 {
		t.Fatalf("healthz %d", code)
	}
	if code, body := get(t, h, "/readyz"); code != 503 || !strings.Contains(body, "output stream 2") {
		t.Fatalf("readyz %d %q", code, body)
	}
	ready, why = true, "all streams connected"
	if code, _ := get(t, h, "/readyz"); code != 200 {
		t.Fatalf("readyz when ready: %d", code)
	}
	if _, body := get(t, h, "/metrics"); !strings.Contains(body, "sluice_test_total 3") {
		t.Fatalf("metrics: %s", body)
	}
	if _, body := get(t, h, "/summary"); !strings.Contains(body, `"tuples": 5`) {
		t.Fatalf("summary: %s", body)
	}
}

func TestReadyzHold(t *testing.T) {
	var ready atomic.Bool
	h := Handler(prometheus.NewRegistry(), func() (bool, string) {
		if ready.Load() {
			return true, "all streams connected"
		}
		return false, "not connected: input port 0"
	}, func() any { return nil })
	// Without hold: an immediate no.
	if code, _ := get(t, h, "/readyz"); code != 503 {
		t.Fatalf("readyz %d", code)
	}
	// Held: the answer waits for readiness that comes during the hold.
	time.AfterFunc(50*time.Millisecond, func() { ready.Store(true) })
	if code, body := get(t, h, "/readyz?hold=30s"); code != 200 || !strings.Contains(body, "connected") {
		t.Fatalf("held readyz %d %q", code, body)
	}
	// Held but never ready: no, after the hold.
	ready.Store(false)
	if code, body := get(t, h, "/readyz?hold=60ms"); code != 503 || !strings.Contains(body, "input port 0") {
		t.Fatalf("held readyz that stays unready: %d %q", code, body)
	}
	if code, _ := get(t, h, "/readyz?hold=soon"); code != 400 {
		t.Fatalf("a bad hold: %d", code)
	}
}
