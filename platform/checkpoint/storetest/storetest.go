// Package storetest is the conformance suite every checkpoint.Store backend
// must pass. A backend's test calls Run with a function that opens a fresh,
// empty store and gives raw access to its stored objects (to damage them).
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"sluice.dev/sluice/platform/checkpoint"
)

// Instance is one empty store under test.
type Instance struct {
	Store checkpoint.Store
	// ReadRaw returns the stored bytes of key (header included), bypassing
	// the store.
	ReadRaw func(t *testing.T, key checkpoint.Key) []byte
	// WriteRaw stores raw as the object of key, bypassing the store.
	WriteRaw func(t *testing.T, key checkpoint.Key, raw []byte)
}

// Run runs the suite; newInstance is called once per subtest.
func Run(t *testing.T, newInstance func(t *testing.T) Instance) {
	tests := []struct {
		name string
		fn   func(*testing.T, Instance)
	}{
		{"RoundTrip", testRoundTrip},
		{"Overwrite", testOverwrite},
		{"SeqsAscending", testSeqsAscending},
		{"SeqsIsolated", testSeqsIsolated},
		{"NotFound", testNotFound},
		{"Prune", testPrune},
		{"DeleteJob", testDeleteJob},
		{"Corruption", testCorruption},
		{"InvalidKey", testInvalidKey},
		{"ConcurrentPuts", testConcurrentPuts},
		{"OverwriteSeenWhole", testOverwriteSeenWhole},
		{"ContextCancelled", testContextCancelled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newInstance(t)) })
	}
}

func key(pe string, seq uint64) checkpoint.Key {
	return checkpoint.Key{Namespace: "ns", Job: "job", Region: "main", PE: pe, Seq: seq}
}

func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func mustPut(t *testing.T, s checkpoint.Store, k checkpoint.Key, data []byte) {
	t.Helper()
	if err := s.Put(context.Background(), k, data); err != nil {
		t.Fatalf("Put(%v): %v", k, err)
	}
}

func mustGet(t *testing.T, s checkpoint.Store, k checkpoint.Key) []byte {
	t.Helper()
	got, err := s.Get(context.Background(), k)
	if err != nil {
		t.Fatalf("Get(%v): %v", k, err)
	}
	return got
}

func mustSeqs(t *testing.T, s checkpoint.Store, k checkpoint.Key) []uint64 {
	t.Helper()
	seqs, err := s.Seqs(context.Background(), k.Namespace, k.Job, k.Region, k.PE)
	if err != nil {
		t.Fatalf("Seqs(%v): %v", k, err)
	}
	return seqs
}

func wantSeqs(t *testing.T, s checkpoint.Store, k checkpoint.Key, want []uint64) {
	t.Helper()
	got := mustSeqs(t, s, k)
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Seqs(%s/%s/%s/%s) = %v, want %v", k.Namespace, k.Job, k.Region, k.PE, got, want)
	}
}

func testRoundTrip(t *testing.T, in Instance) {
	bodies := map[string][]byte{
		"empty": {},
		"small": []byte("operator state"),
		// Larger than the filesystem backend's write chunk.
		"3MiB": randomBytes(1, 3<<20+17),
	}
	seq := uint64(1)
	keys := map[string]checkpoint.Key{}
	for name, body := range bodies {
		keys[name] = key("pe-"+name, seq)
		mustPut(t, in.Store, keys[name], body)
		seq++
	}
	for name, body := range bodies {
		got := mustGet(t, in.Store, keys[name])
		if !bytes.Equal(got, body) {
			t.Errorf("%s: Get returned %d bytes, want the %d put", name, len(got), len(body))
		}
	}
	// The stored form is header + body: the header is not returned, and it
	// is there.
	raw := in.ReadRaw(t, keys["small"])
	if !bytes.HasSuffix(raw, bodies["small"]) || len(raw) <= len(bodies["small"]) {
		t.Errorf("raw object %q does not end with the body after a header", raw)
	}
}

