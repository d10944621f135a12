package catalog

import (
	"bytes"
	"encoding/json"
	"reflect"
	"slices"
	"strconv"
	"time"

	"github.com/tollgate/tollgate/internal/jsonw"
)

// The audit lines of API keys are encoded by hand. A change of many keys
// (an ImportApiKeys, a first start from a file of a million keys) logs a
// line per key, and through encoding/json's reflection a line was 4-10
// µs of CPU and 8-18 allocations (~23 µs per key in an import into a
// catalog of a million keys, collections included): the largest single
// cost of importing 100k keys. The appenders below write the same bytes
// encoding/json's Encoder writes of encodeEntries' line for a key (an
// auditKey as old and new), into one growing buffer, without reflection
// or allocations. auditjson_test.go holds them to encoding/json on
// random keys and fails when auditKey or APIKey gain, lose or retag a
// field: change keyLines.appendKey with them. Plans, APIs and the
// gateway are few and stay on encoding/json.

// keyLines encodes the audit lines of the keys of one change. What every
// line starts with is encoded once. A keyLines is not safe for
// concurrent use: each worker has its own.
type keyLines struct {
	// head is `{"time":…,"actor":…,"action":…,"kind":"apiKey","id":`.
	head []byte
	// err is encoding/json's error for the time (a year past 9999, a
	// zone offset of a day or more). It is returned for the first line
	// written, as encodeEntries returns the first Encode's error.
	err error
	// names is scratch for a key's tag names, sorted.
	names []string
}

func newKeyLines(at time.Time, actor, action string) keyLines {
	// The time is written by its MarshalJSON (RFC 3339 with nanoseconds
	// and the zone's offset), as the Encoder writes it (compacting what
	// is compact already), and fails as the Encoder fails: once per
	// change, not per key.
	t, err := at.MarshalJSON()
	if err != nil {
		return keyLines{err: &json.MarshalerError{Type: reflect.TypeFor[time.Time](), Err: err}}
	}
	h := make([]byte, 0, 64+len(t)+len(actor)+len(action))
	h = append(h, `{"time":`...)
	h = append(h, t...)
	h = append(h, `,"actor":`...)
	h = jsonw.AppendString(h, actor)
	h = append(h, `,"action":`...)
	h = jsonw.AppendString(h, action)
	h = append(h, `,"kind":"apiKey","id":`...)
	return keyLines{head: h}
}

// appendKeys appends the lines of the keys ids of ch, in their order.
func (e *keyLines) appendKeys(b []byte, ch *Change, ids []string) ([]byte, error) {
	for _, id := range ids {
		var err error
		if b, err = e.appendLine(b, ch.Old.Key(id), ch.New.Key(id)); err != nil {
			return b, err
		}
	}
	return b, nil
}

// appendLine appends the line of a key before (o) and after (n), nil
// where absent: what encodeEntries writes of what emitKey emits. A key
// on both sides whose two encodings are equal has no line; the two are
// encoded in place in the line and compared there, so that an unchanged
// key costs no copies. (A key on neither side, which no delta lists,
// has no line either.)
func (e *keyLines) appendLine(b []byte, o, n *APIKey) ([]byte, error) {
	k := pick(o, n)
	if k == nil {
		return b, nil
	}
	start := len(b)
	b = append(b, e.head...)
	b = jsonw.AppendString(b, k.ID)
	if k.Name != "" {
		b = append(b, `,"name":`...)
		b = jsonw.AppendString(b, k.Name)
	}
	if k.ValuePrefix != "" {
		b = append(b, `,"keyPrefix":`...)
		b = jsonw.AppendString(b, k.ValuePrefix)
	}
	var oldStart, oldEnd int
	if o != nil {
		b = append(b, `,"old":`...)
		oldStart = len(b)
		ak := newAuditKey(o, false)
		b = e.appendKey(b, &ak)
		oldEnd = len(b)
	}
	if n != nil {
		b = append(b, `,"new":`...)
		newStart := len(b)
		ak := newAuditKey(n, o != nil && o.ValueHash != n.ValueHash)
		b = e.appendKey(b, &ak)
		if o != nil && bytes.Equal(b[oldStart:oldEnd], b[newStart:]) {
			return b[:start], nil
		}
	}
	if e.err != nil {
		return b[:start], e.err
	}
	return append(b, "}\n"...), nil
}

