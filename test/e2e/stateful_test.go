//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"testing"

	"github.com/minio/minio-go/v7"

	"sluice.dev/sluice/kindconfig"
)

// minIO deploys MinIO into ns for the S3 checkpoint store. Without the
// MinIO image the test skips, or fails when SLUICE_REQUIRE_S3=1 (CI).
func minIO(t *testing.T, c *kindconfig.Cluster, ns string) (endpoint, secret string) {
	t.Helper()
	endpoint, secret, err := c.DeployMinIO(context.Background(), ns)
	if errors.Is(err, kindconfig.ErrMinIOImageMissing) {
		if os.Getenv("SLUICE_REQUIRE_S3") == "1" {
			t.Fatalf("SLUICE_REQUIRE_S3=1 and no MinIO image: %v", err)
		}
		t.Skipf("no MinIO for the S3 checkpoint store (set SLUICE_REQUIRE_S3=1 to fail instead): %v", err)
	}
	if err != nil {
		t.Fatalf("deploying MinIO: %v", err)
	}
	return endpoint, secret
}

// MinIO deployed by kindconfig serves S3 on the control-plane node: an
// object written from the test process is listed and read back.
func TestMinIOInCluster(t *testing.T) {
	c := cluster(t)
	ctx := context.Background()
	ns := namespace(t, c, "e2e-minio")
	endpoint, secret := minIO(t, c, ns)
	mc, err := c.MinIOClient(ctx, ns)
	if err != nil {
		t.Fatal(err)
	}
	body := []byte("written from the test process")
	if _, err := mc.PutObject(ctx, kindconfig.MinIOBucket, "probe/a", bytes.NewReader(body), int64(len(body)), minio.PutObjectOptions{}); err != nil {
		t.Fatalf("put: %v", err)
	}
	objs, err := c.ListMinIO(ctx, ns, "probe/")
	if err != nil || objs["probe/a"] != int64(len(body)) {
		t.Fatalf("listing: %v %v", objs, err)
	}
	o, err := mc.GetObject(ctx, kindconfig.MinIOBucket, "probe/a", minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(o)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("read back %q (%v)", got, err)
	}
	t.Logf("MinIO at %s (in-cluster), credentials in Secret %s", endpoint, secret)
}
