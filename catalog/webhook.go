package catalog

import (
	"cmp"
	"math"
	"net/url"
	"slices"
	"strings"
)

// Webhook is a subscription to quota notifications (package notify
// sends them): where to POST them, the secret that signs them, and which
// to send. Webhooks are few (a handful per deployment) and, like APIs,
// kept in a small sorted list copied whole on a change; they are in the
// catalog so that every node of a fleet shares them through the config
// log. They are not part of a catalog file or export: the secret must not
// travel with them.
//
// The secret is stored as given (in catalog.db, on the config topic, in
// catalog snapshots), since it must sign every notification; the admin
// API never shows it again and the audit log records only that it
// changed (SECURITY.md).
type Webhook struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// URL receives the notifications (POST): http or https.
	URL string `json:"url"`
	// Secret is the HMAC-SHA256 key of the signature header.
	Secret string `json:"secret"`
	// Events are the notifications sent (WebhookEvents); empty: all.
	Events []string `json:"events,omitempty"`
	// Thresholds are the percentages of a key's quota whose crossing is
	// notified, each in (0, 100]; empty: DefaultThresholds.
	Thresholds  []float64 `json:"thresholds,omitempty"`
	CreatedDate int64     `json:"createdDate"`
}

// Webhook events.
const (
	// EventQuotaThreshold: a key's use of its quota under a plan reached
	// one of the webhook's thresholds in the current period.
	EventQuotaThreshold = "quota.threshold"
	// EventKeyThrottled: a key's requests started to be refused by its
	// throttle (429 Too Many Requests).
	EventKeyThrottled = "key.throttled"
	// EventKeyDisabled: a key was disabled.
	EventKeyDisabled = "key.disabled"
)

// WebhookEvents lists the events a webhook may name.
var WebhookEvents = []string{EventQuotaThreshold, EventKeyThrottled, EventKeyDisabled}

// DefaultThresholds are the thresholds of a webhook that names none.
var DefaultThresholds = []float64{80, 100}

// maxThresholds bounds a webhook's thresholds, maxWebhooks the webhooks
// of a catalog: every crossing is checked against each threshold of
// each webhook, and the list is copied whole on a change.
const (
	maxThresholds = 10
	maxWebhooks   = 100
)

// Wants reports whether the webhook sends event.
func (w *Webhook) Wants(event string) bool {
	return len(w.Events) == 0 || slices.Contains(w.Events, event)
}

// Levels returns the webhook's thresholds (DefaultThresholds if it
// names none).
func (w *Webhook) Levels() []float64 {
	if len(w.Thresholds) == 0 {
		return DefaultThresholds
	}
	return w.Thresholds
}

// Clone returns a deep copy.
func (w *Webhook) Clone() Webhook {
	c := *w
	c.Events = slices.Clone(w.Events)
	c.Thresholds = slices.Clone(w.Thresholds)
	return c
}

// validateWebhook reports what is wrong with a webhook on its own. The
// checks are pure (no name resolution): every node of a fleet applies
// them identically to the records it reads. Whether the URL is reachable
// is checked by the admin API when the webhook is created (package
// notify, CheckURL).
func validateWebhook(p *problems, w *Webhook) {
	const kind = "webhooks"
	if w.ID == "" {
		p.add(kind, w.Name, w.ID, "id", "is required")
	}
	if w.Name == "" {
		p.add(kind, w.Name, w.ID, "name", "is required")
	} else if msg := CheckName(w.Name); msg != "" {
		p.add(kind, w.Name, w.ID, "name", "%s", msg)
	}
	if msg := CheckWebhookURL(w.URL); msg != "" {
		p.add(kind, w.Name, w.ID, "url", "%s", msg)
	}
	if w.Secret == "" {
		p.add(kind, w.Name, w.ID, "secret", "is required: it signs every notification")
	} else if len(w.Secret) > 256 {
		p.add(kind, w.Name, w.ID, "secret", "is longer than 256 bytes")
	}
	for i, e := range w.Events {
		if !slices.Contains(WebhookEvents, e) {
			p.add(kind, w.Name, w.ID, "events", "[%d] %q is not one of %s", i, shown(e), strings.Join(WebhookEvents, ", "))
		}
	}
	if len(w.Thresholds) > maxThresholds {
		p.add(kind, w.Name, w.ID, "thresholds", "has %d entries; at most %d", len(w.Thresholds), maxThresholds)
	}
	for i, t := range w.Thresholds {
		if math.IsNaN(t) || t <= 0 || t > 100 {
			p.add(kind, w.Name, w.ID, "thresholds", "[%d] %g is outside (0, 100]", i, t)
		}
	}
}

