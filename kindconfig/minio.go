package kindconfig

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/kind/pkg/cluster/nodes"
	"sigs.k8s.io/kind/pkg/cluster/nodeutils"
)

// MinIO deployment coordinates of DeployMinIO, the same in every namespace.
const (
	// MinIOName names the Deployment, the Service and the credentials
	// Secret.
	MinIOName = "sluice-minio"
	// MinIOBucket is the bucket DeployMinIO creates (the PEs' S3 store
	// does not create buckets).
	MinIOBucket = "sluice-checkpoints"
	// MinIOPort is the S3 port of the pod and of the Service.
	MinIOPort = 9000
	// MinIOAccessKey and MinIOSecretKey are MinIO's root credentials, in
	// the Secret under the keys the S3 checkpoint store's
	// credentialsSecret expects (accessKey, secretKey). Test-only values.
	MinIOAccessKey = "sluice-kind"
	MinIOSecretKey = "sluice-kind-secret"
)

// ErrMinIOImageMissing is returned (wrapped) by DeployMinIO when the local
// Docker has no MinIOImage: build it with `hack/minio/build.sh image`.
var ErrMinIOImageMissing = errors.New("MinIO image missing")

// DeployMinIO runs one MinIO server in namespace for the S3 checkpoint
// store: it loads MinIOImage (built by `hack/minio/build.sh image`) into
// the control-plane node, creates the Secret secretName (keys accessKey and
// secretKey, as a Job's spec.checkpointStore.credentialsSecret expects), a
// Deployment pinned to the control-plane node (so that stopping a worker
// never takes the checkpoints away) with its data in an emptyDir, and a
// NodePort Service; it waits until MinIO answers and creates MinIOBucket.
//
// endpoint is host:port for spec.checkpointStore.endpoint with insecure:
// true and bucket MinIOBucket: the Service's ClusterIP, not its DNS name,
// so that PEs reach the store even while CoreDNS pods are down with a
// stopped node. From the test process use MinIOClient or ListMinIO.
// Calling it again in the same namespace reuses what exists. When the image
// is missing the error wraps ErrMinIOImageMissing (callers may skip).
func (c *Cluster) DeployMinIO(ctx context.Context, namespace string) (endpoint, secretName string, err error) {
	if out, err := exec.CommandContext(ctx, "docker", "image", "inspect", "--format", "{{.Id}}", MinIOImage).CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("%w: docker has no %s (build it with hack/minio/build.sh image): %s",
			ErrMinIOImageMissing, MinIOImage, strings.TrimSpace(string(out)))
	}
	cp, err := c.controlPlaneNode()
	if err != nil {
		return "", "", err
	}
	if id, err := nodeutils.ImageID(cp, MinIOImage); err != nil || id == "" {
		if err := c.loadImageInto(ctx, MinIOImage, []nodes.Node{cp}); err != nil {
			return "", "", err
		}
	}
	labels := map[string]string{"app.kubernetes.io/name": MinIOName}
	secret := &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: MinIOName, Labels: labels},
		StringData: map[string]string{"accessKey": MinIOAccessKey, "secretKey": MinIOSecretKey},
	}
	fromSecret := func(name, key string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: MinIOName}, Key: key}}}
	}
	deploy := &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: MinIOName, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			// Never two servers on one emptyDir-less history: the old pod
			// goes before a new one starts.
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					NodeSelector: map[string]string{"node-role.kubernetes.io/control-plane": ""},
					Tolerations: []corev1.Toleration{{Key: "node-role.kubernetes.io/control-plane",
						Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}},
					Containers: []corev1.Container{{
						Name:            "minio",
						Image:           MinIOImage,
						ImagePullPolicy: corev1.PullNever,
						Args:            []string{"server", "--address", ":" + strconv.Itoa(MinIOPort), "/data"},
						Env:             []corev1.EnvVar{fromSecret("MINIO_ROOT_USER", "accessKey"), fromSecret("MINIO_ROOT_PASSWORD", "secretKey")},
						Ports:           []corev1.ContainerPort{{Name: "s3", ContainerPort: MinIOPort}},
						VolumeMounts:    []corev1.VolumeMount{{Name: "data", MountPath: "/data"}},
						ReadinessProbe: &corev1.Probe{
							ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
								Path: "/minio/health/ready", Port: intstr.FromInt32(MinIOPort)}},
							PeriodSeconds: 2,
						},
					}},
					Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
				},
			},
		},
	}
	svc := &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: MinIOName, Labels: labels},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeNodePort,
			Selector: labels,
			Ports:    []corev1.ServicePort{{Name: "s3", Port: MinIOPort, TargetPort: intstr.FromInt32(MinIOPort)}},
		},
	}
	for _, o := range []client.Object{secret, deploy, svc} {
		if err := c.Client.Patch(ctx, o, client.Apply, client.FieldOwner("sluice-kindconfig"), client.ForceOwnership); err != nil {
			return "", "", fmt.Errorf("applying MinIO %T in %s: %w", o, namespace, err)
		}
	}
	if err := c.waitDeploymentAvailable(ctx, namespace, MinIOName, 3*time.Minute); err != nil {
		return "", "", err
	}
	if err := c.Client.Get(ctx, client.ObjectKeyFromObject(svc), svc); err != nil {
		return "", "", err
	}
	if svc.Spec.ClusterIP == "" || svc.Spec.ClusterIP == corev1.ClusterIPNone {
		return "", "", fmt.Errorf("MinIO service %s/%s has no cluster IP", namespace, MinIOName)
	}
	// Creating the bucket from here also proves the server answers.
	mc, err := c.MinIOClient(ctx, namespace)
	if err != nil {
		return "", "", err
	}
	var last error
	err = wait.PollUntilContextTimeout(ctx, time.Second, time.Minute, true, func(ctx context.Context) (bool, error) {
		ok, err := mc.BucketExists(ctx, MinIOBucket)
		if err == nil && !ok {
			err = mc.MakeBucket(ctx, MinIOBucket, minio.MakeBucketOptions{})
			ok = err == nil
		}
		last = err
		return ok, nil
	})
	if err != nil {
		return "", "", fmt.Errorf("creating bucket %s in MinIO %s/%s: %v", MinIOBucket, namespace, MinIOName, last)
	}
	c.logf("MinIO ready in %s at %s:%d, bucket %s", namespace, svc.Spec.ClusterIP, MinIOPort, MinIOBucket)
	return net.JoinHostPort(svc.Spec.ClusterIP, strconv.Itoa(MinIOPort)), MinIOName, nil
}

