package wiring

import (
	corev1 "k8s.io/api/core/v1"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/conductors/jobconductor"
	"sluice.dev/sluice/platform/conductors/podconductor"
	"sluice.dev/sluice/platform/controllers/hostpool"
	"sluice.dev/sluice/platform/controllers/job"
	"sluice.dev/sluice/platform/controllers/pe"
	"sluice.dev/sluice/platform/controllers/pod"
	"sluice.dev/sluice/platform/coordinator"
)

// Coordinators are the single writers of each kind, shared by every
// reconciler of one operator process.
type Coordinators struct {
	Jobs       *coordinator.Coordinator[*v1alpha1.Job]
	PEs        *coordinator.Coordinator[*v1alpha1.ProcessingElement]
	HostPools  *coordinator.Coordinator[*v1alpha1.HostPool]
	ConfigMaps *coordinator.Coordinator[*corev1.ConfigMap]
	Services   *coordinator.Coordinator[*corev1.Service]
	Pods       *coordinator.Coordinator[*corev1.Pod]
}

// NewCoordinators makes one coordinator per kind over d's client and clock.
func NewCoordinators(d Deps) *Coordinators {
	return &Coordinators{
		Jobs:       coordinator.New(d.Client, d.Clock, func() *v1alpha1.Job { return &v1alpha1.Job{} }),
		PEs:        coordinator.New(d.Client, d.Clock, func() *v1alpha1.ProcessingElement { return &v1alpha1.ProcessingElement{} }),
		HostPools:  coordinator.New(d.Client, d.Clock, func() *v1alpha1.HostPool { return &v1alpha1.HostPool{} }),
		ConfigMaps: coordinator.New(d.Client, d.Clock, func() *corev1.ConfigMap { return &corev1.ConfigMap{} }),
		Services:   coordinator.New(d.Client, d.Clock, func() *corev1.Service { return &corev1.Service{} }),
		Pods:       coordinator.New(d.Client, d.Clock, func() *corev1.Pod { return &corev1.Pod{} }),
	}
}

// Writes is the number of API writes all coordinators have made.
func (c *Coordinators) Writes() uint64 {
	return c.Jobs.Writes() + c.PEs.Writes() + c.HostPools.Writes() + c.ConfigMaps.Writes() + c.Services.Writes() + c.Pods.Writes()
}

// Controllers returns the platform's reconcilers: one controller per kind,
// the conductors, and the watches that chain them. The causal chain of a
// submission runs through them in this order:
//
//	Job -> job controller: ConfigMaps, Services, HostPools, PEs
//	PE  -> pod conductor: launch count 1 (PE coordinator)
//	PE  -> pod conductor: pod of launch 1 (pod coordinator)
//	Pod -> PE controller: PE status (node, phase, connectivity)
//	PE  -> job conductor: Job Submitted (Job coordinator)
func Controllers(d Deps, co *Coordinators) []Controller {
	podsOfPE := Watch{Object: &corev1.Pod{}, Map: ByLabel(v1alpha1.LabelPE)}
	return []Controller{
		{
			Name: "job",
			For:  &v1alpha1.Job{},
			Reconciler: &job.Reconciler{Client: d.Client, Clock: d.Clock, Recorder: d.Recorder, Coord: job.Coordinators{
				Jobs: co.Jobs, PEs: co.PEs, HostPools: co.HostPools, ConfigMaps: co.ConfigMaps, Services: co.Services}},
			Workers: 2,
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
	}
}
