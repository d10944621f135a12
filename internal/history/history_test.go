package history

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/schemas"
)

var start = time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)

func collect(t *testing.T, c Config, batch int) []schemas.UsageEvent {
	t.Helper()
	var all []schemas.UsageEvent
	if err := c.Generate(batch, func(b []schemas.UsageEvent) error {
		if len(b) > batch {
			t.Fatalf("a batch of %d, at most %d asked", len(b), batch)
		}
		all = append(all, b...)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return all
}

// Every key makes Rate requests an hour, within the history's days, minute
// by minute, with unique ids; Total counts them; the same config makes
// the same events.
func TestGenerate(t *testing.T) {
	for _, rate := range []float64{60, 7.5, 0.5, 120} {
		c := Config{Keys: 37, Start: start, Days: 2, Rate: rate, Seed: 9}
		all := collect(t, c, 1000)
		if int64(len(all)) != c.Total() {
			t.Fatalf("rate %v: %d events, Total says %d", rate, len(all), c.Total())
		}
		perKey := map[string]int{}
		ids := map[schemas.EventID]bool{}
		end := start.AddDate(0, 0, 2).UnixNano()
		for i, e := range all {
			perKey[e.KeyID]++
			if ids[e.ID] {
				t.Fatalf("id %x twice", e.ID)
			}
			ids[e.ID] = true
			if e.Time < start.UnixNano() || e.Time >= end {
				t.Fatalf("event at %s, outside the history", time.Unix(0, e.Time).UTC())
			}
			if i > 0 && e.Time/60e9 < all[i-1].Time/60e9 {
				t.Fatalf("event %d's minute is before the one before it", i)
			}
			if got := time.UnixMilli(int64(e.ID[0])<<40 | int64(e.ID[1])<<32 | int64(e.ID[2])<<24 | int64(e.ID[3])<<16 | int64(e.ID[4])<<8 | int64(e.ID[5])); got.UnixMilli() != e.Time/1e6 {
				t.Fatalf("id's time %s, event's %s", got, time.Unix(0, e.Time))
			}
		}
		want := rate * 48
		for k := range c.Keys {
			if n := float64(perKey[KeyID(k)]); n < want-1 || n > want+1 {
				t.Errorf("rate %v: key %s made %v requests in 48 hours, want %v ± 1", rate, KeyID(k), n, want)
			}
		}
		again := collect(t, c, 333)
		if !slices.Equal(all, again) {
			t.Fatalf("rate %v: the same config made other events", rate)
		}
	}
}

func TestCheck(t *testing.T) {
	for _, tt := range []struct {
		c    Config
		want string
	}{
		{Config{Keys: 0, Start: start, Days: 1, Rate: 1}, "keys:"},
		{Config{Keys: 1, Start: start, Days: 0, Rate: 1}, "days:"},
		{Config{Keys: 1, Start: start, Days: 1, Rate: 0}, "rate:"},
		{Config{Keys: 1, Start: time.Date(1969, 1, 1, 0, 0, 0, 0, time.UTC), Days: 1, Rate: 1}, "start:"},
		{Config{Keys: 1, Start: time.Date(2105, 12, 31, 0, 0, 0, 0, time.UTC), Days: 2, Rate: 1}, "start:"},
	} {
		err := tt.c.Generate(10, func([]schemas.UsageEvent) error { return nil })
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("%+v: %v, want an error naming %s", tt.c, err, tt.want)
		}
	}
}

// The catalog file is a valid configuration that holds every key the
// events name, in the plan they name.
func TestWriteCatalog(t *testing.T) {
	c := Config{Keys: 25, Start: start, Days: 1, Rate: 2, Seed: 4}
	var b bytes.Buffer
	if err := c.WriteCatalog(&b); err != nil {
		t.Fatal(err)
	}
	f, err := catalog.ParseFile("history.json", b.Bytes())
	if err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	tx := catalog.NewState().Begin()
	if _, err := catalog.ApplyFile(tx, f, start); err != nil {
		t.Fatal(err)
	}
	if err := tx.Validate(f); err != nil {
		t.Fatal(err)
	}
	st := tx.State
	for _, e := range collect(t, c, 100) {
		k := st.Key(e.KeyID)
		if k == nil || !slices.Contains(k.UsagePlans, e.PlanID) || st.Plan(e.PlanID) == nil || st.API(e.APIID) == nil {
			t.Fatalf("event of key %s, plan %s, api %s: not in the catalog", e.KeyID, e.PlanID, e.APIID)
		}
	}
}
