package console_test

import (
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"
)

// Every page answers within maxPage on the embedded store: each page is
// its reads of the admin API (in process) and its drawing. The suite runs
// a small stack; `make bench-console` runs the size, 1,000 keys ×
// 31 days (TOLLGATE_CONSOLE_KEYS, TOLLGATE_CONSOLE_DAYS), and prints each
// page's times.
const maxPage = 300 * time.Millisecond

func speedSize(t testing.TB) (keys, days int) {
	keys, days = 100, 3
	if v, err := strconv.Atoi(os.Getenv("TOLLGATE_CONSOLE_KEYS")); err == nil && v > 10 {
		keys = v
	}
	if v, err := strconv.Atoi(os.Getenv("TOLLGATE_CONSOLE_DAYS")); err == nil && v > 0 {
		days = v
	}
	return keys, days
}

// consolePage is a page to time; fresh ones are timed past the plan
// ranking's cache (topTTL), each time ranked anew.
type consolePage struct {
	name, path string
	fresh      bool
}

// consolePages are the pages timed, each the heaviest of its kind: the
// overview's longest preset, a key of the plan with most keys, that plan
// in both orders, a month's billing.
func consolePages(keys int) []consolePage {
	return []consolePage{
		{"overview 1h", "/ui/?range=1h", false},
		{"overview 24h", "/ui/", false},
		{"overview 7d", "/ui/?range=7d", false},
		{"overview 30d", "/ui/?range=30d", false},
		{"key", "/ui/keys/" + keyID(keys/2), false},
		{"plan by id", "/ui/plans/basic", true},
		{"plan by use", "/ui/plans/basic?sort=used&page=2", true},
		{"billing", "/ui/billing?month=2026-11", false},
		{"keys", "/ui/keys?q=customer-0001", false},
	}
}

func TestConsoleSpeed(t *testing.T) {
	keys, days := speedSize(t)
	start := time.Now()
	s := newStack(t, keys, days, now0)
	t.Logf("%d keys × %d days of usage written in %s", keys, days, time.Since(start).Round(time.Millisecond))
	u := newUser(t, s)
	u.signIn("speed")
	const runs = 7
	for _, p := range consolePages(keys) {
		var times []time.Duration
		for i := range runs + 1 {
			if p.fresh {
				s.clock.Advance(31 * time.Second)
			}
			t0 := time.Now()
			r, body := u.do("GET", p.path, nil)
			d := time.Since(t0)
			if r.StatusCode != http.StatusOK {
				t.Fatalf("%s: %d\n%s", p.name, r.StatusCode, body)
			}
			if i > 0 { // the first warms the store's caches
				times = append(times, d)
			}
		}
		slices.Sort(times)
		median := times[len(times)/2]
		t.Logf("%-14s median %6.1f ms, max %6.1f ms", p.name, ms(median), ms(times[len(times)-1]))
		if median > maxPage {
			t.Errorf("%s: median %s over %d runs, more than %s", p.name, median, runs, maxPage)
		}
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// BenchmarkConsolePages times each page through HTTP, signed in, on the
// same stack as TestConsoleSpeed.
func BenchmarkConsolePages(b *testing.B) {
	keys, days := speedSize(b)
	s := newStack(b, keys, days, now0)
	u := newUser(b, s)
	u.signIn("bench")
	for _, p := range consolePages(keys) {
		b.Run(fmt.Sprintf("%s/keys=%d/days=%d", p.name, keys, days), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if p.fresh {
					s.clock.Advance(31 * time.Second)
				}
				if r, _ := u.do("GET", p.path, nil); r.StatusCode != http.StatusOK {
					b.Fatalf("%s: %d", p.path, r.StatusCode)
				}
			}
		})
	}
}
