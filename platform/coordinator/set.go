package coordinator

import (
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sluice.dev/sluice/platform/api/v1alpha1"
)

// Set holds the single writer of every kind the platform writes. One Set
// serves every reconciler of one operator process.
type Set struct {
	Jobs       *Coordinator[*v1alpha1.Job]
	PEs        *Coordinator[*v1alpha1.ProcessingElement]
	HostPools  *Coordinator[*v1alpha1.HostPool]
	ConfigMaps *Coordinator[*corev1.ConfigMap]
	Services   *Coordinator[*corev1.Service]
	Pods       *Coordinator[*corev1.Pod]
	Regions    *Coordinator[*v1alpha1.ConsistentRegion]
	// ParallelRegions' status is written by the Job controller.
	ParallelRegions *Coordinator[*v1alpha1.ParallelRegion]
	Exports         *Coordinator[*v1alpha1.Export]
	Imports         *Coordinator[*v1alpha1.Import]
	// PE access objects of Jobs with consistent regions.
	ServiceAccounts *Coordinator[*corev1.ServiceAccount]
	Roles           *Coordinator[*rbacv1.Role]
	RoleBindings    *Coordinator[*rbacv1.RoleBinding]
}

// NewSet makes one coordinator per kind over c and clk.
func NewSet(c client.Client, clk clock.PassiveClock) *Set {
	return &Set{
		Jobs:            New(c, clk, func() *v1alpha1.Job { return &v1alpha1.Job{} }),
		PEs:             New(c, clk, func() *v1alpha1.ProcessingElement { return &v1alpha1.ProcessingElement{} }),
		HostPools:       New(c, clk, func() *v1alpha1.HostPool { return &v1alpha1.HostPool{} }),
		ConfigMaps:      New(c, clk, func() *corev1.ConfigMap { return &corev1.ConfigMap{} }),
		Services:        New(c, clk, func() *corev1.Service { return &corev1.Service{} }),
		Pods:            New(c, clk, func() *corev1.Pod { return &corev1.Pod{} }),
		Regions:         New(c, clk, func() *v1alpha1.ConsistentRegion { return &v1alpha1.ConsistentRegion{} }),
		ParallelRegions: New(c, clk, func() *v1alpha1.ParallelRegion { return &v1alpha1.ParallelRegion{} }),
		Exports:         New(c, clk, func() *v1alpha1.Export { return &v1alpha1.Export{} }),
		Imports:         New(c, clk, func() *v1alpha1.Import { return &v1alpha1.Import{} }),
		ServiceAccounts: New(c, clk, func() *corev1.ServiceAccount { return &corev1.ServiceAccount{} }),
		Roles:           New(c, clk, func() *rbacv1.Role { return &rbacv1.Role{} }),
		RoleBindings:    New(c, clk, func() *rbacv1.RoleBinding { return &rbacv1.RoleBinding{} }),
	}
}

// Writes is the number of API writes all coordinators have made.
func (s *Set) Writes() uint64 {
	return s.Jobs.Writes() + s.PEs.Writes() + s.HostPools.Writes() + s.ConfigMaps.Writes() + s.Services.Writes() + s.Pods.Writes() +
		s.Regions.Writes() + s.ParallelRegions.Writes() + s.Exports.Writes() + s.Imports.Writes() + s.ServiceAccounts.Writes() + s.Roles.Writes() + s.RoleBindings.Writes()
}
