package local

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/app"
	"sluice.dev/sluice/platform/peconfig"
)

// The API's defaults of a region definition (the kubebuilder markers of
// v1alpha1.ConsistentRegionDef), which a Job read from a file has not been
// through.
const (
	defaultPeriod               = 5 * time.Second
	defaultDrainTimeout         = 30 * time.Second
	defaultResetTimeout         = 30 * time.Second
	defaultMaxConsecutiveResets = 5
)

// RegionPlan is a consistent region as the supervisor runs it.
type RegionPlan struct {
	// Name in the application.
	Name string
	// Resource is the name the ConsistentRegion object would have.
	Resource string
	Spec     v1alpha1.ConsistentRegionSpec
}

// RegionPlans derives each consistent region's spec (defaults filled in,
// PEs in plan order) as the operator derives the ConsistentRegion's spec.
// It is a local copy until the platform exports one derivation for both.
func RegionPlans(job string, spec *v1alpha1.JobSpec, plan *app.Plan) []RegionPlan {
	dur := func(d *metav1.Duration, def time.Duration) metav1.Duration {
		if d == nil || d.Duration <= 0 {
			return metav1.Duration{Duration: def}
		}
		return *d
	}
	var out []RegionPlan
	for _, def := range spec.Application.ConsistentRegions {
		in := map[string]bool{}
		for _, op := range def.Operators {
			in[op] = true
		}
		s := v1alpha1.ConsistentRegionSpec{JobName: job, Region: def.Name,
			Operators: append([]string(nil), def.Operators...), Trigger: def.Trigger,
			Period:               dur(def.Period, defaultPeriod),
			DrainTimeout:         dur(def.DrainTimeout, defaultDrainTimeout),
			ResetTimeout:         dur(def.ResetTimeout, defaultResetTimeout),
			MaxConsecutiveResets: def.MaxConsecutiveResets,
		}
		if s.Trigger == "" {
			s.Trigger = v1alpha1.TriggerPeriodic
		}
		if s.MaxConsecutiveResets <= 0 {
			s.MaxConsecutiveResets = defaultMaxConsecutiveResets
		}
		// Fusion never mixes a region's operators with others, so a PE's
		// first operator tells its region.
		for _, pe := range plan.PEs {
			if len(pe.Operators) > 0 && in[pe.Operators[0]] {
				s.PEs = append(s.PEs, pe.Name)
			}
		}
		out = append(out, RegionPlan{Name: def.Name, Resource: job + "-" + def.Name, Spec: s})
	}
	return out
}

// storeConfig is the PE's view of a Job's checkpoint store.
func storeConfig(s *v1alpha1.CheckpointStore) *peconfig.Store {
	if s == nil {
		return nil
	}
	out := &peconfig.Store{Type: string(s.Type), Path: s.Path, Endpoint: s.Endpoint, Bucket: s.Bucket,
		Prefix: s.Prefix, Insecure: s.Insecure}
	if s.Type == v1alpha1.StoreS3 {
		out.AccessKeyEnv, out.SecretKeyEnv = peconfig.EnvS3AccessKey, peconfig.EnvS3SecretKey
	}
	return out
}
