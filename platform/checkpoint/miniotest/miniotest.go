// Package miniotest runs a real MinIO server (a local binary built by
// hack/minio/build.sh) on a loopback port with a temporary data directory,
// for tests that need an S3-compatible service.
//
// The binary is $SLUICE_S3_SERVER, or else the newest
// ${SLUICE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice}/minio/<version>/minio. Without one,
// Start skips the test, unless SLUICE_REQUIRE_S3=1, when it fails it. A
// SLUICE_S3_SERVER that does not exist always fails.
package miniotest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Server is a running MinIO process.
type Server struct {
	// Endpoint is host:port, plain HTTP.
	Endpoint string
	// AccessKey and SecretKey are the root credentials.
	AccessKey, SecretKey string
	// Binary is the executable that runs.
	Binary string
}

// Binary finds the MinIO executable, or says where it looked.
func Binary() (string, error) {
	if p := os.Getenv("SLUICE_S3_SERVER"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("SLUICE_S3_SERVER=%s: %w", p, err)
		}
		return p, nil
	}
	// The same cache directory as hack/minio/build.sh.
	cache := os.Getenv("SLUICE_CACHE")
	if cache == "" {
		base := os.Getenv("XDG_CACHE_HOME")
		if base == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return "", fmt.Errorf("no SLUICE_S3_SERVER, no SLUICE_CACHE and no home directory: %w", err)
			}
			base = filepath.Join(home, ".cache")
		}
		cache = filepath.Join(base, "sluice")
	}
	pattern := filepath.Join(cache, "minio", "*", "minio")
	found, _ := filepath.Glob(pattern)
	if len(found) == 0 {
		return "", fmt.Errorf("no MinIO binary: SLUICE_S3_SERVER is unset and nothing matches %s (run hack/minio/build.sh)", pattern)
	}
	// Version directories are pseudo-versions with a timestamp: the last
	// in lexical order is the newest.
	sort.Strings(found)
	return found[len(found)-1], nil
}

// Start runs a MinIO server until the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		// A server named explicitly but missing is a broken setup, not an
		// absent optional dependency.
		if os.Getenv("SLUICE_REQUIRE_S3") == "1" || os.Getenv("SLUICE_S3_SERVER") != "" {
			t.Fatalf("S3 server required (SLUICE_REQUIRE_S3=1 or SLUICE_S3_SERVER set) but unusable: %v", err)
		}
		t.Skipf("skipping S3 test: %v (set SLUICE_REQUIRE_S3=1 to make this a failure)", err)
	}
	// A port picked by the kernel can be taken again before MinIO binds
	// it; try a few times.
	var lastErr error
	for range 3 {
		s, err := start(t, bin)
		if err == nil {
			return s
		}
		lastErr = err
	}
	t.Fatalf("starting MinIO %s: %v", bin, lastErr)
	return nil
}

// readyTimeout is generous: the machine may be busy; this is not a speed
// assertion.
const readyTimeout = 2 * time.Minute

func start(t testing.TB, bin string) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &Server{
		Endpoint:  net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		AccessKey: "sluice-test",
		SecretKey: "sluice-test-secret-key",
		Binary:    bin,
	}
	data := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "server", "--quiet", "--address", s.Endpoint, data)
	cmd.Env = append(os.Environ(),
		"MINIO_ROOT_USER="+s.AccessKey,
		"MINIO_ROOT_PASSWORD="+s.SecretKey,
		"MINIO_BROWSER=off", // no console listener on a second port
		"MINIO_UPDATE=off",
	)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	stop := func() {
		cancel() // kills the process
		<-exited
	}
	if err := waitReady(s, exited); err != nil {
		stop()
		return nil, fmt.Errorf("%w; server output:\n%s", err, out.String())
	}
	t.Cleanup(stop)
	return s, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitReady waits until an authenticated S3 request succeeds: MinIO's
// health endpoints answer before IAM is initialized, and requests in that
// window fail with "Server not initialized yet".
func waitReady(s *Server, exited <-chan struct{}) error {
	client, err := minio.New(s.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(s.AccessKey, s.SecretKey, "")})
	if err != nil {
		return err
	}
	deadline := time.Now().Add(readyTimeout)
	for {
		select {
		case <-exited:
			return errors.New("MinIO exited before it was ready")
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err = client.ListBuckets(ctx)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("MinIO at %s not ready after %v: %w", s.Endpoint, readyTimeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// syncBuffer collects the server's output, written from exec's copiers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
