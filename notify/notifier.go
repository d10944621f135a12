package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/internal/logs"
	"github.com/tollgate/tollgate/schemas"
)

// Config configures a Notifier.
type Config struct {
	// Outbox holds the notifications until they are delivered. Required.
	Outbox *Outbox
	// Catalog returns the catalog in force: its webhooks, plans and keys.
	// Required.
	Catalog func() *catalog.State
	// Usage, when not nil, returns a key's use of its quota under a plan
	// now, for the notifications that are not about a quota crossing
	// (throttling, a key disabled); nil: the latest Usage handed to Quota.
	Usage func(planID, keyID string) (Usage, bool)
	// Guard decides which addresses notifications may go to. The zero
	// value refuses loopback, private and link-local addresses.
	Guard Guard
	// Client sends the notifications. Nil: Guard.Client(Timeout).
	Client *http.Client
	// Timeout bounds one attempt: connection, request, answer. Default
	// 10s.
	Timeout time.Duration
	// Concurrency is how many attempts run at once. Default 4.
	Concurrency int
	// MinBackoff and MaxBackoff bound the wait before a retry, which
	// doubles after each failed attempt. Defaults 1s and 1h.
	MinBackoff, MaxBackoff time.Duration
	// MaxAge is how long a notification is retried before it is given up
	// (state failed). Default 24h.
	MaxAge time.Duration
	// Interval is how often Run looks for notifications due. Default 1s.
	Interval time.Duration
	// MaxPending bounds the notifications waiting in the outbox: past it,
	// new ones are dropped and counted (Stats.Dropped), so that a
	// receiver down for a day cannot fill the disk. Default 100,000.
	MaxPending int
	// Logger receives failures, with component=notify. Nil discards.
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Validate reports every problem with the configuration.
func (c *Config) Validate() error {
	var errs []error
	if c.Outbox == nil {
		errs = append(errs, errors.New("notify: Outbox is required"))
	}
	if c.Catalog == nil {
		errs = append(errs, errors.New("notify: Catalog is required"))
	}
	if c.Timeout < 0 || c.Concurrency < 0 || c.MaxAge < 0 || c.MinBackoff < 0 || c.MaxBackoff < 0 || c.Interval < 0 || c.MaxPending < 0 {
		errs = append(errs, errors.New("notify: durations and counts must not be negative"))
	}
	return errors.Join(errs...)
}

// Usage is a key's use of its quota under a plan in a period, as the
// quota authority knows it (the gateway's counter in serve, the
// aggregator's count in a fleet).
type Usage struct {
	PlanID, KeyID string
	Used, Limit   int64
	// PeriodEnd is the end of the quota period (Unix ns).
	PeriodEnd int64
}

// Stats counts what the notifier did since it started. Publish them as
// the process publishes its metrics.
type Stats struct {
	Noticed   int64 // notifications written to the outbox
	Dropped   int64 // notifications dropped: the outbox was full
	Attempts  int64 // delivery attempts
	Delivered int64 // notifications delivered (a 2xx answer)
	Failures  int64 // attempts that failed (an error, a timeout, a non-2xx answer)
	GivenUp   int64 // notifications given up after MaxAge, or whose webhook was deleted
	Pending   int64 // notifications waiting, as of the last look (a gauge)
}

// Notifier notices the events webhooks subscribe to, writes them to the
// outbox, and delivers them. See the package doc.
type Notifier struct {
	cfg  Config
	log  *slog.Logger
	wake chan struct{}

	mu   sync.Mutex
	seen map[string]int64    // ids in the outbox → remembered until (Unix ns); at most maxSeen
	last map[[2]string]Usage // latest Usage by plan and key
	size int                 // len(seen)+len(last) after the last prune
	// held are the webhooks whose last attempt failed, not tried again
	// before their time: a receiver that is down or slow costs a few
	// attempts per backoff, not one per notification waiting for it, and
	// the other webhooks' notifications go meanwhile.
	held map[string]hold

	noticed, dropped, attempts, delivered, failures, givenUp, pending atomic.Int64
	lastPrune                                                         atomic.Int64
}

// New returns a notifier.
func New(cfg Config) (*Notifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = 4
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = time.Second
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = time.Hour
	}
	if cfg.MaxAge == 0 {
		cfg.MaxAge = 24 * time.Hour
	}
	if cfg.Interval == 0 {
		cfg.Interval = time.Second
	}
	if cfg.MaxPending == 0 {
		cfg.MaxPending = 100_000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Client == nil {
		cfg.Client = cfg.Guard.Client(cfg.Timeout)
	}
	n := &Notifier{cfg: cfg, log: logs.For(cfg.Logger, "notify"), wake: make(chan struct{}, 1),
		seen: map[string]int64{}, last: map[[2]string]Usage{}, held: map[string]hold{}}
	if p, err := cfg.Outbox.pending(context.Background()); err == nil {
		n.pending.Store(int64(p))
	}
	return n, nil
}

// Stats returns the counters.
func (n *Notifier) Stats() Stats {
	return Stats{Noticed: n.noticed.Load(), Dropped: n.dropped.Load(), Attempts: n.attempts.Load(),
		Delivered: n.delivered.Load(), Failures: n.failures.Load(), GivenUp: n.givenUp.Load(), Pending: n.pending.Load()}
}

// List lists the deliveries (the admin API's /v1/webhooks/deliveries).
func (n *Notifier) List(ctx context.Context, f Filter) ([]Delivery, error) {
	return n.cfg.Outbox.List(ctx, f)
}

// Quota notices the thresholds crossed by keys whose usage changed. A
// threshold t of a webhook is crossed once used >= ceil(limit × t/100):
// the first time the notifier sees a key there in a period it writes a
// notification; its id (webhook, key, plan, period, t) keeps it from
// being written again in that period, also after a restart.
func (n *Notifier) Quota(ctx context.Context, us []Usage) error {
	st := n.cfg.Catalog()
	hooks := st.Webhooks()
	if len(hooks) == 0 {
		return nil // nothing is kept either: no cost without webhooks
	}
	now := n.cfg.Now()
	if n.cfg.Usage == nil && (anyWants(hooks, catalog.EventKeyThrottled) || anyWants(hooks, catalog.EventKeyDisabled)) {
		// The latest usage of each key, for the notifications that are
		// not about a crossing (kept only while a webhook wants those);
		// bounded by the keys active in their periods (pruned as periods
		// end).
		n.mu.Lock()
		for _, u := range us {
			n.last[[2]string{u.PlanID, u.KeyID}] = u
		}
		n.pruneLocked(now.UnixNano())
		n.mu.Unlock()
	}
	if !anyWants(hooks, catalog.EventQuotaThreshold) {
		return nil
	}
	var found []found
	for _, u := range us {
		if u.Limit <= 0 {
			continue
		}
		period := periodOf(st.Plan(u.PlanID), u.PeriodEnd)
		// The period is named by its end in the id: its start is known
		// only while the plan still has a quota of a valid period, and a
		// zero start would name every period alike.
		end := strconv.FormatInt(u.PeriodEnd, 10)
		for i := range hooks {
			w := &hooks[i]
			if !w.Wants(catalog.EventQuotaThreshold) {
				continue
			}
			for _, t := range w.Levels() {
				if u.Used < thresholdCount(u.Limit, t) {
					continue
				}
				ts := strconv.FormatFloat(t, 'g', -1, 64)
				found = append(found, newFound(Notification{ID: notificationID(w.ID, catalog.EventQuotaThreshold, u.KeyID, u.PlanID, end, ts),
					Event: catalog.EventQuotaThreshold, WebhookID: w.ID, Time: now.UTC(), KeyID: u.KeyID, PlanID: u.PlanID,
					Period: period, Used: u.Used, Limit: u.Limit, Threshold: t}, u.PeriodEnd))
			}
		}
	}
	return n.write(ctx, st, found)
}

// thresholdCount is the count at which t% of limit is reached.
func thresholdCount(limit int64, t float64) int64 {
	c := int64(float64(limit) * t / 100)
	if float64(c)*100 < float64(limit)*t {
		c++
	}
	return max(c, 1)
}

// periodOf returns the quota period of plan that ends at end.
func periodOf(p *catalog.UsagePlan, end int64) Period {
	out := Period{End: time.Unix(0, end).UTC()}
	if p != nil && p.Quota != nil && p.Quota.Period.Valid() {
		q := p.Quota.Period
		out.Kind = string(q)
		out.Start = time.Unix(0, q.Start(q.Index(end-1))).UTC()
	}
	return out
}

// anyWants reports whether a webhook of hooks wants event.
func anyWants(hooks []catalog.Webhook, event string) bool {
	return slices.ContainsFunc(hooks, func(w catalog.Webhook) bool { return w.Wants(event) })
}

// Events notices keys starting to be throttled in usage events: the
// first throttled request (429 Too Many Requests) of a key under a plan
// in an hour writes one notification for that hour.
func (n *Notifier) Events(ctx context.Context, events []schemas.UsageEvent) error {
	st := n.cfg.Catalog()
	hooks := st.Webhooks()
	if !anyWants(hooks, catalog.EventKeyThrottled) {
		return nil // no event is looked at
	}
	now := n.cfg.Now()
	var found []found
	var done map[[3]string]bool
	for i := range events {
		e := &events[i]
		if e.Decision != schemas.DecisionThrottled || e.KeyID == "" {
			continue
		}
		hour := time.Unix(0, e.Time).UTC().Truncate(time.Hour)
		k := [3]string{e.PlanID, e.KeyID, hour.Format(time.RFC3339)}
		if done[k] {
			continue
		}
		if done == nil {
			done = map[[3]string]bool{}
		}
		done[k] = true
		u := n.usage(e.PlanID, e.KeyID)
		for j := range hooks {
			w := &hooks[j]
			if !w.Wants(catalog.EventKeyThrottled) {
				continue
			}
			found = append(found, newFound(Notification{ID: notificationID(w.ID, catalog.EventKeyThrottled, e.KeyID, e.PlanID, k[2]),
				Event: catalog.EventKeyThrottled, WebhookID: w.ID, Time: now.UTC(), KeyID: e.KeyID, PlanID: e.PlanID,
				Period: Period{Kind: "HOUR", Start: hour, End: hour.Add(time.Hour)}, Used: u.Used, Limit: u.Limit}, hour.Add(time.Hour).UnixNano()))
		}
	}
	return n.write(ctx, st, found)
}

// CatalogChanged notices keys disabled by a change (one notification per
// key and change: its id holds the key's lastUpdatedDate). A Full change
// (a first load, a rebuild) is not looked at: it would notify every key
// ever disabled.
func (n *Notifier) CatalogChanged(ctx context.Context, ch *catalog.Change) error {
	if ch.Full || len(ch.Keys) == 0 {
		return nil
	}
	hooks := ch.New.Webhooks()
	if len(hooks) == 0 {
		return nil
	}
	now := n.cfg.Now()
	var found []found
	for _, id := range ch.Keys {
		o, k := ch.Old.Key(id), ch.New.Key(id)
		if o == nil || k == nil || !o.Enabled || k.Enabled {
			continue
		}
		plan := ""
		if len(k.UsagePlans) > 0 {
			plan = k.UsagePlans[0]
		}
		u := n.usage(plan, id)
		for j := range hooks {
			w := &hooks[j]
			if !w.Wants(catalog.EventKeyDisabled) {
				continue
			}
			nt := Notification{ID: notificationID(w.ID, catalog.EventKeyDisabled, id, strconv.FormatInt(k.LastUpdatedDate, 10)),
				Event: catalog.EventKeyDisabled, WebhookID: w.ID, Time: now.UTC(), KeyID: id, KeyName: k.Name, PlanID: plan,
				Used: u.Used, Limit: u.Limit}
			if u.PeriodEnd > 0 {
				nt.Period = periodOf(ch.New.Plan(plan), u.PeriodEnd)
			}
			found = append(found, newFound(nt, now.UnixNano()))
		}
	}
	return n.write(ctx, ch.New, found)
}

func (n *Notifier) usage(planID, keyID string) Usage {
	if n.cfg.Usage != nil {
		if u, ok := n.cfg.Usage(planID, keyID); ok {
			return u
		}
		return Usage{}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.last[[2]string{planID, keyID}]
}

// found is a notification noticed, and the end of what it is about
// (Unix ns): its id is kept at least until then.
type found struct {
	nt        Notification
	keepUntil int64
}

func newFound(nt Notification, keepUntil int64) found { return found{nt, keepUntil} }

// write writes the notifications found to the outbox, in one
// transaction (one sync of the disk however many keys crossed at once:
// the caller is the drainer or the signal writer), but those whose id
// is there already.
func (n *Notifier) write(ctx context.Context, st *catalog.State, list []found) error {
	if len(list) == 0 {
		return nil
	}
	n.mu.Lock()
	fresh := list[:0]
	for _, f := range list {
		if _, dup := n.seen[f.nt.ID]; !dup {
			fresh = append(fresh, f)
		}
	}
	n.mu.Unlock()
	if len(fresh) == 0 {
		return nil
	}
	if room := n.cfg.MaxPending - int(n.pending.Load()); len(fresh) > room {
		n.dropped.Add(int64(len(fresh) - max(room, 0)))
		fresh = fresh[:max(room, 0)]
		if len(fresh) == 0 {
			return nil
		}
	}
	ds := make([]Delivery, len(fresh))
	keep := make([]int64, len(fresh))
	for i := range fresh {
		nt := &fresh[i].nt
		if k := st.Key(nt.KeyID); k != nil && nt.KeyName == "" {
			nt.KeyName = k.Name
		}
		nt.Type = EventTypeNotification
		body, err := json.Marshal(nt)
		if err != nil {
			return fmt.Errorf("encode notification: %w", err)
		}
		ds[i] = Delivery{ID: nt.ID, WebhookID: nt.WebhookID, Event: nt.Event, KeyID: nt.KeyID, Created: nt.Time, Body: body}
		keep[i] = max(fresh[i].keepUntil, nt.Time.UnixNano()) + int64(retention)
	}
	added, err := n.cfg.Outbox.add(ctx, ds, keep)
	if err != nil {
		return err
	}
	n.mu.Lock()
	for i := range ds {
		// Remembered until what it is about ends: a crossing can recur
		// only within its period (the outbox keeps it a week longer).
		n.seen[ds[i].ID] = keep[i] - int64(retention)
	}
	n.pruneLocked(n.cfg.Now().UnixNano())
	n.mu.Unlock()
	if added > 0 {
		n.noticed.Add(int64(added))
		n.pending.Add(int64(added))
		select {
		case n.wake <- struct{}{}:
		default:
		}
	}
	return nil
}

// pruneLocked forgets ids past their keeping and usages of ended
// periods, when the maps have doubled since the last prune.
func (n *Notifier) pruneLocked(now int64) {
	if len(n.seen)+len(n.last) < 2*max(n.size, 1024) {
		return
	}
	for id, until := range n.seen {
		if until < now {
			delete(n.seen, id)
		}
	}
	for k, u := range n.last {
		if u.PeriodEnd < now {
			delete(n.last, k)
		}
	}
	if len(n.seen) > maxSeen {
		// Only a cache of the outbox's primary key: forgetting it costs
		// a look at the outbox for each crossing seen again.
		n.seen = map[string]int64{}
	}
	n.size = len(n.seen) + len(n.last)
}

// maxSeen bounds the ids remembered in memory (some 100 bytes each).
const maxSeen = 1 << 18

// Run delivers notifications until ctx ends: those due every Interval,
// and at once when one is noticed.
func (n *Notifier) Run(ctx context.Context) error {
	t := time.NewTicker(n.cfg.Interval)
	defer t.Stop()
	for {
		if _, err := n.RunOnce(ctx); err != nil && ctx.Err() == nil {
			n.log.Warn("notification outbox failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-n.wake:
		}
	}
}

// batch is how many notifications RunOnce takes at a time.
const batch = 64

// hold is a webhook held back after failed attempts.
type hold struct {
	until    time.Time
	failures int // consecutive failed attempts
}

// heldWebhooks returns the webhooks held back at now.
func (n *Notifier) heldWebhooks(now time.Time) []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []string
	for id, h := range n.held {
		if now.Before(h.until) {
			out = append(out, id)
		}
	}
	return out
}

func (n *Notifier) isHeld(id string, now time.Time) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	h, ok := n.held[id]
	return ok && now.Before(h.until)
}

// outcome holds a webhook back after a failed attempt (MinBackoff,
// doubling with each failure in a row, at most MaxBackoff), or releases
// it after a delivery.
func (n *Notifier) outcome(id string, ok bool, now time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if ok {
		delete(n.held, id)
		return
	}
	h := n.held[id]
	if !now.Before(h.until) { // attempts of one round count once
		h.failures++
		h.until = now.Add(n.backoff(h.failures))
		n.held[id] = h
	}
}

// RunOnce attempts the notifications due now, at most Concurrency at a
// time, and records each outcome. It returns how many were delivered.
//
// The notifications of a webhook held back (its last attempt failed)
// wait, and those of them past MaxAge are given up without a further
// attempt: a dead receiver holds no slot beyond the few attempts that
// found it failing.
func (n *Notifier) RunOnce(ctx context.Context) (int, error) {
	now := n.cfg.Now()
	if last := n.lastPrune.Load(); now.UnixNano()-last > int64(time.Hour) {
		n.lastPrune.Store(now.UnixNano())
		if err := n.cfg.Outbox.prune(ctx, now); err != nil {
			return 0, fmt.Errorf("prune outbox: %w", err)
		}
	}
	held := n.heldWebhooks(now)
	if len(held) > 0 {
		gone, err := n.cfg.Outbox.expire(ctx, held, now.Add(-n.cfg.MaxAge), now)
		if err != nil {
			return 0, err
		}
		n.givenUp.Add(int64(gone))
		n.pending.Add(-int64(gone))
	}
	due, err := n.cfg.Outbox.due(ctx, now, held, batch)
	if err != nil {
		return 0, err
	}
	st := n.cfg.Catalog()
	sem := make(chan struct{}, n.cfg.Concurrency)
	var wg sync.WaitGroup
	var delivered atomic.Int64
	var errs []error
	var errMu sync.Mutex
	for i := range due {
		d := &due[i]
		w := st.Webhook(d.WebhookID)
		if w == nil {
			n.givenUp.Add(1)
			n.pending.Add(-1)
			if err := n.cfg.Outbox.record(ctx, d, Failed, time.Time{}, 0, "the webhook was deleted", now); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		wh := w.Clone()
		sem <- struct{}{}
		if n.isHeld(wh.ID, now) {
			<-sem // an attempt of this run found its receiver failing
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			ok, err := n.attempt(ctx, &wh, d)
			errMu.Lock()
			defer errMu.Unlock()
			if ok {
				delivered.Add(1)
			}
			if err != nil {
				errs = append(errs, err)
			}
		})
	}
	wg.Wait()
	return int(delivered.Load()), errors.Join(errs...)
}

// maxAnswer bounds what is read of a receiver's answer: it is discarded,
// and read only so that the connection can be used again.
const maxAnswer = 64 << 10

// attempt sends one notification and records the outcome.
func (n *Notifier) attempt(ctx context.Context, w *catalog.Webhook, d *Delivery) (bool, error) {
	n.attempts.Add(1)
	status, err := n.post(ctx, w, d)
	now := n.cfg.Now()
	if err == nil {
		n.outcome(w.ID, true, now)
		n.delivered.Add(1)
		n.pending.Add(-1)
		// Recorded even if the node is stopping meanwhile: an answer
		// received is not a reason to send the notification again.
		return true, n.cfg.Outbox.record(context.WithoutCancel(ctx), d, Delivered, time.Time{}, status, "", now)
	}
	if ctx.Err() != nil {
		return false, nil // stopping: the attempt will be made again
	}
	n.outcome(w.ID, false, now)
	n.failures.Add(1)
	if now.Sub(d.Created) >= n.cfg.MaxAge {
		n.givenUp.Add(1)
		n.pending.Add(-1)
		n.log.Warn("notification given up", "id", d.ID, "webhook", d.WebhookID, "attempts", d.Attempts+1, "err", err)
		return false, n.cfg.Outbox.record(ctx, d, Failed, time.Time{}, status, err.Error(), now)
	}
	wait := n.backoff(d.Attempts + 1)
	return false, n.cfg.Outbox.record(ctx, d, Pending, now.Add(wait), status, err.Error(), now)
}

// backoff is the wait after the attempt-th failed attempt: MinBackoff
// doubled for each attempt before it, at most MaxBackoff.
func (n *Notifier) backoff(attempt int) time.Duration {
	d := n.cfg.MinBackoff
	for range attempt - 1 {
		if d >= n.cfg.MaxBackoff {
			break
		}
		d *= 2
	}
	return min(d, n.cfg.MaxBackoff)
}

// post sends a notification; a 2xx answer is a delivery.
func (n *Notifier) post(ctx context.Context, w *catalog.Webhook, d *Delivery) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytesReader(d.Body))
	if err != nil {
		return 0, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "tollgate-notify/1")
	req.Header.Set(IDHeader, d.ID)
	req.Header.Set(SignatureHeader, Sign(w.Secret, n.cfg.Now(), d.Body))
	resp, err := n.cfg.Client.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswer))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, fmt.Errorf("receiver answered %d", resp.StatusCode)
	}
	return resp.StatusCode, nil
}
