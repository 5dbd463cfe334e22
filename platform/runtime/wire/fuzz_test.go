package wire

import (
	"bytes"
	"testing"
)

// FuzzDecode feeds arbitrary bytes to the frame reader and batch decoder.
// They must never panic, and whatever they accept must re-encode to the
// same bytes.
func FuzzDecode(f *testing.F) {
	b := NewBatchBuilder(0)
	for _, tp := range sample(4) {
		b.Add(&tp)
	}
	f.Add(append([]byte(nil), b.Frame()...))
	f.Add(AppendFinal(nil))
	f.Add(frameOf(FrameBatch, []byte{0, 0, 0, 0}))
	f.Add([]byte{0xff, 0xff, 0xff, 0x7f, 1})
	f.Add(AppendMarker(AppendMarker(nil, 1), 1<<62))
	f.Add(frameOf(FrameMarker, []byte{1, 2, 3}))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader(bytes.NewReader(data))
		var dst []Tuple
		for {
			typ, body, err := r.Next()
			if err != nil {
				return
			}
			if typ == FrameMarker {
				if again := AppendMarker(nil, MarkerSeq(body))[FrameHeaderLen:]; !bytes.Equal(again, body) {
					t.Fatalf("marker re-encoding differs: %x vs %x", again, body)
				}
				continue
			}
			if typ != FrameBatch {
				continue
			}
			dst, err = DecodeBatch(body, dst)
			if err != nil {
				continue
			}
			nb := NewBatchBuilder(0)
			for i := range dst {
				nb.Add(&dst[i])
			}
			if again := nb.Frame()[FrameHeaderLen:]; !bytes.Equal(again, body) {
				t.Fatalf("re-encoding differs:\n got %x\nwant %x", again, body)
			}
		}
	})
}

// FuzzHandshake feeds arbitrary bytes to the handshake reader: it must not
// panic, and a handshake of this version that it accepts must re-encode to
// the bytes it consumed.
func FuzzHandshake(f *testing.F) {
	f.Add(AppendHandshake(nil, Handshake{Version: Version, Stream: 4, Epoch: 9, PE: "job-pe-1"}))
	f.Add(AppendHandshake(nil, Handshake{Version: 1, Stream: 4, PE: "old"}))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		h, err := ReadHandshake(r)
		if err != nil || h.Version != Version {
			return
		}
		used := data[:len(data)-r.Len()]
		if again := AppendHandshake(nil, h); !bytes.Equal(again, used) {
			t.Fatalf("re-encoding differs:\n got %x\nwant %x", again, used)
		}
	})
}
