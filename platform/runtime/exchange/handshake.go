// Package exchange carries streams between Jobs: an export server on the
// exporting PE's export port sends an export operator's tuples to every
// subscriber connected to it, and an import client on the importing PE
// dials every export its Import's status lists and receives them. What the
// import client dials comes from a Watcher of the Import object (the
// Kubernetes API in a cluster, a file in local mode).
//
// On the wire, the importer opens with a subscribe handshake (this file);
// after an OK reply the exporter sends platform/runtime/wire frames:
// batches, and a final frame when its stream ends.
package exchange

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Version of the subscribe handshake.
const Version = 1

// Magic opens a subscribe handshake and its reply; it differs from the
// PE-to-PE magic so that a connection to the wrong kind of port fails at
// once with a clear error.
var Magic = [4]byte{'S', 'L', 'X', 'S'}

// MaxName bounds the stream and PE names of a handshake.
const MaxName = 253

// Reply status of a subscribe handshake.
const (
	StatusOK         byte = 0
	StatusBadVersion byte = 1
	// StatusUnknownStream: this port serves another export.
	StatusUnknownStream byte = 2
)

// ErrHandshake marks a handshake that is not ours or not acceptable.
var ErrHandshake = errors.New("bad subscribe handshake")

// Subscribe is the importer's opening message: the Export object whose
// stream it wants, and who it is (for logs).
type Subscribe struct {
	Version uint8
	Stream  string
	PE      string
}

// subscribeLen is the fixed part: magic, version, reserved, two name lengths.
const subscribeLen = 4 + 1 + 1 + 2 + 2

// AppendSubscribe encodes s; names longer than MaxName are an error.
func AppendSubscribe(b []byte, s Subscribe) ([]byte, error) {
	if len(s.Stream) > MaxName || len(s.PE) > MaxName {
		return b, fmt.Errorf("%w: name longer than %d bytes", ErrHandshake, MaxName)
	}
	b = append(b, Magic[:]...)
	b = append(b, s.Version, 0)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(s.Stream)))
	b = binary.LittleEndian.AppendUint16(b, uint16(len(s.PE)))
	b = append(b, s.Stream...)
	return append(b, s.PE...), nil
}

// ReadSubscribe reads a subscribe handshake. One of another version is
// returned with only Version set (its layout is not ours to read).
func ReadSubscribe(r io.Reader) (Subscribe, error) {
	var h [subscribeLen]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return Subscribe{}, err
	}
	if [4]byte(h[:4]) != Magic {
		return Subscribe{}, fmt.Errorf("%w: magic %q", ErrHandshake, h[:4])
	}
	if h[4] != Version {
		return Subscribe{Version: h[4]}, nil
	}
	if h[5] != 0 {
		return Subscribe{}, fmt.Errorf("%w: reserved byte %d", ErrHandshake, h[5])
	}
	ns, np := binary.LittleEndian.Uint16(h[6:]), binary.LittleEndian.Uint16(h[8:])
	if ns > MaxName || np > MaxName {
		return Subscribe{}, fmt.Errorf("%w: name lengths %d and %d exceed %d", ErrHandshake, ns, np, MaxName)
	}
	names := make([]byte, int(ns)+int(np))
	if _, err := io.ReadFull(r, names); err != nil {
		return Subscribe{}, err
	}
	return Subscribe{Version: Version, Stream: string(names[:ns]), PE: string(names[ns:])}, nil
}

// AppendReply encodes the exporter's answer.
func AppendReply(b []byte, status byte) []byte {
	b = append(b, Magic[:]...)
	return append(b, Version, status)
}

// ReadReply reads the exporter's answer and turns a refusal into an error.
func ReadReply(r io.Reader) error {
	var h [6]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return err
	}
	if [4]byte(h[:4]) != Magic {
		return fmt.Errorf("%w: reply magic %q (not an export port?)", ErrHandshake, h[:4])
	}
	switch h[5] {
	case StatusOK:
		return nil
	case StatusBadVersion:
		return fmt.Errorf("%w: exporter speaks version %d, importer %d", ErrHandshake, h[4], Version)
	case StatusUnknownStream:
		return fmt.Errorf("%w: the port serves another export", ErrHandshake)
	}
	return fmt.Errorf("%w: reply status %d", ErrHandshake, h[5])
}
