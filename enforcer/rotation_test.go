package enforcer

import (
	"testing"
	"time"

	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/schemas"
)

// rotatedValue is the widget key's new value in these tests.
const rotatedValue = "rotatedrotatedrotated01"

// rotateWidget applies a rotation of the widget key (its value becomes
// rotatedValue, widget its previous value until until) to e's gateway,
// through Apply when apply is set (a change, as the admin API makes it),
// else through a full load of the new catalog.
func rotateWidget(t *testing.T, e *env, until time.Time, apply bool) {
	t.Helper()
	next := e.catalogWith(func(c *catalog.Catalog) {
		c.KeyByName("widget").Rotate(catalog.HashKey(rotatedValue), rotatedValue[:4], until.UnixNano())
	})
	changeTo(t, e, next, apply)
}

// changeTo makes next e's catalog, as rotateWidget does.
func changeTo(t *testing.T, e *env, next *catalog.Catalog, apply bool) {
	t.Helper()
	if err := catalog.Validate(next, nil); err != nil {
		t.Fatal(err)
	}
	var err error
	if apply {
		ch := catalog.DiffStates(catalog.StateOf(e.cat), catalog.StateOf(next))
		err = e.gw.Apply(ch)
	} else {
		err = e.gw.Update(next)
	}
	if err != nil {
		t.Fatal(err)
	}
	e.cat = next
}

func fingerprintOf(value string) string { return catalog.Fingerprint(catalog.HashKey(value)) }

// During the grace both values are the same key: they meter to its id
// and plan, each with its own fingerprint, and take the same throttle
// tokens and quota (Free Tier: burst 3, rate 1/s, 5 a day).
func TestRotationValuesShareTheKey(t *testing.T) {
	for _, apply := range []bool{true, false} {
		e := newEnv(t, gwYAML)
		for range 2 { // the second compares the value recorded by the first
			if r := e.do("GET", "/prod/items", "x-api-key", widget); r.status != 200 {
				t.Fatalf("before the rotation: %d", r.status)
			}
		}
		rotateWidget(t, e, testEpoch.Add(time.Hour), apply)
		id := e.gw.table.Load().firstPlan(rotatedValue).id
		// The burst: one token left, whichever value takes it.
		for i, v := range []string{rotatedValue, widget} {
			r := e.do("GET", "/prod/items", "x-api-key", v)
			ev := e.lastEvent()
			if i == 1 {
				wantAWS(t, r, 429, "Too Many Requests", "TooManyRequestsException")
			} else if r.status != 200 {
				t.Fatalf("apply=%v: the new value: %d", apply, r.status)
			}
			if ev.KeyID != id || ev.KeyFingerprint != fingerprintOf(v) || ev.PlanID == "" {
				t.Errorf("apply=%v: value %s: event %+v, want key %s, fingerprint %s", apply, v, ev, id, fingerprintOf(v))
			}
		}
		// The quota: 5 a day, 3 used; 2 more by either value, then none
		// for both.
		for i, v := range []string{widget, rotatedValue} {
			e.advance(2 * time.Second)
			if r := e.do("GET", "/prod/items", "x-api-key", v); r.status != 200 {
				t.Fatalf("apply=%v: request %d (%s): %d", apply, i, v, r.status)
			}
		}
		for _, v := range []string{widget, rotatedValue} {
			e.advance(2 * time.Second)
			wantAWS(t, e.do("GET", "/prod/items", "x-api-key", v), 429, "Limit Exceeded", "LimitExceededException")
		}
	}
}

// The previous value is refused from PreviousValueUntil on, compared
// with the request's time: on a gateway that learnt the rotation by a
// change and on one that loaded it whole, and with the value in the
// verified-value table. Refused, it is still the key's (403 with its id
// and the old fingerprint in the event); the new value goes on.
func TestRotationGraceEndsAtTheInstant(t *testing.T) {
	until := testEpoch.Add(time.Hour)
	for _, apply := range []bool{true, false} {
		e := newEnv(t, gwYAML)
		rotateWidget(t, e, until, apply)
		e.clock.Store(until.UnixNano() - 2e9)
		for range 2 { // the second compares the recorded value
			if r := e.do("GET", "/prod/items", "x-api-key", widget); r.status != 200 {
				t.Fatalf("apply=%v: in the grace: %d", apply, r.status)
			}
		}
		e.clock.Store(until.UnixNano() - 1)
		if r := e.do("GET", "/prod/items", "x-api-key", widget); r.status != 200 {
			t.Fatalf("apply=%v: a nanosecond before the end: %d", apply, r.status)
		}
		e.clock.Store(until.UnixNano())
		wantAWS(t, e.do("GET", "/prod/items", "x-api-key", widget), 403, "Forbidden", "ForbiddenException")
		if ev := e.lastRejection(); ev.Decision != schemas.DecisionForbidden || ev.KeyID == "" || ev.KeyFingerprint != fingerprintOf(widget) {
			t.Errorf("apply=%v: at the end, event %+v", apply, ev)
		}
		if r := e.do("GET", "/prod/items", "x-api-key", rotatedValue); r.status != 200 {
			t.Fatalf("apply=%v: the new value at the end of the grace: %d", apply, r.status)
		}
	}
}

