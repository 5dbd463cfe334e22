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
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader(bytes.NewReader(data))
		var dst []Tuple
		for {
			typ, body, err := r.Next()
			if err != nil {
				return
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
