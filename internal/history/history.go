// Package history makes synthetic usage history: the events a fleet's
// enforcers would have sent for a number of keys over a number of days, in
// time order, for `tollgate loadgen history` to write onto the events
// topic (so that users can size their ClickHouse, and the report
// benchmarks have months of usage to read).
//
// Every key makes Rate requests an hour on average, spread evenly over
// the hour from an offset of its own (so keys do not all fire on the same
// second); outcomes and dimensions are drawn from a seeded generator, so
// the same Config makes the same events, ids included. Generate holds one
// batch at a time: a month of 10,000 keys (hundreds of millions of
// events) costs the memory of a batch.
package history

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"github.com/tollgate/tollgate/schemas"
)

// Config says what history to make.
type Config struct {
	Keys  int       // number of keys: KeyID(0) ... KeyID(Keys-1)
	Start time.Time // the first instant (UTC)
	Days  int       // days of history from Start
	Rate  float64   // requests per key per hour, on average (> 0)
	// The catalog the events name: one API, one stage, one plan every key
	// is in. Empty: "hist-api", "prod", "hist-plan".
	API, Stage, Plan string
	Node             string // the enforcer node the events name; empty: "history"
	Seed             uint64
}

func (c *Config) defaults() {
	if c.API == "" {
		c.API = "hist-api"
	}
	if c.Stage == "" {
		c.Stage = "prod"
	}
	if c.Plan == "" {
		c.Plan = "hist-plan"
	}
	if c.Node == "" {
		c.Node = "history"
	}
}

// Check reports what is wrong with c, naming the setting.
func (c *Config) Check() error {
	switch {
	case c.Keys < 1 || c.Keys > 10_000_000:
		return fmt.Errorf("keys: %d is not from 1 to 10,000,000", c.Keys)
	case c.Days < 1 || c.Days > 3660:
		return fmt.Errorf("days: %d is not from 1 to 3660", c.Days)
	case !(c.Rate > 0) || c.Rate > 3_600_000:
		return fmt.Errorf("rate: %v requests per key per hour is not above 0 and at most 3,600,000 (1,000 a second)", c.Rate)
	case c.Start.Year() < 1970 || c.Start.AddDate(0, 0, c.Days).Year() > 2105:
		return fmt.Errorf("start: %s plus %d days is outside 1970-2105, the years a usage store holds", c.Start.Format(time.RFC3339), c.Days)
	}
	return nil
}

// KeyID is the id of key i (the catalog WriteCatalog writes has it).
func KeyID(i int) string { return fmt.Sprintf("hist-%07d", i) }

// Total is the number of events Generate makes.
func (c Config) Total() int64 {
	var n int64
	for k := range c.Keys {
		n += c.count(k, 0, int64(c.Days)*24*60)
	}
	return n
}

// count is how many requests key k makes in minutes [from, to) of the
// history: its cumulative schedule, floor(minutes×Rate/60 + offset).
func (c *Config) count(k int, from, to int64) int64 {
	off := c.offset(k)
	at := func(m int64) int64 { return int64(float64(m)*c.Rate/60 + off) }
	return at(to) - at(from)
}

// offset places key k's requests within its period: a fraction in [0, 1)
// spread over the keys.
func (c *Config) offset(k int) float64 { return float64(k) / float64(c.Keys) }

// Generate calls f with the events of the history in batches of at most
// batch events, in time order (minute by minute; within a minute by key),
// until done or f fails. f may keep nothing of a batch: it is reused.
func (c Config) Generate(batch int, f func([]schemas.UsageEvent) error) error {
	if err := c.Check(); err != nil {
		return err
	}
	c.defaults()
	if batch < 1 {
		batch = 4096
	}
	r := rand.New(rand.NewPCG(c.Seed, 0x6869_7374))
	buf := make([]schemas.UsageEvent, 0, batch)
	keys := make([]string, c.Keys)
	for k := range keys {
		keys[k] = KeyID(k)
	}
	start := c.Start.UnixNano()
	minutes := int64(c.Days) * 24 * 60
	for m := range minutes {
		t0 := start + m*60e9
		for k := range c.Keys {
			n := c.count(k, m, m+1)
			for j := range n {
				// Within the minute: the key's place among the keys, then
				// its requests spread over the rest of the minute.
				ns := t0 + (int64(k)*60e9/int64(c.Keys)+j*60e9/n)%60e9
				buf = append(buf, c.event(r, ns, keys[k]))
				if len(buf) == batch {
					if err := f(buf); err != nil {
						return err
					}
					buf = buf[:0]
				}
			}
		}
	}
	if len(buf) > 0 {
		return f(buf)
	}
	return nil
}

