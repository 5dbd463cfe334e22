package app

import (
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/peconfig"
)

// Defaults of a consistent region, as the CRD schema sets them; applied
// here too for Jobs that reach the platform without the API server's
// defaulting (local mode, experiment files).
const (
	DefaultRegionPeriod       = 5 * time.Second
	DefaultRegionDrainTimeout = 30 * time.Second
	DefaultRegionResetTimeout = 30 * time.Second
	DefaultMaxConsecutive     = 5
)

// RegionPlan is a consistent region with the PEs that host it.
type RegionPlan struct {
	// Resource is the name of the ConsistentRegion object.
	Resource string
	Spec     v1alpha1.ConsistentRegionSpec
}

// RegionResourceName is the name of a Job's ConsistentRegion object.
func RegionResourceName(job, region string) string { return job + "-" + region }

// validateRegions checks the consistent regions of a valid graph: known
// operators, an operator in at most one region, every region closed
// upstream, and a checkpoint store to write to.
func validateRegions(g *Graph) field.ErrorList {
	var errs field.ErrorList
	spec := g.Spec
	regions := spec.Application.ConsistentRegions
	if len(regions) == 0 {
		return nil
	}
	path := field.NewPath("spec", "application", "consistentRegions")
	if spec.CheckpointStore == nil {
		errs = append(errs, field.Required(field.NewPath("spec", "checkpointStore"), "a Job with consistent regions needs a checkpoint store"))
	} else {
		errs = append(errs, validateStore(spec.CheckpointStore)...)
	}
	regionOf := map[string]string{}
	names := map[string]bool{}
	for r, def := range regions {
		p := path.Index(r)
		if names[def.Name] {
			errs = append(errs, field.Duplicate(p.Child("name"), def.Name))
		}
		names[def.Name] = true
		if len(def.Operators) == 0 {
			errs = append(errs, field.Required(p.Child("operators"), "a region needs at least one operator"))
		}
		for k, op := range def.Operators {
			if _, ok := g.Index[op]; !ok {
				errs = append(errs, field.NotFound(p.Child("operators").Index(k), op))
				continue
			}
			if other, dup := regionOf[op]; dup {
				errs = append(errs, field.Invalid(p.Child("operators").Index(k), op, fmt.Sprintf("already in consistent region %q", other)))
				continue
			}
			regionOf[op] = def.Name
		}
		if def.Trigger == v1alpha1.TriggerOperatorDriven && !hasCheckpointingSource(g, def) {
			errs = append(errs, field.Invalid(p.Child("trigger"), def.Trigger, "an operator-driven region needs a source with params.checkpointEvery"))
		}
	}
	if len(errs) > 0 {
		return errs
	}
	// Closed upstream: a replay of the region's sources must regenerate
	// everything its operators consumed.
	for s, st := range spec.Application.Streams {
		to, from := regionOf[st.To.Operator], regionOf[st.From.Operator]
		if to != "" && from != to {
			errs = append(errs, field.Invalid(field.NewPath("spec", "application", "streams").Index(s), st.From.Operator+" -> "+st.To.Operator,
				fmt.Sprintf("enters consistent region %q from outside it; a region must contain every operator upstream of it", to)))
		}
	}
	return errs
}

func hasCheckpointingSource(g *Graph, def v1alpha1.ConsistentRegionDef) bool {
	for _, name := range def.Operators {
		if i, ok := g.Index[name]; ok {
			op := g.Operator(i)
			if op.Kind == v1alpha1.KindSource && op.Params != nil && op.Params.CheckpointEvery != nil {
				return true
			}
		}
	}
	return false
}

func validateStore(s *v1alpha1.CheckpointStore) field.ErrorList {
	p := field.NewPath("spec", "checkpointStore")
	switch s.Type {
	case v1alpha1.StoreFilesystem:
		if s.Path == "" {
			return field.ErrorList{field.Required(p.Child("path"), "a filesystem store needs a path")}
		}
	case v1alpha1.StoreS3:
		var errs field.ErrorList
		if s.Endpoint == "" {
			errs = append(errs, field.Required(p.Child("endpoint"), "an s3 store needs an endpoint"))
		}
		if s.Bucket == "" {
			errs = append(errs, field.Required(p.Child("bucket"), "an s3 store needs a bucket"))
		}
		return errs
	default:
		return field.ErrorList{field.NotSupported(p.Child("type"), s.Type, []string{"filesystem", "s3"})}
	}
	return nil
}

