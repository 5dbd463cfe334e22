package operators

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"sluice.dev/sluice/platform/api/v1alpha1"
	"sluice.dev/sluice/platform/runtime/wire"
)

// Source emits tuples numbered 0, 1, 2, ... in its epoch. Key, value,
// payload and event time are functions of the sequence number, so two runs
// (and a replay) emit the same data; Time is the wall-clock emission time,
// for latency.
type Source struct {
	origin  uint32
	epoch   uint32
	out     Emitter
	rate    int64
	per     int64 // event-time rate: tuples per second of event time
	keys    uint64
	count   uint64
	payload []byte
	seq     uint64
	// every is params.checkpointEvery: steps end on its multiples, where
	// the engine of an operator-driven region asks for a checkpoint.
	every uint64
	t     wire.Tuple
	// ev tracks EventTime(seq, per) without dividing per tuple: evSec
	// whole seconds, evRem = seq % per, evFrac = evRem*1e9/per and evAcc =
	// evRem*1e9 % per.
	evSec, evRem, evFrac, evAcc int64
	evStep, evStepRem           int64 // 1e9 / per and 1e9 % per
	// now and n are the arguments of the step closure, kept as fields so
	// that the closure is made once; emitted and ended are its results.
	// The step reads the position under the engine's lock, since a reset
	// may move it between steps.
	now     int64
	n       uint64
	emitted uint64
	ended   bool
	step    func()
}

// MaxChunk bounds how many tuples a source emits per hold of the PE's lock.
const MaxChunk = 256

func NewSource(name string, p *v1alpha1.OperatorParams, env Env) *Source {
	s := &Source{
		origin: OriginID(name), epoch: env.Epoch, out: env.Out,
		rate: deref64(p.Rate, 0), keys: uint64(max(deref64(p.Keys, 1000), 1)),
		count: uint64(max(deref64(p.Count, 0), 0)), every: uint64(max(deref64(p.CheckpointEvery, 0), 0)),
	}
	s.per = s.rate
	if s.per <= 0 {
		s.per = UnpacedEventRate
	}
	s.evStep, s.evStepRem = 1e9/s.per, 1e9%s.per
	s.payload = make([]byte, deref32(p.TupleSize, 0))
	for i := range s.payload {
		s.payload[i] = byte(s.origin>>(8*(i%4))) ^ byte(i)
	}
	s.step = func() {
		n := s.n
		if s.count > 0 {
			n = min(n, s.count-min(s.seq, s.count))
		}
		if s.every > 0 {
			n = min(n, s.every-s.seq%s.every)
		}
		s.Emit(n, s.now)
		s.emitted = n
		s.ended = s.count > 0 && s.seq >= s.count
	}
	return s
}

// Done reports whether the source has emitted its count (never for an
// unbounded source).
func (s *Source) Done() bool { return s.count > 0 && s.seq >= s.count }

// CheckpointEvery is params.checkpointEvery (0: none).
func (s *Source) CheckpointEvery() uint64 { return s.every }

type sourceSnapshot struct {
	Seq uint64 `json:"seq"`
}

// Snapshot saves the position (the next sequence number): every field of
// a tuple is a function of it, so it is all a replay needs.
func (s *Source) Snapshot() ([]byte, error) { return json.Marshal(sourceSnapshot{Seq: s.seq}) }

// Restore moves the source to a saved position.
func (s *Source) Restore(b []byte) error {
	var snap sourceSnapshot
	if err := json.Unmarshal(b, &snap); err != nil {
		return fmt.Errorf("source restore: %w", err)
	}
	s.seq = snap.Seq
	p := uint64(s.per)
	s.evSec, s.evRem = int64(snap.Seq/p), int64(snap.Seq%p)
	s.evFrac, s.evAcc = s.evRem*1e9/s.per, s.evRem*1e9%s.per
	return nil
}

// Process is never called: a source has no inputs.
func (s *Source) Process(int, *wire.Tuple) {}
func (s *Source) Finish()                  {}

// Seq is the next sequence number.
func (s *Source) Seq() uint64 { return s.seq }

// UnpacedEventRate is the event-time rate of a source without a rate:
// its tuples are a microsecond apart in event time.
const UnpacedEventRate = 1_000_000

// EventTime is the event time of tuple seq of a source emitting per
// tuples per second of event time: seq/per seconds, in nanoseconds.
func EventTime(seq uint64, per int64) int64 {
	p := uint64(per)
	return int64(seq/p*1e9 + seq%p*1e9/p)
}

// Tuple fills t with the tuple of sequence seq (payload shared).
func (s *Source) Tuple(seq uint64, now int64, t *wire.Tuple) {
	*t = wire.Tuple{Origin: s.origin, Epoch: s.epoch, Seq: seq, Key: mix64(seq) % s.keys,
		Time: now, Event: EventTime(seq, s.per), Value: int64(1 + seq%10), Payload: s.payload}
}

// Emit emits the next n tuples stamped with now.
func (s *Source) Emit(n uint64, now int64) {
	for i := uint64(0); i < n; i++ {
		seq := s.seq
		s.t = wire.Tuple{Origin: s.origin, Epoch: s.epoch, Seq: seq, Key: mix64(seq) % s.keys,
			Time: now, Event: s.evSec*1e9 + s.evFrac, Value: int64(1 + seq%10), Payload: s.payload}
		s.seq++
		s.advanceEvent()
		s.out.Emit(0, &s.t)
	}
}

// advanceEvent moves the event clock to s.seq, as EventTime would compute it.
func (s *Source) advanceEvent() {
	s.evRem++
	if s.evRem == s.per {
		s.evSec, s.evRem, s.evFrac, s.evAcc = s.evSec+1, 0, 0, 0
		return
	}
	s.evFrac += s.evStep
	s.evAcc += s.evStepRem
	if s.evAcc >= s.per {
		s.evAcc -= s.per
		s.evFrac++
	}
}

// Run emits until ctx ends or Count tuples are out; it returns nil when the
// count is reached (the stream ends) and ctx.Err() when stopped. When do
// reports that it did not run the step (the engine held the source
// paused), pacing starts again from that moment instead of catching up.
func (s *Source) Run(ctx context.Context, do func(func()) bool, flush func()) error {
	start := time.Now()
	var period time.Duration
	if s.rate > 0 {
		period = time.Second / time.Duration(s.rate)
		if period == 0 {
			period = 1
		}
	}
	var done uint64 // tuples emitted by this run
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := uint64(MaxChunk)
		if s.rate > 0 {
			// Emit what is due by now, sleeping until the next one is.
			due := uint64(time.Since(start)/period) + 1
			if due <= done {
				flush()
				wait := time.Until(start.Add(time.Duration(done) * period))
				timer.Reset(wait)
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-timer.C:
				}
				continue
			}
			n = min(n, due-done)
		}
		s.n, s.now = n, time.Now().UnixNano()
		if !do(s.step) {
			start, done = time.Now(), 0
			continue
		}
		done += s.emitted
		if s.ended {
			return nil
		}
	}
}
