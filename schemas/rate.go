package schemas

import "fmt"

// RateSignal is the aggregator's division of a key's throttle under a
// plan among the enforcers of the fleet: each enforcer admits its Share
// of the plan's rate and burst (and of each per-method throttle's), so
// that the fleet admits the plan's rate wherever the key's traffic
// arrives. Shares are fractions of the plan's limits, not rates, so that
// a change of the plan applies at once on every enforcer.
//
// A RateSignal holds only while it is fresh: an enforcer applies it until
// AsOf plus its staleness bound, then falls back to 1/Fleet of the rate
// (see enforcer.Gateway.ApplyRate).
type RateSignal struct {
	PlanID string
	KeyID  string
	// AsOf is when the aggregator divided the rate (its clock, Unix ns).
	AsOf int64
	// Fleet is how many enforcers the aggregator saw requests from
	// recently: the fallback share of a stale signal is 1/Fleet.
	Fleet int32
	// Floor is the share of an enforcer Shares does not name (one that
	// had no request of the key yet), in ShareOne units.
	Floor uint32
	// Shares is, per enforcer that had requests of the key, its share of
	// the plan's limits in ShareOne units, sorted by node name.
	Shares []NodeShare
}

// FleetPlanID is the PlanID of a RateSignal that carries only the
// fleet's size: each aggregator publishes one a second (KeyID its name),
// so that enforcers know N whether or not a key is busy enough to divide.
const FleetPlanID = "~fleet"

// ShareOne is the whole of a limit in a RateSignal's share units.
const ShareOne = 1 << 16

// NodeShare is one enforcer's share of a key's throttle.
type NodeShare struct {
	Node  string
	Share uint32 // of ShareOne
}

// ShareOf returns node's share: its entry in Shares, or Floor.
func (s *RateSignal) ShareOf(node string) uint32 {
	for i := range s.Shares {
		if s.Shares[i].Node == node {
			return s.Shares[i].Share
		}
	}
	return s.Floor
}

// Field numbers of RateSignal's protobuf encoding (never reuse one):
// 1 plan_id string, 2 key_id string, 3 as_of sint64, 4 fleet uint32,
// 5 floor uint32, 6 shares repeated NodeShare, an embedded message of
// {1 node string, 2 share uint32}.

// AppendRateSignal appends s's encoding to dst.
func AppendRateSignal(dst []byte, s *RateSignal) []byte {
	dst = appendString(dst, 1, s.PlanID)
	dst = appendString(dst, 2, s.KeyID)
	dst = appendSint(dst, 3, s.AsOf)
	dst = appendUint(dst, 4, uint64(max(s.Fleet, 0)))
	dst = appendUint(dst, 5, uint64(s.Floor))
	for i := range s.Shares {
		ns := &s.Shares[i]
		n := 0
		if ns.Node != "" {
			n += 1 + varintLen(uint64(len(ns.Node))) + len(ns.Node)
		}
		if ns.Share != 0 {
			n += 1 + varintLen(uint64(ns.Share))
		}
		dst = appendVarint(appendTag(dst, 6, wireBytes), uint64(n))
		dst = appendString(dst, 1, ns.Node)
		dst = appendUint(dst, 2, uint64(ns.Share))
	}
	return dst
}

// DecodeRateSignal decodes AppendRateSignal's encoding. A share above
// ShareOne, or a fleet of more than 1<<20 enforcers, is malformed.
func DecodeRateSignal(b []byte, s *RateSignal) error {
	*s = RateSignal{}
	buf := string(b)
	err := walkFields(b, func(field, wire int, v uint64, off, n int) error {
		switch field {
		case 1:
			s.PlanID = buf[off : off+n]
		case 2:
			s.KeyID = buf[off : off+n]
		case 3:
			s.AsOf = unzig(v)
		case 4:
			if v > 1<<20 {
				return fmt.Errorf("%w: fleet of %d enforcers", ErrMalformed, v)
			}
			s.Fleet = int32(v)
		case 5:
			if v > ShareOne {
				return fmt.Errorf("%w: floor %d above %d", ErrMalformed, v, ShareOne)
			}
			s.Floor = uint32(v)
		case 6:
			if wire != wireBytes {
				return fmt.Errorf("%w: shares entry of wire type %d", ErrMalformed, wire)
			}
			var ns NodeShare
			err := walkFields(b[off:off+n], func(field, wire int, v uint64, o, m int) error {
				switch {
				case field == 1 && wire == wireBytes:
					ns.Node = buf[off+o : off+o+m]
				case field == 2 && wire == wireVarint:
					if v > ShareOne {
						return fmt.Errorf("%w: share %d above %d", ErrMalformed, v, ShareOne)
					}
					ns.Share = uint32(v)
				case field == 1 || field == 2:
					return fmt.Errorf("%w: shares entry field %d of wire type %d", ErrMalformed, field, wire)
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("shares entry: %w", err)
			}
			s.Shares = append(s.Shares, ns)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("rate signal: %w", err)
	}
	if s.PlanID == "" || s.KeyID == "" {
		return fmt.Errorf("rate signal: %w: plan and key ids are required", ErrMalformed)
	}
	return nil
}
