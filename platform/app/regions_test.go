package app

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"sluice.dev/sluice/platform/api/v1alpha1"
)

func withRegion(s *v1alpha1.JobSpec, ops ...string) *v1alpha1.JobSpec {
	s.Application.ConsistentRegions = append(s.Application.ConsistentRegions, v1alpha1.ConsistentRegionDef{Name: "main", Operators: ops})
	s.CheckpointStore = &v1alpha1.CheckpointStore{Type: v1alpha1.StoreFilesystem, Path: "/ckpt"}
	return s
}

func TestRegionPlan(t *testing.T) {
	s := withRegion(chain(4), "src", "m1", "m2", "sink")
	s.Application.ConsistentRegions[0].Period = &metav1.Duration{Duration: 2 * time.Second}
	plan, errs := Build("ns", "j", s)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if len(plan.Regions) != 1 {
		t.Fatalf("regions %+v", plan.Regions)
	}
	r := plan.Regions[0]
	if r.Resource != "j-main" || len(r.Spec.PEs) != 4 || r.Spec.Period.Duration != 2*time.Second ||
		r.Spec.DrainTimeout.Duration != DefaultRegionDrainTimeout || r.Spec.MaxConsecutiveResets != DefaultMaxConsecutive ||
		r.Spec.Trigger != v1alpha1.TriggerPeriodic {
		t.Fatalf("region spec %+v", r)
	}
	for _, pe := range plan.PEs {
		if pe.Config.Region == nil || pe.Config.Region.Resource != "j-main" || pe.Config.Store == nil || pe.Config.Store.Path != "/ckpt" {
			t.Fatalf("PE %s config region %+v store %+v", pe.Name, pe.Config.Region, pe.Config.Store)
		}
	}
}

func TestRegionOnlyPartOfJob(t *testing.T) {
	// src -> m1 in the region; m2 and the sink downstream of it are not.
	s := withRegion(chain(4), "src", "m1")
	plan, errs := Build("ns", "j", s)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if got := plan.Regions[0].Spec.PEs; len(got) != 2 {
		t.Fatalf("region PEs %v", got)
	}
	if plan.PEs[3].Config.Region != nil || plan.PEs[3].Region != "" {
		t.Fatalf("sink outside the region got region config")
	}
}

func TestRegionErrors(t *testing.T) {
	cases := []struct {
		name string
		spec func() *v1alpha1.JobSpec
		want string
	}{
		{"unknown operator", func() *v1alpha1.JobSpec { return withRegion(chain(3), "src", "nope") }, `consistentRegions[0].operators[1]: Not found: "nope"`},
		{"open upstream", func() *v1alpha1.JobSpec { return withRegion(chain(3), "m1", "sink") }, "enters consistent region \"main\" from outside it"},
		{"no store", func() *v1alpha1.JobSpec {
			s := withRegion(chain(3), "src", "m1", "sink")
			s.CheckpointStore = nil
			return s
		}, "spec.checkpointStore: Required value"},
		{"s3 without bucket", func() *v1alpha1.JobSpec {
			s := withRegion(chain(3), "src", "m1", "sink")
			s.CheckpointStore = &v1alpha1.CheckpointStore{Type: v1alpha1.StoreS3, Endpoint: "minio:9000"}
			return s
		}, "spec.checkpointStore.bucket: Required value"},
		{"operator in two regions", func() *v1alpha1.JobSpec {
			s := withRegion(chain(3), "src", "m1", "sink")
			s.Application.ConsistentRegions = append(s.Application.ConsistentRegions, v1alpha1.ConsistentRegionDef{Name: "second", Operators: []string{"sink"}})
			return s
		}, `already in consistent region "main"`},
		{"operator-driven without a checkpointing source", func() *v1alpha1.JobSpec {
			s := withRegion(chain(3), "src", "m1", "sink")
			s.Application.ConsistentRegions[0].Trigger = v1alpha1.TriggerOperatorDriven
			return s
		}, "needs a source with params.checkpointEvery"},
		{"fusion mixes region and non-region", func() *v1alpha1.JobSpec {
			s := withRegion(chain(4), "src", "m1")
			s.Fusion = v1alpha1.Fusion{Mode: v1alpha1.FusionManual, Groups: []v1alpha1.FusionGroup{{Operators: []string{"src", "m1", "m2", "sink"}}}}
			return s
		}, "a PE belongs to one region or none"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, errs := Build("ns", "j", c.spec())
			if len(errs) == 0 || !strings.Contains(errs.ToAggregate().Error(), c.want) {
				t.Fatalf("errors %v, want one containing %q", errs, c.want)
			}
		})
	}
}
