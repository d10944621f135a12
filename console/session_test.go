package console

import (
	"testing"
	"time"
)

// Without a token no session is valid: a key derived from "" is known
// to anyone, so a cookie signed with it must not pass.
func TestNoTokenNoSession(t *testing.T) {
	now := func() time.Time { return time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC) }
	forged, _ := newSessions("", time.Hour, now).issue("mallory")
	// Signed as newSessions would with the key of "" had it one.
	withKey := newSessions("x", time.Hour, now)
	withKey.key = newSessionsKey("")
	forged2, _ := withKey.issue("mallory")
	for _, v := range []string{forged, forged2} {
		if se, why := newSessions("", time.Hour, now).check(v); se.nonce != "" || why != noSession {
			t.Fatalf("a session passed without a token: %+v %q", se, why)
		}
	}
	// With a token, a session signed with it passes, one signed with
	// another does not.
	good, _ := newSessions("token", time.Hour, now).issue("alice")
	if se, _ := newSessions("token", time.Hour, now).check(good); se.actor != "alice" {
		t.Fatalf("a good session failed: %+v", se)
	}
	if se, _ := newSessions("other", time.Hour, now).check(good); se.nonce != "" {
		t.Fatal("a session of another token passed")
	}
}

func TestPageNumber(t *testing.T) {
	for _, c := range []struct {
		s          string
		rows, size int
		want       int
	}{
		{"", 0, 50, 1}, {"0", 120, 50, 1}, {"-3", 120, 50, 1}, {"2", 120, 50, 2}, {"3", 120, 50, 3}, {"4", 120, 50, 3},
		{"4611686018427387905", 120, 50, 3}, {"x", 120, 50, 1}, {"2", 100, 50, 2}, {"3", 100, 50, 2},
	} {
		if got := pageNumber(c.s, c.rows, c.size); got != c.want {
			t.Errorf("pageNumber(%q, %d, %d) = %d, want %d", c.s, c.rows, c.size, got, c.want)
		}
	}
}
