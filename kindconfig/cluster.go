package kindconfig

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	kindcluster "sigs.k8s.io/kind/pkg/cluster"
	"sigs.k8s.io/kind/pkg/cluster/nodes"
	"sigs.k8s.io/kind/pkg/cluster/nodeutils"

	"sluice.dev/sluice/config"
	"sluice.dev/sluice/platform/api/v1alpha1"
)

// Shape is a cluster configuration of this directory.
type Shape string

const (
	// OneNode is a single control-plane node that also runs pods.
	OneNode Shape = "one-node"
	// ThreeWorkers is one control plane and three workers.
	ThreeWorkers Shape = "three-workers"
)

//go:embed one-node.yaml
var oneNodeYAML []byte

//go:embed three-workers.yaml
var threeWorkersYAML []byte

// Config returns the kind configuration (v1alpha4 YAML) of a shape.
func Config(s Shape) ([]byte, error) {
	switch s {
	case OneNode:
		return oneNodeYAML, nil
	case ThreeWorkers, "":
		return threeWorkersYAML, nil
	}
	return nil, fmt.Errorf("unknown cluster shape %q (have %s, %s)", s, OneNode, ThreeWorkers)
}

// Operator deployment coordinates, as config/default installs them.
const (
	OperatorNamespace  = config.Namespace
	OperatorDeployment = config.OperatorDeployment
	OperatorImage      = config.DefaultOperatorImage
	PEImage            = config.DefaultPEImage
	// LeaderElectionID is the operator's lease (cmd/operator).
	LeaderElectionID = "operator.streams.sluice.dev"
)

// Options create or reuse a cluster.
type Options struct {
	// Name of the kind cluster (kind prefixes contexts with "kind-").
	Name string
	// Shape of a cluster created here; an existing cluster is reused as is.
	Shape Shape
	// NodeImage; empty means NodeImage(RepoDir).
	NodeImage string
	// RepoDir is the repository root (for config/ and the shared kind dir).
	RepoDir string
	// Wait bounds the control plane's readiness at creation.
	Wait time.Duration
	// Log receives progress lines; nil discards them.
	Log io.Writer
}

// Cluster is a running kind cluster with clients for it.
type Cluster struct {
	Name     string
	RepoDir  string
	Provider *kindcluster.Provider
	Config   *rest.Config
	Client   client.Client
	Kube     kubernetes.Interface
	log      io.Writer
}

// Scheme has the core kinds and streams.sluice.dev.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(s)
	_ = v1alpha1.AddToScheme(s)
	return s
}