func testOverwrite(t *testing.T, in Instance) {
	k := key("pe-0", 7)
	mustPut(t, in.Store, k, []byte("first version, longer than the second"))
	mustPut(t, in.Store, k, []byte("second"))
	if got := mustGet(t, in.Store, k); string(got) != "second" {
		t.Fatalf("after overwrite Get = %q, want %q", got, "second")
	}
	wantSeqs(t, in.Store, k, []uint64{7})
}

func testSeqsAscending(t *testing.T, in Instance) {
	// Includes numbers whose decimal strings would sort wrongly unpadded.
	want := []uint64{0, 1, 2, 9, 10, 11, 99, 100, 1000, 1 << 40, math.MaxUint64}
	order := slices.Clone(want)
	rand.New(rand.NewPCG(3, 4)).Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	for _, seq := range order {
		mustPut(t, in.Store, key("pe-0", seq), fmt.Appendf(nil, "state at %d", seq))
	}
	wantSeqs(t, in.Store, key("pe-0", 0), want)
	for _, seq := range want {
		if got, w := string(mustGet(t, in.Store, key("pe-0", seq))), fmt.Sprintf("state at %d", seq); got != w {
			t.Errorf("Get seq %d = %q, want %q", seq, got, w)
		}
	}
}

func testSeqsIsolated(t *testing.T, in Instance) {
	// Names that are prefixes of each other must not leak into each
	// other's listings.
	puts := []checkpoint.Key{
		{Namespace: "ns", Job: "job", Region: "main", PE: "pe-1", Seq: 1},
		{Namespace: "ns", Job: "job", Region: "main", PE: "pe-10", Seq: 2},
		{Namespace: "ns", Job: "job", Region: "main2", PE: "pe-1", Seq: 3},
		{Namespace: "ns", Job: "job2", Region: "main", PE: "pe-1", Seq: 4},
		{Namespace: "ns2", Job: "job", Region: "main", PE: "pe-1", Seq: 5},
	}
	for _, k := range puts {
		mustPut(t, in.Store, k, []byte(k.String()))
	}
	for _, k := range puts {
		wantSeqs(t, in.Store, k, []uint64{k.Seq})
	}
}

func testNotFound(t *testing.T, in Instance) {
	ctx := context.Background()
	_, err := in.Store.Get(ctx, key("pe-0", 1))
	if !errors.Is(err, checkpoint.ErrNotFound) {
		t.Fatalf("Get of a key never put: err = %v, want ErrNotFound", err)
	}
	mustPut(t, in.Store, key("pe-0", 2), []byte("x"))
	_, err = in.Store.Get(ctx, key("pe-0", 1))
	if !errors.Is(err, checkpoint.ErrNotFound) {
		t.Fatalf("Get of a missing seq beside a stored one: err = %v, want ErrNotFound", err)
	}
	wantSeqs(t, in.Store, key("pe-none", 0), nil)
}

func testPrune(t *testing.T, in Instance) {
	ctx := context.Background()
	for seq := uint64(1); seq <= 10; seq++ {
		mustPut(t, in.Store, key("pe-0", seq), []byte{byte(seq)})
		mustPut(t, in.Store, key("pe-1", seq), []byte{byte(seq)})
	}
	prune := func(pe string, below uint64, want int) {
		t.Helper()
		n, err := in.Store.Prune(ctx, "ns", "job", "main", pe, below)
		if err != nil {
			t.Fatalf("Prune(%s, below %d): %v", pe, below, err)
		}
		if n != want {
			t.Fatalf("Prune(%s, below %d) deleted %d, want %d", pe, below, n, want)
		}
	}
	prune("pe-0", 0, 0)
	prune("pe-0", 1, 0)
	prune("pe-0", 4, 3)
	wantSeqs(t, in.Store, key("pe-0", 0), []uint64{4, 5, 6, 7, 8, 9, 10})
	prune("pe-0", 4, 0)
	// Seq 4 is kept (below is exclusive) and the pruned ones are gone.
	if got := mustGet(t, in.Store, key("pe-0", 4)); !bytes.Equal(got, []byte{4}) {
		t.Fatalf("Get seq 4 after prune = %v", got)
	}
	if _, err := in.Store.Get(ctx, key("pe-0", 3)); !errors.Is(err, checkpoint.ErrNotFound) {
		t.Fatalf("Get of pruned seq 3: err = %v, want ErrNotFound", err)
	}
	// The other PE of the region is untouched.
	wantSeqs(t, in.Store, key("pe-1", 0), []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10})
	prune("pe-0", math.MaxUint64, 7)
	wantSeqs(t, in.Store, key("pe-0", 0), nil)
	prune("pe-none", 100, 0)
}

