package wire

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func sample(n int) []Tuple {
	ts := make([]Tuple, n)
	for i := range ts {
		ts[i] = Tuple{Origin: 7, Epoch: 3, Seq: uint64(i), Skip: uint32(i % 3), Lost: uint32(i % 2),
			Key: uint64(i * 31), Time: int64(1e18) + int64(i), Event: int64(i) * 1000, Value: -int64(i), Payload: bytes.Repeat([]byte{byte(i)}, i%5)}
	}
	return ts
}

func TestBatchRoundTrip(t *testing.T) {
	in := sample(100)
	b := NewBatchBuilder(16)
	for i := range in {
		b.Add(&in[i])
	}
	frame := b.Frame()
	var stream bytes.Buffer
	stream.Write(frame)
	stream.Write(AppendFinal(nil))
	r := NewReader(bufio.NewReader(&stream))
	typ, body, err := r.Next()
	if err != nil || typ != FrameBatch {
		t.Fatalf("Next = %d, %v", typ, err)
	}
	out, err := DecodeBatch(body, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Decoded empty payloads alias the frame; compare as empty.
	for i := range out {
		if len(out[i].Payload) == 0 {
			out[i].Payload = in[i].Payload
		}
	}
	if d := cmp.Diff(in, out); d != "" {
		t.Fatalf("round trip differs (-in +out):\n%s", d)
	}
	if typ, _, err := r.Next(); err != nil || typ != FrameFinal {
		t.Fatalf("want final frame, got %d, %v", typ, err)
	}
	if _, _, err := r.Next(); err != io.EOF {
		t.Fatalf("want EOF, got %v", err)
	}
}

func TestBuilderReuseDoesNotAllocate(t *testing.T) {
	tp := Tuple{Seq: 1, Payload: make([]byte, 12)}
	b := NewBatchBuilder(64 << 10)
	allocs := testing.AllocsPerRun(100, func() {
		b.Reset()
		for i := 0; i < 500; i++ {
			b.Add(&tp)
		}
		_ = b.Frame()
	})
	if allocs != 0 {
		t.Fatalf("encoding allocates %v times per batch", allocs)
	}
	frame := b.Frame()
	dst := make([]Tuple, 0, 500)
	allocs = testing.AllocsPerRun(100, func() {
		var err error
		dst, err = DecodeBatch(frame[FrameHeaderLen:], dst)
		if err != nil || len(dst) != 500 {
			t.Fatal(err, len(dst))
		}
	})
	if allocs != 0 {
		t.Fatalf("decoding allocates %v times per batch", allocs)
	}
}

func frameOf(typ byte, body []byte) []byte {
	b := binary.LittleEndian.AppendUint32(nil, uint32(len(body)+1))
	b = append(b, typ)
	return append(b, body...)
}

func TestMalformedFrames(t *testing.T) {
	good := NewBatchBuilder(0)
	good.Add(&Tuple{Payload: []byte("abc")})
	body := append([]byte(nil), good.Frame()[FrameHeaderLen:]...)
	hugeCount := append([]byte(nil), body...)
	binary.LittleEndian.PutUint32(hugeCount, 1<<31)
	badPayload := append([]byte(nil), body...)
	binary.LittleEndian.PutUint32(badPayload[BatchHeaderLen+56:], 1<<30)
	cases := []struct {
		name   string
		stream []byte
		next   error // from Reader.Next
		decode error // from DecodeBatch
	}{
		{"huge length", append(binary.LittleEndian.AppendUint32(nil, 1<<31), FrameBatch), ErrFrameTooLarge, nil},
		{"zero length", []byte{0, 0, 0, 0, 1}, ErrFrameEmpty, nil},
		{"unknown type", frameOf(9, nil), ErrFrameType, nil},
		{"final with body", frameOf(FrameFinal, []byte{1}), ErrFinalBody, nil},
		{"short marker", frameOf(FrameMarker, []byte{1, 2, 3}), ErrMarkerBody, nil},
		{"long marker", frameOf(FrameMarker, make([]byte, 9)), ErrMarkerBody, nil},
		{"truncated body", frameOf(FrameBatch, body)[:8], io.ErrUnexpectedEOF, nil},
		{"short batch", frameOf(FrameBatch, []byte{1}), nil, ErrBatchShort},
		{"hostile count", frameOf(FrameBatch, hugeCount), nil, ErrBatchCount},
		{"payload length", frameOf(FrameBatch, badPayload), nil, ErrPayloadLen},
		{"trailing", frameOf(FrameBatch, append(append([]byte(nil), body...), 0)), nil, ErrTrailing},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := NewReader(bytes.NewReader(c.stream))
			_, b, err := r.Next()
			if c.next != nil {
				if !errors.Is(err, c.next) {
					t.Fatalf("Next error = %v, want %v", err, c.next)
				}
				return
			}
			if err != nil {
				t.Fatalf("Next: %v", err)
			}
			_, err = DecodeBatch(b, nil)
			if !errors.Is(err, c.decode) {
				t.Fatalf("DecodeBatch error = %v, want %v", err, c.decode)
			}
			if Reason(err) != "bad_batch" {
				t.Fatalf("reason %q", Reason(err))
			}
		})
	}
}

