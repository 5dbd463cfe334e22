package checkpoint

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// s3Store keeps each checkpoint as one object. A PUT of an object is atomic
// in S3 (a reader sees the old object or the new one) and so is the
// completion of a multipart upload, which the client uses for large bodies.
type s3Store struct {
	client *minio.Client
	bucket string
	prefix string // "" or "a/b", no surrounding slashes
}

type s3Options struct {
	endpoint, bucket, region string
	insecure                 bool
	accessKey, secretKey     string
	createBucket             bool
	prefix                   string
}

func openS3(ctx context.Context, o s3Options) (*s3Store, error) {
	client, err := minio.New(o.endpoint, &minio.Options{
		Creds:  credentials.NewStaticV4(o.accessKey, o.secretKey, ""),
		Secure: !o.insecure,
		Region: o.region,
	})
	if err != nil {
		return nil, fmt.Errorf("checkpoint s3 store: endpoint %q: %w", o.endpoint, err)
	}
	exists, err := client.BucketExists(ctx, o.bucket)
	if err != nil {
		return nil, fmt.Errorf("checkpoint s3 store: checking bucket %q at %s: %w", o.bucket, o.endpoint, err)
	}
	if !exists {
		if !o.createBucket {
			return nil, fmt.Errorf("checkpoint s3 store: bucket %q does not exist at %s (create it, or set the Job's checkpointStore.createBucket)", o.bucket, o.endpoint)
		}
		err := client.MakeBucket(ctx, o.bucket, minio.MakeBucketOptions{Region: o.region})
		// Another PE may have created it in the meantime.
		if err != nil && !isCode(err, "BucketAlreadyOwnedByYou") {
			return nil, fmt.Errorf("checkpoint s3 store: creating bucket %q at %s: %w", o.bucket, o.endpoint, err)
		}
	}
	return &s3Store{client: client, bucket: o.bucket, prefix: o.prefix}, nil
}

func isCode(err error, code string) bool {
	var resp minio.ErrorResponse
	return errors.As(err, &resp) && resp.Code == code
}

func (s *s3Store) object(rel string) string {
	if s.prefix == "" {
		return rel
	}
	return s.prefix + "/" + rel
}

func (s *s3Store) Put(ctx context.Context, key Key, data []byte) error {
	name, op, err := begin(ctx, "put", key)
	if err != nil {
		return err
	}
	// Header and body are sent as one stream of known length, without
	// copying the body.
	r := io.MultiReader(bytes.NewReader(header(data)), bytes.NewReader(data))
	_, err = s.client.PutObject(ctx, s.bucket, s.object(name), r, int64(headerSize+len(data)),
		minio.PutObjectOptions{ContentType: "application/octet-stream"})
	if err != nil {
		return ctxErr(ctx, op, err)
	}
	return nil
}

func (s *s3Store) Get(ctx context.Context, key Key) ([]byte, error) {
	name, op, err := begin(ctx, "get", key)
	if err != nil {
		return nil, err
	}
	obj, err := s.client.GetObject(ctx, s.bucket, s.object(name), minio.GetObjectOptions{})
	if err != nil {
		return nil, s.getErr(ctx, op, err)
	}
	defer obj.Close()
	raw, err := io.ReadAll(obj)
	if err != nil {
		return nil, s.getErr(ctx, op, err)
	}
	body, err := decode(raw)
	if err != nil {
		return nil, fmt.Errorf("%s (s3://%s/%s): %w", op, s.bucket, s.object(name), err)
	}
	return body, nil
}

func (s *s3Store) getErr(ctx context.Context, op string, err error) error {
	if isCode(err, "NoSuchKey") {
		return fmt.Errorf("%s: %w", op, ErrNotFound)
	}
	return ctxErr(ctx, op, err)
}

// list returns the names of the objects directly under dir (relative to
// the prefix) that are checkpoints, with their sequence numbers.
func (s *s3Store) list(ctx context.Context, dir string) ([]uint64, error) {
	ctx, cancel := context.WithCancel(ctx) // stops the lister on early return
	defer cancel()
	var seqs []uint64
	for info := range s.client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.object(dir) + "/"}) {
		if info.Err != nil {
			return nil, ctxErr(ctx, "checkpoint list "+dir, info.Err)
		}
		if seq, ok := parseSeqName(path.Base(info.Key)); ok {
			seqs = append(seqs, seq)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("checkpoint list %s: %w", dir, err)
	}
	slices.Sort(seqs)
	return seqs, nil
}

func (s *s3Store) Seqs(ctx context.Context, namespace, job, region, pe string) ([]uint64, error) {
	dir, err := peDir(namespace, job, region, pe)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("checkpoint seqs %s: %w", dir, err)
	}
	seqs, err := s.list(ctx, dir)
	if err != nil {
		return nil, err
	}
	if seqs == nil {
		seqs = []uint64{}
	}
	return seqs, nil
}

func (s *s3Store) Prune(ctx context.Context, namespace, job, region, pe string, below uint64) (int, error) {
	dir, err := peDir(namespace, job, region, pe)
	if err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("checkpoint prune %s: %w", dir, err)
	}
	seqs, err := s.list(ctx, dir)
	if err != nil {
		return 0, err
	}
	var names []string
	for _, seq := range seqs {
		if seq < below {
			names = append(names, s.object(dir+"/"+seqName(seq)))
		}
	}
	failed, err := s.remove(ctx, names)
	if err != nil {
		return len(names) - failed, fmt.Errorf("checkpoint prune %s: %w", dir, err)
	}
	return len(names), nil
}

// remove deletes objects with multi-object deletes and returns how many
// failed and the first failure.
func (s *s3Store) remove(ctx context.Context, names []string) (int, error) {
	if len(names) == 0 {
		return 0, nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	in := make(chan minio.ObjectInfo)
	go func() {
		defer close(in)
		for _, n := range names {
			select {
			case in <- minio.ObjectInfo{Key: n}:
			case <-ctx.Done():
				return
			}
		}
	}()
	failed := 0
	var first error
	for e := range s.client.RemoveObjects(ctx, s.bucket, in, minio.RemoveObjectsOptions{}) {
		failed++
		if first == nil {
			first = fmt.Errorf("deleting %s: %w", e.ObjectName, e.Err)
		}
	}
	if first == nil && ctx.Err() != nil {
		// Names not yet sent when the context ended were not deleted, and
		// RemoveObjects does not report them.
		return len(names), ctx.Err()
	}
	if first != nil {
		return failed, ctxErr(ctx, "remove", first)
	}
	return 0, nil
}

func (s *s3Store) DeleteJob(ctx context.Context, namespace, job string) error {
	dir, err := jobDir(namespace, job)
	if err != nil {
		return err
	}
	op := "checkpoint delete job " + dir
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var names []string
	for info := range s.client.ListObjects(lctx, s.bucket, minio.ListObjectsOptions{Prefix: s.object(dir) + "/", Recursive: true}) {
		if info.Err != nil {
			return ctxErr(ctx, op, info.Err)
		}
		names = append(names, info.Key)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if _, err := s.remove(ctx, names); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}
