package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
)

// fsStore keeps each checkpoint in its own file under root. A Put writes a
// hidden temporary file in the target directory, fsyncs it, renames it over
// the final name and fsyncs the directory: rename within a directory is
// atomic, so readers see the old file or the new one, and after Put returns
// the new one survives a crash.
type fsStore struct {
	root string // absolute, includes the prefix
}

// writeChunk is how much Put writes between checks of its context.
const writeChunk = 1 << 20

func openFS(dir, prefix string) (*fsStore, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("checkpoint config: path %q: %w", dir, err)
	}
	root := filepath.Join(abs, filepath.FromSlash(prefix))
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("checkpoint filesystem store: %w", err)
	}
	fi, err := os.Stat(root)
	if err != nil {
		return nil, fmt.Errorf("checkpoint filesystem store: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("checkpoint filesystem store: %s is not a directory", root)
	}
	return &fsStore{root: root}, nil
}

func (s *fsStore) file(rel string) string {
	return filepath.Join(s.root, filepath.FromSlash(rel))
}

func (s *fsStore) Put(ctx context.Context, key Key, data []byte) (err error) {
	name, op, err := begin(ctx, "put", key)
	if err != nil {
		return err
	}
	final := s.file(name)
	dir := filepath.Dir(final)
	if err := s.ensureDir(dir); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	// The leading '.' keeps the temporary file out of Seqs (segment names
	// cannot start with '.').
	tmp, err := os.CreateTemp(dir, "."+path.Base(name)+".tmp-*")
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	renamed := false
	defer func() {
		if !renamed {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(header(data)); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	for rest := data; len(rest) > 0; {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
		n := min(len(rest), writeChunk)
		if _, err := tmp.Write(rest[:n]); err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
		rest = rest[n:]
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("%s: fsync: %w", op, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	// Last chance to give up without changing what readers see.
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if err := os.Rename(tmp.Name(), final); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	renamed = true
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("%s: fsync directory: %w", op, err)
	}
	return nil
}

// ensureDir creates dir and its missing parents below the store root,
// fsyncing each parent so that the new entries survive a crash. Concurrent
// callers creating the same directory are fine.
func (s *fsStore) ensureDir(dir string) error {
	if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
		return nil
	}
	parent := filepath.Dir(dir)
	if dir != s.root && parent != dir {
		if err := s.ensureDir(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return syncDir(parent)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

func (s *fsStore) Get(ctx context.Context, key Key) ([]byte, error) {
	name, op, err := begin(ctx, "get", key)
	if err != nil {
		return nil, err
	}
	obj, err := os.ReadFile(s.file(name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", op, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	body, err := decode(obj)
	if err != nil {
		return nil, fmt.Errorf("%s (%s): %w", op, s.file(name), err)
	}
	return body, nil
}

func (s *fsStore) Seqs(ctx context.Context, namespace, job, region, pe string) ([]uint64, error) {
	dir, err := peDir(namespace, job, region, pe)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("checkpoint seqs %s: %w", dir, err)
	}
	entries, err := os.ReadDir(s.file(dir))
	if errors.Is(err, fs.ErrNotExist) {
		return []uint64{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoint seqs %s: %w", dir, err)
	}
	seqs := make([]uint64, 0, len(entries))
	for _, e := range entries {
		if seq, ok := parseSeqName(e.Name()); ok && e.Type().IsRegular() {
			seqs = append(seqs, seq)
		}
	}
	// ReadDir sorts by name and names are zero-padded, but sort anyway so
	// the order does not rest on that.
	slices.Sort(seqs)
	return seqs, nil
}

func (s *fsStore) Prune(ctx context.Context, namespace, job, region, pe string, below uint64) (int, error) {
	seqs, err := s.Seqs(ctx, namespace, job, region, pe)
	if err != nil {
		return 0, err
	}
	dir, _ := peDir(namespace, job, region, pe) // valid: Seqs checked it
	n := 0
	for _, seq := range seqs {
		if seq >= below {
			break
		}
		if err := ctx.Err(); err != nil {
			return n, fmt.Errorf("checkpoint prune %s: %w", dir, err)
		}
		err := os.Remove(s.file(dir + "/" + seqName(seq)))
		if errors.Is(err, fs.ErrNotExist) {
			continue // a concurrent Prune got it first
		}
		if err != nil {
			return n, fmt.Errorf("checkpoint prune %s: %w", dir, err)
		}
		n++
	}
	if n > 0 {
		if err := syncDir(s.file(dir)); err != nil {
			return n, fmt.Errorf("checkpoint prune %s: fsync directory: %w", dir, err)
		}
	}
	return n, nil
}

func (s *fsStore) DeleteJob(ctx context.Context, namespace, job string) error {
	dir, err := jobDir(namespace, job)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("checkpoint delete job %s: %w", dir, err)
	}
	if err := os.RemoveAll(s.file(dir)); err != nil {
		return fmt.Errorf("checkpoint delete job %s: %w", dir, err)
	}
	parent := filepath.Dir(s.file(dir))
	if err := syncDir(parent); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("checkpoint delete job %s: fsync directory: %w", dir, err)
	}
	return nil
}
