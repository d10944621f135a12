package aggregator

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/ingest"
	"github.com/tollgate/tollgate/internal/poll"
	"github.com/tollgate/tollgate/schemas"
	"github.com/tollgate/tollgate/usage"
)

// quotaCatalog has a plan with a daily quota of limit, one with a weekly
// quota, and one without a quota.
func quotaCatalog(limit int64) *catalog.State {
	return catalog.StateOf(&catalog.Catalog{UsagePlans: []catalog.UsagePlan{
		{ID: "day", Name: "day", Quota: &catalog.Quota{Limit: limit, Period: catalog.Day}},
		{ID: "week", Name: "week", Quota: &catalog.Quota{Limit: 3 * limit, Offset: 5, Period: catalog.Week}, CreatedDate: time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC).Unix()},
		{ID: "free", Name: "free"},
	}})
}

// The authority's account, step by step over a seeded run of events
// (admitted and rejected, of several plans, keys and enforcers, some of
// another period, some without a key), merges of the store's rows and
// period ends: each key's Used is the admitted events of its period
// counted, raised to the store's per enforcer, plus the adjustments; and
// the whole sequence of signals and urgent wake-ups is the one recorded
// (the digest), so that a change of the code that changes any of it
// fails here.
func TestAuthorityAccount(t *testing.T) {
	rng := rand.New(rand.NewPCG(12, 34))
	cat := quotaCatalog(40)
	a := newAuthority()
	day := time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC).UnixNano()
	now := day + int64(20*time.Hour)
	plans := []string{"day", "week", "free"}
	nodes := []string{"", "n1", "n2"}
	type pk struct{ plan, key string }
	counted := map[pk]map[string]int64{} // admitted events of the day plan's current day, per node
	adjusted := map[string]int64{}       // the day plan's keys' adjustments of the current day
	h := sha256.New()
	urgent := 0
	for step := range 400 {
		switch {
		case step%50 == 49: // the store's rows: an adjustment, and a node count above ours
			var rows []usage.NodeDayCount
			for i := range 3 {
				key := fmt.Sprintf("k%d", i)
				c := counted[pk{"day", key}]
				rows = append(rows, usage.NodeDayCount{Day: now / 86400e9, PlanID: "day", KeyID: key, Node: "n2", Admitted: c["n2"] + 2, Adjustment: int64(step / 50)})
				if c == nil {
					c = map[string]int64{}
					counted[pk{"day", key}] = c
				}
				c["n2"] += 2
				adjusted[key] = int64(step / 50)
			}
			a.merge(0, rows, cat, now)
		case step == 300: // the next day: the day plan's counts start again
			now += int64(24 * time.Hour)
			for k, c := range counted {
				if k.plan == "day" {
					clear(c)
				}
			}
			clear(adjusted)
		default:
			var events []schemas.UsageEvent
			for range 1 + rng.IntN(8) {
				e := schemas.UsageEvent{Time: now - rng.Int64N(int64(time.Hour)), PlanID: plans[rng.IntN(len(plans))],
					KeyID: fmt.Sprintf("k%d", rng.IntN(6)), Node: nodes[rng.IntN(len(nodes))], Decision: schemas.DecisionAllowed}
				switch rng.IntN(10) {
				case 0:
					e.Decision = schemas.DecisionThrottled
				case 1:
					e.Time -= int64(24 * time.Hour) // yesterday: another period of the day plan
				case 2:
					e.KeyID = ""
				}
				if e.PlanID == "day" && e.KeyID != "" && e.Admitted() && catalog.Day.Index(e.Time) == catalog.Day.Index(now) {
					c := counted[pk{e.PlanID, e.KeyID}]
					if c == nil {
						c = map[string]int64{}
						counted[pk{e.PlanID, e.KeyID}] = c
					}
					c[e.Node]++
				}
				events = append(events, e)
			}
			if rng.IntN(2) == 0 {
				a.count(0, events, cat, now)
			} else {
				for i := range events { // one at a time, as a partition worker counts
					a.count(0, events[i:i+1], cat, now)
				}
			}
		}
		select {
		case <-a.urgent:
			urgent++
			fmt.Fprintf(h, "urgent at %d\n", step)
		default:
		}
		if step%7 == 0 {
			for _, s := range a.changed(now) {
				fmt.Fprintf(h, "%d %+v\n", step, s)
				if s.PlanID != "day" || s.PeriodEnd <= now {
					continue // another plan, or the last state of the period before
				}
				want := adjusted[s.KeyID]
				for _, n := range counted[pk{s.PlanID, s.KeyID}] {
					want += n
				}
				if s.Used != want {
					t.Fatalf("step %d: %s/%s used %d, want %d (signal %+v)", step, s.PlanID, s.KeyID, s.Used, want, s)
				}
				if s.Exhausted != (s.Used >= s.Limit) {
					t.Fatalf("step %d: %+v: exhausted wrong", step, s)
				}
			}
		}
	}
	if urgent == 0 {
		t.Fatal("no key crossed 80% or 100%: the run does not exercise the urgent signal")
	}
	const want = "ef328d8c885fcfbd5c22d0a97cf841b01a675a8f0cd5a63edc39edf85d59f59c"
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		t.Fatalf("the signals' digest is %s, want %s (the account changed)", got, want)
	}
}

