// Package wire is the binary format spoken between PEs: a versioned
// connection handshake followed by length-prefixed frames, each frame a
// batch of tuples or a control marker. Every length read from the network is
// checked against hard limits before it is used, so a malformed or hostile
// peer costs at most one closed connection.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Version is the wire format version this code speaks. Version 2 added
// the marker frame and the epoch in the handshake.
const Version = 2

// Magic opens every handshake.
var Magic = [4]byte{'S', 'L', 'C', 'E'}

// Frame types.
const (
	FrameBatch byte = 1 // a batch of tuples
	FrameFinal byte = 2 // end of stream: the sender will send nothing more
	// FrameMarker carries a consistent-region checkpoint marker: an 8-byte
	// sequence id. Everything before it on the stream belongs to the
	// checkpoint, nothing after it.
	FrameMarker byte = 3
)

// MarkerBodyLen is the body length of a marker frame.
const MarkerBodyLen = 8

const (
	// FrameHeaderLen is the length prefix (u32) plus the type byte.
	FrameHeaderLen = 5
	// BatchHeaderLen is the tuple count (u32) at the start of a batch body.
	BatchHeaderLen = 4
	// TupleHeaderLen is the fixed part of an encoded tuple.
	TupleHeaderLen = 4 + 4 + 8 + 4 + 4 + 8 + 8 + 8 + 8 + 4
	// MaxFrame bounds a frame body; a larger length prefix is hostile.
	MaxFrame = 8 << 20
	// MaxPayload bounds one tuple's payload (the API allows 1 MiB).
	MaxPayload = 1 << 20
	// MaxNameLen bounds the PE name in a handshake.
	MaxNameLen = 253
)

// Tuple is the unit of data. Payload may alias a frame buffer: it is valid
// only until the operator that received the tuple returns.
type Tuple struct {
	// Origin identifies the operator that numbered the tuple (a source, or
	// an aggregate that re-numbers its outputs); Epoch is that operator's
	// process incarnation, so a restarted origin starts a new sequence.
	Origin uint32
	Epoch  uint32
	Seq    uint64
	// Skip counts origin sequence numbers that operators upstream dropped on
	// purpose (filter, split) just before this tuple on its path.
	Skip uint32
	// Lost counts input tuples a re-numbering operator found missing.
	Lost uint32
	Key  uint64
	// Time is the source's emission time in Unix nanoseconds (wall
	// clock), for end-to-end latency.
	Time int64
	// Event is the tuple's event time in nanoseconds: a function of the
	// source sequence number, so that windows hold the same tuples on
	// every run and on replay.
	Event   int64
	Value   int64
	Payload []byte
}

// EncodedLen is the number of bytes t takes inside a batch.
func (t *Tuple) EncodedLen() int { return TupleHeaderLen + len(t.Payload) }

// AppendTuple encodes t at the end of b.
func AppendTuple(b []byte, t *Tuple) []byte {
	n := len(b)
	need := TupleHeaderLen + len(t.Payload)
	if cap(b)-n < need {
		nb := make([]byte, n, 2*cap(b)+need)
		copy(nb, b)
		b = nb
	}
	b = b[:n+need]
	p := b[n:]
	le := binary.LittleEndian
	le.PutUint32(p[0:], t.Origin)
	le.PutUint32(p[4:], t.Epoch)
	le.PutUint64(p[8:], t.Seq)
	le.PutUint32(p[16:], t.Skip)
	le.PutUint32(p[20:], t.Lost)
	le.PutUint64(p[24:], t.Key)
	le.PutUint64(p[32:], uint64(t.Time))
	le.PutUint64(p[40:], uint64(t.Event))
	le.PutUint64(p[48:], uint64(t.Value))
	le.PutUint32(p[56:], uint32(len(t.Payload)))
	copy(p[TupleHeaderLen:], t.Payload)
	return b
}

// Decode errors. They name what was wrong so the receiver can log it and
// label its error metric.
var (
	ErrFrameTooLarge = errors.New("frame length exceeds limit")
	ErrFrameEmpty    = errors.New("frame has no type byte")
	ErrFrameType     = errors.New("unknown frame type")
	ErrBatchShort    = errors.New("batch shorter than its header")
	ErrBatchCount    = errors.New("batch tuple count does not fit the frame")
	ErrTupleShort    = errors.New("tuple truncated")
	ErrPayloadLen    = errors.New("tuple payload length out of range")
	ErrTrailing      = errors.New("bytes after the last tuple")
	ErrFinalBody     = errors.New("final frame has a body")
	ErrMarkerBody    = errors.New("marker frame body is not 8 bytes")
)