// MinIOClient returns an S3 client, for the test process, to the MinIO
// DeployMinIO runs in namespace: through its Service's NodePort on the
// control-plane node's address (kind node containers are reachable from
// the Docker host; the control plane is never a fault target).
func (c *Cluster) MinIOClient(ctx context.Context, namespace string) (*minio.Client, error) {
	var svc corev1.Service
	if err := c.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: MinIOName}, &svc); err != nil {
		return nil, fmt.Errorf("MinIO service: %w", err)
	}
	var nodePort int32
	for _, p := range svc.Spec.Ports {
		if p.Port == MinIOPort {
			nodePort = p.NodePort
		}
	}
	if nodePort == 0 {
		return nil, fmt.Errorf("MinIO service %s/%s has no node port", namespace, MinIOName)
	}
	cp, err := c.controlPlaneNode()
	if err != nil {
		return nil, err
	}
	ipv4, _, err := cp.IP()
	if err != nil || ipv4 == "" {
		return nil, fmt.Errorf("address of %s: %v", cp.String(), err)
	}
	return minio.New(net.JoinHostPort(ipv4, strconv.Itoa(int(nodePort))), &minio.Options{
		Creds: credentials.NewStaticV4(MinIOAccessKey, MinIOSecretKey, ""), Secure: false})
}

// ListMinIO lists the objects of MinIOBucket under prefix (recursively),
// name to size, in the MinIO of namespace.
func (c *Cluster) ListMinIO(ctx context.Context, namespace, prefix string) (map[string]int64, error) {
	mc, err := c.MinIOClient(ctx, namespace)
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for o := range mc.ListObjects(ctx, MinIOBucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if o.Err != nil {
			return nil, fmt.Errorf("listing s3://%s/%s: %w", MinIOBucket, prefix, o.Err)
		}
		out[o.Key] = o.Size
	}
	return out, nil
}

func (c *Cluster) controlPlaneNode() (nodes.Node, error) {
	all, err := c.Provider.ListInternalNodes(c.Name)
	if err != nil {
		return nil, err
	}
	cps, err := nodeutils.ControlPlaneNodes(all)
	if err != nil || len(cps) == 0 {
		return nil, fmt.Errorf("control-plane node of %s: %v", c.Name, err)
	}
	return cps[0], nil
}

// waitDeploymentAvailable waits until a Deployment's current generation has
// an available replica.
func (c *Cluster) waitDeploymentAvailable(ctx context.Context, namespace, name string, timeout time.Duration) error {
	var last string
	err := wait.PollUntilContextTimeout(ctx, time.Second, timeout, true, func(ctx context.Context) (bool, error) {
		var d appsv1.Deployment
		if err := c.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &d); err != nil {
			last = err.Error()
			return false, nil
		}
		last = fmt.Sprintf("%d available, generation %d observed %d", d.Status.AvailableReplicas, d.Generation, d.Status.ObservedGeneration)
		return d.Status.ObservedGeneration >= d.Generation && d.Status.AvailableReplicas >= 1, nil
	})
	if err != nil {
		return fmt.Errorf("deployment %s/%s not available after %s: %s", namespace, name, timeout, last)
	}
	return nil
}
