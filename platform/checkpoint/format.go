package checkpoint

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// Object format, version 1, big endian:
//
//	offset  size  field
//	0       4     magic "SLCK"
//	4       1     format version (1)
//	5       3     reserved, zero
//	8       8     body length in bytes
//	16      4     CRC-32C (Castagnoli) of the body
//	20      ...   body
//
// The length catches truncation and the CRC catches damaged bytes; neither
// is meant to resist tampering (the store is trusted).
const (
	formatVersion = 1
	headerSize    = 20
)

var magic = [4]byte{'S', 'L', 'C', 'K'}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// header returns the header of an object holding body.
func header(body []byte) []byte {
	h := make([]byte, headerSize)
	copy(h[0:4], magic[:])
	h[4] = formatVersion
	binary.BigEndian.PutUint64(h[8:16], uint64(len(body)))
	binary.BigEndian.PutUint32(h[16:20], crc32.Checksum(body, castagnoli))
	return h
}

// Encode returns the stored form of body (header then body). Backends write
// it; tests use it to craft damaged objects.
func Encode(body []byte) []byte {
	return append(header(body), body...)
}

// decode checks an object and returns its body (aliasing obj).
func decode(obj []byte) ([]byte, error) {
	if len(obj) < headerSize {
		return nil, fmt.Errorf("%w: %d bytes, shorter than the %d-byte header", ErrCorrupt, len(obj), headerSize)
	}
	if [4]byte(obj[0:4]) != magic {
		return nil, fmt.Errorf("%w: bad magic %q", ErrCorrupt, obj[0:4])
	}
	if v := obj[4]; v != formatVersion {
		return nil, fmt.Errorf("%w: version %d (this code reads %d)", ErrVersion, v, formatVersion)
	}
	want := binary.BigEndian.Uint64(obj[8:16])
	body := obj[headerSize:]
	if uint64(len(body)) != want {
		return nil, fmt.Errorf("%w: body is %d bytes, header says %d (truncated or padded)", ErrCorrupt, len(body), want)
	}
	wantCRC := binary.BigEndian.Uint32(obj[16:20])
	if got := crc32.Checksum(body, castagnoli); got != wantCRC {
		return nil, fmt.Errorf("%w: CRC-32C of body is %08x, header says %08x", ErrCorrupt, got, wantCRC)
	}
	return body, nil
}