// BenchmarkAuthorityCount counts admitted events one at a time, as a
// partition worker does, over 200 and 100k keys of a plan with a daily
// quota, from 3 enforcers.
func BenchmarkAuthorityCount(b *testing.B) {
	for _, keys := range []int{200, 100_000} {
		b.Run(fmt.Sprintf("keys=%d", keys), func(b *testing.B) {
			now := time.Now().UnixNano()
			events := topicEvents(1<<16, keys, false, time.Unix(0, now))
			a := newAuthority()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				a.count(0, events[i:i+1], benchCatalog, now)
				if i++; i == len(events) {
					i = 0
				}
			}
		})
	}
}

// Rows of the store dated after the period (usage stamped ahead by a
// fast clock; the aggregator now dead-letters events over MaxAhead, but a
// store may hold them from before) are not
// the period's use: restore and merge read the period's days only.
func TestAuthorityReadsThePeriodsDaysOnly(t *testing.T) {
	cat := quotaCatalog(500)
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC).UnixNano()
	today := now / 86400e9
	rows := []usage.NodeDayCount{
		{Day: today, PlanID: "day", KeyID: "k", Node: "n1", Admitted: 199},
		{Day: today + 1, PlanID: "day", KeyID: "k", Node: "n1", Admitted: 150},
		{Day: today + 300, PlanID: "day", KeyID: "k", Node: "n2", Admitted: 50, Adjustment: 7},
		{Day: today - 1, PlanID: "day", KeyID: "k", Node: "n2", Admitted: 1000},
	}
	a := newAuthority()
	a.restore(0, rows, cat, now)
	sigs := a.changed(now)
	if len(sigs) != 1 || sigs[0].Used != 199 || len(sigs[0].Nodes) != 1 {
		t.Fatalf("signals %+v, want 199 used, by n1 alone", sigs)
	}
}

// signalLog is a SignalWriter that keeps the newest Used of each key.
type signalLog struct {
	mu   sync.Mutex
	used map[string]int64
}

func (l *signalLog) Write(_ context.Context, sigs []schemas.QuotaSignal) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range sigs {
		l.used[s.KeyID] = s.Used
	}
	return nil
}

func (l *signalLog) usedOf(key string) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.used[key]
}

