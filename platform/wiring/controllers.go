package wiring

import (
	corev1 "k8s.io/api/core/v1"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/conductors/broker"
	"sluice.dev/sluice/platform/conductors/jobconductor"
	"sluice.dev/sluice/platform/conductors/podconductor"
	"sluice.dev/sluice/platform/conductors/regionconductor"
	"sluice.dev/sluice/platform/controllers/hostpool"
	"sluice.dev/sluice/platform/controllers/job"
	"sluice.dev/sluice/platform/controllers/pe"
	"sluice.dev/sluice/platform/controllers/pod"
	"sluice.dev/sluice/platform/coordinator"
)

// Coordinators are the single writers of each kind, shared by every
// reconciler of one operator process.
type Coordinators = coordinator.Set

// NewCoordinators makes one coordinator per kind over d's client and clock.
func NewCoordinators(d Deps) *Coordinators { return coordinator.NewSet(d.Client, d.Clock) }

// Controllers returns the platform's reconcilers: one controller per kind,
// the conductors, and the watches that chain them. The causal chain of a
// submission runs through them in this order:
//
//	Job -> job controller: ConfigMaps, Services, HostPools, PEs
//	PE  -> pod conductor: launch count 1 (PE coordinator)
//	PE  -> pod conductor: pod of launch 1 (pod coordinator)
//	Pod -> PE controller: PE status (node, phase, connectivity)
//	PE  -> job conductor: Job Submitted (Job coordinator)
//
// Consistent regions add a loop of their own:
//
//	Pod annotation (PE progress) -> PE controller: PE status.region
//	PE, ConsistentRegion -> region conductor: region status (drain, reset)
//	ConsistentRegion status -> PE processes (they watch it)
func Controllers(d Deps, co *Coordinators) []Controller {
	podsOfPE := Watch{Object: &corev1.Pod{}, Map: ByLabel(v1alpha1.LabelPE)}
	return []Controller{
		{
			Name:       "job",
			For:        &v1alpha1.Job{},
			Watches:    []Watch{{Object: &v1alpha1.ParallelRegion{}, Map: ByLabel(v1alpha1.LabelJob)}},
			Reconciler: &job.Reconciler{Client: d.Client, Clock: d.Clock, Recorder: d.Recorder, Coord: co},
			Workers:    2,
		},
		{
			Name:       "processingelement",
			For:        &v1alpha1.ProcessingElement{},
			Watches:    []Watch{podsOfPE},
			Reconciler: &pe.Reconciler{Client: d.Client, Clock: d.Clock, PEs: co.PEs},
			Workers:    4,
		},
		{
			Name:       "pod",
			For:        &corev1.Pod{},
			Watches:    []Watch{{Object: &v1alpha1.ProcessingElement{}, Map: pod.PreviousLaunch}},
			Reconciler: &pod.Reconciler{Client: d.Client, Pods: co.Pods},
			Workers:    2,
		},
		{
			Name:       "hostpool",
			For:        &v1alpha1.HostPool{},
			Reconciler: &hostpool.Reconciler{Client: d.Client, Clock: d.Clock, HostPools: co.HostPools},
		},
		{
			Name: "podconductor",
			For:  &v1alpha1.ProcessingElement{},
			Watches: []Watch{podsOfPE,
				{Object: &corev1.ConfigMap{}, Map: ByLabel(v1alpha1.LabelPE)}},
			Reconciler: &podconductor.Reconciler{Client: d.Client, Recorder: d.Recorder, PEs: co.PEs, Pods: co.Pods, Image: d.PEImage},
			Workers:    4,
		},
		{
			Name:       "jobconductor",
			For:        &v1alpha1.Job{},
			Watches:    []Watch{{Object: &v1alpha1.ProcessingElement{}, Map: ByLabel(v1alpha1.LabelJob)}},
			Reconciler: &jobconductor.Reconciler{Client: d.Client, Clock: d.Clock, Recorder: d.Recorder, Jobs: co.Jobs},
			Workers:    2,
		},
		{
			// Every request matches its whole namespace.
			Name:       "broker",
			For:        &v1alpha1.Import{},
			Watches:    []Watch{{Object: &v1alpha1.Export{}, Map: broker.Namespace}},
			Reconciler: &broker.Reconciler{Client: d.Client, Clock: d.Clock, Imports: co.Imports, Exports: co.Exports},
		},
		{
			Name:       "regionconductor",
			For:        &v1alpha1.ConsistentRegion{},
			Watches:    []Watch{{Object: &v1alpha1.ProcessingElement{}, Map: ByLabel(v1alpha1.LabelRegion)}},
			Reconciler: &regionconductor.Reconciler{Client: d.Client, Clock: d.Clock, Recorder: d.Recorder, Regions: co.Regions},
			Workers:    2,
		},
	}
}
