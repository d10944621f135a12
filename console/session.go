package console

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// A session is a signed cookie, not server state: signing in costs the
// server nothing it must keep, so callers who are not signed in cannot
// make it hold anything. The cookie holds
//
//	v1.<expiry, Unix seconds>.<actor, base64url>.<nonce>.<HMAC-SHA256>
//
// signed with a key derived from the admin bearer token: every node of a
// fleet with the same token accepts it, and changing the token ends every
// session. Signing out adds the nonce to a list of revoked sessions kept
// until they expire (only a signed-in user can add to it).
const (
	cookieName    = "tollgate_console"
	cookieVersion = "v1"
	// maxActor bounds the name a user gives at sign-in for the audit log.
	maxActor = 64
)

type session struct {
	actor   string
	expires time.Time
	nonce   string
}

// sessions signs and checks session cookies and their CSRF tokens.
type sessions struct {
	// key signs sessions; nil when there is no token, and then no
	// session is valid (a key made of "" would be anyone's).
	key []byte
	ttl time.Duration
	now func() time.Time

	mu      sync.Mutex
	revoked map[string]time.Time // nonce → the session's expiry
}

func newSessions(token string, ttl time.Duration, now func() time.Time) *sessions {
	s := &sessions{ttl: ttl, now: now, revoked: map[string]time.Time{}}
	if token != "" {
		s.key = newSessionsKey(token)
	}
	return s
}

// newSessionsKey derives the signing key from the token.
func newSessionsKey(token string) []byte {
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte("tollgate console session key v1"))
	return m.Sum(nil)
}

func (s *sessions) mac(parts ...string) []byte {
	m := hmac.New(sha256.New, s.key)
	for _, p := range parts {
		m.Write([]byte(p))
		m.Write([]byte{0})
	}
	return m.Sum(nil)
}

// issue returns a new session's cookie value.
func (s *sessions) issue(actor string) (string, session) {
	if s.key == nil {
		return "", session{}
	}
	var b [16]byte
	rand.Read(b[:])
	se := session{actor: actor, expires: s.now().Add(s.ttl).Truncate(time.Second), nonce: base64.RawURLEncoding.EncodeToString(b[:])}
	exp := strconv.FormatInt(se.expires.Unix(), 10)
	a := base64.RawURLEncoding.EncodeToString([]byte(actor))
	sig := base64.RawURLEncoding.EncodeToString(s.mac(cookieVersion, exp, a, se.nonce))
	return strings.Join([]string{cookieVersion, exp, a, se.nonce, sig}, "."), se
}

// Why a cookie was not accepted, for the sign-in page.
const (
	noSession      = ""
	sessionExpired = "Your session has expired. Sign in again."
	sessionEnded   = "You have signed out."
)

// check returns the session a cookie value holds, or why it holds none:
// noSession for a missing, malformed or forged cookie (nothing is said
// about which), sessionExpired or sessionEnded.
func (s *sessions) check(v string) (session, string) {
	parts := strings.Split(v, ".")
	if s.key == nil || len(parts) != 5 || parts[0] != cookieVersion || len(v) > 512 {
		return session{}, noSession
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[4])
	if err != nil || subtle.ConstantTimeCompare(sig, s.mac(parts[0], parts[1], parts[2], parts[3])) != 1 {
		return session{}, noSession
	}
	exp, err1 := strconv.ParseInt(parts[1], 10, 64)
	actor, err2 := base64.RawURLEncoding.DecodeString(parts[2])
	if err1 != nil || err2 != nil {
		return session{}, noSession
	}
	se := session{actor: string(actor), expires: time.Unix(exp, 0), nonce: parts[3]}
	if !s.now().Before(se.expires) {
		return session{}, sessionExpired
	}
	s.mu.Lock()
	_, gone := s.revoked[se.nonce]
	s.mu.Unlock()
	if gone {
		return session{}, sessionEnded
	}
	return se, ""
}

// revoke ends a session before its expiry; revoked sessions are
// forgotten once they would have expired anyway.
func (s *sessions) revoke(se session) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for n, exp := range s.revoked {
		if !now.Before(exp) {
			delete(s.revoked, n)
		}
	}
	s.revoked[se.nonce] = se.expires
}

// csrf is the token every form of the session carries: a MAC of the
// session's nonce, so a page of another site can neither read nor make
// it.
func (s *sessions) csrf(se session) string {
	return base64.RawURLEncoding.EncodeToString(s.mac("csrf", se.nonce))
}

func (s *sessions) checkCSRF(se session, tok string) bool {
	got, err := base64.RawURLEncoding.DecodeString(tok)
	return err == nil && hmac.Equal(got, s.mac("csrf", se.nonce))
}

// cookie is the session cookie: HttpOnly (no script reads it),
// SameSite=Strict (no other site's page sends it), scoped to /ui/,
// Secure when the console is reached over TLS.
func (s *sessions) cookie(r *http.Request, value string, expires time.Time) *http.Cookie {
	c := &http.Cookie{Name: cookieName, Value: value, Path: "/ui/", HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https"}
	if value == "" {
		c.MaxAge = -1
	} else {
		c.Expires = expires
		c.MaxAge = int(expires.Sub(s.now()) / time.Second)
	}
	return c
}

// signInLimiter bounds failed sign-ins, across all callers: a token
// bucket of rate per second and burst. A bearer token is not guessed at
// any rate, but a guess costs the server a request, which this bounds.
type signInLimiter struct {
	mu     sync.Mutex
	tokens float64
	last   time.Time
	rate   float64
	burst  float64
	now    func() time.Time
}

func (l *signInLimiter) allow() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if l.last.IsZero() {
		l.tokens = l.burst
	} else {
		l.tokens = min(l.burst, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	}
	l.last = now
	if l.tokens < 1 {
		return false
	}
	l.tokens--
	return true
}