// event is one request of key at ns: mostly admitted GETs and POSTs on
// two resources, some throttled, over quota or failing upstream.
func (c *Config) event(r *rand.Rand, ns int64, key string) schemas.UsageEvent {
	e := schemas.UsageEvent{ID: newID(r, ns), Time: ns, APIID: c.API, Stage: c.Stage, KeyID: key, PlanID: c.Plan,
		Method: "GET", Resource: "/items", Status: 200, Decision: schemas.DecisionAllowed,
		LatencyMicros: 2000 + r.Int64N(48000), BytesIn: 0, BytesOut: 200 + r.Int64N(4000), Node: c.Node}
	if r.IntN(4) == 0 {
		e.Method, e.BytesIn = "POST", 100+r.Int64N(2000)
	}
	if r.IntN(3) == 0 {
		e.Resource = "/items/{id}"
	}
	switch x := r.IntN(100); {
	case x < 3:
		e.Status, e.Decision, e.LatencyMicros, e.BytesOut = 429, schemas.DecisionThrottled, 0, 80
	case x < 4:
		e.Status, e.Decision, e.LatencyMicros, e.BytesOut = 429, schemas.DecisionQuotaExceeded, 0, 80
	case x < 5:
		e.Status = 502
	}
	return e
}

// newID is a UUIDv7 as schemas.NewEventID makes it (the millisecond,
// then random bits, version 7, RFC 9562 variant), its random bits from
// the seeded generator, so that a history is the same every time.
func newID(r *rand.Rand, ns int64) schemas.EventID {
	var id schemas.EventID
	binary.BigEndian.PutUint64(id[0:], uint64(ns/1e6)<<16|r.Uint64()&0x0fff)
	binary.BigEndian.PutUint64(id[8:], r.Uint64())
	id[6] = 0x70 | id[6]&0x0f
	id[8] = 0x80 | id[8]&0x3f
	return id
}

// WriteCatalog writes a configuration file (tollgate's JSON format) with
// the history's API, plan and keys, under their ids, so that reports can
// name them (`tollgate apply -f`, or `reportapi --config`). Key values are
// derived from the ids and the seed; the plan has no quota or throttle.
func (c Config) WriteCatalog(w io.Writer) error {
	if err := c.Check(); err != nil {
		return err
	}
	c.defaults()
	bw := bufio.NewWriterSize(w, 1<<16)
	type stage struct {
		Name     string `json:"name"`
		Upstream string `json:"upstream"`
	}
	head, _ := json.Marshal(map[string]any{
		"apis": []any{map[string]any{"id": c.API, "name": c.API, "stages": []stage{{c.Stage, "http://127.0.0.1:9"}},
			"resources": []any{
				map[string]any{"path": "/items", "methods": map[string]any{"GET": map[string]bool{"apiKeyRequired": true}, "POST": map[string]bool{"apiKeyRequired": true}}},
				map[string]any{"path": "/items/{id}", "methods": map[string]any{"GET": map[string]bool{"apiKeyRequired": true}, "POST": map[string]bool{"apiKeyRequired": true}}},
			}}},
		"usagePlans": []any{map[string]any{"id": c.Plan, "name": c.Plan, "apiStages": []any{map[string]string{"apiId": c.API, "stage": c.Stage}}}},
	})
	bw.Write(head[:len(head)-1]) // the object, open for the keys
	bw.WriteString(`,"apiKeys":[` + "\n")
	for k := range c.Keys {
		if k > 0 {
			bw.WriteString(",\n")
		}
		id := KeyID(k)
		fmt.Fprintf(bw, `{"id":%q,"name":%q,"value":"%s-%016x","enabled":true,"usagePlans":[%q]}`, id, id, id, c.Seed, c.Plan)
	}
	bw.WriteString("\n]}\n")
	return bw.Flush()
}