// checkFusedRegions refuses fusion groups that mix a region's operators
// with operators outside it: a PE checkpoints and resets as one.
func checkFusedRegions(g *Graph, groups [][]int) field.ErrorList {
	regionOf := map[string]string{}
	for _, def := range g.Spec.Application.ConsistentRegions {
		for _, op := range def.Operators {
			regionOf[op] = def.Name
		}
	}
	if len(regionOf) == 0 {
		return nil
	}
	var errs field.ErrorList
	for _, grp := range groups {
		first := g.Operator(grp[0]).Name
		for _, i := range grp[1:] {
			name := g.Operator(i).Name
			if regionOf[name] != regionOf[first] {
				errs = append(errs, field.Invalid(field.NewPath("spec", "fusion"), name,
					fmt.Sprintf("fused with %q, but one is in consistent region %q and the other in %q; a PE belongs to one region or none",
						first, orNone(regionOf[first]), orNone(regionOf[name]))))
				break
			}
		}
	}
	return errs
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// planRegions derives each region's resource spec and tells the region's
// PEs where to watch.
func planRegions(job string, spec *v1alpha1.JobSpec, plan *Plan) {
	for _, def := range spec.Application.ConsistentRegions {
		in := map[string]bool{}
		for _, op := range def.Operators {
			in[op] = true
		}
		rp := RegionPlan{Resource: RegionResourceName(job, def.Name), Spec: RegionSpec(job, def)}
		for i := range plan.PEs {
			pe := &plan.PEs[i]
			if !in[pe.Operators[0]] {
				continue
			}
			rp.Spec.PEs = append(rp.Spec.PEs, pe.Name)
			pe.Region = def.Name
			pe.Config.Region = &peconfig.Region{Name: def.Name, Resource: rp.Resource, Trigger: rp.Spec.Trigger}
			pe.Config.Store = StoreConfig(spec.CheckpointStore)
		}
		plan.Regions = append(plan.Regions, rp)
	}
}

// RegionSpec is the ConsistentRegion spec of a region definition, with the
// API's defaults filled in (PEs are left empty).
func RegionSpec(job string, def v1alpha1.ConsistentRegionDef) v1alpha1.ConsistentRegionSpec {
	dur := func(d *metav1.Duration, def time.Duration) metav1.Duration {
		if d == nil || d.Duration <= 0 {
			return metav1.Duration{Duration: def}
		}
		return *d
	}
	s := v1alpha1.ConsistentRegionSpec{
		JobName: job, Region: def.Name, Operators: append([]string(nil), def.Operators...),
		Trigger:              def.Trigger,
		Period:               dur(def.Period, DefaultRegionPeriod),
		DrainTimeout:         dur(def.DrainTimeout, DefaultRegionDrainTimeout),
		ResetTimeout:         dur(def.ResetTimeout, DefaultRegionResetTimeout),
		MaxConsecutiveResets: def.MaxConsecutiveResets,
	}
	if s.Trigger == "" {
		s.Trigger = v1alpha1.TriggerPeriodic
	}
	if s.MaxConsecutiveResets <= 0 {
		s.MaxConsecutiveResets = DefaultMaxConsecutive
	}
	return s
}

// StoreConfig is the PE's view of a Job's checkpoint store.
func StoreConfig(s *v1alpha1.CheckpointStore) *peconfig.Store {
	if s == nil {
		return nil
	}
	out := &peconfig.Store{Type: string(s.Type), Path: s.Path, Endpoint: s.Endpoint, Bucket: s.Bucket,
		Prefix: s.Prefix, Insecure: s.Insecure, CreateBucket: s.CreateBucket}
	if s.Type == v1alpha1.StoreS3 {
		out.AccessKeyEnv, out.SecretKeyEnv = peconfig.EnvS3AccessKey, peconfig.EnvS3SecretKey
	}
	return out
}
