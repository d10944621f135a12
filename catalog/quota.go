package catalog

import (
	"errors"
	"fmt"
	"slices"
)

// Errors of QuotaTarget, UpdateUsage's rule.
var (
	ErrNoSuchKeyPlan       = errors.New("the key is not in that usage plan")
	ErrNoQuota             = errors.New("the usage plan has no quota")
	ErrRemainingOutOfRange = errors.New("remaining is out of range")
)

// QuotaTarget is the rule of UpdateUsage, the one place it is checked:
// the key must be in the plan, the plan must have a quota, and what the
// key is to have left must lie between 0 and the limit of the period
// that holds now (Unix nanoseconds). It returns the period's used count
// that leaves remaining, and the start of the period.
func (s *State) QuotaTarget(planID, keyID string, remaining, now int64) (used, start int64, err error) {
	p, k := s.Plan(planID), s.Key(keyID)
	if p == nil || k == nil || !slices.Contains(k.UsagePlans, planID) {
		return 0, 0, ErrNoSuchKeyPlan
	}
	if p.Quota == nil {
		return 0, 0, ErrNoQuota
	}
	limit := p.Quota.LimitAt(p.Quota.Period.Index(now), p.CreatedDate)
	if remaining < 0 || remaining > limit {
		return 0, 0, fmt.Errorf("%w: it must be between 0 and the period's limit %d, got %d", ErrRemainingOutOfRange, limit, remaining)
	}
	start, _ = p.Quota.Period.Bounds(now)
	return limit - remaining, start, nil
}
