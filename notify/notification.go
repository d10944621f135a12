package notify

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"strconv"
	"strings"
	"time"
)

// EventTypeNotification names the layout of Notification.
const EventTypeNotification = "tollgate.notification.v1"

// Notification is what a webhook receives, as JSON: one event about one
// key under one plan in one period.
//
// ID is derived from what the notification says (the webhook, the
// event, the key, the plan, the period and the threshold), not drawn at
// random: the same crossing noticed twice (after a restart, by the next
// owner of a partition after a rebalance, by a retry whose answer was
// lost) has the same id, and the receiver drops the copies by id.
type Notification struct {
	ID        string `json:"id"`
	Type      string `json:"type"` // EventTypeNotification
	Event     string `json:"event"`
	WebhookID string `json:"webhookId"`
	// Time is when the event was noticed (RFC 3339, UTC).
	Time    time.Time `json:"time"`
	KeyID   string    `json:"keyId"`
	KeyName string    `json:"keyName,omitempty"`
	PlanID  string    `json:"planId,omitempty"`
	// Period is the quota period the counts are of (a threshold
	// crossing), or the hour a throttling started in, or empty (a key
	// disabled).
	Period Period `json:"period"`
	// Used and Limit are the key's use of its quota under the plan in the
	// period, and the period's limit, as far as the sender knows them (0
	// when the plan has no quota).
	Used  int64 `json:"used"`
	Limit int64 `json:"limit"`
	// Threshold is the percentage crossed (quota.threshold only).
	Threshold float64 `json:"threshold,omitempty"`
}

// Period is a span of time: [Start, End).
type Period struct {
	Kind  string    `json:"kind,omitempty"` // DAY, WEEK, MONTH, HOUR
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
}

// notificationID derives a notification's id from the facts that make it
// one notification.
func notificationID(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// Signature header. Its value is "t=<unix seconds>,v1=<hex HMAC-SHA256>",
// the HMAC keyed by the webhook's secret over "<unix seconds>.<body>".
// README.md, "Quota notifications", shows how to check it with openssl.
const (
	SignatureHeader = "Tollgate-Signature"
	IDHeader        = "Tollgate-Notification-Id"
)

// Sign returns the signature header value of body sent at t.
func Sign(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + mac(secret, ts, body)
}

func mac(secret, ts string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// Errors of Verify.
var (
	ErrBadSignature = errors.New("notification signature does not match")
	ErrStale        = errors.New("notification timestamp outside the tolerance")
)

// Verify checks a signature header value against body, as a receiver
// does: the HMAC must match, and the timestamp be within tolerance of
// now (a replayed old request is refused; 0 skips the check).
func Verify(secret, header string, body []byte, now time.Time, tolerance time.Duration) error {
	var ts, sig string
	for part := range strings.SplitSeq(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sig = v
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || sig == "" {
		return ErrBadSignature
	}
	if !hmac.Equal([]byte(sig), []byte(mac(secret, ts, body))) {
		return ErrBadSignature
	}
	if d := now.Sub(time.Unix(sec, 0)); tolerance > 0 && (d > tolerance || d < -tolerance) {
		return ErrStale
	}
	return nil
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }
