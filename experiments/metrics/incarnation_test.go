package metrics

import (
	"testing"

	"sluice.dev/sluice/platform/api/v1alpha1"
)

func TestRecoveredNeedsALaterIncarnationAndConnectivity(t *testing.T) {
	old := Incarnation{Launch: 2, Restarts: 1}
	pe := func(launch, restarts int32, c v1alpha1.Connectivity) *v1alpha1.ProcessingElement {
		p := &v1alpha1.ProcessingElement{}
		p.Status.PodLaunch, p.Status.Restarts, p.Status.Connectivity = launch, restarts, c
		return p
	}
	for _, c := range []struct {
		p    *v1alpha1.ProcessingElement
		want bool
	}{
		{pe(2, 1, v1alpha1.ConnectivityConnected), false},    // the same run
		{pe(2, 2, v1alpha1.ConnectivityConnected), true},     // restarted in place
		{pe(3, 0, v1alpha1.ConnectivityConnected), true},     // a new pod (its count starts again)
		{pe(2, 2, v1alpha1.ConnectivityDisconnected), false}, // not yet connected
		{pe(1, 5, v1alpha1.ConnectivityConnected), false},    // an older launch
	} {
		if got := Recovered(c.p, old); got != c.want {
			t.Errorf("launch %d restarts %d %s: recovered %v, want %v", c.p.Status.PodLaunch, c.p.Status.Restarts,
				c.p.Status.Connectivity, got, c.want)
		}
	}
}
