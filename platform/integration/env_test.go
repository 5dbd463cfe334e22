// Package integration tests the platform against a real kube-apiserver and
// etcd (controller-runtime's envtest), with a real kube-controller-manager
// running only its garbage collector when the binary is available. envtest
// has no scheduler and no kubelet: the tests bind pods and report their
// phase and readiness themselves, as those components would.
package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"sluice.dev/sluice/platform/operator"
)

var (
	cfg *rest.Config
	k8s client.Client
	// haveGC is true when a kube-controller-manager runs the garbage collector.
	haveGC bool
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		if os.Getenv("SLUICE_REQUIRE_ENVTEST") != "" {
			fmt.Fprintln(os.Stderr, "KUBEBUILDER_ASSETS is not set but SLUICE_REQUIRE_ENVTEST is: run `make test`, which provides them")
			return 1
		}
		fmt.Fprintln(os.Stderr, "skipping envtest integration tests: KUBEBUILDER_ASSETS is not set (`make test` sets it)")
		return 0
	}
	ctrl.SetLogger(zap.New(zap.UseDevMode(true), zap.Level(zapcore.Level(zapLevel()))))
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	var err error
	cfg, err = env.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "envtest:", err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	k8s, err = client.New(cfg, client.Options{Scheme: operator.Scheme()})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	stopGC, err := startGarbageCollector(env)
	if err != nil {
		fmt.Fprintln(os.Stderr, "garbage collector:", err)
		return 1
	}
	defer stopGC()
	return m.Run()
}

func zapLevel() int8 {
	if os.Getenv("SLUICE_TEST_VERBOSE") != "" {
		return -2
	}
	return 1 // warnings and errors only
}

// startGarbageCollector runs kube-controller-manager with only the garbage
// collector, against envtest's API server, if the binary sits beside the
// envtest assets (../shared/kind/envtest-assets builds it) or is named by
// KUBE_CONTROLLER_MANAGER.
func startGarbageCollector(env *envtest.Environment) (func(), error) {
	bin := os.Getenv("KUBE_CONTROLLER_MANAGER")
	if bin == "" {
		for _, p := range []string{
			filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), "kube-controller-manager"),
			filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), "..", "bin", "kube-controller-manager"),
		} {
			if _, err := os.Stat(p); err == nil {
				bin = p
				break
			}
		}
	}
	if bin == "" {
		fmt.Fprintln(os.Stderr, "no kube-controller-manager beside the envtest assets: garbage-collection tests will skip")
		return func() {}, nil
	}
	user, err := env.AddUser(envtest.User{Name: "gc", Groups: []string{"system:masters"}}, nil)
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
	haveGC = true
	return func() {
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
		_ = log.Close()
		if os.Getenv("SLUICE_KEEP_KCM_LOG") == "" {
			_ = os.RemoveAll(dir)
		}
	}, nil
}

// startOperator runs the platform's reconcilers in a manager until the
// returned function is called (an operator crash, as far as the platform can tell).
func startOperator(t *testing.T) func() {
	t.Helper()
	opCfg := rest.CopyConfig(cfg)
	opCfg.QPS, opCfg.Burst = operator.ClientQPS, operator.ClientBurst
	mgr, err := ctrl.NewManager(opCfg, ctrl.Options{
		Scheme:                 operator.Scheme(),
		Cache:                  operator.CacheOptions(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		// Tests start several managers in one process, one after another.
		Controller: config.Controller{SkipNameValidation: ptr(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := operator.Setup(mgr, "sluice-pe:test"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	return func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("manager: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("manager did not stop")
		}
	}
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for time.Now().Before(deadline) {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s; last state: %s", what, timeout, last)
}

var _ = corev1.Pod{}