// A length prefix promising the maximum frame but delivering nothing must
// not make the reader allocate the whole frame up front.
func TestPromisedFrameAllocatesLittle(t *testing.T) {
	stream := binary.LittleEndian.AppendUint32(nil, MaxFrame)
	stream = append(stream, FrameBatch, 1, 2, 3)
	r := NewReader(bytes.NewReader(stream))
	if _, _, err := r.Next(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("err = %v", err)
	}
	if cap(r.buf) > 2*chunk {
		t.Fatalf("reader allocated %d bytes for a 3-byte body", cap(r.buf))
	}
}

func TestHandshake(t *testing.T) {
	h := Handshake{Version: Version, Stream: 42, Epoch: 1<<40 + 7, PE: "job-pe-3"}
	enc := AppendHandshake(nil, h)
	if len(enc) != handshakeLen+len(h.PE) {
		t.Fatalf("handshake is %d bytes", len(enc))
	}
	got, err := ReadHandshake(bytes.NewReader(enc))
	if err != nil || got != h {
		t.Fatalf("got %+v, %v", got, err)
	}
	// A version-1 peer (no epoch) is recognised as another version, and
	// nothing after its stream is taken as an epoch.
	v1 := AppendHandshake(nil, Handshake{Version: 1, Stream: 3, PE: "old"})
	got, err = ReadHandshake(bytes.NewReader(v1[:12]))
	if err != nil || got != (Handshake{Version: 1, Stream: 3}) {
		t.Fatalf("v1 handshake read as %+v, %v", got, err)
	}
	reserved := bytes.Clone(enc)
	reserved[5] = 1
	if _, err := ReadHandshake(bytes.NewReader(reserved)); !errors.Is(err, ErrHandshake) {
		t.Fatalf("reserved byte accepted: %v", err)
	}
	if _, err := ReadHandshake(bytes.NewReader(enc[:len(enc)-1])); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated name: %v", err)
	}
	if _, err := ReadHandshake(bytes.NewReader([]byte("GET / HTTP/1.1\r\n"))); !errors.Is(err, ErrHandshake) {
		t.Fatalf("http request accepted as handshake: %v", err)
	}
	bad := AppendHandshake(nil, h)
	binary.LittleEndian.PutUint16(bad[6:], 60000)
	if _, err := ReadHandshake(bytes.NewReader(bad)); !errors.Is(err, ErrHandshake) {
		t.Fatalf("long name accepted: %v", err)
	}
	v, s, err := ReadReply(bytes.NewReader(AppendReply(nil, StatusUnknownStream)))
	if err != nil || v != Version || s != StatusUnknownStream {
		t.Fatalf("reply %d %d %v", v, s, err)
	}
}

func TestMarkerFrame(t *testing.T) {
	var stream []byte
	stream = AppendMarker(stream, 7)
	stream = AppendFinal(stream)
	stream = AppendMarker(stream, 1<<63+5)
	r := NewReader(bytes.NewReader(stream))
	want := []struct {
		typ byte
		seq uint64
	}{{FrameMarker, 7}, {FrameFinal, 0}, {FrameMarker, 1<<63 + 5}}
	for i, w := range want {
		typ, body, err := r.Next()
		if err != nil || typ != w.typ {
			t.Fatalf("frame %d: type %d, %v", i, typ, err)
		}
		if typ == FrameMarker && MarkerSeq(body) != w.seq {
			t.Fatalf("frame %d: marker %d, want %d", i, MarkerSeq(body), w.seq)
		}
	}
	if _, _, err := r.Next(); err != io.EOF {
		t.Fatalf("after the last frame: %v", err)
	}
	if Reason(ErrMarkerBody) != "bad_frame" {
		t.Fatal(Reason(ErrMarkerBody))
	}
}

func BenchmarkEncode64(b *testing.B) {
	tp := Tuple{Payload: make([]byte, 64-TupleHeaderLen)}
	bb := NewBatchBuilder(64 << 10)
	b.SetBytes(64)
	for i := 0; i < b.N; i++ {
		if bb.Len() > 60<<10 {
			bb.Reset()
		}
		tp.Seq = uint64(i)
		bb.Add(&tp)
	}
}

func BenchmarkDecode64(b *testing.B) {
	tp := Tuple{Payload: make([]byte, 64-TupleHeaderLen)}
	bb := NewBatchBuilder(64 << 10)
	for i := 0; i < 1000; i++ {
		bb.Add(&tp)
	}
	body := bb.Frame()[FrameHeaderLen:]
	dst := make([]Tuple, 0, 1000)
	b.SetBytes(64 * 1000)
	for i := 0; i < b.N; i++ {
		dst, _ = DecodeBatch(body, dst)
	}
}
