package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
)

// A PE's checkpoint is one object holding the snapshot of each of its
// stateful operators:
//
//	"SLCP" | version u8 | count u32 | count x (nameLen u16 | name | len u32 | bytes)
//
// little-endian, entries in name order. The store adds its own header and
// checksum around it.
var containerMagic = [4]byte{'S', 'L', 'C', 'P'}

const containerVersion = 1

// ErrContainer marks a checkpoint body this engine cannot read.
var ErrContainer = errors.New("bad checkpoint container")

// EncodeCheckpoint packs operator snapshots into one checkpoint body.
func EncodeCheckpoint(states map[string][]byte) []byte {
	names := make([]string, 0, len(states))
	size := 9
	for name, b := range states {
		names = append(names, name)
		size += 6 + len(name) + len(b)
	}
	sort.Strings(names)
	out := make([]byte, 0, size)
	out = append(out, containerMagic[:]...)
	out = append(out, containerVersion)
	out = binary.LittleEndian.AppendUint32(out, uint32(len(names)))
	for _, name := range names {
		out = binary.LittleEndian.AppendUint16(out, uint16(len(name)))
		out = append(out, name...)
		out = binary.LittleEndian.AppendUint32(out, uint32(len(states[name])))
		out = append(out, states[name]...)
	}
	return out
}

// DecodeCheckpoint unpacks a checkpoint body; anything malformed (bad
// magic or version, a length past the end, a repeated name, trailing
// bytes) is an error wrapping ErrContainer.
func DecodeCheckpoint(b []byte) (map[string][]byte, error) {
	le := binary.LittleEndian
	if len(b) < 9 || [4]byte(b[:4]) != containerMagic {
		return nil, fmt.Errorf("%w: no header", ErrContainer)
	}
	if b[4] != containerVersion {
		return nil, fmt.Errorf("%w: version %d", ErrContainer, b[4])
	}
	count := le.Uint32(b[5:])
	p := b[9:]
	// Each entry takes at least 6 bytes: bound the count before allocating.
	if uint64(count)*6 > uint64(len(p)) {
		return nil, fmt.Errorf("%w: %d entries cannot fit %d bytes", ErrContainer, count, len(p))
	}
	out := make(map[string][]byte, count)
	for i := uint32(0); i < count; i++ {
		if len(p) < 2 {
			return nil, fmt.Errorf("%w: entry %d truncated", ErrContainer, i)
		}
		n := int(le.Uint16(p))
		if len(p) < 2+n+4 {
			return nil, fmt.Errorf("%w: entry %d truncated", ErrContainer, i)
		}
		name := string(p[2 : 2+n])
		size := uint64(le.Uint32(p[2+n:]))
		p = p[2+n+4:]
		if size > uint64(len(p)) {
			return nil, fmt.Errorf("%w: entry %q truncated", ErrContainer, name)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("%w: operator %q twice", ErrContainer, name)
		}
		out[name] = p[:size:size]
		p = p[size:]
	}
	if len(p) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the last entry", ErrContainer, len(p))
	}
	return out, nil
}
