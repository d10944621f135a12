package main

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"time"
)

// errNotReached marks a figure whose step did not run because an earlier
// one failed (that one's cell says why).
var errNotReached = errors.New("not reached: an earlier step failed")

// timedOut is a step that ran out of --step-timeout.
type timedOut struct{ after time.Duration }

func (e timedOut) Error() string { return fmt.Sprintf("timed out after %v", e.after) }

// timing is one measured duration, or why there is none.
type timing struct {
	d   time.Duration
	err error
}

// latencies are the durations of repeated calls; err says why there are
// fewer than want (a step that timed out keeps what it measured).
type latencies struct {
	samples []time.Duration
	want    int
	err     error
}

// quantile is the q-quantile of the samples (nearest rank); 0 without
// samples.
func (l latencies) quantile(q float64) time.Duration {
	if len(l.samples) == 0 {
		return 0
	}
	s := slices.Clone(l.samples)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// memory is a process's resident set size in bytes, or why there is none.
type memory struct {
	rss int64
	err error
}

// adminOps are the admin operations timed at every size, in the order
// they run: each call of the second and third acts on a key the first
// created.
var adminOps = [...]string{"create-api-key", "create-usage-plan-key", "update-api-key (disable)"}

// sizeResult is everything measured at one catalog size.
type sizeResult struct {
	keys int
	// err, when set, is why nothing could be measured at this size.
	err error

	serveStart, serveRestart timing
	ops                      [len(adminOps)]latencies
	rssStart, rssChanged     memory
	rssRestart               memory
	changes                  int // admin changes made between rssStart and rssChanged
	pages                    latencies
	// importKeys is measured at the smallest size only (imported true).
	importKeys timing
	imported   bool

	fleetLoad, enforcerStart, enforcerRestart timing
	propagation                               latencies
	rssEnforcer                               memory // after its first start

	wall time.Duration
}

func newSizeResult(keys int) *sizeResult {
	r := &sizeResult{keys: keys}
	for _, t := range []*timing{&r.serveStart, &r.serveRestart, &r.importKeys, &r.fleetLoad, &r.enforcerStart, &r.enforcerRestart} {
		t.err = errNotReached
	}
	for _, l := range []*latencies{&r.ops[0], &r.ops[1], &r.ops[2], &r.pages, &r.propagation} {
		l.err = errNotReached
	}
	r.rssStart.err, r.rssChanged.err, r.rssRestart.err, r.rssEnforcer.err = errNotReached, errNotReached, errNotReached, errNotReached
	return r
}
