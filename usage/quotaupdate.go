package usage

import (
	"context"
	"encoding/json"
	"time"

	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/internal/utc"
)

// QuotaUpdate carries out UpdateUsage, setting what a key has left of its
// quota under a plan in the current period, the same way in every
// deployment:
//
//  1. the rule, catalog.State.QuotaTarget, gives the period's used count
//     that leaves what was asked;
//  2. the change to that count is what the live counter changed (an
//     embedded gateway's, which requests are admitted against), or, on a
//     fleet, the target less what the store holds of the period;
//  3. the store records the change as an adjustment of today, so that a
//     restart (RestoreQuotas) and the fleet's quota authority (the
//     aggregator, which reads adjustments and signals the new state to
//     every enforcer) count it;
//  4. the audit log records what remained before and after.
//
// It is made whole or not at all: if the store or the audit log refuses,
// what was changed before is put back. A fleet's count leaves out the
// requests the aggregator has not stored yet (its flush interval).
type QuotaUpdate struct {
	// Catalog is the catalog in force. Required.
	Catalog interface{ State() *catalog.State }
	// Store records adjustments and, without Live, gives the period's
	// count. Required.
	Store interface {
		Daily(ctx context.Context, f Filter) ([]DayCount, error)
		AdjustQuota(ctx context.Context, planID, keyID string, day, delta int64) error
	}
	// Live, when set, is the counter requests are admitted against.
	Live LiveCounter
	// Audit receives the change. Required.
	Audit *catalog.AuditLog
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// LiveCounter is a gateway's quota counters (enforcer.Gateway).
type LiveCounter interface {
	// SetUsed sets the key's used count under the plan in the current
	// period and returns the change: the count was used-delta before.
	SetUsed(planID, keyID string, used int64) (delta int64, err error)
}

// SetRemaining sets what the key has left under the plan in the current
// period. Its errors are the rule's (catalog.ErrNoSuchKeyPlan,
// ErrNoQuota, ErrRemainingOutOfRange) or the store's and audit log's.
func (q *QuotaUpdate) SetRemaining(ctx context.Context, planID, keyID string, remaining int64) error {
	now := time.Now
	if q.Now != nil {
		now = q.Now
	}
	at := now()
	used, start, err := q.Catalog.State().QuotaTarget(planID, keyID, remaining, at.UnixNano())
	if err != nil {
		return err
	}
	// The client going away must not leave counter, store and audit log
	// apart.
	ctx = context.WithoutCancel(ctx)
	var delta int64
	undo := func() {}
	if q.Live != nil {
		if delta, err = q.Live.SetUsed(planID, keyID, used); err != nil {
			return err
		}
		undo = func() { q.Live.SetUsed(planID, keyID, used-delta) }
	} else {
		rows, err := q.Store.Daily(ctx, Filter{FromDay: utc.Day(start), ToDay: utc.Day(at.UnixNano()), PlanID: planID, KeyID: keyID})
		if err != nil {
			return err
		}
		delta = used
		for _, r := range rows {
			delta -= r.Admitted + r.Adjustment
		}
	}
	day := utc.Day(at.UnixNano())
	if delta != 0 {
		if err := q.Store.AdjustQuota(ctx, planID, keyID, day, delta); err != nil {
			undo()
			return err
		}
	}
	if err := q.audit(ctx, at, planID, keyID, remaining+delta, remaining); err != nil {
		if delta != 0 {
			q.Store.AdjustQuota(ctx, planID, keyID, day, -delta)
		}
		undo()
		return err
	}
	return nil
}

// audit records an UpdateUsage: what remained of the key's quota before
// and after, and who asked (catalog.ActorOf).
func (q *QuotaUpdate) audit(ctx context.Context, at time.Time, planID, keyID string, before, after int64) error {
	actor, action := catalog.ActorOf(ctx)
	old, _ := json.Marshal(map[string]int64{"remaining": before})
	next, _ := json.Marshal(map[string]int64{"remaining": after})
	return q.Audit.Append([]catalog.AuditEntry{{Time: at, Actor: actor, Action: action, Kind: "usage",
		ID: planID + "/" + keyID, Old: old, New: next}})
}
