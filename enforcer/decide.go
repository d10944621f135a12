package enforcer

import "github.com/tollgate/tollgate/schemas"

// decision is the outcome of the checks on one request.
type decision struct {
	outcome schemas.Decision
	stage   *stageRoute
	route   *methodRoute
	key     *keyEntry
	plan    *planRT // the key's plan for the stage
	// For 429s: how long until the request could pass, in nanoseconds.
	retryAfter int64
	// For RateLimit headers.
	tokensLeft, throttleReset int64 // reset in seconds
	quotaLeft, quotaReset     int64 // reset in seconds
	throttled, quotaed        bool  // whether a plan throttle / quota applied
}

// decide runs the checks AWS API Gateway runs, in its order: route, key,
// then throttles (gateway-wide, stage, then the plan's or the method's
// bucket), then the quota. A request rejected at any step gives back the
// tokens it took at earlier steps, so rejected requests consume neither
// throttle tokens nor quota.
//
// keys is the request's x-api-key header values. decide allocates nothing,
// except on a key's first request to a method with a per-method throttle
// under a plan, and again after the plan's set of per-method throttles
// changed: that request lays out the key's per-method counters
// (keyPlanState.methodTat).
func (t *table) decide(d *decision, host, path, method string, keys []string, now int64) {
	if len(keys) > 1 {
		d.outcome = schemas.DecisionBadRequest
		return
	}
	sr, rest := t.route(host, path)
	if sr == nil {
		d.outcome = schemas.DecisionMissingToken
		return
	}
	d.stage = sr
	n := sr.root.match(rest)
	var mr *methodRoute
	if n != nil {
		mr = n.lookup(method)
	}
	if mr == nil {
		d.outcome = schemas.DecisionMissingToken
		return
	}
	d.route = mr
	var p *planRT
	var st *keyPlanState
	var mb []int
	if mr.keyRequired {
		var e *keyEntry
		if len(keys) == 1 {
			e = t.keys.lookup(keys[0])
		}
		if e == nil {
			d.outcome = schemas.DecisionForbidden
			return
		}
		d.key = e
		if !e.enabled || e.expires != 0 && now >= e.expires {
			d.outcome = schemas.DecisionForbidden
			return
		}
		if p, st, mb = t.bind(e, sr); p == nil {
			d.outcome = schemas.DecisionForbidden
			return
		}
		d.plan = p
	}

	// Throttles, most general first. In a fleet the gateway's and the
	// stage's buckets are divided evenly: this enforcer's part is the
	// fleet's default share (rate.go).
	gb, sb := &t.gateway, &sr.bucket
	var gwPart, stagePart bucket
	if f := t.share.Load(); f < schemas.ShareOne {
		gwPart, stagePart = gb.scaled(f), sb.scaled(f)
		gb, sb = &gwPart, &stagePart
	}
	ok, _, wait := gb.take(t.gwState, now)
	if !ok {
		d.throttledBy(wait)
		return
	}
	if ok, _, wait = sb.take(sr.state, now); !ok {
		gb.refund(t.gwState)
		d.throttledBy(wait)
		return
	}
	if p == nil {
		d.outcome = schemas.DecisionAllowed
		return
	}
	pb, tat := &p.bucket, &st.tat
	if i := mb[mr.idx]; i >= 0 {
		pb, tat = &p.overrides[i], st.methodTat(p, i)
	}
	// In a fleet, this enforcer's share of the key's limits (rate.go).
	var share bucket
	if f := st.shareAt(now, t.share); f < schemas.ShareOne && pb.interval > 0 {
		share = pb.scaled(f)
		pb = &share
	}
	ok, left, wait := pb.take(tat, now)
	if !ok {
		sb.refund(sr.state)
		gb.refund(t.gwState)
		d.throttledBy(wait)
		d.throttled = true
		d.throttleReset = pb.secondsUntilFull(tat, now)
		return
	}
	if d.throttled = !pb.unlimited(); d.throttled {
		d.tokensLeft = left
		d.throttleReset = pb.secondsUntilFull(tat, now)
	}
	if q := p.quota; q != nil {
		d.quotaed = true
		ok, idx, remaining, end := q.take(&st.quota, now)
		if ok {
			// What this enforcer admitted, for signals to tell from
			// what the aggregator has counted (ApplySignal); in a fleet,
			// before a signal of the period, capped by the fail-safe
			// lease (see the package doc, "Quota leases").
			capN := int64(-1)
			if fs := t.failSafe.Load(); fs < schemas.ShareOne && st.asOf.Load() < q.span(now).start {
				capN = failSafe(q.limit(idx), fs)
			}
			n, counted := q.countLocal(&st.local, idx, capN)
			switch {
			case !counted:
				q.refund(&st.quota, idx)
				ok, remaining = false, 0
			case capN >= 0:
				remaining = min(remaining, capN-n)
			}
		}
		d.quotaLeft, d.quotaReset = remaining, (end-now+1e9-1)/1e9
		if !ok {
			pb.refund(tat)
			d.tokensLeft++ // given back
			sb.refund(sr.state)
			gb.refund(t.gwState)
			d.outcome = schemas.DecisionQuotaExceeded
			d.retryAfter = end - now
			return
		}
	}
	d.outcome = schemas.DecisionAllowed
}

func (d *decision) throttledBy(wait int64) {
	d.outcome = schemas.DecisionThrottled
	d.retryAfter = wait
}
