package checkpoint

import (
	"bytes"
	"encoding/hex"
	"testing"
)

// The on-disk format is a contract with checkpoints already stored: this
// pins it byte for byte.
func TestFormatVersion1Bytes(t *testing.T) {
	got := Encode([]byte("123456789"))
	want, _ := hex.DecodeString(
		"534c434b" + // "SLCK"
			"01" + "000000" + // version 1, reserved
			"0000000000000009" + // body length
			"e3069283" + // CRC-32C("123456789"), the standard check value
			hex.EncodeToString([]byte("123456789")))
	if !bytes.Equal(got, want) {
		t.Fatalf("Encode = %x\nwant     %x", got, want)
	}
	body, err := decode(got)
	if err != nil || string(body) != "123456789" {
		t.Fatalf("decode = %q, %v", body, err)
	}
}