// CheckWebhookURL returns "" if s is an acceptable webhook URL: absolute,
// http or https, with a host, at most 2048 bytes, without user
// information (a secret in a URL ends up in logs).
func CheckWebhookURL(s string) string {
	if s == "" {
		return "is required"
	}
	if len(s) > 2048 {
		return "is longer than 2048 bytes"
	}
	u, err := url.Parse(s)
	if err != nil {
		return "is not a URL"
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "must be an http or https URL"
	}
	if u.Hostname() == "" {
		return "has no host"
	}
	if u.User != nil {
		return "must not carry user information"
	}
	return ""
}

// Webhooks returns the webhooks sorted by id (shared: do not modify).
func (s *State) Webhooks() []Webhook { return s.webhooks }

// Webhook returns the webhook with the given id, or nil.
func (s *State) Webhook(id string) *Webhook {
	i, ok := slices.BinarySearchFunc(s.webhooks, id, func(w Webhook, id string) int { return strings.Compare(w.ID, id) })
	if !ok {
		return nil
	}
	return &s.webhooks[i]
}

// WebhookByName returns the webhook with the given name, or nil.
func (s *State) WebhookByName(name string) *Webhook {
	for i := range s.webhooks {
		if s.webhooks[i].Name == name {
			return &s.webhooks[i]
		}
	}
	return nil
}

// putWebhook replaces or adds a webhook (copying the small list).
func (s *State) putWebhook(w Webhook) {
	list := slices.Clone(s.webhooks)
	i, ok := slices.BinarySearchFunc(list, w.ID, func(x Webhook, id string) int { return strings.Compare(x.ID, id) })
	if ok {
		list[i] = w
	} else {
		list = slices.Insert(list, i, w)
	}
	s.webhooks = list
}

// deleteWebhook removes a webhook; it reports whether there was one.
func (s *State) deleteWebhook(id string) bool {
	i, ok := slices.BinarySearchFunc(s.webhooks, id, func(x Webhook, id string) int { return strings.Compare(x.ID, id) })
	if ok {
		s.webhooks = slices.Delete(slices.Clone(s.webhooks), i, i+1)
	}
	return ok
}

// PutWebhook adds w, or replaces the webhook with its id.
func (tx *Tx) PutWebhook(w Webhook) {
	tx.putWebhook(w.Clone())
	tx.webhooks = true
	tx.touched()
}

// DeleteWebhook removes a webhook; it reports whether there was one.
func (tx *Tx) DeleteWebhook(id string) bool {
	if !tx.deleteWebhook(id) {
		return false
	}
	tx.webhooks = true
	tx.touched()
	return true
}

// validateWebhooks checks every webhook of a change that touched them:
// each on its own, and names unique.
func validateWebhooks(p *problems, list []Webhook) {
	if len(list) > maxWebhooks {
		w := &list[len(list)-1]
		p.add("webhooks", w.Name, w.ID, "id", "is one of %d webhooks; at most %d", len(list), maxWebhooks)
	}
	names := map[string]string{}
	for i := range list {
		w := &list[i]
		validateWebhook(p, w)
		if other, ok := names[w.Name]; ok && w.Name != "" {
			p.add("webhooks", w.Name, w.ID, "name", "%q is used by webhook %s too", w.Name, other)
		}
		names[w.Name] = w.ID
	}
}

// sortWebhooks sorts a list of webhooks by id.
func sortWebhooks(list []Webhook) {
	slices.SortStableFunc(list, func(a, b Webhook) int { return cmp.Compare(a.ID, b.ID) })
}

// auditWebhook is a webhook as the audit log records it: without its
// secret.
type auditWebhook struct {
	Webhook
	Secret        string `json:"secret,omitempty"`
	SecretChanged bool   `json:"secretChanged,omitempty"`
}