// DockerAvailable says whether a Docker engine answers.
func DockerAvailable(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput()
	if err != nil {
		return fmt.Errorf("docker info: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Exists says whether kind knows a cluster of that name.
func Exists(name string) (bool, error) {
	names, err := kindcluster.NewProvider(kindcluster.ProviderWithDocker()).List()
	if err != nil {
		return false, fmt.Errorf("listing kind clusters: %w", err)
	}
	return slices.Contains(names, name), nil
}

// Ensure returns the named cluster, creating it with the shape's
// configuration when kind does not know it.
func Ensure(ctx context.Context, o Options) (*Cluster, error) {
	if o.Name == "" {
		return nil, errors.New("kindconfig: a cluster name is required")
	}
	p := kindcluster.NewProvider(kindcluster.ProviderWithDocker())
	names, err := p.List()
	if err != nil {
		return nil, fmt.Errorf("listing kind clusters: %w", err)
	}
	logf := func(format string, a ...any) {
		if o.Log != nil {
			fmt.Fprintf(o.Log, "kindconfig: "+format+"\n", a...)
		}
	}
	if slices.Contains(names, o.Name) {
		logf("reusing cluster %s", o.Name)
	} else {
		raw, err := Config(o.Shape)
		if err != nil {
			return nil, err
		}
		img := o.NodeImage
		if img == "" {
			img = NodeImage(o.RepoDir)
		}
		wt := o.Wait
		if wt == 0 {
			wt = 5 * time.Minute
		}
		logf("creating cluster %s (%s, %s)", o.Name, o.Shape, img)
		if err := p.Create(o.Name, kindcluster.CreateWithRawConfig(raw), kindcluster.CreateWithNodeImage(img),
			kindcluster.CreateWithWaitForReady(wt), kindcluster.CreateWithDisplayUsage(false),
			kindcluster.CreateWithDisplaySalutation(false)); err != nil {
			return nil, fmt.Errorf("creating kind cluster %s: %w", o.Name, err)
		}
	}
	c, err := Connect(o.Name, o.RepoDir)
	if err != nil {
		return nil, err
	}
	c.log = o.Log
	if err := c.WaitNodesReady(ctx, 3*time.Minute); err != nil {
		return nil, err
	}
	return c, nil
}

// Connect returns clients for an existing kind cluster.
func Connect(name, repoDir string) (*Cluster, error) {
	p := kindcluster.NewProvider(kindcluster.ProviderWithDocker())
	kc, err := p.KubeConfig(name, false)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig of %s: %w", name, err)
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig([]byte(kc))
	if err != nil {
		return nil, err
	}
	// Tests and experiments watch and list a lot; the default 5 QPS would
	// make the measuring client the bottleneck.
	cfg.QPS, cfg.Burst = 100, 200
	cl, err := client.New(cfg, client.Options{Scheme: Scheme()})
	if err != nil {
		return nil, err
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &Cluster{Name: name, RepoDir: repoDir, Provider: p, Config: cfg, Client: cl, Kube: kube}, nil
}

func (c *Cluster) logf(format string, a ...any) {
	if c.log != nil {
		fmt.Fprintf(c.log, "kindconfig: "+format+"\n", a...)
	}
}

// Delete deletes the cluster.
func (c *Cluster) Delete() error { return c.Provider.Delete(c.Name, "") }

// NodeContainers lists the cluster's node containers (also the node names).
func (c *Cluster) NodeContainers() ([]string, error) {
	ns, err := c.Provider.ListInternalNodes(c.Name)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(ns))
	for _, n := range ns {
		out = append(out, n.String())
	}
	slices.Sort(out)
	return out, nil
}

// Workers lists the worker node names, sorted.
func (c *Cluster) Workers() ([]string, error) {
	all, err := c.NodeContainers()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range all {
		if !strings.HasSuffix(n, "-control-plane") {
			out = append(out, n)
		}
	}
	return out, nil
}

// WaitNodesReady waits until every node is Ready.
func (c *Cluster) WaitNodesReady(ctx context.Context, timeout time.Duration) error {
	var last string
	err := wait.PollUntilContextTimeout(ctx, time.Second, timeout, true, func(ctx context.Context) (bool, error) {
		var nodes corev1.NodeList
		if err := c.Client.List(ctx, &nodes); err != nil {
			last = err.Error()
			return false, nil
		}
		if len(nodes.Items) == 0 {
			last = "no nodes"
			return false, nil
		}
		for _, n := range nodes.Items {
			if !NodeReady(&n) {
				last = n.Name + " not Ready"
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("nodes of %s not Ready after %s: %s", c.Name, timeout, last)
	}
	return nil
}

// NodeReady says whether a node's Ready condition is True.
func NodeReady(n *corev1.Node) bool {
	for _, cond := range n.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

// LoadImages copies local Docker images into every node's containerd, as
// `kind load docker-image` does.
func (c *Cluster) LoadImages(ctx context.Context, images ...string) error {
	all, err := c.Provider.ListInternalNodes(c.Name)
	if err != nil {
		return err
	}
	for _, img := range images {
		if err := c.loadImageInto(ctx, img, all); err != nil {
			return err
		}
	}
	return nil
}

// loadImageInto copies one local Docker image into the given nodes.
func (c *Cluster) loadImageInto(ctx context.Context, img string, targets []nodes.Node) error {
	tar, err := os.CreateTemp("", "kindconfig-image-*.tar")
	if err != nil {
		return err
	}
	tarPath := tar.Name()
	tar.Close()
	defer os.Remove(tarPath)
	if out, err := exec.CommandContext(ctx, "docker", "save", "-o", tarPath, img).CombinedOutput(); err != nil {
		return fmt.Errorf("docker save %s: %v: %s", img, err, strings.TrimSpace(string(out)))
	}
	for _, n := range targets {
		f, err := os.Open(tarPath)
		if err != nil {
			return err
		}
		err = nodeutils.LoadImageArchive(n, f)
		f.Close()
		if err != nil {
			return fmt.Errorf("loading %s into %s: %w", img, n, err)
		}
	}
	c.logf("loaded %s into %d nodes", img, len(targets))
	return nil
}

// Apply server-side applies objects, waiting for CRDs to be established
// before anything after them.
func (c *Cluster) Apply(ctx context.Context, objs []*unstructured.Unstructured) error {
	for _, o := range objs {
		o := o.DeepCopy()
		if err := c.Client.Patch(ctx, o, client.Apply, client.FieldOwner("sluice-kindconfig"), client.ForceOwnership); err != nil {
			return fmt.Errorf("applying %s %s: %w", o.GetKind(), o.GetName(), err)
		}
		if o.GetKind() == "CustomResourceDefinition" {
			if err := c.waitEstablished(ctx, o.GetName()); err != nil {
				return err
			}
		}
	}
	return nil
}

func (c *Cluster) waitEstablished(ctx context.Context, name string) error {
	return wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		crd := &unstructured.Unstructured{}
		crd.SetAPIVersion("apiextensions.k8s.io/v1")
		crd.SetKind("CustomResourceDefinition")
		if err := c.Client.Get(ctx, client.ObjectKey{Name: name}, crd); err != nil {
			return false, nil
		}
		conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
		for _, x := range conds {
			m, _ := x.(map[string]any)
			if m["type"] == "Established" && m["status"] == "True" {
				return true, nil
			}
		}
		return false, nil
	})
}

// DeployOperator installs Sluice as users do, from config/default through
// kustomize (config.Render) with the images this package loads, restarts
// operator pods that predate this call (so a re-loaded image of the same
// tag runs) and waits for the operator Deployment to be available.
func (c *Cluster) DeployOperator(ctx context.Context, restart bool) error {
	objs, err := config.Render(config.Images{Operator: OperatorImage, PE: PEImage})
	if err != nil {
		return err
	}
	if err := c.Apply(ctx, objs); err != nil {
		return err
	}
	if restart {
		if err := c.Client.DeleteAllOf(ctx, &corev1.Pod{}, client.InNamespace(OperatorNamespace),
			client.MatchingLabels{"app.kubernetes.io/name": OperatorDeployment}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("restarting the operator: %w", err)
		}
	}
	return c.WaitOperatorReady(ctx, 3*time.Minute)
}

// WaitOperatorReady waits until the operator Deployment is rolled out and
// has a ready, non-terminating pod.
func (c *Cluster) WaitOperatorReady(ctx context.Context, timeout time.Duration) error {
	var last string
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		var d appsv1.Deployment
		if err := c.Client.Get(ctx, client.ObjectKey{Namespace: OperatorNamespace, Name: OperatorDeployment}, &d); err != nil {
			last = err.Error()
			return false, nil
		}
		if d.Status.ObservedGeneration < d.Generation || d.Status.AvailableReplicas < 1 {
			last = fmt.Sprintf("deployment: %d available, generation %d observed %d", d.Status.AvailableReplicas, d.Generation, d.Status.ObservedGeneration)
			return false, nil
		}
		pod, err := c.OperatorPod(ctx)
		if err != nil {
			last = err.Error()
			return false, nil
		}
		if !PodReady(pod) {
			last = "operator pod " + pod.Name + " not ready"
			return false, nil
		}
		// Ready is not reconciling: a new replica first waits out the
		// previous leader's lease.
		var lease coordinationv1.Lease
		if err := c.Client.Get(ctx, client.ObjectKey{Namespace: OperatorNamespace, Name: LeaderElectionID}, &lease); err != nil {
			last = "leader lease: " + err.Error()
			return false, nil
		}
		holder := ptr.Deref(lease.Spec.HolderIdentity, "")
		if !strings.HasPrefix(holder, pod.Name+"_") {
			last = fmt.Sprintf("lease held by %q, not by %s", holder, pod.Name)
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("operator not ready after %s: %s", timeout, last)
	}
	c.logf("operator ready")
	return nil
}

// OperatorPod returns the operator's live (not terminating) pod.
func (c *Cluster) OperatorPod(ctx context.Context) (*corev1.Pod, error) {
	var pods corev1.PodList
	if err := c.Client.List(ctx, &pods, client.InNamespace(OperatorNamespace),
		client.MatchingLabels{"app.kubernetes.io/name": OperatorDeployment}); err != nil {
		return nil, err
	}
	for i := range pods.Items {
		if pods.Items[i].DeletionTimestamp == nil {
			return &pods.Items[i], nil
		}
	}
	return nil, errors.New("no live operator pod")
}

// PodReady says whether a pod's Ready condition is True.
func PodReady(p *corev1.Pod) bool {
	for _, cond := range p.Status.Conditions {
		if cond.Type == corev1.PodReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

// ScrapePod GETs path on a pod's port through the API server's pod proxy,
// so that no port-forward or host route to the pod network is needed.
func (c *Cluster) ScrapePod(ctx context.Context, namespace, pod string, port int, path string) ([]byte, error) {
	return c.Kube.CoreV1().Pods(namespace).ProxyGet("http", pod, fmt.Sprint(port), path, nil).DoRaw(ctx)
}

// PECounter scrapes a PE pod's /metrics (port v1alpha1.PEHealthPort)
// through the pod proxy and sums the samples of metric whose label set
// contains every fragment (for example `operator="sink"`).
func (c *Cluster) PECounter(ctx context.Context, namespace, pod, metric string, fragments ...string) (float64, error) {
	b, err := c.ScrapePod(ctx, namespace, pod, int(v1alpha1.PEHealthPort), "/metrics")
	if err != nil {
		return 0, err
	}
	return SumMetric(b, metric, fragments...)
}

// SumMetric sums the samples of one metric in Prometheus text format whose
// label set contains every fragment. A metric with no sample is an error,
// so that a missing series is not read as zero.
func SumMetric(text []byte, metric string, fragments ...string) (float64, error) {
	sum, n := 0.0, 0
	for _, line := range strings.Split(string(text), "\n") {
		if !strings.HasPrefix(line, metric) || len(line) == len(metric) {
			continue
		}
		if r := line[len(metric)]; r != '{' && r != ' ' {
			continue
		}
		ok := true
		for _, f := range fragments {
			ok = ok && strings.Contains(line, f)
		}
		if !ok {
			continue
		}
		fields := strings.Fields(line)
		var v float64
		if _, err := fmt.Sscan(fields[len(fields)-1], &v); err != nil {
			return 0, fmt.Errorf("metric line %q: %w", line, err)
		}
		sum += v
		n++
	}
	if n == 0 {
		return 0, fmt.Errorf("no sample of %s%v", metric, fragments)
	}
	return sum, nil
}
