package render

import (
	"sort"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/app"
)

// Hostname is the topology key of colocation and exlocation.
const Hostname = "kubernetes.io/hostname"

// ReadyProbeHold is how long a PE pod's readiness probe lets the PE wait
// to become ready before it answers no (the /readyz hold parameter).
const ReadyProbeHold = 800 * time.Millisecond

// Pod is the pod of a PE's current launch. pools are the HostPool objects
// the PE names (all of them must exist); image is the default PE image.
//
// The pod's restart policy is Never: a PE is restarted by raising its launch
// count, which replaces the pod, so that every restart is a step of the
// causal chain the platform can see and count.
func Pod(pe *v1alpha1.ProcessingElement, pools []*v1alpha1.HostPool, image string) *corev1.Pod {
	tmpl := pe.Spec.Template
	if tmpl.Image != "" {
		image = tmpl.Image
	}
	if image == "" {
		image = DefaultPEImage
	}
	launch := pe.Spec.LaunchCount
	labels := map[string]string{
		v1alpha1.LabelJob:    pe.Spec.JobName,
		v1alpha1.LabelPE:     pe.Name,
		v1alpha1.LabelLaunch: strconv.Itoa(int(launch)),
		v1alpha1.LabelRole:   v1alpha1.RolePEPod,
	}
	for _, tag := range pe.Spec.Placement.Colocate {
		labels[v1alpha1.LabelColocatePrefix+tag] = pe.Spec.JobName
	}
	for _, tag := range pe.Spec.Placement.Exlocate {
		labels[v1alpha1.LabelExlocatePrefix+tag] = pe.Spec.JobName
	}
	container := corev1.Container{
		Name:            v1alpha1.PEContainerName,
		Image:           image,
		ImagePullPolicy: tmpl.ImagePullPolicy,
		Args: []string{"run",
			"--config", v1alpha1.ConfigMountPath + "/" + v1alpha1.PEConfigKey,
			"--ports", v1alpha1.PortTableMountPath + "/" + v1alpha1.PortTableKey},
		Env: []corev1.EnvVar{
			{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
			{Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
		},
		Ports:     []corev1.ContainerPort{{Name: "health", ContainerPort: v1alpha1.PEHealthPort, Protocol: corev1.ProtocolTCP}},
		Resources: tmpl.Resources,
		// Readiness is the PE's connectivity, probed every second (the
		// kubelet's finest period). A not-ready PE holds its answer up to
		// ReadyProbeHold, so a PE that connects during that time is Ready
		// at once instead of at the next probe; the timeout leaves the
		// held answer room on a busy node.
		ReadinessProbe: &corev1.Probe{
			ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: "/readyz?hold=" + ReadyProbeHold.String(), Port: intstr.FromInt32(v1alpha1.PEHealthPort)}},
			PeriodSeconds:    1,
			TimeoutSeconds:   2,
			FailureThreshold: 2,
		},
		// A generous timeout: on a busy node a 1 s probe timeout killed
		// healthy PEs (seen on kind under load).
		LivenessProbe: &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(v1alpha1.PEHealthPort)}},
			PeriodSeconds:    10,
			TimeoutSeconds:   5,
			FailureThreshold: 3,
		},
		VolumeMounts: []corev1.VolumeMount{
			{Name: "pe-config", MountPath: v1alpha1.ConfigMountPath, ReadOnly: true},
			{Name: "port-table", MountPath: v1alpha1.PortTableMountPath, ReadOnly: true},
		},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
	for i := int32(0); i < pe.Spec.InputPorts; i++ {
		container.Ports = append(container.Ports, corev1.ContainerPort{
			Name: "in-" + strconv.Itoa(int(i)), ContainerPort: v1alpha1.PEInputPortBase + i, Protocol: corev1.ProtocolTCP})
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:            app.PodName(pe.Name, launch),
			Namespace:       pe.Namespace,
			Labels:          labels,
			OwnerReferences: []metav1.OwnerReference{OwnerRef(pe, "ProcessingElement")},
		},
		Spec: corev1.PodSpec{
			Containers:    []corev1.Container{container},
			RestartPolicy: restartPolicy(tmpl.EffectiveRestartPolicy()),
			// A job of a thousand PEs has a thousand Services; their
			// environment variables would bloat every container.
			EnableServiceLinks:            ptr.To(false),
			AutomountServiceAccountToken:  ptr.To(false),
			TerminationGracePeriodSeconds: tmpl.TerminationGracePeriodSeconds,
			Volumes: []corev1.Volume{
				{Name: "pe-config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
					LocalObjectReference: corev1.LocalObjectReference{Name: pe.Name}}}},
				{Name: "port-table", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
					LocalObjectReference: corev1.LocalObjectReference{Name: app.PortTableName(pe.Spec.JobName)}}}},
			},
		},
	}
	applyPlacement(pod, pe, pools)
	applyRegion(pod, pe)
	if pe.Spec.ConfigHash != "" {
		pod.Annotations = map[string]string{v1alpha1.AnnotationConfigHash: pe.Spec.ConfigHash}
	}
	return pod
}

