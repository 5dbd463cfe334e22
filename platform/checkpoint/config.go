package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// Backend types accepted in Config.Type; they match the API's
// CheckpointStoreType values.
const (
	TypeFilesystem = "filesystem"
	TypeS3         = "s3"
)

// Default names of the environment variables holding S3 credentials, used
// when Config leaves AccessKeyEnv or SecretKeyEnv empty.
const (
	DefaultAccessKeyEnv = "SLUICE_S3_ACCESS_KEY"
	DefaultSecretKeyEnv = "SLUICE_S3_SECRET_KEY"
)

// Config selects and configures a backend. It is plain JSON so that it can
// travel inside a PE's configuration. Credentials are never part of it:
// only the names of the environment variables that hold them.
type Config struct {
	// Type is "filesystem" or "s3".
	Type string `json:"type"`

	// Path is the root directory of a filesystem store.
	Path string `json:"path,omitempty"`

	// Endpoint is host[:port] of an S3-compatible service (no scheme).
	Endpoint string `json:"endpoint,omitempty"`
	// Bucket of an S3 store.
	Bucket string `json:"bucket,omitempty"`
	// Region of the bucket; empty lets the client discover it.
	Region string `json:"region,omitempty"`
	// Insecure talks plain HTTP to Endpoint.
	Insecure bool `json:"insecure,omitempty"`
	// AccessKeyEnv and SecretKeyEnv name the environment variables with the
	// S3 credentials (default SLUICE_S3_ACCESS_KEY, SLUICE_S3_SECRET_KEY).
	AccessKeyEnv string `json:"accessKeyEnv,omitempty"`
	SecretKeyEnv string `json:"secretKeyEnv,omitempty"`
	// CreateBucket makes Open create a missing bucket instead of failing.
	CreateBucket bool `json:"createBucket,omitempty"`

	// Prefix is prepended to every object name (both backends): slash
	// separated segments, each a valid name.
	Prefix string `json:"prefix,omitempty"`
}

// openTimeout bounds the network calls Open makes (bucket check/creation).
const openTimeout = 30 * time.Second

// Open validates cfg and opens its store. An S3 store checks (and, with
// CreateBucket, creates) its bucket, within 30 seconds; use OpenContext to
// choose the deadline.
func Open(cfg Config) (Store, error) {
	ctx, cancel := context.WithTimeout(context.Background(), openTimeout)
	defer cancel()
	return OpenContext(ctx, cfg)
}

// OpenContext is Open with a caller's context for the backend's checks.
func OpenContext(ctx context.Context, cfg Config) (Store, error) {
	prefix, err := cleanPrefix(cfg.Prefix)
	if err != nil {
		return nil, err
	}
	switch cfg.Type {
	case TypeFilesystem:
		if cfg.Endpoint != "" || cfg.Bucket != "" {
			return nil, errors.New("checkpoint config: a filesystem store takes path, not endpoint or bucket")
		}
		if cfg.Path == "" {
			return nil, errors.New("checkpoint config: a filesystem store needs path")
		}
		return openFS(cfg.Path, prefix)
	case TypeS3:
		if cfg.Path != "" {
			return nil, errors.New("checkpoint config: an s3 store takes endpoint and bucket, not path")
		}
		if cfg.Endpoint == "" || cfg.Bucket == "" {
			return nil, errors.New("checkpoint config: an s3 store needs endpoint and bucket")
		}
		if strings.Contains(cfg.Endpoint, "://") {
			return nil, fmt.Errorf("checkpoint config: endpoint %q must be host[:port] without a scheme (use insecure for plain HTTP)", cfg.Endpoint)
		}
		akEnv, skEnv := cfg.AccessKeyEnv, cfg.SecretKeyEnv
		if akEnv == "" {
			akEnv = DefaultAccessKeyEnv
		}
		if skEnv == "" {
			skEnv = DefaultSecretKeyEnv
		}
		ak, sk := os.Getenv(akEnv), os.Getenv(skEnv)
		if ak == "" || sk == "" {
			// Name the variables, never their values.
			return nil, fmt.Errorf("checkpoint config: s3 credentials missing: environment variables %s and %s must both be set", akEnv, skEnv)
		}
		return openS3(ctx, s3Options{
			endpoint:     cfg.Endpoint,
			bucket:       cfg.Bucket,
			region:       cfg.Region,
			insecure:     cfg.Insecure,
			accessKey:    ak,
			secretKey:    sk,
			createBucket: cfg.CreateBucket,
			prefix:       prefix,
		})
	case "":
		return nil, errors.New("checkpoint config: type is empty (want filesystem or s3)")
	default:
		return nil, fmt.Errorf("checkpoint config: unknown type %q (want filesystem or s3)", cfg.Type)
	}
}

// cleanPrefix trims surrounding slashes and checks every segment.
func cleanPrefix(p string) (string, error) {
	p = strings.Trim(p, "/")
	if p == "" {
		return "", nil
	}
	for _, seg := range strings.Split(p, "/") {
		if err := validSegment("prefix segment", seg); err != nil {
			return "", fmt.Errorf("checkpoint config: %w", err)
		}
	}
	return p, nil
}