func testDeleteJob(t *testing.T, in Instance) {
	ctx := context.Background()
	doomed := []checkpoint.Key{
		{Namespace: "ns", Job: "job", Region: "r1", PE: "pe-0", Seq: 1},
		{Namespace: "ns", Job: "job", Region: "r1", PE: "pe-1", Seq: 2},
		{Namespace: "ns", Job: "job", Region: "r2", PE: "pe-2", Seq: 3},
	}
	kept := []checkpoint.Key{
		{Namespace: "ns", Job: "job2", Region: "r1", PE: "pe-0", Seq: 1},
		{Namespace: "other", Job: "job", Region: "r1", PE: "pe-0", Seq: 1},
	}
	for _, k := range append(slices.Clone(doomed), kept...) {
		mustPut(t, in.Store, k, []byte(k.String()))
	}
	if err := in.Store.DeleteJob(ctx, "ns", "job"); err != nil {
		t.Fatalf("DeleteJob: %v", err)
	}
	for _, k := range doomed {
		wantSeqs(t, in.Store, k, nil)
		if _, err := in.Store.Get(ctx, k); !errors.Is(err, checkpoint.ErrNotFound) {
			t.Errorf("Get(%v) after DeleteJob: err = %v, want ErrNotFound", k, err)
		}
	}
	for _, k := range kept {
		if got := mustGet(t, in.Store, k); string(got) != k.String() {
			t.Errorf("Get(%v) of another job = %q", k, got)
		}
	}
	if err := in.Store.DeleteJob(ctx, "ns", "job"); err != nil {
		t.Fatalf("second DeleteJob of the same job: %v", err)
	}
	if err := in.Store.DeleteJob(ctx, "ns", "never"); err != nil {
		t.Fatalf("DeleteJob of a job without checkpoints: %v", err)
	}
	// The job can checkpoint again afterwards.
	mustPut(t, in.Store, doomed[0], []byte("again"))
	if got := mustGet(t, in.Store, doomed[0]); string(got) != "again" {
		t.Fatalf("Get after re-put = %q", got)
	}
}

func testCorruption(t *testing.T, in Instance) {
	body := randomBytes(5, 4096)
	good := checkpoint.Encode(body)
	flip := func(i int) []byte {
		b := slices.Clone(good)
		b[i] ^= 0x40
		return b
	}
	cases := []struct {
		name string
		raw  []byte
		want error
	}{
		{"truncated by one byte", good[:len(good)-1], checkpoint.ErrCorrupt},
		{"truncated to half", good[:len(good)/2], checkpoint.ErrCorrupt},
		{"truncated inside the header", good[:7], checkpoint.ErrCorrupt},
		{"empty object", []byte{}, checkpoint.ErrCorrupt},
		{"one byte too many", append(slices.Clone(good), 0), checkpoint.ErrCorrupt},
		{"flipped body byte", flip(len(good) - 100), checkpoint.ErrCorrupt},
		{"flipped checksum byte", flip(17), checkpoint.ErrCorrupt},
		{"bad magic", flip(0), checkpoint.ErrCorrupt},
		{"not a checkpoint", []byte("<html>not a checkpoint at all, not even close</html>"), checkpoint.ErrCorrupt},
		{"future format version", func() []byte { b := slices.Clone(good); b[4] = 99; return b }(), checkpoint.ErrVersion},
	}
	for i, tc := range cases {
		k := key("pe-0", uint64(100+i))
		mustPut(t, in.Store, k, body)
		if raw := in.ReadRaw(t, k); !bytes.Equal(raw, good) {
			t.Fatalf("stored form of the body (%d bytes) differs from checkpoint.Encode (%d bytes)", len(raw), len(good))
		}
		in.WriteRaw(t, k, tc.raw)
		got, err := in.Store.Get(context.Background(), k)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: Get err = %v, want %v", tc.name, err, tc.want)
		}
		if got != nil {
			t.Errorf("%s: Get returned %d bytes with the error", tc.name, len(got))
		}
	}
	// A damaged object does not hide the others from Seqs.
	if got := mustSeqs(t, in.Store, key("pe-0", 0)); len(got) != len(cases) {
		t.Errorf("Seqs lists %d objects, want %d", len(got), len(cases))
	}
}

