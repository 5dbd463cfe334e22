package checkpoint_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"sluice.dev/sluice/platform/checkpoint"
)

func TestConfigJSON(t *testing.T) {
	in := `{"type":"s3","endpoint":"minio.sluice-system:9000","bucket":"ckpt","prefix":"prod",
		"region":"us-east-1","insecure":true,"accessKeyEnv":"AK","secretKeyEnv":"SK","createBucket":true}`
	var c checkpoint.Config
	if err := json.Unmarshal([]byte(in), &c); err != nil {
		t.Fatal(err)
	}
	want := checkpoint.Config{Type: "s3", Endpoint: "minio.sluice-system:9000", Bucket: "ckpt", Prefix: "prod",
		Region: "us-east-1", Insecure: true, AccessKeyEnv: "AK", SecretKeyEnv: "SK", CreateBucket: true}
	if c != want {
		t.Fatalf("decoded %+v, want %+v", c, want)
	}
	out, err := json.Marshal(checkpoint.Config{Type: "filesystem", Path: "/var/lib/sluice/checkpoints"})
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != `{"type":"filesystem","path":"/var/lib/sluice/checkpoints"}` {
		t.Fatalf("encoded %s: unset fields should be omitted", out)
	}
}

func TestOpenRejectsBadConfig(t *testing.T) {
	t.Setenv("SLUICE_TEST_AK", "")
	t.Setenv("SLUICE_TEST_SK", "a-secret-value")
	cases := []struct {
		name string
		cfg  checkpoint.Config
		want string // part of the error message
	}{
		{"no type", checkpoint.Config{Path: "/x"}, "type is empty"},
		{"unknown type", checkpoint.Config{Type: "gcs"}, `unknown type "gcs"`},
		{"filesystem without path", checkpoint.Config{Type: "filesystem"}, "needs path"},
		{"filesystem with bucket", checkpoint.Config{Type: "filesystem", Path: "/x", Bucket: "b"}, "not endpoint or bucket"},
		{"s3 without bucket", checkpoint.Config{Type: "s3", Endpoint: "h:9000"}, "needs endpoint and bucket"},
		{"s3 without endpoint", checkpoint.Config{Type: "s3", Bucket: "b"}, "needs endpoint and bucket"},
		{"s3 with path", checkpoint.Config{Type: "s3", Endpoint: "h:9000", Bucket: "b", Path: "/x"}, "not path"},
		{"s3 endpoint with scheme", checkpoint.Config{Type: "s3", Endpoint: "http://h:9000", Bucket: "b"}, "without a scheme"},
		{"s3 credentials unset", checkpoint.Config{Type: "s3", Endpoint: "h:9000", Bucket: "b",
			AccessKeyEnv: "SLUICE_TEST_AK", SecretKeyEnv: "SLUICE_TEST_SK"}, "SLUICE_TEST_AK and SLUICE_TEST_SK must both be set"},
		{"bad prefix", checkpoint.Config{Type: "filesystem", Path: "/x", Prefix: "a/../b"}, "prefix segment"},
	}
	for _, tc := range cases {
		_, err := checkpoint.Open(tc.cfg)
		if err == nil {
			t.Errorf("%s: Open succeeded", tc.name)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q does not contain %q", tc.name, err, tc.want)
		}
		if strings.Contains(err.Error(), "a-secret-value") {
			t.Errorf("%s: error %q leaks a credential", tc.name, err)
		}
	}
	_, err := checkpoint.Open(checkpoint.Config{Type: "filesystem", Path: "/x", Prefix: "a b"})
	if !errors.Is(err, checkpoint.ErrInvalidKey) {
		t.Errorf("prefix with a space: err = %v, want ErrInvalidKey", err)
	}
}

func TestDefaultCredentialEnvNames(t *testing.T) {
	t.Setenv(checkpoint.DefaultAccessKeyEnv, "")
	t.Setenv(checkpoint.DefaultSecretKeyEnv, "")
	_, err := checkpoint.Open(checkpoint.Config{Type: "s3", Endpoint: "h:9000", Bucket: "b"})
	if err == nil || !strings.Contains(err.Error(), "SLUICE_S3_ACCESS_KEY and SLUICE_S3_SECRET_KEY") {
		t.Fatalf("err = %v, want it to name the default variables", err)
	}
}

func TestObjectName(t *testing.T) {
	name, err := checkpoint.ObjectName(checkpoint.Key{Namespace: "ns", Job: "j", Region: "r", PE: "p", Seq: 18446744073709551615})
	if err != nil {
		t.Fatal(err)
	}
	if name != "ns/j/r/p/18446744073709551615.ckpt" {
		t.Fatalf("name = %q", name)
	}
	name, _ = checkpoint.ObjectName(checkpoint.Key{Namespace: "ns", Job: "j", Region: "r", PE: "p", Seq: 7})
	if name != "ns/j/r/p/00000000000000000007.ckpt" {
		t.Fatalf("name = %q", name)
	}
}
