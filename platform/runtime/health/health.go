// Package health serves a PE's HTTP endpoints: /healthz (liveness),
// /readyz (every connection of the PE established), /metrics (Prometheus)
// and /summary (what the PE's sinks saw, as JSON).
package health

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Handler builds the mux. ready reports readiness and why not; summary
// returns a JSON-encodable value. /readyz?hold=<duration> (at most MaxHold)
// that finds the PE not ready waits up to hold for it to become ready
// before answering: the kubelet probes at most once a second, so an
// immediate "no" leaves a PE that connects a moment later unready for up
// to a second; held, the probe answers as soon as the last connection is
// up. Without hold it answers at once.
func Handler(reg *prometheus.Registry, ready func() (bool, string), summary func() any) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		var hold time.Duration
		if v := r.URL.Query().Get("hold"); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 {
				http.Error(w, "hold: want a duration such as 800ms", http.StatusBadRequest)
				return
			}
			hold = min(d, MaxHold)
		}
		ok, why := waitReady(r.Context(), ready, hold)
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		w.Write([]byte(why + "\n"))
	})
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/summary", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(summary())
	})
	return mux
}

// ReadyPoll is how often a held /readyz asks again; MaxHold bounds a hold.
const (
	ReadyPoll = 20 * time.Millisecond
	MaxHold   = 5 * time.Second
)

// waitReady asks ready until it says yes, hold has passed or ctx ends.
func waitReady(ctx context.Context, ready func() (bool, string), hold time.Duration) (bool, string) {
	ok, why := ready()
	if ok || hold <= 0 {
		return ok, why
	}
	deadline := time.NewTimer(hold)
	defer deadline.Stop()
	tick := time.NewTicker(ReadyPoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ok, why
		case <-deadline.C:
			return ready()
		case <-tick.C:
			if ok, why = ready(); ok {
				return ok, why
			}
		}
	}
}