func testInvalidKey(t *testing.T, in Instance) {
	ctx := context.Background()
	bad := []checkpoint.Key{
		{Namespace: "", Job: "job", Region: "r", PE: "pe"},
		{Namespace: "ns", Job: "a/b", Region: "r", PE: "pe"},
		{Namespace: "ns", Job: "job", Region: "..", PE: "pe"},
		{Namespace: "ns", Job: "job", Region: "r", PE: ".hidden"},
		{Namespace: "ns", Job: "job", Region: "r", PE: "white space"},
		{Namespace: "ns", Job: `back\slash`, Region: "r", PE: "pe"},
	}
	for _, k := range bad {
		if err := in.Store.Put(ctx, k, []byte("x")); !errors.Is(err, checkpoint.ErrInvalidKey) {
			t.Errorf("Put(%q): err = %v, want ErrInvalidKey", k, err)
		}
		if _, err := in.Store.Get(ctx, k); !errors.Is(err, checkpoint.ErrInvalidKey) {
			t.Errorf("Get(%q): err = %v, want ErrInvalidKey", k, err)
		}
		if _, err := in.Store.Seqs(ctx, k.Namespace, k.Job, k.Region, k.PE); !errors.Is(err, checkpoint.ErrInvalidKey) {
			t.Errorf("Seqs(%q): err = %v, want ErrInvalidKey", k, err)
		}
		if _, err := in.Store.Prune(ctx, k.Namespace, k.Job, k.Region, k.PE, 10); !errors.Is(err, checkpoint.ErrInvalidKey) {
			t.Errorf("Prune(%q): err = %v, want ErrInvalidKey", k, err)
		}
	}
	if err := in.Store.DeleteJob(ctx, "ns", ".."); !errors.Is(err, checkpoint.ErrInvalidKey) {
		t.Errorf("DeleteJob(ns, ..): err = %v, want ErrInvalidKey", err)
	}
}

