package checkpoint_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"sluice.dev/sluice/platform/checkpoint"
	"sluice.dev/sluice/platform/checkpoint/miniotest"
	"sluice.dev/sluice/platform/checkpoint/storetest"
)

// s3Config points at srv with credentials in the test's environment.
func s3Config(t *testing.T, srv *miniotest.Server, bucket, prefix string) checkpoint.Config {
	t.Setenv("SLUICE_TEST_S3_AK", srv.AccessKey)
	t.Setenv("SLUICE_TEST_S3_SK", srv.SecretKey)
	return checkpoint.Config{
		Type: "s3", Endpoint: srv.Endpoint, Bucket: bucket, Prefix: prefix, Insecure: true,
		AccessKeyEnv: "SLUICE_TEST_S3_AK", SecretKeyEnv: "SLUICE_TEST_S3_SK", CreateBucket: true,
	}
}

// rawClient talks to srv behind the store's back.
func rawClient(t *testing.T, srv *miniotest.Server) *minio.Client {
	c, err := minio.New(srv.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(srv.AccessKey, srv.SecretKey, "")})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func s3Key(t *testing.T, prefix string, k checkpoint.Key) string {
	t.Helper()
	name, err := checkpoint.ObjectName(k)
	if err != nil {
		t.Fatal(err)
	}
	return prefix + "/" + name
}

func TestS3Conformance(t *testing.T) {
	srv := miniotest.Start(t)
	t.Logf("MinIO %s at %s", srv.Binary, srv.Endpoint)
	raw := rawClient(t, srv)
	var n atomic.Int32
	storetest.Run(t, func(t *testing.T) storetest.Instance {
		// A bucket per subtest keeps them independent.
		bucket := fmt.Sprintf("conformance-%d", n.Add(1))
		const prefix = "sluice/ckpt"
		s, err := checkpoint.Open(s3Config(t, srv, bucket, prefix))
		if err != nil {
			t.Fatalf("Open s3 store: %v", err)
		}
		return storetest.Instance{
			Store: s,
			ReadRaw: func(t *testing.T, k checkpoint.Key) []byte {
				obj, err := raw.GetObject(context.Background(), bucket, s3Key(t, prefix, k), minio.GetObjectOptions{})
				if err != nil {
					t.Fatal(err)
				}
				defer obj.Close()
				b, err := io.ReadAll(obj)
				if err != nil {
					t.Fatal(err)
				}
				return b
			},
			WriteRaw: func(t *testing.T, k checkpoint.Key, b []byte) {
				_, err := raw.PutObject(context.Background(), bucket, s3Key(t, prefix, k), bytes.NewReader(b), int64(len(b)), minio.PutObjectOptions{})
				if err != nil {
					t.Fatal(err)
				}
			},
		}
	})
}

func TestS3LayoutAndBucket(t *testing.T) {
	srv := miniotest.Start(t)
	raw := rawClient(t, srv)
	ctx := context.Background()

	cfg := s3Config(t, srv, "layout", "/team/ckpt/")
	cfg.CreateBucket = false
	_, err := checkpoint.Open(cfg)
	if err == nil || !strings.Contains(err.Error(), `bucket "layout" does not exist`) {
		t.Fatalf("Open without createBucket on a missing bucket: err = %v", err)
	}
	cfg.CreateBucket = true
	s, err := checkpoint.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := raw.BucketExists(ctx, "layout"); err != nil || !ok {
		t.Fatalf("bucket not created: exists=%v err=%v", ok, err)
	}
	// Opening again finds the bucket.
	if _, err := checkpoint.Open(cfg); err != nil {
		t.Fatalf("second Open: %v", err)
	}

	k := checkpoint.Key{Namespace: "ns", Job: "wordcount", Region: "main", PE: "wordcount-pe-3", Seq: 42}
	if err := s.Put(ctx, k, []byte("state")); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for info := range raw.ListObjects(ctx, "layout", minio.ListObjectsOptions{Recursive: true}) {
		if info.Err != nil {
			t.Fatal(info.Err)
		}
		keys = append(keys, info.Key)
	}
	want := "team/ckpt/ns/wordcount/main/wordcount-pe-3/00000000000000000042.ckpt"
	if len(keys) != 1 || keys[0] != want {
		t.Fatalf("bucket holds %v, want [%s]", keys, want)
	}
}

func TestS3BadCredentials(t *testing.T) {
	srv := miniotest.Start(t)
	cfg := s3Config(t, srv, "creds", "")
	t.Setenv("SLUICE_TEST_S3_SK", "not-the-secret")
	_, err := checkpoint.Open(cfg)
	if err == nil {
		t.Fatal("Open with a wrong secret key succeeded")
	}
	if strings.Contains(err.Error(), "not-the-secret") {
		t.Errorf("error %q leaks the secret", err)
	}
	t.Logf("wrong secret: %v", err)
}

// Bodies above 16 MiB go up as a multipart upload; the object must still
// read back whole and replace the previous one.
func TestS3MultipartBody(t *testing.T) {
	srv := miniotest.Start(t)
	s, err := checkpoint.Open(s3Config(t, srv, "multipart", ""))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	k := checkpoint.Key{Namespace: "ns", Job: "j", Region: "r", PE: "p", Seq: 1}
	big := make([]byte, 17<<20+3)
	for i := range big {
		big[i] = byte(i * 7 / 5)
	}
	if err := s.Put(ctx, k, []byte("small first")); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, k, big); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, k)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, big) {
		t.Fatalf("Get returned %d bytes, want the %d put", len(got), len(big))
	}
}
