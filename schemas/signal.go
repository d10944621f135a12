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
	Used      int64 // requests counted in the period: the sum of Nodes' counts plus UpdateUsage adjustments
	Limit     int64 // the period's limit (offset applied)
	PeriodEnd int64 // Unix nanoseconds when the period ends
	AsOf      int64 // Unix nanoseconds of the newest event counted
	Exhausted bool  // Used >= Limit
	// Nodes is, per enforcer that admitted requests of the key under the
	// plan in the period, how many of them the aggregator has counted
	// (UsageEvent.Node). An enforcer compares its own count with what it
	// admitted to know how many of its admissions are still on their way;
	// the number of entries is how many enforcers share the key.
	Nodes []NodeCount
}

// NodeCount is what the aggregator has counted from one enforcer.
type NodeCount struct {
	Node    string // UsageEvent.Node; "" for an unnamed enforcer
	Counted int64  // admitted events counted in the period
}

// Remaining is what the key has left in the period.
func (s *QuotaSignal) Remaining() int64 { return max(s.Limit-s.Used, 0) }

// Field numbers of QuotaSignal's protobuf encoding (never reuse one):
// 1 plan_id string, 2 key_id string, 3 used sint64, 4 limit sint64,
// 5 period_end sint64, 6 as_of sint64, 7 exhausted bool,
// 8 nodes repeated NodeCount, an embedded message of
// {1 node string, 2 counted sint64} (one entry per enforcer; readers
// older than the field skip it).

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
	for i := range s.Nodes {
		dst = appendNodeCount(dst, 8, &s.Nodes[i])
	}
	return dst
}

// appendNodeCount writes nc as an embedded message. Its length is
// computed first, so the message is written in place, with no buffer.
func appendNodeCount(dst []byte, field int, nc *NodeCount) []byte {
	n := 0
	if nc.Node != "" {
		n += 1 + varintLen(uint64(len(nc.Node))) + len(nc.Node)
	}
	if z := zig(nc.Counted); z != 0 {
		n += 1 + varintLen(z)
	}
	dst = appendVarint(appendTag(dst, field, wireBytes), uint64(n))
	dst = appendString(dst, 1, nc.Node)
	return appendSint(dst, 2, nc.Counted)
}

// DecodeQuotaSignal decodes AppendQuotaSignal's encoding. Its strings
// share one allocation, a copy of b; Nodes, when present, is one more.
func DecodeQuotaSignal(b []byte, s *QuotaSignal) error {
	*s = QuotaSignal{}
	buf := string(b)
	nodes := 0
	err := walkFields(b, func(field, wire int, v uint64, off, n int) error {
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
		case 8:
			if wire != wireBytes {
				return fmt.Errorf("%w: nodes entry of wire type %d", ErrMalformed, wire)
			}
			nodes++
		}
		return nil
	})
	if err == nil && nodes > 0 {
		// A second pass, now that the entries are counted: one
		// allocation of the right size.
		s.Nodes = make([]NodeCount, 0, nodes)
		err = walkFields(b, func(field, _ int, _ uint64, off, n int) error {
			if field != 8 {
				return nil
			}
			nc, err := decodeNodeCount(b[off:off+n], buf[off:off+n])
			if err != nil {
				return err
			}
			s.Nodes = append(s.Nodes, nc)
			return nil
		})
	}
	if err != nil {
		return fmt.Errorf("quota signal: %w", err)
	}
	if s.PlanID == "" || s.KeyID == "" {
		return fmt.Errorf("quota signal: %w: plan and key ids are required", ErrMalformed)
	}
	return nil
}

// decodeNodeCount decodes one embedded NodeCount; buf is b as a string,
// for the node name to share it.
func decodeNodeCount(b []byte, buf string) (NodeCount, error) {
	var nc NodeCount
	err := walkFields(b, func(field, wire int, v uint64, off, n int) error {
		switch {
		case field == 1 && wire == wireBytes:
			nc.Node = buf[off : off+n]
		case field == 2 && wire == wireVarint:
			nc.Counted = unzig(v)
		case field == 1 || field == 2:
			return fmt.Errorf("%w: nodes entry field %d of wire type %d", ErrMalformed, field, wire)
		}
		return nil
	})
	if err != nil {
		return NodeCount{}, fmt.Errorf("nodes entry: %w", err)
	}
	return nc, nil
}
