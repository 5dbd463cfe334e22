package driver

import (
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sluice.dev/sluice/sim/clock"
)

// Event is one recorded Kubernetes Event.
type Event struct {
	Time                  time.Time
	Namespace, Name, Kind string
	Type, Reason, Message string
}

// Recorder is the manager's record.EventRecorder. Events are kept in memory
// instead of being written to the API server: they are diagnostics, and the
// real recorder writes them asynchronously, off the reconcilers' connection
// budget, through a separate broadcaster.
type Recorder struct {
	clk    *clock.Clock
	events []Event
	// Max bounds memory; older events are dropped beyond it.
	Max int
}

var _ record.EventRecorder = (*Recorder)(nil)

func newRecorder(clk *clock.Clock) *Recorder { return &Recorder{clk: clk, Max: 100000} }

// Events returns the recorded events.
func (r *Recorder) Events() []Event { return r.events }

func (r *Recorder) Event(object runtime.Object, eventtype, reason, message string) {
	ev := Event{Time: r.clk.Now(), Type: eventtype, Reason: reason, Message: message}
	if o, ok := object.(client.Object); ok {
		ev.Namespace, ev.Name = o.GetNamespace(), o.GetName()
	}
	ev.Kind = fmt.Sprintf("%T", object)
	if len(r.events) >= r.Max && r.Max > 0 {
		r.events = r.events[1:]
	}
	r.events = append(r.events, ev)
}

func (r *Recorder) Eventf(object runtime.Object, eventtype, reason, messageFmt string, args ...interface{}) {
	r.Event(object, eventtype, reason, fmt.Sprintf(messageFmt, args...))
}

func (r *Recorder) AnnotatedEventf(object runtime.Object, annotations map[string]string, eventtype, reason, messageFmt string, args ...interface{}) {
	r.Eventf(object, eventtype, reason, messageFmt, args...)
}