// appendKey appends k as encoding/json marshals an auditKey: the fields
// in declaration order, those of the embedded APIKey first, then
// auditKey's own. APIKey's Value is never marshalled (json:"-"), and its
// ValueHash neither: auditKey's ValueHash, of the same JSON name and
// shallower, hides it (and is empty, so omitted).
func (e *keyLines) appendKey(b []byte, k *auditKey) []byte {
	b = append(b, `{"id":`...)
	b = jsonw.AppendString(b, k.ID)
	b = append(b, `,"name":`...)
	b = jsonw.AppendString(b, k.Name)
	if k.Description != "" {
		b = append(b, `,"description":`...)
		b = jsonw.AppendString(b, k.Description)
	}
	b = append(b, `,"enabled":`...)
	b = strconv.AppendBool(b, k.Enabled)
	if k.CustomerID != "" {
		b = append(b, `,"customerId":`...)
		b = jsonw.AppendString(b, k.CustomerID)
	}
	if len(k.Tags) > 0 { // omitempty: a nil and an empty map alike
		b = append(b, `,"tags":`...)
		b = e.appendTags(b, k.Tags)
	}
	if k.ValuePrefix != "" {
		b = append(b, `,"valuePrefix":`...)
		b = jsonw.AppendString(b, k.ValuePrefix)
	}
	// APIKey's PreviousValueHash is hidden as its ValueHash is.
	if k.PreviousValuePrefix != "" {
		b = append(b, `,"previousValuePrefix":`...)
		b = jsonw.AppendString(b, k.PreviousValuePrefix)
	}
	if k.PreviousValueUntil != 0 {
		b = append(b, `,"previousValueUntil":`...)
		b = strconv.AppendInt(b, k.PreviousValueUntil, 10)
	}
	b = append(b, `,"usagePlans":`...)
	if k.UsagePlans == nil { // no omitempty: nil is null, empty is []
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, p := range k.UsagePlans {
			if i > 0 {
				b = append(b, ',')
			}
			b = jsonw.AppendString(b, p)
		}
		b = append(b, ']')
	}
	b = append(b, `,"createdDate":`...)
	b = strconv.AppendInt(b, k.CreatedDate, 10)
	if k.LastUpdatedDate != 0 {
		b = append(b, `,"lastUpdatedDate":`...)
		b = strconv.AppendInt(b, k.LastUpdatedDate, 10)
	}
	if k.ValueHash != "" { // auditKey's own, not k.APIKey.ValueHash
		b = append(b, `,"valueHash":`...)
		b = jsonw.AppendString(b, k.ValueHash)
	}
	if k.PreviousValueHash != "" { // auditKey's own, empty as ValueHash
		b = append(b, `,"previousValueHash":`...)
		b = jsonw.AppendString(b, k.PreviousValueHash)
	}
	if k.KeyValueChanged {
		b = append(b, `,"keyValueChanged":true`...)
	}
	if k.ValueFingerprint != "" {
		b = append(b, `,"valueFingerprint":`...)
		b = jsonw.AppendString(b, k.ValueFingerprint)
	}
	if k.PreviousValueFingerprint != "" {
		b = append(b, `,"previousValueFingerprint":`...)
		b = jsonw.AppendString(b, k.PreviousValueFingerprint)
	}
	return append(b, '}')
}

// appendTags appends a non-nil map of tags as encoding/json does: its
// names sorted bytewise (as they are, before escaping).
func (e *keyLines) appendTags(b []byte, tags map[string]string) []byte {
	e.names = e.names[:0]
	for name := range tags {
		e.names = append(e.names, name)
	}
	slices.Sort(e.names)
	b = append(b, '{')
	for i, name := range e.names {
		if i > 0 {
			b = append(b, ',')
		}
		b = jsonw.AppendString(b, name)
		b = append(b, ':')
		b = jsonw.AppendString(b, tags[name])
	}
	clear(e.names) // keep no names alive past the key
	return append(b, '}')
}
