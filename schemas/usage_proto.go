package schemas

import (
	"errors"
	"fmt"
	"math"
)

// The wire encoding of UsageEvent (EventTypeUsage) is the protocol buffers
// binary format, written and read by hand: compact (varints, no field
// names), stable (fields are numbered; readers skip numbers they do not
// know, so fields can be added without a version bump), and readable with
// standard tools without a schema:
//
//	kcat -C -b HOST:9092 -t tollgate.events -c 1 -f '%s' | protoc --decode_raw
//
// The contract for consumers in other languages is schemas/tollgate.proto
// (TestProtoContract holds this encoder and it to the same numbers and
// types). Field numbers (never reuse one):
//
//	1  id             bytes   16-byte UUIDv7
//	2  time           sint64  Unix nanoseconds
//	3  api_id         string
//	4  stage          string
//	5  key_id         string
//	6  plan_id        string
//	7  method         string
//	8  resource       string
//	9  status         uint32
//	10 decision       uint32  schemas.Decision
//	11 latency_micros sint64
//	12 bytes_in       sint64
//	13 bytes_out      sint64
//	14 node           string  the enforcer (enforcer.Config.Node); readers
//	                          older than it skip it, records older than it
//	                          decode with Node ""
//	15 count          uint32  requests the event stands for (UsageEvent.Count);
//	                          absent (0) means 1: events of one request never
//	                          write it, records older than it are one request
//	16 key_fingerprint string the key value's fingerprint (UsageEvent.KeyFingerprint);
//	                          readers older than it skip it, records older
//	                          than it decode with KeyFingerprint ""
//
// Producer retries may deliver an event twice: consumers drop duplicates
// by id.

// AppendUsageEvent appends e's encoding to dst.
func AppendUsageEvent(dst []byte, e *UsageEvent) []byte {
	dst = appendBytesField(dst, 1, e.ID[:])
	dst = appendSint(dst, 2, e.Time)
	dst = appendString(dst, 3, e.APIID)
	dst = appendString(dst, 4, e.Stage)
	dst = appendString(dst, 5, e.KeyID)
	dst = appendString(dst, 6, e.PlanID)
	dst = appendString(dst, 7, e.Method)
	dst = appendString(dst, 8, e.Resource)
	dst = appendUint(dst, 9, uint64(uint32(e.Status)))
	dst = appendUint(dst, 10, uint64(e.Decision))
	dst = appendSint(dst, 11, e.LatencyMicros)
	dst = appendSint(dst, 12, e.BytesIn)
	dst = appendSint(dst, 13, e.BytesOut)
	dst = appendString(dst, 14, e.Node)
	dst = appendUint(dst, 15, uint64(e.Count))
	dst = appendString(dst, 16, e.KeyFingerprint)
	return dst
}

// ErrMalformed is wrapped by every decoding error.
var ErrMalformed = errors.New("malformed record")

// DecodeUsageEvent decodes an encoding made by AppendUsageEvent (or any
// protocol buffers writer of the same fields). Its strings share one
// allocation: a copy of b.
func DecodeUsageEvent(b []byte, e *UsageEvent) error {
	*e = UsageEvent{}
	// One copy holds every string of the event; strings are taken from it
	// at the offsets parsed in b.
	buf := string(b)
	hasID := false
	err := walkFields(b, func(field, _ int, v uint64, off, n int) error {
		switch field {
		case 1:
			if n != 16 {
				return fmt.Errorf("%w: id has %d bytes, want 16", ErrMalformed, n)
			}
			copy(e.ID[:], b[off:off+n])
			hasID = true
		case 2:
			e.Time = unzig(v)
		case 3:
			e.APIID = buf[off : off+n]
		case 4:
			e.Stage = buf[off : off+n]
		case 5:
			e.KeyID = buf[off : off+n]
		case 6:
			e.PlanID = buf[off : off+n]
		case 7:
			e.Method = buf[off : off+n]
		case 8:
			e.Resource = buf[off : off+n]
		case 9:
			e.Status = int32(v)
		case 10:
			e.Decision = Decision(v)
		case 11:
			e.LatencyMicros = unzig(v)
		case 12:
			e.BytesIn = unzig(v)
		case 13:
			e.BytesOut = unzig(v)
		case 14:
			e.Node = buf[off : off+n]
		case 15:
			if v > math.MaxUint32 {
				return fmt.Errorf("%w: count %d overflows 32 bits", ErrMalformed, v)
			}
			e.Count = uint32(v)
		case 16:
			e.KeyFingerprint = buf[off : off+n]
		}
		return nil
	})
	if err == nil && !hasID {
		err = fmt.Errorf("%w: no id", ErrMalformed)
	}
	if err != nil {
		return fmt.Errorf("usage event: %w", err)
	}
	return nil
}
