package render

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/ptr"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/app"
	"sluice.dev/sluice/platform/peconfig"
)

// PEAccessName is the name of the ServiceAccount, Role and RoleBinding that
// let a Job's PEs watch their consistent regions and annotate their pods.
func PEAccessName(job string) string { return job + "-pe" }

// ConsistentRegion is the ConsistentRegion object of one of a Job's regions.
func ConsistentRegion(job *v1alpha1.Job, r *app.RegionPlan) *v1alpha1.ConsistentRegion {
	return &v1alpha1.ConsistentRegion{
		ObjectMeta: jobMeta(job, r.Resource, v1alpha1.RoleRegion, map[string]string{v1alpha1.LabelRegion: r.Resource}),
		Spec:       r.Spec,
	}
}

// PEAccess is what the PEs of a Job with consistent regions or imports need
// from the API: read their regions and imports, and annotate their own pods
// with progress.
// Kubernetes RBAC cannot narrow "their own pod", so the Role allows patching
// pods of the namespace; it grants nothing else.
func PEAccess(job *v1alpha1.Job) (*corev1.ServiceAccount, *rbacv1.Role, *rbacv1.RoleBinding) {
	name := PEAccessName(job.Name)
	sa := &corev1.ServiceAccount{ObjectMeta: jobMeta(job, name, v1alpha1.RolePEAccess, nil),
		AutomountServiceAccountToken: ptr.To(false)}
	role := &rbacv1.Role{ObjectMeta: jobMeta(job, name, v1alpha1.RolePEAccess, nil), Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{v1alpha1.GroupVersion.Group}, Resources: []string{"streamsconsistentregions", "streamsimports"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "patch"}},
	}}
	rb := &rbacv1.RoleBinding{ObjectMeta: jobMeta(job, name, v1alpha1.RolePEAccess, nil),
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: job.Namespace}},
	}
	return sa, role, rb
}

// checkpointHostPath is where a filesystem store without a claim lives on
// the node.
const checkpointHostPath = "/var/lib/sluice/checkpoints"

// PEUser is the user and group the PE image runs as (build/Dockerfile).
const PEUser = 65532

// applyRegion gives the pod of a consistent-region PE its API identity and
// its checkpoint store.
func applyRegion(pod *corev1.Pod, pe *v1alpha1.ProcessingElement) {
	if pe.Spec.Region == "" && len(pe.Spec.Imports) == 0 {
		return
	}
	pod.Spec.ServiceAccountName = PEAccessName(pe.Spec.JobName)
	pod.Spec.AutomountServiceAccountToken = ptr.To(true)
	store := pe.Spec.CheckpointStore
	if store == nil {
		return
	}
	c := &pod.Spec.Containers[0]
	switch store.Type {
	case v1alpha1.StoreFilesystem:
		src := corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{
			Path: checkpointHostPath + "/" + pe.Namespace, Type: ptr.To(corev1.HostPathDirectoryOrCreate)}}
		if store.ClaimName != "" {
			src = corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: store.ClaimName}}
		}
		pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: "checkpoints", VolumeSource: src})
		mount := corev1.VolumeMount{Name: "checkpoints", MountPath: store.Path}
		c.VolumeMounts = append(c.VolumeMounts, mount)
		if store.ClaimName == "" {
			// The kubelet creates the hostPath directory as root; the PE
			// is not root. The PE binary gives the directory to the PE's
			// user first, as root, in an init container.
			pod.Spec.InitContainers = append(pod.Spec.InitContainers, corev1.Container{
				Name: "prepare-store", Image: c.Image, ImagePullPolicy: c.ImagePullPolicy,
				Args:         []string{"prepare-store", "--path", store.Path, "--owner", fmt.Sprintf("%d:%d", PEUser, PEUser)},
				VolumeMounts: []corev1.VolumeMount{mount},
				SecurityContext: &corev1.SecurityContext{RunAsUser: ptr.To[int64](0), RunAsGroup: ptr.To[int64](0),
					RunAsNonRoot: ptr.To(false), AllowPrivilegeEscalation: ptr.To(false),
					Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}, Add: []corev1.Capability{"CHOWN"}}},
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
					corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi")}},
			})
		}
	case v1alpha1.StoreS3:
		if store.CredentialsSecret == "" {
			return
		}
		key := func(env, k string) corev1.EnvVar {
			return corev1.EnvVar{Name: env, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: store.CredentialsSecret}, Key: k}}}
		}
		c.Env = append(c.Env, key(peconfig.EnvS3AccessKey, "accessKey"), key(peconfig.EnvS3SecretKey, "secretKey"))
	}
}
