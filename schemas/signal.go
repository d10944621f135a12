package schemas

import "fmt"

// EventTypeQuotaSignal names the layout of QuotaSignal.
const EventTypeQuotaSignal = "tollgate.quota_signal.v1"

// QuotaSignal is the aggregator's authoritative quota state of one key
// under one plan, published (keyed "planID/keyID" on a compacted topic)
// for enforcers to combine with what they admitted since.
type QuotaSignal struct {
	PlanID    string
	KeyID     string
	Used      int64 // requests counted in the period
	Limit     int64 // the period's limit (offset applied)
	PeriodEnd int64 // Unix nanoseconds when the period ends
	AsOf      int64 // Unix nanoseconds of the newest event counted
	Exhausted bool  // Used >= Limit
}

// Remaining is what the key has left in the period.
func (s *QuotaSignal) Remaining() int64 { return max(s.Limit-s.Used, 0) }

// Field numbers of QuotaSignal's protobuf encoding (never reuse one):
// 1 plan_id string, 2 key_id string, 3 used sint64, 4 limit sint64,
// 5 period_end sint64, 6 as_of sint64, 7 exhausted bool.

// AppendQuotaSignal appends s's encoding to dst.
func AppendQuotaSignal(dst []byte, s *QuotaSignal) []byte {
	dst = appendString(dst, 1, s.PlanID)
	dst = appendString(dst, 2, s.KeyID)
	dst = appendSint(dst, 3, s.Used)
	dst = appendSint(dst, 4, s.Limit)
	dst = appendSint(dst, 5, s.PeriodEnd)
	dst = appendSint(dst, 6, s.AsOf)
	if s.Exhausted {
		dst = appendUint(dst, 7, 1)
	}
	return dst
}

// DecodeQuotaSignal decodes AppendQuotaSignal's encoding.
func DecodeQuotaSignal(b []byte, s *QuotaSignal) error {
	*s = QuotaSignal{}
	buf := string(b)
	err := walkFields(b, func(field int, v uint64, off, n int) error {
		switch field {
		case 1:
			s.PlanID = buf[off : off+n]
		case 2:
			s.KeyID = buf[off : off+n]
		case 3:
			s.Used = unzig(v)
		case 4:
			s.Limit = unzig(v)
		case 5:
			s.PeriodEnd = unzig(v)
		case 6:
			s.AsOf = unzig(v)
		case 7:
			s.Exhausted = v != 0
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("quota signal: %w", err)
	}
	if s.PlanID == "" || s.KeyID == "" {
		return fmt.Errorf("quota signal: %w: plan and key ids are required", ErrMalformed)
	}
	return nil
}

func unzig(v uint64) int64 { return int64(v>>1) ^ -int64(v&1) }

// walkFields calls f for each field of a protobuf message: varints with
// their value, length-delimited fields with their offset and length in b.
// Fixed-width fields are skipped.
func walkFields(b []byte, f func(field int, v uint64, off, n int) error) error {
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
			if err := f(field, v, 0, 0); err != nil {
				return err
			}
		case wireBytes:
			l, n := readVarint(b[i:])
			if n <= 0 || l > uint64(len(b)-i-n) {
				return fmt.Errorf("%w: bad length in field %d", ErrMalformed, field)
			}
			i += n
			if err := f(field, 0, i, int(l)); err != nil {
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
