package render

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/peconfig"
)

func regionPE(store *v1alpha1.CheckpointStore) *v1alpha1.ProcessingElement {
	pe := &v1alpha1.ProcessingElement{}
	pe.Name, pe.Namespace = "j-pe-1", "ns"
	pe.Spec.JobName, pe.Spec.LaunchCount, pe.Spec.Region, pe.Spec.CheckpointStore = "j", 1, "main", store
	return pe
}

func TestRegionPodStores(t *testing.T) {
	// A hostPath store: mounted, and made the PE user's by the PE image
	// run as root before the PE starts.
	pod := Pod(regionPE(&v1alpha1.CheckpointStore{Type: v1alpha1.StoreFilesystem, Path: "/ckpt"}), nil, "pe:1")
	if pod.Spec.ServiceAccountName != "j-pe" {
		t.Errorf("service account %q", pod.Spec.ServiceAccountName)
	}
	if len(pod.Spec.Volumes) == 0 || pod.Spec.Volumes[len(pod.Spec.Volumes)-1].HostPath == nil ||
		pod.Spec.Volumes[len(pod.Spec.Volumes)-1].HostPath.Path != checkpointHostPath+"/ns" {
		t.Fatalf("volumes %+v", pod.Spec.Volumes)
	}
	if len(pod.Spec.InitContainers) != 1 {
		t.Fatalf("init containers %+v, want prepare-store", pod.Spec.InitContainers)
	}
	ic := pod.Spec.InitContainers[0]
	want := []string{"prepare-store", "--path", "/ckpt", "--owner", "65532:65532"}
	if ic.Image != "pe:1" || !slices.Equal(ic.Args, want) || ic.SecurityContext == nil || *ic.SecurityContext.RunAsUser != 0 ||
		len(ic.VolumeMounts) != 1 || ic.VolumeMounts[0].MountPath != "/ckpt" {
		t.Fatalf("prepare-store container %+v", ic)
	}
	// A claim's volume is the storage's business: no init container.
	pod = Pod(regionPE(&v1alpha1.CheckpointStore{Type: v1alpha1.StoreFilesystem, Path: "/ckpt", ClaimName: "c"}), nil, "pe:1")
	if len(pod.Spec.InitContainers) != 0 || pod.Spec.Volumes[len(pod.Spec.Volumes)-1].PersistentVolumeClaim == nil {
		t.Fatalf("claim store: init %+v volumes %+v", pod.Spec.InitContainers, pod.Spec.Volumes)
	}
	// S3: credentials from the Secret as environment variables.
	pod = Pod(regionPE(&v1alpha1.CheckpointStore{Type: v1alpha1.StoreS3, Endpoint: "m:9000", Bucket: "b", CredentialsSecret: "creds"}), nil, "pe:1")
	env := map[string]*corev1.EnvVarSource{}
	for _, e := range pod.Spec.Containers[0].Env {
		env[e.Name] = e.ValueFrom
	}
	for name, key := range map[string]string{peconfig.EnvS3AccessKey: "accessKey", peconfig.EnvS3SecretKey: "secretKey"} {
		if env[name] == nil || env[name].SecretKeyRef == nil || env[name].SecretKeyRef.Name != "creds" || env[name].SecretKeyRef.Key != key {
			t.Errorf("env %s: %+v", name, env[name])
		}
	}
	if len(pod.Spec.InitContainers) != 0 {
		t.Errorf("S3 store with init containers %+v", pod.Spec.InitContainers)
	}
}
