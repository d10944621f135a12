package reportapi

import (
	"fmt"
	"net/http"
	"time"

	"github.com/tollgate/tollgate/catalog"
)

// Key rotation (catalog/rotation.go): tollgate's, AWS has none.
//
//	POST /v1/apikeys/{id}/rotate         {"grace": "24h"} or {"graceSeconds": 86400}
//	POST /v1/apikeys/{id}/rotate/cancel
//	POST /v1/apikeys/{id}/rotate/finish
//
// Each is one catalog change of the key, audited as any (the action is
// the route, the key's line shows both values' fingerprints and
// previousValueUntil), so that the gateway sees the key with its old
// value, then with both, then with one: never with none.

// rotatedKeyJSON is a key as rotate answers: the key, its new value
// (shown this once) and the end of the old one's grace.
type rotatedKeyJSON struct {
	apiKeyJSON
	// The rotate answer always shows when the previous value stops, even
	// when that is now (a grace of 0).
	PreviousValueFingerprint string `json:"previousValueFingerprint"`
	PreviousValueExpiresAt   string `json:"previousValueExpiresAt"`
}

// graceEnd returns when a rotation made at now with the grace of the
// request body stops the old value: now + grace, down to the whole
// second (so that the time shown, in RFC 3339 seconds, is the time
// enforced, and a grace of 0 cuts at once). Errors name the field.
func graceEnd(grace *string, graceSeconds *int64, now time.Time) (int64, *apiError) {
	var d time.Duration
	field := "grace"
	switch {
	case grace != nil && graceSeconds != nil:
		return 0, badRequest("grace and graceSeconds: give one")
	case grace != nil:
		var err error
		if d, err = time.ParseDuration(*grace); err != nil {
			return 0, badRequest(fmt.Sprintf("grace: %q is not a duration such as 24h, 90m or 0 (a hard cut)", *grace))
		}
	case graceSeconds != nil:
		field = "graceSeconds"
		if *graceSeconds < 0 || *graceSeconds > int64(catalog.MaxRotationGrace/time.Second) {
			return 0, badRequest(fmt.Sprintf("graceSeconds: %d is outside 0 to %d (30 days)", *graceSeconds, int64(catalog.MaxRotationGrace/time.Second)))
		}
		d = time.Duration(*graceSeconds) * time.Second
	default:
		return 0, badRequest("grace is required: how long the old value keeps working, a duration such as 24h (0 for a hard cut)")
	}
	if d < 0 {
		return 0, badRequest(fmt.Sprintf("%s: %s is negative; 0 refuses the old value at once", field, d))
	}
	if d > catalog.MaxRotationGrace {
		return 0, badRequest(fmt.Sprintf("%s: %s is over the longest grace, 30 days (720h)", field, d))
	}
	return now.Add(d).Truncate(time.Second).UnixNano(), nil
}

// formatUntil writes an end of grace (Unix nanoseconds) in RFC 3339.
func formatUntil(ns int64) string { return catalog.FormatExpiresAt(time.Unix(0, ns)) }

func (a *apiKeys) rotate(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Grace        *string `json:"grace"`
		GraceSeconds *int64  `json:"graceSeconds"`
	}
	if err := decodeBody(r, &in); err != nil {
		err.write(w)
		return
	}
	now := a.now()
	until, perr := graceEnd(in.Grace, in.GraceSeconds, now)
	if perr != nil {
		perr.write(w)
		return
	}
	id := urlParam(r, "id")
	value := catalog.NewKeyValue(nil)
	var rotated catalog.APIKey
	if !change(w, r, a.cat, func(tx *catalog.Tx) error {
		cur := tx.Key(id)
		if cur == nil {
			return errKeyNotFound
		}
		if !cur.Enabled {
			return badRequest(fmt.Sprintf("enabled: API Key %s is disabled; enable it before rotating it", id))
		}
		if cur.RotationActive(now) {
			return &apiError{status: 409, errType: "ConflictException", msg: fmt.Sprintf(
				"API Key %s is in a rotation whose previous value works until %s: finish it (POST /v1/apikeys/%s/rotate/finish, the previous value refused now) or cancel it (POST /v1/apikeys/%s/rotate/cancel, the new value refused) before rotating again",
				id, formatUntil(cur.PreviousValueUntil), id, id)}
		}
		hash := catalog.HashKey(value)
		if tx.KeyByHash(hash) != nil { // 40 random characters: never in practice
			return &apiError{status: 409, errType: "ConflictException", msg: "the generated value is taken; rotate again"}
		}
		k := *cur
		k.Rotate(hash, value[:4], until)
		k.LastUpdatedDate = now.Unix()
		tx.PutKey(k)
		rotated = k
		return nil
	}) {
		return
	}
	out := rotatedKeyJSON{apiKeyJSON: keyJSON(&rotated, false, now),
		PreviousValueFingerprint: rotated.PreviousValueFingerprint(), PreviousValueExpiresAt: formatUntil(rotated.PreviousValueUntil)}
	out.Value = value // the one time the whole value is shown
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusCreated, out)
}

// rotateCancel gives the key its previous value back: the new one is
// refused from then on.
func (a *apiKeys) rotateCancel(w http.ResponseWriter, r *http.Request) {
	a.endRotation(w, r, "cancel", (*catalog.APIKey).CancelRotation)
}

// rotateFinish refuses the previous value now, before its grace ends.
func (a *apiKeys) rotateFinish(w http.ResponseWriter, r *http.Request) {
	a.endRotation(w, r, "finish", (*catalog.APIKey).ClearRotation)
}

// endRotation ends the key's rotation in its grace with end, in one
// change; 409 when there is none to end.
func (a *apiKeys) endRotation(w http.ResponseWriter, r *http.Request, what string, end func(*catalog.APIKey)) {
	now := a.now()
	id := urlParam(r, "id")
	var k catalog.APIKey
	if !change(w, r, a.cat, func(tx *catalog.Tx) error {
		cur := tx.Key(id)
		if cur == nil {
			return errKeyNotFound
		}
		if !cur.RotationActive(now) {
			msg := fmt.Sprintf("API Key %s has no rotation in its grace to %s", id, what)
			if cur.HasRotation() {
				msg += fmt.Sprintf(": its previous value stopped at %s", formatUntil(cur.PreviousValueUntil))
			}
			return &apiError{status: 409, errType: "ConflictException", msg: msg}
		}
		k = *cur
		end(&k)
		k.LastUpdatedDate = now.Unix()
		tx.PutKey(k)
		return nil
	}) {
		return
	}
	writeJSON(w, http.StatusOK, keyJSON(&k, false, now))
}
