// Package checkpoint stores the checkpoints of consistent regions: one
// opaque object per (namespace, job, region, PE, sequence number), written
// atomically, with a header that lets a reader detect a corrupt or
// truncated object. Two backends exist: a directory tree (Open with type
// "filesystem") and an S3-compatible bucket (type "s3"). See README.md.
package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"
)

// Key names one checkpoint: the state of one PE of a consistent region at
// sequence number Seq.
type Key struct {
	Namespace, Job, Region, PE string
	Seq                        uint64
}

func (k Key) String() string {
	return fmt.Sprintf("%s/%s/%s/%s@%d", k.Namespace, k.Job, k.Region, k.PE, k.Seq)
}

// Store keeps checkpoints. Implementations are safe for concurrent use.
type Store interface {
	// Put writes the checkpoint atomically: a concurrent or later Get sees
	// either the previous object under key or all of data, never a part.
	// Putting an existing key replaces it.
	Put(ctx context.Context, key Key, data []byte) error
	// Get returns the checkpoint's body. A missing key gives an error that
	// wraps ErrNotFound; an object that fails its header or checksum gives
	// one that wraps ErrCorrupt (or ErrVersion for an unknown format).
	Get(ctx context.Context, key Key) ([]byte, error)
	// Seqs lists the sequence numbers stored for one PE of a region, in
	// ascending order; none is an empty list, not an error.
	Seqs(ctx context.Context, namespace, job, region, pe string) ([]uint64, error)
	// Prune deletes the PE's checkpoints with Seq < below and returns how
	// many it deleted (on an error, how many it knows it deleted).
	Prune(ctx context.Context, namespace, job, region, pe string, below uint64) (int, error)
	// DeleteJob deletes every checkpoint of a job. Deleting a job without
	// checkpoints is not an error.
	DeleteJob(ctx context.Context, namespace, job string) error
}

var (
	// ErrNotFound: no checkpoint under the key.
	ErrNotFound = errors.New("checkpoint not found")
	// ErrCorrupt: the stored object is not a complete checkpoint (bad
	// magic, truncated, or a body that does not match its checksum).
	ErrCorrupt = errors.New("checkpoint corrupt")
	// ErrVersion: the object was written in a format this code cannot read.
	ErrVersion = errors.New("checkpoint format version not supported")
	// ErrInvalidKey: a name is empty or not usable as a path segment.
	ErrInvalidKey = errors.New("invalid checkpoint key")
)

// seqDigits is wide enough for every uint64, so that the lexical order of
// object names is the numeric order of sequence numbers.
const seqDigits = 20

const objectSuffix = ".ckpt"

// maxSegment bounds a name; Kubernetes names are at most 253 characters.
const maxSegment = 253

// validSegment accepts names usable as one path segment on every backend:
// letters, digits, '.', '_' and '-', not starting with '.' (so neither "."
// nor ".." nor the filesystem backend's hidden temporary files).
func validSegment(what, s string) error {
	if s == "" {
		return fmt.Errorf("%w: %s is empty", ErrInvalidKey, what)
	}
	if len(s) > maxSegment {
		return fmt.Errorf("%w: %s is longer than %d characters", ErrInvalidKey, what, maxSegment)
	}
	if s[0] == '.' {
		return fmt.Errorf("%w: %s %q starts with '.'", ErrInvalidKey, what, s)
	}
	for _, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-'
		if !ok {
			return fmt.Errorf("%w: %s %q contains %q (allowed: letters, digits, '.', '_', '-')", ErrInvalidKey, what, s, r)
		}
	}
	return nil
}

// peDir is the relative directory holding one PE's checkpoints.
func peDir(namespace, job, region, pe string) (string, error) {
	for _, c := range [...]struct{ what, v string }{
		{"namespace", namespace}, {"job", job}, {"region", region}, {"pe", pe},
	} {
		if err := validSegment(c.what, c.v); err != nil {
			return "", err
		}
	}
	return path.Join(namespace, job, region, pe), nil
}

func jobDir(namespace, job string) (string, error) {
	if err := validSegment("namespace", namespace); err != nil {
		return "", err
	}
	if err := validSegment("job", job); err != nil {
		return "", err
	}
	return path.Join(namespace, job), nil
}

// ObjectName is the key's name relative to the store's root (directory or
// bucket plus prefix): <ns>/<job>/<region>/<pe>/<seq, 20 digits>.ckpt.
func ObjectName(k Key) (string, error) {
	dir, err := peDir(k.Namespace, k.Job, k.Region, k.PE)
	if err != nil {
		return "", err
	}
	return dir + "/" + seqName(k.Seq), nil
}

// begin is what every keyed operation of a backend does first: check the
// key, name the operation for errors, and refuse an ended context.
func begin(ctx context.Context, verb string, k Key) (name, op string, err error) {
	if name, err = ObjectName(k); err != nil {
		return "", "", err
	}
	op = "checkpoint " + verb + " " + k.String()
	if err := ctx.Err(); err != nil {
		return "", "", fmt.Errorf("%s: %w", op, err)
	}
	return name, op, nil
}

func seqName(seq uint64) string {
	return fmt.Sprintf("%0*d%s", seqDigits, seq, objectSuffix)
}

// parseSeqName is the inverse of seqName; other names (temporary files,
// strangers) are not checkpoints.
func parseSeqName(name string) (uint64, bool) {
	digits, ok := strings.CutSuffix(name, objectSuffix)
	if !ok || len(digits) != seqDigits {
		return 0, false
	}
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return 0, false
		}
	}
	seq, err := strconv.ParseUint(digits, 10, 64)
	if err != nil {
		return 0, false
	}
	return seq, true
}

// ctxErr wraps a cancelled context's error so that callers can test
// errors.Is(err, context.Canceled) whatever the backend's own error was.
func ctxErr(ctx context.Context, op string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("%s: %w (%v)", op, cerr, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}
