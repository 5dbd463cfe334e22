// Package integration tests the platform against a real kube-apiserver and
// etcd (controller-runtime's envtest), with a real kube-controller-manager
// running only its garbage collector when the binary is available. envtest
// has no scheduler and no kubelet: the tests bind pods and report their
// phase and readiness themselves, as those components would.
package integration

import (
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"sluice.dev/sluice/platform/integration/realapi"
)

var (
	env *realapi.Env
	k8s client.Client
	// haveGC is true when a kube-controller-manager runs the garbage collector.
	haveGC bool
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctrl.SetLogger(zap.New(zap.UseDevMode(true), zap.Level(zapcore.Level(zapLevel()))))
	var err error
	env, err = realapi.Start()
	if errors.Is(err, realapi.ErrNoAssets) && !realapi.Required() {
		fmt.Fprintln(os.Stderr, "skipping envtest integration tests:", err)
		return 0
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer env.Stop()
	k8s, haveGC = env.Client, env.HaveGC
	return m.Run()
}

func zapLevel() int8 {
	if os.Getenv("SLUICE_TEST_VERBOSE") != "" {
		return -2
	}
	return 1 // warnings and errors only
}

// startOperator runs the platform's reconcilers until the returned function
// is called (an operator crash, as far as the platform can tell).
func startOperator(t *testing.T) func() {
	t.Helper()
	stop, err := env.StartOperator()
	if err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := stop(); err != nil {
			t.Errorf("manager: %v", err)
		}
	}
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	if err := realapi.Eventually(timeout, cond); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}
