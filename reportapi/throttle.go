package reportapi

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// AdminThrottle limits the admin API as AWS limits its control plane:
// past the rate, requests get 429 TooManyRequestsException with
// Retry-After, so a runaway script cannot starve the gateway's process.
type AdminThrottle struct {
	RateLimit  float64 // requests per second; default 100
	BurstLimit int     // default 1000
}

// throttle is a token bucket behind a mutex: admin requests are few, and
// this is not the gateway's request path.
type throttle struct {
	mu     sync.Mutex
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
	now    func() time.Time
}

func newThrottle(t AdminThrottle, now func() time.Time) *throttle {
	if t.RateLimit <= 0 {
		t.RateLimit = 100
	}
	if t.BurstLimit <= 0 {
		t.BurstLimit = 1000
	}
	return &throttle{rate: t.RateLimit, burst: float64(t.BurstLimit), tokens: float64(t.BurstLimit), now: now}
}

// take returns 0 if a request may pass, else how long until it could.
func (t *throttle) take() time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	if !t.last.IsZero() {
		t.tokens = math.Min(t.burst, t.tokens+now.Sub(t.last).Seconds()*t.rate)
	}
	t.last = now
	if t.tokens >= 1 {
		t.tokens--
		return 0
	}
	return time.Duration((1 - t.tokens) / t.rate * float64(time.Second))
}

func (t *throttle) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The console's reads and changes (Console.Call) are not
		// counted: a page is a few dozen of them (a page of a plan's
		// keys, each named), bounded by its size, and a user browsing
		// must not use up the API clients' allowance (nor be refused by
		// theirs).
		if _, console := r.Context().Value(inProcessActor{}).(string); console {
			next.ServeHTTP(w, r)
			return
		}
		if wait := t.take(); wait > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
			(&apiError{status: 429, errType: "TooManyRequestsException", msg: fmt.Sprintf("Too Many Requests: the admin API allows %g requests per second", t.rate)}).write(w)
			return
		}
		next.ServeHTTP(w, r)
	})
}
