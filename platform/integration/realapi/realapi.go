// Package realapi gives tests a real kube-apiserver and etcd (envtest) with
// the platform's CRDs, a real kube-controller-manager running only its
// garbage collector when the binary is at hand, and the platform's operator
// in a manager. It plays the scheduler and kubelet itself (envtest has
// neither): Kubelet binds pods and reports them Running and Ready.
package realapi

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"sluice.dev/sluice/platform/operator"
	"sluice.dev/sluice/platform/wiring/wiringtest"
)

// ErrNoAssets means KUBEBUILDER_ASSETS is unset: callers skip, unless
// SLUICE_REQUIRE_ENVTEST says the run must have a real API server.
var ErrNoAssets = errors.New("KUBEBUILDER_ASSETS is not set (`make test` sets it)")

// Required reports whether a missing envtest must fail the run.
func Required() bool { return os.Getenv("SLUICE_REQUIRE_ENVTEST") != "" }

// Env is a running API server with the platform's CRDs.
type Env struct {
	Config *rest.Config
	Client client.Client
	// HaveGC is true when a kube-controller-manager runs the garbage collector.
	HaveGC bool
	env    *envtest.Environment
	stopGC func()
}

// RepoRoot finds the module root from this source file.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

// newEnvironment is envtest with the platform's CRDs.
func newEnvironment() *envtest.Environment {
	return &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(RepoRoot(), "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
}

// APIServer starts a bare kube-apiserver and etcd with the platform's CRDs
// for one test (no operator, no garbage collector) and stops them when it
// ends. Without assets the test is skipped, unless Required. shortWatches
// makes the server end every watch after 1-2 s, so that a client must list
// and watch again.
func APIServer(t testing.TB, shortWatches bool) *rest.Config {
	t.Helper()
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		if Required() {
			t.Fatal(ErrNoAssets)
		}
		t.Skip(ErrNoAssets)
	}
	env := newEnvironment()
	if shortWatches {
		env.ControlPlane.GetAPIServer().Configure().Set("min-request-timeout", "1")
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	return cfg
}

// Start starts envtest (and the garbage collector when it can).
func Start() (*Env, error) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		return nil, ErrNoAssets
	}
	e := &Env{env: newEnvironment()}
	var err error
	if e.Config, err = e.env.Start(); err != nil {
		return nil, fmt.Errorf("envtest: %w", err)
	}
	if e.Client, err = client.New(e.Config, client.Options{Scheme: operator.Scheme()}); err != nil {
		_ = e.env.Stop()
		return nil, err
	}
	if e.stopGC, err = e.startGarbageCollector(); err != nil {
		_ = e.env.Stop()
		return nil, fmt.Errorf("garbage collector: %w", err)
	}
	return e, nil
}

// Stop stops everything Start started.
func (e *Env) Stop() {
	e.stopGC()
	_ = e.env.Stop()
}

// startGarbageCollector runs kube-controller-manager with only the garbage
// collector, if the binary sits beside the envtest assets (the offline
// envtest-assets script builds it) or is named by KUBE_CONTROLLER_MANAGER.
func (e *Env) startGarbageCollector() (func(), error) {
	bin := os.Getenv("KUBE_CONTROLLER_MANAGER")
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	for _, p := range []string{filepath.Join(assets, "kube-controller-manager"), filepath.Join(assets, "..", "bin", "kube-controller-manager")} {
		if bin != "" {
			break
		}
		if _, err := os.Stat(p); err == nil {
			bin = p
		}
	}
	if bin == "" {
		fmt.Fprintln(os.Stderr, "realapi: no kube-controller-manager beside the envtest assets: garbage-collection tests will skip")
		return func() {}, nil
	}
	user, err := e.env.AddUser(envtest.User{Name: "gc", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return nil, err
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "sluice-kcm")
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(path, kc, 0o600); err != nil {
		return nil, err
	}
	log, err := os.Create(filepath.Join(dir, "kcm.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "--kubeconfig="+path, "--controllers=garbagecollector", "--leader-elect=false",
		"--secure-port=0", "--concurrent-gc-syncs=5", "-v=1")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	e.HaveGC = true
	return func() {
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
		_ = log.Close()
		if os.Getenv("SLUICE_KEEP_KCM_LOG") == "" {
			_ = os.RemoveAll(dir)
		}
	}, nil
}

// StartOperator runs the platform's reconcilers in a manager until the
// returned function is called (an operator crash, as far as the platform
// can tell); that function reports how the manager ended.
func (e *Env) StartOperator() (stop func() error, err error) {
	cfg := rest.CopyConfig(e.Config)
	cfg.QPS, cfg.Burst = operator.ClientQPS, operator.ClientBurst
	skip := true
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 operator.Scheme(),
		Cache:                  operator.CacheOptions(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		// Tests start several managers in one process, one after another.
		Controller: config.Controller{SkipNameValidation: &skip},
	})
	if err != nil {
		return nil, err
	}
	if _, err := operator.Setup(mgr, "sluice-pe:test"); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	return func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(30 * time.Second):
			return errors.New("manager did not stop within 30s")
		}
	}, nil
}

// Kubelet binds every unbound pod of ns to node and reports it Running and
// Ready, as the scheduler and the kubelet (with the PE runtime's readiness)
// would; a pod marked Unschedulable stays unbound. It returns how many pods it started.
func Kubelet(ctx context.Context, c client.Client, ns, node string) (int, error) {
	var pods corev1.PodList
	if err := c.List(ctx, &pods, client.InNamespace(ns)); err != nil {
		return 0, err
	}
	n := 0
	for _, p := range pods.Items {
		if p.Spec.NodeName != "" || p.DeletionTimestamp != nil || markedUnschedulable(&p) {
			continue
		}
		b := &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: ns},
			Target: corev1.ObjectReference{Kind: "Node", Name: node}}
		if err := c.SubResource("binding").Create(ctx, &p, b); err != nil {
			if apierrors.IsNotFound(err) {
				continue // deleted since the list (a relaunch), as a scheduler finds it
			}
			return n, fmt.Errorf("bind %s: %w", p.Name, err)
		}
		// The operator may write the pod meanwhile (a relaunch deletes
		// it): retry on conflicts as a kubelet does, skip a pod gone.
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			if err := c.Get(ctx, client.ObjectKeyFromObject(&p), &p); err != nil {
				return err
			}
			wiringtest.SetPodRunning(&p, node, true)
			return c.Status().Update(ctx, &p)
		})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return n, fmt.Errorf("status of %s: %w", p.Name, err)
		}
		n++
	}
	return n, nil
}

// markedUnschedulable reports whether a pod carries the scheduler's
// Unschedulable verdict (tests set it to keep a pod off every node).
func markedUnschedulable(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
			return true
		}
	}
	return false
}

// Eventually polls cond until it holds or the timeout passes; the error
// carries cond's last description of the state.
func Eventually(timeout time.Duration, cond func() (bool, string)) error {
	deadline := time.Now().Add(timeout)
	last := ""
	for time.Now().Before(deadline) {
		ok, state := cond()
		if ok {
			return nil
		}
		last = state
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("not within %s; last state: %s", timeout, last)
}