// Reason maps a decode error to a short metric label.
func Reason(err error) string {
	switch {
	case errors.Is(err, ErrFrameTooLarge):
		return "frame_too_large"
	case errors.Is(err, ErrFrameEmpty), errors.Is(err, ErrFrameType), errors.Is(err, ErrFinalBody),
		errors.Is(err, ErrMarkerBody):
		return "bad_frame"
	case errors.Is(err, ErrBatchShort), errors.Is(err, ErrBatchCount), errors.Is(err, ErrTupleShort),
		errors.Is(err, ErrPayloadLen), errors.Is(err, ErrTrailing):
		return "bad_batch"
	case errors.Is(err, ErrHandshake):
		return "bad_handshake"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "truncated"
	}
	return "io"
}

// DecodeBatch decodes a batch body into dst (reused, grown as needed) and
// returns it. Payloads alias body.
func DecodeBatch(body []byte, dst []Tuple) ([]Tuple, error) {
	dst = dst[:0]
	if len(body) < BatchHeaderLen {
		return dst, ErrBatchShort
	}
	le := binary.LittleEndian
	count := le.Uint32(body)
	p := body[BatchHeaderLen:]
	// Bound the count by what the body can hold before growing dst, so a
	// hostile count cannot make us allocate.
	if uint64(count)*TupleHeaderLen > uint64(len(p)) {
		return dst, ErrBatchCount
	}
	if cap(dst) < int(count) {
		dst = make([]Tuple, 0, count)
	}
	for i := uint32(0); i < count; i++ {
		if len(p) < TupleHeaderLen {
			return dst, ErrTupleShort
		}
		plen := le.Uint32(p[56:])
		if plen > MaxPayload || uint64(plen) > uint64(len(p)-TupleHeaderLen) {
			return dst, ErrPayloadLen
		}
		end := TupleHeaderLen + int(plen)
		dst = append(dst, Tuple{
			Origin:  le.Uint32(p[0:]),
			Epoch:   le.Uint32(p[4:]),
			Seq:     le.Uint64(p[8:]),
			Skip:    le.Uint32(p[16:]),
			Lost:    le.Uint32(p[20:]),
			Key:     le.Uint64(p[24:]),
			Time:    int64(le.Uint64(p[32:])),
			Event:   int64(le.Uint64(p[40:])),
			Value:   int64(le.Uint64(p[48:])),
			Payload: p[TupleHeaderLen:end:end],
		})
		p = p[end:]
	}
	if len(p) != 0 {
		return dst, ErrTrailing
	}
	return dst, nil
}

// BatchBuilder accumulates tuples into one batch frame in a reusable buffer.
type BatchBuilder struct {
	buf   []byte
	count uint32
}

// NewBatchBuilder makes a builder whose buffer starts with capacity size.
func NewBatchBuilder(size int) *BatchBuilder {
	b := &BatchBuilder{buf: make([]byte, 0, max(size, FrameHeaderLen+BatchHeaderLen))}
	b.Reset()
	return b
}

// Reset empties the builder, keeping its buffer.
func (b *BatchBuilder) Reset() {
	b.buf = b.buf[:FrameHeaderLen+BatchHeaderLen]
	b.count = 0
}

// Add appends one tuple.
func (b *BatchBuilder) Add(t *Tuple) {
	b.buf = AppendTuple(b.buf, t)
	b.count++
}

// Count is the number of tuples added since Reset.
func (b *BatchBuilder) Count() int { return int(b.count) }

// Len is the frame length so far, headers included.
func (b *BatchBuilder) Len() int { return len(b.buf) }

// Frame finishes the frame and returns its bytes (aliasing the builder's
// buffer until the next Reset).
func (b *BatchBuilder) Frame() []byte {
	le := binary.LittleEndian
	le.PutUint32(b.buf[0:], uint32(len(b.buf)-4))
	b.buf[4] = FrameBatch
	le.PutUint32(b.buf[FrameHeaderLen:], b.count)
	return b.buf
}

// Bytes returns the underlying buffer so callers can recycle it.
func (b *BatchBuilder) Bytes() []byte { return b.buf }

// AppendFinal appends a final frame to b.
func AppendFinal(b []byte) []byte {
	return append(b, 1, 0, 0, 0, FrameFinal)
}

// AppendMarker appends a marker frame for checkpoint seq to b.
func AppendMarker(b []byte, seq uint64) []byte {
	b = append(b, 1+MarkerBodyLen, 0, 0, 0, FrameMarker)
	return binary.LittleEndian.AppendUint64(b, seq)
}

// MarkerSeq decodes a marker frame's body (Reader.Next has checked its
// length).
func MarkerSeq(body []byte) uint64 { return binary.LittleEndian.Uint64(body) }

// Reader reads frames from a stream into one reused buffer.
type Reader struct {
	r   io.Reader
	hdr [FrameHeaderLen]byte
	buf []byte
}

// NewReader reads frames from r (which should be buffered).
func NewReader(r io.Reader) *Reader { return &Reader{r: r} }

