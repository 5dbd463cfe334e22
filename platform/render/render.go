// Package render turns a Job's plan into the Kubernetes objects that carry
// it: ConfigMaps, Services, HostPools, ProcessingElements and PE pods. It
// is pure: the same inputs always give the same objects, which is what lets
// controllers compare what exists with what should.
package render

import (
	"encoding/json"
	"hash/fnv"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/app"
)

// DefaultPEImage is the PE runtime image used when neither the Job nor the
// operator's configuration names one.
const DefaultPEImage = "sluice-pe:dev"

// OwnerRef makes obj a controlled dependent of owner.
func OwnerRef(owner metav1.Object, kind string) metav1.OwnerReference {
	return metav1.OwnerReference{
		APIVersion:         v1alpha1.GroupVersion.String(),
		Kind:               kind,
		Name:               owner.GetName(),
		UID:                owner.GetUID(),
		Controller:         ptr.To(true),
		BlockOwnerDeletion: ptr.To(true),
	}
}

func jobMeta(job *v1alpha1.Job, name, role string, extra map[string]string) metav1.ObjectMeta {
	labels := map[string]string{v1alpha1.LabelJob: job.Name, v1alpha1.LabelRole: role}
	for k, v := range extra {
		labels[k] = v
	}
	return metav1.ObjectMeta{
		Name:            name,
		Namespace:       job.Namespace,
		Labels:          labels,
		OwnerReferences: []metav1.OwnerReference{OwnerRef(job, "Job")},
	}
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil { // only plain structs of strings and numbers reach here
		panic(err)
	}
	return string(b)
}

// PortTable is the job ConfigMap holding the operator port -> PE port table.
func PortTable(job *v1alpha1.Job, plan *app.Plan) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: jobMeta(job, app.PortTableName(job.Name), v1alpha1.RolePortTable, nil),
		Data:       map[string]string{v1alpha1.PortTableKey: mustJSON(plan.PortTable)},
	}
}

// PEConfig is the ConfigMap holding one PE's subgraph.
func PEConfig(job *v1alpha1.Job, pe *app.PEPlan) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: jobMeta(job, pe.Name, v1alpha1.RolePEConfig, map[string]string{v1alpha1.LabelPE: pe.Name}),
		Data:       map[string]string{v1alpha1.PEConfigKey: mustJSON(pe.Config)},
	}
}

// PEService is the Service that gives a PE's input ports a DNS name, or nil
// for a PE without input ports. It is headless and publishes not-ready
// addresses: a PE becomes ready only once its upstream peers have connected
// to it, so routing only to ready pods would deadlock the submission.
func PEService(job *v1alpha1.Job, pe *app.PEPlan) *corev1.Service {
	if len(pe.Config.Inputs) == 0 && len(pe.Config.Exports) == 0 {
		return nil
	}
	svc := &corev1.Service{
		ObjectMeta: jobMeta(job, pe.Name, v1alpha1.RolePEService, map[string]string{v1alpha1.LabelPE: pe.Name}),
		Spec: corev1.ServiceSpec{
			ClusterIP:                corev1.ClusterIPNone,
			PublishNotReadyAddresses: true,
			Selector:                 map[string]string{v1alpha1.LabelPE: pe.Name, v1alpha1.LabelRole: v1alpha1.RolePEPod},
		},
	}
	for _, in := range pe.Config.Inputs {
		port := v1alpha1.PEInputPortBase + in.Port
		svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{
			Name: "in-" + strconv.Itoa(int(in.Port)), Port: port, Protocol: corev1.ProtocolTCP,
		})
	}
	for _, ex := range pe.Config.Exports {
		svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{
			Name: "exp-" + strconv.Itoa(int(ex.Port)), Port: v1alpha1.PEInputPortBase + ex.Port, Protocol: corev1.ProtocolTCP,
		})
	}
	return svc
}

// HostPool is the HostPool object of one of the Job's pools.
func HostPool(job *v1alpha1.Job, spec v1alpha1.HostPoolSpec) *v1alpha1.HostPool {
	return &v1alpha1.HostPool{
		ObjectMeta: jobMeta(job, app.HostPoolName(job.Name, spec.Name), "host-pool", nil),
		Spec:       spec,
	}
}

func importNames(pe *app.PEPlan) []string {
	var out []string
	for _, im := range pe.Config.Imports {
		out = append(out, im.Resource)
	}
	return out
}

// Export is the Export object of an export operator.
func Export(job *v1alpha1.Job, e *app.ExportPlan) *v1alpha1.Export {
	return &v1alpha1.Export{ObjectMeta: jobMeta(job, e.Resource, "export", nil), Spec: e.Spec}
}

// Import is the Import object of an import operator.
func Import(job *v1alpha1.Job, i *app.ImportPlan) *v1alpha1.Import {
	return &v1alpha1.Import{ObjectMeta: jobMeta(job, i.Resource, "import", nil), Spec: i.Spec}
}

// ConfigHash identifies a PE's configuration document.
func ConfigHash(pe *app.PEPlan) string {
	h := fnv.New64a()
	h.Write([]byte(mustJSON(pe.Config)))
	return strconv.FormatUint(h.Sum64(), 16)
}

// ParallelRegion is the ParallelRegion object of one of a Job's regions, at
// the region's initial width.
func ParallelRegion(job *v1alpha1.Job, pp *app.ParallelPlan) *v1alpha1.ParallelRegion {
	return &v1alpha1.ParallelRegion{
		ObjectMeta: jobMeta(job, pp.Resource, v1alpha1.RoleParallel, nil),
		Spec:       v1alpha1.ParallelRegionSpec{JobName: job.Name, Region: pp.Region, Width: pp.InitialWidth},
	}
}

// ProcessingElement is a PE object as the Job controller creates it: launch
// count 0, so that launching it is the PE coordinator's first command.
func ProcessingElement(job *v1alpha1.Job, pe *app.PEPlan) *v1alpha1.ProcessingElement {
	labels := map[string]string{v1alpha1.LabelPE: pe.Name}
	var region string
	var store *v1alpha1.CheckpointStore
	if pe.Region != "" {
		region = app.RegionResourceName(job.Name, pe.Region)
		labels[v1alpha1.LabelRegion] = region
		store = job.Spec.CheckpointStore.DeepCopy()
	}
	var hash string
	if len(job.Spec.Application.ParallelRegions) > 0 {
		hash = ConfigHash(pe)
	}
	return &v1alpha1.ProcessingElement{
		ObjectMeta: jobMeta(job, pe.Name, "pe", labels),
		Spec: v1alpha1.ProcessingElementSpec{
			JobName:         job.Name,
			Index:           pe.Index,
			Operators:       pe.Operators,
			InputPorts:      int32(len(pe.Config.Inputs) + len(pe.Config.Exports)),
			Placement:       pe.Placement,
			Template:        job.Spec.PE,
			Region:          region,
			CheckpointStore: store,
			ConfigHash:      hash,
			Imports:         importNames(pe),
		},
	}
}