func testConcurrentPuts(t *testing.T, in Instance) {
	const pes, seqs = 8, 12
	body := func(pe, seq int) []byte {
		return append(fmt.Appendf(nil, "pe %d seq %d ", pe, seq), randomBytes(uint64(pe*1000+seq), 2000)...)
	}
	var wg sync.WaitGroup
	errs := make(chan error, pes*seqs)
	for pe := range pes {
		wg.Go(func() {
			for seq := 1; seq <= seqs; seq++ {
				if err := in.Store.Put(context.Background(), key(fmt.Sprintf("pe-%d", pe), uint64(seq)), body(pe, seq)); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent Put: %v", err)
	}
	want := make([]uint64, seqs)
	for i := range want {
		want[i] = uint64(i + 1)
	}
	for pe := range pes {
		k := key(fmt.Sprintf("pe-%d", pe), 0)
		wantSeqs(t, in.Store, k, want)
		for seq := 1; seq <= seqs; seq++ {
			k.Seq = uint64(seq)
			if got := mustGet(t, in.Store, k); !bytes.Equal(got, body(pe, seq)) {
				t.Errorf("Get(%v) returned another body", k)
			}
		}
	}
}

// testOverwriteSeenWhole overwrites one key while another goroutine reads
// it: every read must return one of the versions, whole.
func testOverwriteSeenWhole(t *testing.T, in Instance) {
	k := key("pe-0", 1)
	versions := [][]byte{bytes.Repeat([]byte{'a'}, 256<<10), bytes.Repeat([]byte{'b'}, 300<<10)}
	mustPut(t, in.Store, k, versions[0])
	var writerDone atomic.Bool
	readerDone := make(chan struct{})
	reads := 0
	var readErr error
	go func() {
		defer close(readerDone)
		// Read at least once after the last write, so that the final
		// version is checked too.
		for last := false; !last; {
			last = writerDone.Load()
			got, err := in.Store.Get(context.Background(), k)
			if err != nil {
				readErr = fmt.Errorf("read %d: %w", reads, err)
				return
			}
			if !bytes.Equal(got, versions[0]) && !bytes.Equal(got, versions[1]) {
				readErr = fmt.Errorf("read %d returned %d bytes that are neither version", reads, len(got))
				return
			}
			reads++
		}
	}()
	for i := range 30 {
		if err := in.Store.Put(context.Background(), k, versions[(i+1)%2]); err != nil {
			t.Errorf("overwrite %d: %v", i, err)
			break
		}
	}
	writerDone.Store(true)
	<-readerDone
	if readErr != nil {
		t.Fatal(readErr)
	}
	// 30 writes alternate starting with version 1, so the last is version 0.
	if got := mustGet(t, in.Store, k); !bytes.Equal(got, versions[0]) {
		t.Fatalf("after the last overwrite Get returned %d bytes, want version 0", len(got))
	}
	t.Logf("%d concurrent reads, all whole", reads)
}

func testContextCancelled(t *testing.T, in Instance) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	k := key("pe-0", 1)
	if err := in.Store.Put(cancelled, k, []byte("never stored")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Put with a cancelled context: err = %v, want context.Canceled", err)
	}
	if _, err := in.Store.Get(context.Background(), k); !errors.Is(err, checkpoint.ErrNotFound) {
		t.Fatalf("Get after a cancelled Put: err = %v, want ErrNotFound", err)
	}
	wantSeqs(t, in.Store, k, nil)

	mustPut(t, in.Store, k, []byte("stored"))
	if _, err := in.Store.Get(cancelled, k); !errors.Is(err, context.Canceled) {
		t.Errorf("Get with a cancelled context: err = %v, want context.Canceled", err)
	}
	if _, err := in.Store.Seqs(cancelled, k.Namespace, k.Job, k.Region, k.PE); !errors.Is(err, context.Canceled) {
		t.Errorf("Seqs with a cancelled context: err = %v, want context.Canceled", err)
	}
	if _, err := in.Store.Prune(cancelled, k.Namespace, k.Job, k.Region, k.PE, 10); !errors.Is(err, context.Canceled) {
		t.Errorf("Prune with a cancelled context: err = %v, want context.Canceled", err)
	}
	if err := in.Store.DeleteJob(cancelled, k.Namespace, k.Job); !errors.Is(err, context.Canceled) {
		t.Errorf("DeleteJob with a cancelled context: err = %v, want context.Canceled", err)
	}
	expired, cancel2 := context.WithDeadline(context.Background(), time.Unix(0, 0))
	defer cancel2()
	if err := in.Store.Put(expired, key("pe-0", 2), []byte("late")); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Put past its deadline: err = %v, want context.DeadlineExceeded", err)
	}
	// Nothing the cancelled calls did changed the store.
	wantSeqs(t, in.Store, k, []uint64{1})
	if got := mustGet(t, in.Store, k); string(got) != "stored" {
		t.Fatalf("Get = %q, want %q", got, "stored")
	}
}