// A key that expires before its grace ends takes the previous value
// with it.
func TestRotationEndsWithTheKey(t *testing.T) {
	e := newEnv(t, gwYAML)
	expires := testEpoch.Add(time.Minute)
	next := e.catalogWith(func(c *catalog.Catalog) {
		k := c.KeyByName("widget")
		k.Tags = map[string]string{catalog.ExpiresAtTag: catalog.FormatExpiresAt(expires)}
		k.Rotate(catalog.HashKey(rotatedValue), rotatedValue[:4], testEpoch.Add(time.Hour).UnixNano())
	})
	changeTo(t, e, next, true)
	e.clock.Store(expires.UnixNano())
	for _, v := range []string{widget, rotatedValue} {
		wantAWS(t, e.do("GET", "/prod/items", "x-api-key", v), 403, "Forbidden", "ForbiddenException")
	}
}

// Cancelling a rotation gives the key its previous value back and
// refuses the new one as unknown; finishing it refuses the previous
// value as unknown. Both as soon as the change returns, whatever the
// verified-value table holds, and neither costs the key its counters.
func TestRotationCancelAndFinishAtOnce(t *testing.T) {
	for _, apply := range []bool{true, false} {
		e := newEnv(t, gwYAML)
		rotateWidget(t, e, testEpoch.Add(time.Hour), apply)
		for _, v := range []string{widget, rotatedValue} { // both recorded
			if r := e.do("GET", "/prod/items", "x-api-key", v); r.status != 200 {
				t.Fatalf("apply=%v: %s in the grace: %d", apply, v, r.status)
			}
		}
		ks := e.gw.table.Load().keys
		if ks.byValue.get(maphashString(ks, rotatedValue), func(x *keyEntry) bool { return x.hasValue(rotatedValue) }) == nil ||
			ks.byValue.get(maphashString(ks, widget), func(x *keyEntry) bool { return x.hasValue(widget) }) == nil {
			t.Fatal("the values were not recorded")
		}
		cancelled := e.catalogWith(func(c *catalog.Catalog) { c.KeyByName("widget").CancelRotation() })
		changeTo(t, e, cancelled, apply)
		wantAWS(t, e.do("GET", "/prod/items", "x-api-key", rotatedValue), 403, "Forbidden", "ForbiddenException")
		if ev := e.lastRejection(); ev.KeyID != "" {
			t.Errorf("apply=%v: the cancelled value is still a key's: %+v", apply, ev)
		}
		// Burst 3, two taken: the key's own counters go on.
		if r := e.do("GET", "/prod/items", "x-api-key", widget); r.status != 200 {
			t.Fatalf("apply=%v: the previous value after the cancellation: %d", apply, r.status)
		}
		if ev := e.lastEvent(); ev.KeyFingerprint != fingerprintOf(widget) {
			t.Errorf("apply=%v: after the cancellation, event %+v", apply, ev)
		}
		wantAWS(t, e.do("GET", "/prod/items", "x-api-key", widget), 429, "Too Many Requests", "TooManyRequestsException")

		e.advance(10 * time.Second)
		rotateWidget(t, e, testEpoch.Add(time.Hour), apply)
		if r := e.do("GET", "/prod/items", "x-api-key", widget); r.status != 200 {
			t.Fatalf("apply=%v: rotated again: %d", apply, r.status)
		}
		finished := e.catalogWith(func(c *catalog.Catalog) { c.KeyByName("widget").ClearRotation() })
		changeTo(t, e, finished, apply)
		wantAWS(t, e.do("GET", "/prod/items", "x-api-key", widget), 403, "Forbidden", "ForbiddenException")
		if ev := e.lastRejection(); ev.KeyID != "" {
			t.Errorf("apply=%v: the finished value is still a key's: %+v", apply, ev)
		}
		if r := e.do("GET", "/prod/items", "x-api-key", rotatedValue); r.status != 200 {
			t.Fatalf("apply=%v: the new value after finishing: %d", apply, r.status)
		}
		ks = e.gw.table.Load().keys
		if n := len(ks.previous); n != 0 {
			t.Errorf("apply=%v: %d previous values indexed after the rotation finished", apply, n)
		}
		if x := ks.byValue.get(maphashString(ks, widget), func(x *keyEntry) bool { return x.hasValue(widget) }); x != nil {
			t.Errorf("apply=%v: the finished value is still in the verified-value table", apply)
		}
	}
}

// Deleting a key in a rotation removes both its values.
func TestRotationDeletedKey(t *testing.T) {
	e := newEnv(t, gwYAML)
	rotateWidget(t, e, testEpoch.Add(time.Hour), true)
	for _, v := range []string{widget, rotatedValue} {
		if r := e.do("GET", "/prod/items", "x-api-key", v); r.status != 200 {
			t.Fatalf("%s: %d", v, r.status)
		}
	}
	changeTo(t, e, e.catalogWith(func(c *catalog.Catalog) {
		c.APIKeys = c.APIKeys[:0:0]
	}), true)
	for _, v := range []string{widget, rotatedValue} {
		wantAWS(t, e.do("GET", "/prod/items", "x-api-key", v), 403, "Forbidden", "ForbiddenException")
	}
	ks := e.gw.table.Load().keys
	if ks.byHash.live != 0 || ks.byValue.live != 0 || len(ks.previous) != 0 {
		t.Errorf("left behind: %d hashes, %d values, %d previous", ks.byHash.live, ks.byValue.live, len(ks.previous))
	}
}