// chunk is how much of a frame body is read (and allocated) at a time, so
// a length prefix that promises much and delivers little costs little.
const chunk = 64 << 10

// Next reads one frame and returns its type and body. The body aliases the
// reader's buffer until the next call.
func (r *Reader) Next() (byte, []byte, error) {
	if _, err := io.ReadFull(r.r, r.hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.LittleEndian.Uint32(r.hdr[:4])
	if n == 0 {
		return 0, nil, ErrFrameEmpty
	}
	if n-1 > MaxFrame {
		return 0, nil, fmt.Errorf("%w: %d bytes", ErrFrameTooLarge, n-1)
	}
	typ := r.hdr[4]
	switch typ {
	case FrameBatch:
	case FrameFinal:
		if n != 1 {
			return 0, nil, ErrFinalBody
		}
	case FrameMarker:
		if n != 1+MarkerBodyLen {
			return 0, nil, ErrMarkerBody
		}
	default:
		return 0, nil, fmt.Errorf("%w %d", ErrFrameType, typ)
	}
	size := int(n - 1)
	r.buf = r.buf[:0]
	for len(r.buf) < size {
		step := min(size-len(r.buf), chunk)
		start := len(r.buf)
		if cap(r.buf)-start < step {
			nb := make([]byte, start, max(2*cap(r.buf), start+step))
			copy(nb, r.buf)
			r.buf = nb
		}
		r.buf = r.buf[:start+step]
		if _, err := io.ReadFull(r.r, r.buf[start:]); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, nil, err
		}
	}
	return typ, r.buf, nil
}

// Handshake is what the connecting side sends first: which stream it
// carries, who it is, and the consistent-region epoch its tuples belong to
// (0 outside a region).
type Handshake struct {
	Version uint8
	Stream  int32
	Epoch   uint64
	PE      string
}

// Handshake reply status.
const (
	StatusOK            byte = 0
	StatusBadVersion    byte = 1
	StatusUnknownStream byte = 2
	// StatusWrongEpoch: the input is at another epoch; the connecting side
	// retries (one of the two has not applied the region's reset yet).
	StatusWrongEpoch byte = 3
)

// handshakeLen is the fixed part of a handshake before the PE name.
const handshakeLen = 4 + 1 + 1 + 2 + 4 + 8

// ErrHandshake marks a handshake that is not ours or not acceptable.
var ErrHandshake = errors.New("bad handshake")

// AppendHandshake encodes h.
func AppendHandshake(b []byte, h Handshake) []byte {
	b = append(b, Magic[:]...)
	b = append(b, h.Version, 0)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(h.PE)))
	b = binary.LittleEndian.AppendUint32(b, uint32(h.Stream))
	b = binary.LittleEndian.AppendUint64(b, h.Epoch)
	return append(b, h.PE...)
}

// ReadHandshake reads and checks a handshake's framing. A handshake of
// another version is returned with only Version and Stream set and the
// rest left unread (its layout is not ours): the caller answers
// StatusBadVersion and closes the connection.
func ReadHandshake(r io.Reader) (Handshake, error) {
	var h [handshakeLen]byte
	// Magic, version, reserved, name length and stream are common to every
	// version; read them first.
	if _, err := io.ReadFull(r, h[:12]); err != nil {
		return Handshake{}, err
	}
	if [4]byte(h[:4]) != Magic {
		return Handshake{}, fmt.Errorf("%w: magic %q", ErrHandshake, h[:4])
	}
	out := Handshake{Version: h[4], Stream: int32(binary.LittleEndian.Uint32(h[8:]))}
	if out.Version != Version {
		return out, nil
	}
	if h[5] != 0 {
		return Handshake{}, fmt.Errorf("%w: reserved byte %d", ErrHandshake, h[5])
	}
	n := binary.LittleEndian.Uint16(h[6:])
	if n > MaxNameLen {
		return Handshake{}, fmt.Errorf("%w: name length %d", ErrHandshake, n)
	}
	if _, err := io.ReadFull(r, h[12:]); err != nil {
		return Handshake{}, err
	}
	out.Epoch = binary.LittleEndian.Uint64(h[12:])
	name := make([]byte, n)
	if _, err := io.ReadFull(r, name); err != nil {
		return Handshake{}, err
	}
	out.PE = string(name)
	return out, nil
}

// AppendReply encodes the accepting side's answer.
func AppendReply(b []byte, status byte) []byte {
	b = append(b, Magic[:]...)
	return append(b, Version, status)
}

// ReadReply reads the accepting side's answer.
func ReadReply(r io.Reader) (version, status byte, err error) {
	var h [6]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, 0, err
	}
	if [4]byte(h[:4]) != Magic {
		return 0, 0, fmt.Errorf("%w: reply magic %q", ErrHandshake, h[:4])
	}
	return h[4], h[5], nil
}
