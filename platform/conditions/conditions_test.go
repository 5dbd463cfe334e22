package conditions

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Times far from the wall clock, so that a stamp taken from time.Now
// cannot pass for one of them.
var (
	t0 = time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	t1 = t0.Add(90 * time.Second)
)

func cond(typ string, status metav1.ConditionStatus, reason, msg string, gen int64) metav1.Condition {
	return metav1.Condition{Type: typ, Status: status, Reason: reason, Message: msg, ObservedGeneration: gen}
}

func TestSet(t *testing.T) {
	base := func() []metav1.Condition {
		c := cond("Ready", metav1.ConditionFalse, "Waiting", "no pod", 1)
		c.LastTransitionTime = metav1.NewTime(t0)
		other := cond("Other", metav1.ConditionTrue, "Fine", "", 1)
		other.LastTransitionTime = metav1.NewTime(t0.Add(-time.Hour))
		return []metav1.Condition{c, other}
	}
	for _, tc := range []struct {
		name     string
		start    []metav1.Condition
		set      metav1.Condition
		now      time.Time
		changed  bool
		wantTime time.Time // of the condition set
		want     metav1.Condition
	}{
		{name: "new condition stamped with now", start: nil,
			set: cond("Ready", metav1.ConditionTrue, "Up", "ok", 2), now: t1,
			changed: true, wantTime: t1, want: cond("Ready", metav1.ConditionTrue, "Up", "ok", 2)},
		{name: "sub-second now truncated", start: nil,
			set: cond("Ready", metav1.ConditionTrue, "Up", "", 1), now: t1.Add(700 * time.Millisecond),
			changed: true, wantTime: t1, want: cond("Ready", metav1.ConditionTrue, "Up", "", 1)},
		{name: "nothing changed keeps the old time", start: base(),
			set: cond("Ready", metav1.ConditionFalse, "Waiting", "no pod", 1), now: t1,
			changed: false, wantTime: t0, want: cond("Ready", metav1.ConditionFalse, "Waiting", "no pod", 1)},
		{name: "status change stamps now", start: base(),
			set: cond("Ready", metav1.ConditionTrue, "Waiting", "no pod", 1), now: t1,
			changed: true, wantTime: t1, want: cond("Ready", metav1.ConditionTrue, "Waiting", "no pod", 1)},
		{name: "reason change is a change but not a transition", start: base(),
			set: cond("Ready", metav1.ConditionFalse, "Scheduling", "no pod", 1), now: t1,
			changed: true, wantTime: t0, want: cond("Ready", metav1.ConditionFalse, "Scheduling", "no pod", 1)},
		{name: "message change", start: base(),
			set: cond("Ready", metav1.ConditionFalse, "Waiting", "pod pending", 1), now: t1,
			changed: true, wantTime: t0, want: cond("Ready", metav1.ConditionFalse, "Waiting", "pod pending", 1)},
		{name: "observed generation change", start: base(),
			set: cond("Ready", metav1.ConditionFalse, "Waiting", "no pod", 5), now: t1,
			changed: true, wantTime: t0, want: cond("Ready", metav1.ConditionFalse, "Waiting", "no pod", 5)},
		{name: "caller's transition time is ignored", start: nil,
			set: func() metav1.Condition {
				c := cond("Ready", metav1.ConditionTrue, "Up", "", 1)
				c.LastTransitionTime = metav1.NewTime(t0.Add(-24 * time.Hour))
				return c
			}(), now: t1,
			changed: true, wantTime: t1, want: cond("Ready", metav1.ConditionTrue, "Up", "", 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conds := tc.start
			var others []metav1.Condition
			for _, c := range tc.start {
				if c.Type != tc.set.Type {
					others = append(others, c)
				}
			}
			if got := Set(&conds, tc.set, tc.now); got != tc.changed {
				t.Errorf("changed = %v, want %v", got, tc.changed)
			}
			var got *metav1.Condition
			var gotOthers []metav1.Condition
			for i := range conds {
				if conds[i].Type == tc.set.Type {
					if got != nil {
						t.Fatalf("condition %s twice: %v", tc.set.Type, conds)
					}
					got = &conds[i]
				} else {
					gotOthers = append(gotOthers, conds[i])
				}
			}
			if got == nil {
				t.Fatalf("condition %s missing: %v", tc.set.Type, conds)
			}
			if !got.LastTransitionTime.Time.Equal(tc.wantTime) {
				t.Errorf("transition time %v, want %v", got.LastTransitionTime.Time, tc.wantTime)
			}
			want := tc.want
			want.LastTransitionTime = got.LastTransitionTime
			if d := cmp.Diff(want, *got); d != "" {
				t.Errorf("condition (-want +got):\n%s", d)
			}
			if d := cmp.Diff(others, gotOthers); d != "" {
				t.Errorf("other conditions touched (-want +got):\n%s", d)
			}
		})
	}
}

// A status flapping back and forth stamps each transition with its own
// time, and repeating a status is not a change.
func TestSetSequence(t *testing.T) {
	var conds []metav1.Condition
	steps := []struct {
		status  metav1.ConditionStatus
		at      time.Time
		changed bool
		stamp   time.Time
	}{
		{metav1.ConditionFalse, t0, true, t0},
		{metav1.ConditionFalse, t0.Add(time.Minute), false, t0},
		{metav1.ConditionTrue, t0.Add(2 * time.Minute), true, t0.Add(2 * time.Minute)},
		{metav1.ConditionTrue, t0.Add(3 * time.Minute), false, t0.Add(2 * time.Minute)},
		{metav1.ConditionFalse, t0.Add(4 * time.Minute), true, t0.Add(4 * time.Minute)},
	}
	for i, s := range steps {
		changed := Set(&conds, cond("Connected", s.status, "R", "", 1), s.at)
		if changed != s.changed || len(conds) != 1 || !conds[0].LastTransitionTime.Time.Equal(s.stamp) {
			t.Errorf("step %d: changed %v (want %v), conditions %v (want stamp %v)", i, changed, s.changed, conds, s.stamp)
		}
	}
}
