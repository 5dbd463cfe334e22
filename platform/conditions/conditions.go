// Package conditions sets status conditions with the injected clock.
// apimachinery's meta.SetStatusCondition stamps a missing transition time
// with the wall clock, which the simulator cannot control; every condition
// the platform writes goes through Set instead.
package conditions

import (
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Set adds or updates c in conds, stamping a status change with now, and
// reports whether anything changed.
func Set(conds *[]metav1.Condition, c metav1.Condition, now time.Time) bool {
	c.LastTransitionTime = metav1.NewTime(now.Truncate(time.Second))
	return meta.SetStatusCondition(conds, c)
}
