package catalog

import (
	"fmt"
	"time"
)

// ExpiresAtTag is the tag that carries a key's expiry: an RFC 3339 time
// (2027-01-31T00:00:00Z) from which the gateway answers 403 Forbidden to
// the key, as to a disabled one. A tag, so that the AWS CLI sets it
// (create-api-key --tags), and so that it travels wherever a key's tags
// do (the catalog's files and logs, snapshots, the audit log) with no
// format of its own; the admin API shows it as the key's expiresAt too.
// Every enforcer compares it with its own clock: the key stops at the same
// instant everywhere, whenever the change reached each one.
const ExpiresAtTag = "tollgate:expiresAt"

// ParseExpiresAt reads an expiry as the tag holds it.
func ParseExpiresAt(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not an RFC 3339 time such as 2027-01-31T00:00:00Z", s)
	}
	return t, nil
}

// FormatExpiresAt writes an expiry as the tag holds it (UTC, seconds).
func FormatExpiresAt(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// ExpiresAt returns when k expires, in Unix nanoseconds: 0 when it does
// not (no tag, or a tag that does not parse, which validation refuses).
func (k *APIKey) ExpiresAt() int64 {
	s, ok := k.Tags[ExpiresAtTag]
	if !ok {
		return 0
	}
	t, err := ParseExpiresAt(s)
	if err != nil {
		return 0
	}
	return t.UnixNano()
}