// A store that hangs (every byte to ClickHouse dropped) holds back the
// batches and the refresh of adjustments, each read with a deadline, but
// not the signals: events are counted as they are read, and published
// within the signal interval. (Two store reads without a deadline, in the
// publisher's own loop, once stopped the signals for as long as the store
// hung.)
func TestSignalsFlowWhileTheStoreHangs(t *testing.T) {
	r := newRig(t)
	cat := quotaCatalog(1000)
	sigs := &signalLog{used: map[string]int64{}}
	run := r.start(Config{Signals: sigs, Catalog: func() *catalog.State { return cat }})
	defer run.stop(t)
	p, err := ingest.NewEventProducer(r.k)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	send := func(n int) {
		t.Helper()
		now := time.Now().UnixNano()
		evs := make([]schemas.UsageEvent, n)
		for i := range evs {
			evs[i] = schemas.UsageEvent{ID: schemas.NewEventID(now), Time: now, KeyID: "k", PlanID: "day", APIID: "api", Stage: "prod",
				Method: "GET", Resource: "/items", Status: 200, Decision: schemas.DecisionAllowed, Node: "n1"}
		}
		if _, err := p.Produce(context.Background(), evs); err != nil {
			t.Fatal(err)
		}
	}
	send(10)
	poll.UntilOK(t, 10*time.Second, 10*time.Millisecond, "a signal of the first 10", func() error {
		if n := sigs.usedOf("k"); n != 10 {
			return fmt.Errorf("used %d", n)
		}
		return nil
	})
	r.proxy.Blackhole(t)
	defer r.proxy.Restore(t)
	time.Sleep(1500 * time.Millisecond) // a refresh is waiting on the store now
	send(5)
	start := time.Now()
	poll.UntilOK(t, 5*time.Second, 10*time.Millisecond, "a signal of the next 5 while the store hangs", func() error {
		if n := sigs.usedOf("k"); n != 15 {
			return fmt.Errorf("used %d", n)
		}
		return nil
	})
	t.Logf("signalled %v after the events, the store hanging", time.Since(start).Round(time.Millisecond))
}

// quotaRows is a Store and QuotaStore whose quota rows are fixed.
type quotaRows struct {
	Store
	rows []usage.NodeDayCount
}

func (q quotaRows) QuotaUsage(context.Context, []int, int64) ([]usage.NodeDayCount, error) {
	return q.rows, nil
}

// A refresh whose worker stopped while the store was read gives no keys
// back to the partition it no longer owns, nor to the partition's next
// owner (whose restore is newer than the read).
func TestRefreshMergesOnlyForTheOwnerItReadFor(t *testing.T) {
	now := time.Now()
	rows := []usage.NodeDayCount{{Day: now.Unix() / 86400, PlanID: "day", KeyID: "k", Node: "n1", Admitted: 7}}
	cat := quotaCatalog(100)
	a, err := New(Config{Kafka: ingest.Kafka{Brokers: []string{"127.0.0.1:1"}}, Store: quotaRows{rows: rows},
		Catalog: func() *catalog.State { return cat }})
	if err != nil {
		t.Fatal(err)
	}
	a.own(3, true)
	gen := a.owned[3]
	if err := a.refreshQuota(context.Background(), 3, gen); err != nil || len(a.quota.keys) != 1 {
		t.Fatalf("the owner's refresh: %v, %d keys", err, len(a.quota.keys))
	}
	// The worker stops (own(false), then its keys dropped) while a
	// refresh read for it; then another worker takes the partition.
	a.own(3, false)
	a.quota.drop(3)
	if err := a.refreshQuota(context.Background(), 3, gen); err != nil || len(a.quota.keys) != 0 {
		t.Fatalf("a refresh for a stopped worker: %v, %d keys", err, len(a.quota.keys))
	}
	a.own(3, true)
	if err := a.refreshQuota(context.Background(), 3, gen); err != nil || len(a.quota.keys) != 0 {
		t.Fatalf("a refresh for the partition's last owner merged into the next: %v, %d keys", err, len(a.quota.keys))
	}
}