// applyPlacement translates host pools, colocation and exlocation into node
// affinity, tolerations and pod (anti-)affinity.
func applyPlacement(pod *corev1.Pod, pe *v1alpha1.ProcessingElement, pools []*v1alpha1.HostPool) {
	var exprs []corev1.NodeSelectorRequirement
	for _, pool := range pools {
		keys := make([]string, 0, len(pool.Spec.NodeSelector))
		for k := range pool.Spec.NodeSelector {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			exprs = append(exprs, corev1.NodeSelectorRequirement{
				Key: k, Operator: corev1.NodeSelectorOpIn, Values: []string{pool.Spec.NodeSelector[k]}})
		}
		if pool.Spec.Exclusive {
			pod.Spec.Tolerations = append(pod.Spec.Tolerations, corev1.Toleration{
				Key: v1alpha1.TaintPool, Operator: corev1.TolerationOpEqual, Value: pool.Spec.Name, Effect: corev1.TaintEffectNoSchedule})
		}
	}
	var aff corev1.Affinity
	if len(exprs) > 0 {
		aff.NodeAffinity = &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
			NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: exprs}}}}
	}
	term := func(key string) corev1.PodAffinityTerm {
		return corev1.PodAffinityTerm{
			LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{key: pe.Spec.JobName}},
			TopologyKey:   Hostname,
		}
	}
	for _, tag := range pe.Spec.Placement.Colocate {
		if aff.PodAffinity == nil {
			aff.PodAffinity = &corev1.PodAffinity{}
		}
		aff.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution = append(
			aff.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution, term(v1alpha1.LabelColocatePrefix+tag))
	}
	for _, tag := range pe.Spec.Placement.Exlocate {
		if aff.PodAntiAffinity == nil {
			aff.PodAntiAffinity = &corev1.PodAntiAffinity{}
		}
		aff.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution = append(
			aff.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution, term(v1alpha1.LabelExlocatePrefix+tag))
	}
	if aff.NodeAffinity != nil || aff.PodAffinity != nil || aff.PodAntiAffinity != nil {
		pod.Spec.Affinity = &aff
	}
}

// restartPolicy is the pod's restart policy for a PE's. A failed PE
// process is restarted in place by the kubelet (OnFailure), which is much
// faster than a new pod through the platform's causal chain; the PE's
// status counts these restarts, and a consistent region still resets
// because the restarted process reports itself out of sync. Pods that are
// deleted, evicted or lost with their node still get a new launch.
func restartPolicy(p v1alpha1.PERestartPolicy) corev1.RestartPolicy {
	if p.RestartFailed {
		return corev1.RestartPolicyOnFailure
	}
	return corev1.RestartPolicyNever
}
