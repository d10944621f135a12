package schemas

import (
	"encoding/binary"
	"fmt"
)

// The protocol buffers wire format, as the records of usage_proto.go and
// signal.go write and read it by hand (tollgate.proto is their contract):
// varints from encoding/binary, tags, zigzag for sint64, proto3's
// omission of zero values, and a walk over a message's fields.

const (
	wireVarint = 0
	wireBytes  = 2
)

func appendVarint(b []byte, v uint64) []byte { return binary.AppendUvarint(b, v) }

func appendTag(b []byte, field, wire int) []byte { return appendVarint(b, uint64(field<<3|wire)) }

func appendUint(b []byte, field int, v uint64) []byte {
	if v == 0 {
		return b // proto3: zero values are not written
	}
	return appendVarint(appendTag(b, field, wireVarint), v)
}

func appendSint(b []byte, field int, v int64) []byte { return appendUint(b, field, zig(v)) }

func appendString(b []byte, field int, s string) []byte {
	if s == "" {
		return b
	}
	b = appendVarint(appendTag(b, field, wireBytes), uint64(len(s)))
	return append(b, s...)
}

func appendBytesField(b []byte, field int, v []byte) []byte {
	b = appendVarint(appendTag(b, field, wireBytes), uint64(len(v)))
	return append(b, v...)
}

// readVarint returns the value and its length in bytes, or n <= 0 when b
// does not start with a valid varint (truncated, or over 64 bits).
func readVarint(b []byte) (v uint64, n int) { return binary.Uvarint(b) }

// varintLen is the length of v's varint.
func varintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// zig is the zigzag encoding of sint64 fields (as appendSint writes
// them); unzig decodes it.
func zig(v int64) uint64 { return uint64(v<<1) ^ uint64(v>>63) }

func unzig(v uint64) int64 { return int64(v>>1) ^ -int64(v&1) }

// walkFields calls f for each field of a protobuf message with its wire
// type: varints with their value, length-delimited fields with their
// offset and length in b. Fixed-width fields are skipped.
func walkFields(b []byte, f func(field, wire int, v uint64, off, n int) error) error {
	for i := 0; i < len(b); {
		tag, n := readVarint(b[i:])
		if n <= 0 {
			return fmt.Errorf("%w: bad tag at byte %d", ErrMalformed, i)
		}
		i += n
		field, wire := int(tag>>3), int(tag&7)
		if field == 0 {
			return fmt.Errorf("%w: field number 0 at byte %d", ErrMalformed, i)
		}
		switch wire {
		case wireVarint:
			v, n := readVarint(b[i:])
			if n <= 0 {
				return fmt.Errorf("%w: bad varint in field %d", ErrMalformed, field)
			}
			i += n
			if err := f(field, wire, v, 0, 0); err != nil {
				return err
			}
		case wireBytes:
			l, n := readVarint(b[i:])
			if n <= 0 || l > uint64(len(b)-i-n) {
				return fmt.Errorf("%w: bad length in field %d", ErrMalformed, field)
			}
			i += n
			if err := f(field, wire, 0, i, int(l)); err != nil {
				return err
			}
			i += int(l)
		case 1, 5:
			w := 8
			if wire == 5 {
				w = 4
			}
			if len(b)-i < w {
				return fmt.Errorf("%w: truncated field %d", ErrMalformed, field)
			}
			i += w
		default:
			return fmt.Errorf("%w: wire type %d in field %d", ErrMalformed, wire, field)
		}
	}
	return nil
}
