package chstore

import (
	"context"
	"fmt"
	"time"

	"github.com/tollgate/tollgate/aggregator/aggstore"
	"github.com/tollgate/tollgate/usage"
)

// The lost-usage topic's records, in lost_usage (migration 22): what the
// aggregator writes (aggregator.LostStore: InsertLost, LostOffsets) and
// what the report API reads (Lost). Unlike the events, a record written
// twice needs no watermark to be counted once: it is its (partition,
// offset), the table's sort key, and reads take one row per key.

const insertLostSQL = `INSERT INTO lost_usage (src_partition, src_offset, day, node, key_id, plan_id, api_id, stage, reason, requests, admitted, from_ns, to_ns)`

// InsertLost writes records of the lost-usage topic, as one INSERT. It
// may be retried with the same records, or called by several aggregators
// with the same records: each (Partition, Offset) counts once (see
// migration 22). Records it cannot hold (a partition outside 0-65535, a
// day outside 1970-01-01 ... 2105-12-31, negative counts) fail it whole,
// with ErrInvalidBatch, before anything is sent.
func (s *Store) InsertLost(ctx context.Context, recs []aggstore.LostRecord) error {
	if len(recs) == 0 {
		return nil
	}
	var (
		parts                                     = make([]uint16, len(recs))
		offsets, froms, tos                       = make([]int64, len(recs)), make([]int64, len(recs)), make([]int64, len(recs))
		days                                      = make([]time.Time, len(recs))
		nodes, keys, plans, apis, stages, reasons = make([]string, len(recs)), make([]string, len(recs)), make([]string, len(recs)), make([]string, len(recs)), make([]string, len(recs)), make([]string, len(recs))
		requests, admitted                        = make([]uint64, len(recs)), make([]uint64, len(recs))
	)
	for i := range recs {
		r := &recs[i]
		l := &r.Lost
		switch {
		case r.Partition < 0 || r.Partition > 65535:
			return fmt.Errorf("insert lost usage: %w: partition %d is outside 0-65535", ErrInvalidBatch, r.Partition)
		case r.Day < minDay || r.Day > maxDay:
			return fmt.Errorf("insert lost usage: %w: record %d/%d: day %d is outside 1970-01-01 ... 2105-12-31", ErrInvalidBatch, r.Partition, r.Offset, r.Day)
		case l.Count < 0 || l.Admitted < 0:
			return fmt.Errorf("insert lost usage: %w: record %d/%d: negative count", ErrInvalidBatch, r.Partition, r.Offset)
		}
		parts[i], offsets[i], days[i] = uint16(r.Partition), r.Offset, dayTime(r.Day)
		nodes[i], keys[i], plans[i], apis[i], stages[i], reasons[i] = l.Node, l.KeyID, l.PlanID, l.APIID, l.Stage, l.Reason
		requests[i], admitted[i], froms[i], tos[i] = uint64(l.Count), uint64(l.Admitted), l.From, l.To
	}
	err := s.send(ctx, insertLostSQL, []any{parts, offsets, days, nodes, keys, plans, apis, stages, reasons, requests, admitted, froms, tos})
	if err != nil {
		return fmt.Errorf("insert lost usage: %w", err)
	}
	return nil
}

// lostOffsetsSQL reads, per partition of the lost-usage topic, the offset
// after the last record stored: a range of the sort key's prefix.
const lostOffsetsSQL = `SELECT src_partition, max(src_offset) + 1 FROM lost_usage GROUP BY src_partition`

// LostOffsets returns, per partition of the lost-usage topic, the offset
// to read next: past the highest offset stored. A partition it holds
// nothing of is not in the map (read it from its start).
func (s *Store) LostOffsets(ctx context.Context) (map[int]int64, error) {
	rows, err := s.conn.Query(ctx, lostOffsetsSQL)
	if err != nil {
		return nil, fmt.Errorf("read lost usage offsets: %w", err)
	}
	defer rows.Close()
	out := map[int]int64{}
	for rows.Next() {
		var (
			p    uint16
			next int64
		)
		if err := rows.Scan(&p, &next); err != nil {
			return nil, fmt.Errorf("read lost usage offsets: %w", err)
		}
		out[int(p)] = next
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read lost usage offsets: %w", err)
	}
	return out, nil
}

// Lost returns the lost usage of the UTC days [fromDay, toDay], of one key
// and one plan if named ("": any), summed per day, key, plan, enforcer
// and reason, in that order. Each record counts once however many times
// it was written.
func (s *Store) Lost(ctx context.Context, fromDay, toDay int64, keyID, planID string) ([]usage.LostRow, error) {
	q, args, ok := lostQuery(fromDay, toDay, keyID, planID)
	if !ok {
		return nil, nil
	}
	rows, err := s.conn.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("query lost usage: %w", err)
	}
	defer rows.Close()
	var out []usage.LostRow
	for rows.Next() {
		var (
			r   usage.LostRow
			day uint16
		)
		if err := rows.Scan(&day, &r.KeyID, &r.PlanID, &r.Node, &r.Reason, &r.Requests, &r.Admitted); err != nil {
			return nil, fmt.Errorf("query lost usage: %w", err)
		}
		r.Day = int64(day)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query lost usage: %w", err)
	}
	return out, nil
}

// lostQuery returns Lost's query: the inner GROUP BY takes one row per
// record (its copies are equal, so any() of each), the outer one sums
// them. The filters apply to rows before the first grouping, which
// keeps or drops every copy of a record alike. requests > 0 leaves out
// the markers of dead-lettered records. ok is false when no day can
// match.
func lostQuery(fromDay, toDay int64, keyID, planID string) (query string, args []any, ok bool) {
	from, to, ok := clampDays(fromDay, toDay)
	if !ok {
		return "", nil, false
	}
	where := "day BETWEEN ? AND ? AND requests > 0"
	args = []any{dayArg(from), dayArg(to)}
	if keyID != "" {
		where += " AND key_id = ?"
		args = append(args, keyID)
	}
	if planID != "" {
		where += " AND plan_id = ?"
		args = append(args, planID)
	}
	return `SELECT toUInt16(d), k, p, n, r, toInt64(sum(req)), toInt64(sum(adm)) FROM (
	SELECT any(day) AS d, any(key_id) AS k, any(plan_id) AS p, any(node) AS n, any(reason) AS r, any(requests) AS req, any(admitted) AS adm
	FROM lost_usage WHERE ` + where + `
	GROUP BY src_partition, src_offset
)
GROUP BY d, k, p, n, r
ORDER BY d, k, p, n, r`, args, true
}
