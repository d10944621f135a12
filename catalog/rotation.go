package catalog

import "time"

// A key is rotated in one change: it gets a new value (ValueHash,
// ValuePrefix) and keeps its old one as PreviousValueHash and
// PreviousValuePrefix, which the gateway accepts for the same key, plan
// and quota until PreviousValueUntil. Every enforcer compares that time
// with its own clock, as it does an expiry (ExpiresAtTag): the old value
// stops at the same instant everywhere, whenever the change reached each
// one, and an enforcer restarted in the grace still has the fields in
// its catalog.
//
// The fields stay after the grace has ended, refused (the old value is
// then refused like an expired key's, with the key's id in its usage
// events), until the next rotation replaces them or Finish clears them.
// Cancelling a rotation swaps the previous value back and clears them.
//
// A previous value is still the key's: no other key may take it
// (validation holds both values of every key unique across the catalog).

// MaxRotationGrace is the longest grace a rotation may give the old
// value: what security teams ask for is hours or days, and an old value
// that works for months is a second key in all but name.
const MaxRotationGrace = 30 * 24 * time.Hour

// Fingerprint returns the short fingerprint of a key value from its hex
// SHA-256 (ValueHash): its first 8 hex characters, 32 bits. Usage events,
// the audit log, the admin API and the console show it to tell a key's
// values apart (which one a request used, which one a rotation
// replaced); it is never the value, and 32 bits of a hash do not help to
// find a random value of 40 characters. "" for "" (no value).
func Fingerprint(hash string) string {
	if len(hash) < 8 {
		return hash
	}
	return hash[:8]
}

// ValueFingerprint returns the fingerprint of the key's current value.
func (k *APIKey) ValueFingerprint() string { return Fingerprint(k.ValueHash) }

// PreviousValueFingerprint returns the fingerprint of the key's previous
// value, "" when it has none.
func (k *APIKey) PreviousValueFingerprint() string { return Fingerprint(k.PreviousValueHash) }

// HasRotation reports whether the key holds a previous value, in its
// grace or past it.
func (k *APIKey) HasRotation() bool { return k.PreviousValueHash != "" }

// RotationActive reports whether the key's previous value is still
// accepted at now: a rotation in its grace.
func (k *APIKey) RotationActive(now time.Time) bool {
	return k.PreviousValueHash != "" && now.UnixNano() < k.PreviousValueUntil
}

// Rotate gives k the new value whose hash and prefix are given, keeping
// its current one as the previous value until until (Unix nanoseconds).
// A grace of zero (until at or before now) is a hard cut: the old value
// is refused at once, and still recorded as the previous one.
func (k *APIKey) Rotate(hash, prefix string, until int64) {
	k.PreviousValueHash, k.PreviousValuePrefix, k.PreviousValueUntil = k.ValueHash, k.ValuePrefix, until
	k.ValueHash, k.ValuePrefix = hash, prefix
}

// CancelRotation gives k its previous value back and forgets the value
// the rotation gave it, which is refused from then on.
func (k *APIKey) CancelRotation() {
	k.ValueHash, k.ValuePrefix = k.PreviousValueHash, k.PreviousValuePrefix
	k.ClearRotation()
}

// ClearRotation forgets k's previous value: it is refused from then on,
// as any unknown value.
func (k *APIKey) ClearRotation() {
	k.PreviousValueHash, k.PreviousValuePrefix, k.PreviousValueUntil = "", "", 0
}
