package reportapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"

	"github.com/tollgate/tollgate/catalog"
)

// CatalogStore is the catalog the admin API reads and changes
// (catalog.Manager).
type CatalogStore interface {
	State() *catalog.State
	Change(ctx context.Context, f func(tx *catalog.Tx) error) (*catalog.State, error)
}

var _ CatalogStore = (*catalog.Manager)(nil)

// apiKeyJSON is the ApiKey shape of AWS API Gateway 2015-07-09.
type apiKeyJSON struct {
	ID              string            `json:"id"`
	Value           string            `json:"value,omitempty"`
	Name            string            `json:"name"`
	CustomerID      string            `json:"customerId,omitempty"`
	Description     string            `json:"description,omitempty"`
	Enabled         bool              `json:"enabled"`
	CreatedDate     int64             `json:"createdDate"`
	LastUpdatedDate int64             `json:"lastUpdatedDate"`
	StageKeys       []string          `json:"stageKeys"`
	Tags            map[string]string `json:"tags,omitempty"`
	// ExpiresAt is tollgate's: the key's catalog.ExpiresAtTag, also
	// shown among its tags (where the AWS CLI sets it).
	ExpiresAt string `json:"expiresAt,omitempty"`
	// ValueFingerprint is tollgate's: the fingerprint of the key's value
	// (catalog.Fingerprint), as usage events and the audit log give it.
	ValueFingerprint string `json:"valueFingerprint,omitempty"`
	// PreviousValueFingerprint and PreviousValueExpiresAt are tollgate's,
	// during a rotation's grace only: the previous value, which still
	// works, and when it stops (RFC 3339).
	PreviousValueFingerprint string `json:"previousValueFingerprint,omitempty"`
	PreviousValueExpiresAt   string `json:"previousValueExpiresAt,omitempty"`
}

// masked shows a stored key's value: AWS returns the value on request;
// tollgate keeps only its hash, so it shows the first 4 characters.
func masked(k *catalog.APIKey) string { return k.ValuePrefix + "…" }

// keyJSON shows k at now (whether its rotation is in its grace).
func keyJSON(k *catalog.APIKey, includeValue bool, now time.Time) apiKeyJSON {
	j := apiKeyJSON{ID: k.ID, Name: k.Name, CustomerID: k.CustomerID, Description: k.Description, Enabled: k.Enabled,
		CreatedDate: k.CreatedDate, LastUpdatedDate: max(k.LastUpdatedDate, k.CreatedDate), StageKeys: []string{}, Tags: k.Tags,
		ExpiresAt: k.Tags[catalog.ExpiresAtTag], ValueFingerprint: k.ValueFingerprint()}
	if includeValue {
		j.Value = masked(k)
	}
	if k.RotationActive(now) {
		j.PreviousValueFingerprint, j.PreviousValueExpiresAt = k.PreviousValueFingerprint(), formatUntil(k.PreviousValueUntil)
	}
	return j
}

type apiKeys struct {
	cat CatalogStore
	now func() time.Time
}

func (a *apiKeys) routes(r chi.Router) {
	r.Post("/apikeys", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("mode") == "import" {
			a.importKeys(w, r)
			return
		}
		a.create(w, r)
	})
	r.Get("/apikeys", a.list)
	r.Post("/v1/apply", a.apply)
	r.Get("/apikeys/{id}", a.get)
	r.Patch("/apikeys/{id}", a.update)
	r.Delete("/apikeys/{id}", a.delete)
	// Beside /v1/apikeys/{id}/move (usageplans.go), tollgate's own.
	r.Post("/v1/apikeys/{id}/rotate", a.rotate)
	r.Post("/v1/apikeys/{id}/rotate/cancel", a.rotateCancel)
	r.Post("/v1/apikeys/{id}/rotate/finish", a.rotateFinish)
}

func (a *apiKeys) create(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Name        *string           `json:"name"`
		Description string            `json:"description"`
		Enabled     bool              `json:"enabled"`
		Value       string            `json:"value"`
		CustomerID  string            `json:"customerId"`
		Tags        map[string]string `json:"tags"`
		StageKeys   []json.RawMessage `json:"stageKeys"`
		ExpiresAt   string            `json:"expiresAt"`
		// generateDistinctId is accepted and ignored: ids are always distinct.
		GenerateDistinctID bool `json:"generateDistinctId"`
	}
	if err := decodeBody(r, &in); err != nil {
		err.write(w)
		return
	}
	if len(in.StageKeys) > 0 {
		badRequest("stageKeys are not supported: associate the key with a usage plan (create-usage-plan-key)").write(w)
		return
	}
	tags, perr := withExpiry(in.Tags, in.ExpiresAt, "expiresAt", a.now())
	if perr != nil {
		perr.write(w)
		return
	}
	in.Tags = tags
	value := in.Value
	if value == "" {
		value = catalog.NewKeyValue(nil)
	} else if msg := catalog.CheckKeyValue(value); msg != "" {
		badRequest("API Key value " + msg).write(w)
		return
	}
	hash := catalog.HashKey(value)
	now := a.now().Unix()
	var created catalog.APIKey
	if !change(w, r, a.cat, func(tx *catalog.Tx) error {
		name := ""
		if in.Name != nil {
			name = *in.Name
		}
		if name == "" {
			name = "key-" + catalog.NewID(nil)
		}
		if tx.KeyByHash(hash) != nil {
			return &apiError{status: 409, errType: "ConflictException", msg: "API Key already exists"}
		}
		if tx.KeyByName(name) != nil {
			return &apiError{status: 409, errType: "ConflictException", msg: fmt.Sprintf("An API key named %q already exists; tollgate requires unique names", name)}
		}
		created = catalog.APIKey{ID: newKeyID(tx), Name: name, Description: in.Description, Enabled: in.Enabled,
			CustomerID: in.CustomerID, Tags: in.Tags, ValueHash: hash, ValuePrefix: value[:4], UsagePlans: []string{},
			CreatedDate: now, LastUpdatedDate: now}
		tx.PutKey(created)
		return nil
	}) {
		return
	}
	out := keyJSON(&created, false, a.now())
	out.Value = value // the one time the whole value is shown
	writeJSON(w, http.StatusCreated, out)
}

func (a *apiKeys) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, perr := pageLimit(q.Get("limit"))
	if perr != nil {
		perr.write(w)
		return
	}
	includeValues := q.Get("includeValues") == "true"
	name, customer := q.Get("name"), q.Get("customerId")
	s := a.cat.State()
	// Each filter walks its index from the position: a page costs its
	// size (plus, with both filters, the customer's keys whose name does
	// not match), wherever it starts. A name filter lists keys by name,
	// the others by id.
	var walk func(after string, f func(*catalog.APIKey) bool)
	position := keyID
	scope := "apikeys"
	switch {
	case customer != "":
		scope += "?customerId=" + customer + "&name=" + name
		walk = func(after string, f func(*catalog.APIKey) bool) {
			s.KeysOfCustomer(customer, after, func(k *catalog.APIKey) bool {
				return !strings.HasPrefix(k.Name, name) || f(k)
			})
		}
	case name != "":
		scope += "?name=" + name
		position = func(k *catalog.APIKey) string { return k.Name }
		walk = func(after string, f func(*catalog.APIKey) bool) { s.KeysByName(name, after, f) }
	default:
		walk = s.Keys
	}
	now := a.now()
	writeWalk(w, walk, position, func(k *catalog.APIKey) apiKeyJSON { return keyJSON(k, includeValues, now) }, scope, q.Get("position"), limit)
}

// newKeyID returns an id no key, plan, API or webhook of tx holds (the
// ids of new keys and webhooks).
func newKeyID(tx *catalog.Tx) string {
	for {
		id := catalog.NewID(nil)
		if tx.Key(id) == nil && tx.Plan(id) == nil && tx.API(id) == nil && tx.Webhook(id) == nil {
			return id
		}
	}
}

func (a *apiKeys) get(w http.ResponseWriter, r *http.Request) {
	k := a.cat.State().Key(urlParam(r, "id"))
	if k == nil {
		errKeyNotFound.write(w)
		return
	}
	writeJSON(w, http.StatusOK, keyJSON(k, r.URL.Query().Get("includeValue") == "true", a.now()))
}

func keyID(k *catalog.APIKey) string { return k.ID }

var errKeyNotFound = &apiError{status: 404, errType: "NotFoundException", msg: "Invalid API Key identifier specified"}

// keyPatchPaths are the fields UpdateApiKey may change.
var keyPatchPaths = []string{"/name", "/description", "/enabled", "/customerId", "/expiresAt"}

// withExpiry returns tags with the expiry set (catalog.ExpiresAtTag):
// expiresAt (named field in errors) when given, else the tag's own value,
// either an RFC 3339 time after now; "" in both leaves tags as they are.
// The tags are copied, never changed in place.
func withExpiry(tags map[string]string, expiresAt, field string, now time.Time) (map[string]string, *apiError) {
	tagged, hasTag := tags[catalog.ExpiresAtTag]
	switch {
	case expiresAt == "" && !hasTag:
		return tags, nil
	case expiresAt == "":
		expiresAt, field = tagged, fmt.Sprintf("tags[%q]", catalog.ExpiresAtTag)
	case hasTag && tagged != expiresAt:
		return nil, badRequest(fmt.Sprintf("%s: %q and tags[%q] %q differ; give one", field, expiresAt, catalog.ExpiresAtTag, tagged))
	}
	t, err := catalog.ParseExpiresAt(expiresAt)
	if err != nil {
		return nil, badRequest(fmt.Sprintf("%s: %v", field, err))
	}
	if !t.After(now) {
		return nil, badRequest(fmt.Sprintf("%s: %s is not in the future (now %s)", field, catalog.FormatExpiresAt(t), catalog.FormatExpiresAt(now)))
	}
	out := maps.Clone(tags)
	if out == nil {
		out = map[string]string{}
	}
	out[catalog.ExpiresAtTag] = catalog.FormatExpiresAt(t)
	return out, nil
}

func (a *apiKeys) update(w http.ResponseWriter, r *http.Request) {
	var in struct {
		PatchOperations []patchOp `json:"patchOperations"`
	}
	if err := decodeBody(r, &in); err != nil {
		err.write(w)
		return
	}
	id := urlParam(r, "id")
	now := a.now().Unix()
	var updated catalog.APIKey
	if !change(w, r, a.cat, func(tx *catalog.Tx) error {
		cur := tx.Key(id)
		if cur == nil {
			return errKeyNotFound
		}
		k := *cur
		for i, op := range in.PatchOperations {
			if op.Op == "remove" && op.Path == "/expiresAt" {
				k.Tags = maps.Clone(k.Tags)
				delete(k.Tags, catalog.ExpiresAtTag)
				continue
			}
			if op.Op != "replace" {
				return badRequest(fmt.Sprintf("patchOperations[%d]: op %q is not supported for API keys; use replace (or remove on /expiresAt)", i, op.Op))
			}
			switch op.Path {
			case "/expiresAt":
				if op.Value == "" {
					k.Tags = maps.Clone(k.Tags)
					delete(k.Tags, catalog.ExpiresAtTag)
					continue
				}
				tags := maps.Clone(k.Tags)
				delete(tags, catalog.ExpiresAtTag)
				tags, perr := withExpiry(tags, op.Value, fmt.Sprintf("patchOperations[%d]: /expiresAt", i), a.now())
				if perr != nil {
					return perr
				}
				k.Tags = tags
			case "/name":
				if op.Value == "" {
					return badRequest(fmt.Sprintf("patchOperations[%d]: /name must not be empty", i))
				}
				if o := tx.KeyByName(op.Value); o != nil && o.ID != id {
					return &apiError{status: 409, errType: "ConflictException", msg: fmt.Sprintf("An API key named %q already exists", op.Value)}
				}
				k.Name = op.Value
			case "/description":
				k.Description = op.Value
			case "/customerId":
				k.CustomerID = op.Value
			case "/enabled":
				b, err := strconv.ParseBool(op.Value)
				if err != nil {
					return badRequest(fmt.Sprintf("patchOperations[%d]: /enabled must be true or false, got %q", i, op.Value))
				}
				k.Enabled = b
			default:
				return badRequest(fmt.Sprintf("patchOperations[%d]: path %q cannot be changed; use one of %s", i, op.Path, strings.Join(keyPatchPaths, ", ")))
			}
		}
		k.LastUpdatedDate = now
		tx.PutKey(k)
		updated = k
		return nil
	}) {
		return
	}
	writeJSON(w, http.StatusOK, keyJSON(&updated, false, a.now()))
}

func (a *apiKeys) delete(w http.ResponseWriter, r *http.Request) {
	id := urlParam(r, "id")
	if !change(w, r, a.cat, func(tx *catalog.Tx) error {
		if !tx.DeleteKey(id) {
			return errKeyNotFound
		}
		return nil
	}) {
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

type patchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value string `json:"value"`
	From  string `json:"from"`
}

func badRequest(msg string) *apiError {
	return &apiError{status: 400, errType: "BadRequestException", msg: msg}
}

// changeError maps a failed catalog change to AWS's answer (errorOf).
func changeError(err error) *apiError { return errorOf("", err) }

// change makes f one change of cat; if the change fails, it writes the
// error (changeError) to w and returns false.
func change(w http.ResponseWriter, r *http.Request, cat CatalogStore, f func(tx *catalog.Tx) error) bool {
	if _, err := cat.Change(r.Context(), f); err != nil {
		changeError(err).write(w)
		return false
	}
	return true
}

// internalError is a failure of the server, not of the request: 500,
// with what was being done.
func internalError(doing string, err error) *apiError {
	return &apiError{status: 500, errType: "InternalServerErrorException", msg: doing + err.Error()}
}

// decodeBody decodes a JSON request body into v, strictly: one object and
// nothing after it, each field once (encoding/json would let the last of
// two win, matching names in any case), valid UTF-8 (encoding/json would
// turn it into U+FFFD).
func decodeBody(r *http.Request, v any) *apiError {
	b, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxJSONBody))
	if err != nil {
		return bodyError(err, maxJSONBody)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(v); err != nil {
		return badRequest("Invalid request body: " + err.Error())
	}
	if _, err := dec.Token(); err != io.EOF {
		return badRequest("Invalid request body: unexpected data after the JSON object")
	}
	bad := -1
	if !utf8.Valid(b) {
		bad = invalidUTF8At(b)
	}
	if err := checkJSON(json.NewDecoder(bytes.NewReader(b)), reflect.TypeOf(v), "", int64(bad)); err != nil {
		return badRequest("Invalid request body: " + err.Error())
	}
	return nil
}

// invalidUTF8At returns the offset of b's first byte that is not valid
// UTF-8.
func invalidUTF8At(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n == 1 {
			return i
		}
		i += n
	}
	return -1
}

// checkJSON walks the next JSON value of dec, which decodes into t, and
// reports a field given twice: within an object that decodes into a
// struct, names that encoding/json would match to the same field (any
// case); within one that decodes into a map, equal keys. bad, if not -1,
// is the offset of invalid UTF-8, reported with the field it is in.
func checkJSON(dec *json.Decoder, t reflect.Type, path string, bad int64) error {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if bad >= 0 && dec.InputOffset() > bad {
		if path == "" {
			return errors.New("the body is not valid UTF-8")
		}
		return fmt.Errorf("%q is not valid UTF-8", path)
	}
	switch tok {
	case json.Delim('{'):
		seen := map[string]bool{}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return err
			}
			k, _ := kt.(string)
			field := join(path, k)
			if bad >= 0 && dec.InputOffset() > bad {
				return fmt.Errorf("%q is not valid UTF-8", field)
			}
			var elem reflect.Type
			norm := k
			switch {
			case t == nil:
			case t.Kind() == reflect.Struct:
				norm = strings.ToLower(strings.ToUpper(k))
				elem = fieldType(t, k)
			case t.Kind() == reflect.Map:
				elem = t.Elem()
			}
			if seen[norm] {
				return fmt.Errorf("duplicate field %q", field)
			}
			seen[norm] = true
			if err := checkJSON(dec, elem, field, bad); err != nil {
				return err
			}
		}
		_, err = dec.Token()
		return err
	case json.Delim('['):
		var elem reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			elem = t.Elem()
		}
		for i := 0; dec.More(); i++ {
			if err := checkJSON(dec, elem, path+"["+strconv.Itoa(i)+"]", bad); err != nil {
				return err
			}
		}
		_, err = dec.Token()
		return err
	}
	return nil
}

func join(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

// fieldType returns the type of the field of struct t that encoding/json
// would decode the name k into, or nil.
func fieldType(t reflect.Type, k string) reflect.Type {
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		if strings.EqualFold(name, k) {
			return f.Type
		}
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// pageLimit parses AWS's limit: default 25, at most 500.
func pageLimit(s string) (int, *apiError) {
	if s == "" {
		return 25, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 500 {
		return 0, badRequest(fmt.Sprintf("limit must be an integer from 1 to 500, got %q", s))
	}
	return n, nil
}

// writePage answers a list operation: the page of items after position,
// each shown by show, with AWS's {position, item} shape.
func writePage[T, J any](w http.ResponseWriter, items []T, id func(T) string, show func(T) J, scope, position string, limit int) {
	page, next, perr := paginate(items, id, scope, position, limit)
	if perr != nil {
		perr.write(w)
		return
	}
	out := make([]J, len(page))
	for i, it := range page {
		out[i] = show(it)
	}
	writeJSON(w, http.StatusOK, struct {
		Position string `json:"position,omitempty"`
		Item     []J    `json:"item"`
	}{next, out})
}

// writeWalk answers a list operation from an index: walk calls its
// function for the items after a position, in order, until it returns
// false; pos gives an item's position (its id, or its name in a list by
// name). A page costs its size, wherever it starts.
func writeWalk[T, J any](w http.ResponseWriter, walk func(after string, f func(T) bool), pos func(T) string, show func(T) J, scope, position string, limit int) {
	after, perr := decodePosition(scope, position)
	if perr != nil {
		perr.write(w)
		return
	}
	out := make([]J, 0, min(limit, 64))
	var last T
	more := false
	walk(after, func(it T) bool {
		if len(out) == limit {
			more = true
			return false
		}
		out = append(out, show(it))
		last = it
		return true
	})
	next := ""
	if more {
		next = encodePosition(scope, pos(last))
	}
	writeJSON(w, http.StatusOK, struct {
		Position string `json:"position,omitempty"`
		Item     []J    `json:"item"`
	}{next, out})
}

// decodePosition returns the position a token holds ("" for none). A
// token names its list (scope: the operation, its parent's id and its
// filters) and the last position of the previous page; one that does not
// decode, or comes from another list, is refused, rather than starting
// over or skipping silently.
func decodePosition(scope, position string) (string, *apiError) {
	if position == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(position)
	tokScope, after, ok := strings.Cut(string(b), "\x00")
	if err != nil || !ok || after == "" {
		return "", badRequest("Invalid position parameter: position is not a token this API returned")
	}
	if tokScope != scope {
		return "", badRequest("Invalid position parameter: position belongs to another list; pass the position of this list's previous page")
	}
	return after, nil
}

func encodePosition(scope, after string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(scope + "\x00" + after))
}

// paginate returns up to limit items after position and the next page's
// token. A token names its list (scope: the operation and the parent's
// id) and the last id of the previous page; one that does not decode, or
// comes from another list, is refused, rather than starting over or
// skipping silently.
func paginate[T any](items []T, id func(T) string, scope, position string, limit int) ([]T, string, *apiError) {
	start := 0
	after, perr := decodePosition(scope, position)
	if perr != nil {
		return nil, "", perr
	}
	if after != "" {
		start = len(items)
		for i, it := range items {
			if id(it) > after {
				start = i
				break
			}
		}
	}
	end := min(start+limit, len(items))
	next := ""
	if end < len(items) {
		next = encodePosition(scope, id(items[end-1]))
	}
	return items[start:end], next, nil
}

// keysCSV is an ImportApiKeys file: its rows after the header, and the
// index of each column it has (by lowercase name).
type keysCSV struct {
	col  map[string]int
	rows [][]string
}

// keyColumns are the columns of an ImportApiKeys file, lowercase.
var keyColumns = []string{"name", "key", "description", "enabled", "usageplanids"}

// parseKeysCSV reads an ImportApiKeys file. A UTF-8 byte order mark at the
// start (spreadsheets write one) is skipped; a column named twice is an
// error, as is a column other than keyColumns, or no Key column.
func parseKeysCSV(r io.Reader) (*keysCSV, *apiError) {
	br := bufio.NewReader(r)
	if bom, _ := br.Peek(3); string(bom) == "\uFEFF" {
		br.Discard(3)
	}
	rd := csv.NewReader(br)
	rd.FieldsPerRecord = -1
	rd.TrimLeadingSpace = true
	rows, err := rd.ReadAll()
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, tooLarge(maxFileBody)
		}
		return nil, badRequest("Invalid CSV: " + err.Error())
	}
	if len(rows) == 0 {
		return nil, badRequest("the CSV is empty: it needs a header row naming Name, Key, Description, Enabled, UsagePlanIds")
	}
	f := &keysCSV{col: map[string]int{}, rows: rows[1:]}
	for i, h := range rows[0] {
		name := strings.ToLower(strings.TrimSpace(h))
		if !slices.Contains(keyColumns, name) {
			return nil, badRequest(fmt.Sprintf("unknown CSV column %q; the columns are Name, Key, Description, Enabled, UsagePlanIds", h))
		}
		if j, ok := f.col[name]; ok {
			return nil, badRequest(fmt.Sprintf("CSV column %q is named twice (columns %d and %d)", h, j+1, i+1))
		}
		f.col[name] = i
	}
	if _, ok := f.col["key"]; !ok {
		return nil, badRequest("the CSV has no Key column (the key values)")
	}
	return f, nil
}

// field returns the trimmed value of column name in row, or "".
func (f *keysCSV) field(row []string, name string) string {
	if i, ok := f.col[name]; ok && i < len(row) {
		return strings.TrimSpace(row[i])
	}
	return ""
}

// importKeys answers ImportApiKeys (POST /apikeys?mode=import&format=csv):
// a CSV whose header names the columns Name, Key, Description, Enabled and
// UsagePlanIds in any order and case (Key is required; UsagePlanIds lists
// plan ids separated by commas or semicolons). Rows that cannot be imported
// become warnings and are skipped, unless failonwarnings=true, which
// refuses the whole file. Either way the import is one catalog change.
func (a *apiKeys) importKeys(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("format") != "csv" {
		badRequest(fmt.Sprintf("format must be csv, got %q", q.Get("format"))).write(w)
		return
	}
	failOnWarnings := q.Get("failonwarnings") == "true"
	f, perr := parseKeysCSV(http.MaxBytesReader(nil, r.Body, maxFileBody))
	if perr != nil {
		perr.write(w)
		return
	}
	rows, field := f.rows, f.field
	now := a.now().Unix()
	var ids, warnings []string
	if !change(w, r, a.cat, func(tx *catalog.Tx) error {
		for n, row := range rows {
			line := n + 2
			warn := func(format string, args ...any) {
				warnings = append(warnings, fmt.Sprintf("Row %d: ", line)+fmt.Sprintf(format, args...))
			}
			value := field(row, "key")
			if msg := catalog.CheckKeyValue(value); msg != "" {
				warn("Key %s", msg)
				continue
			}
			hash := catalog.HashKey(value)
			if tx.KeyByHash(hash) != nil {
				warn("Key already exists")
				continue
			}
			name := field(row, "name")
			if name == "" {
				name = "key-" + catalog.NewID(nil)
			}
			if msg := catalog.CheckName(name); msg != "" {
				warn("Name %s", msg)
				continue
			}
			description := field(row, "description")
			if msg := catalog.CheckDescription(description); msg != "" {
				warn("Description %s", msg)
				continue
			}
			if tx.KeyByName(name) != nil {
				warn("an API key named %q already exists", name)
				continue
			}
			enabled := false
			if s := field(row, "enabled"); s != "" {
				b, err := strconv.ParseBool(s)
				if err != nil {
					warn("Enabled must be true or false, got %q", s)
					continue
				}
				enabled = b
			}
			var plans []string
			problem := ""
			stages := map[string]string{} // api:stage → plan, one plan per stage
			for _, p := range strings.FieldsFunc(field(row, "usageplanids"), func(r rune) bool { return r == ',' || r == ';' }) {
				p = strings.TrimSpace(p)
				plan := tx.Plan(p)
				switch {
				case plan == nil:
					problem = fmt.Sprintf("usage plan %q does not exist", p)
				case slices.Contains(plans, p):
					problem = fmt.Sprintf("usage plan %q is listed twice", p)
				default:
					for _, as := range plan.APIStages {
						if other, ok := stages[as.APIID+":"+as.Stage]; ok {
							problem = fmt.Sprintf("usage plans %q and %q both cover stage %s:%s; a key may be in one", other, p, as.APIID, as.Stage)
						}
						stages[as.APIID+":"+as.Stage] = p
					}
				}
				if problem != "" {
					break
				}
				plans = append(plans, p)
			}
			if problem != "" {
				warn("%s", problem)
				continue
			}
			k := catalog.APIKey{ID: newKeyID(tx), Name: name, Description: description, Enabled: enabled,
				ValueHash: hash, ValuePrefix: value[:4], UsagePlans: append([]string{}, plans...), CreatedDate: now, LastUpdatedDate: now}
			tx.PutKey(k)
			ids = append(ids, k.ID)
		}
		if failOnWarnings && len(warnings) > 0 {
			return badRequest("Import refused (failonwarnings): " + strings.Join(warnings, "; "))
		}
		return nil
	}) {
		return
	}
	if ids == nil {
		ids = []string{}
	}
	writeJSON(w, http.StatusCreated, struct {
		IDs      []string `json:"ids"`
		Warnings []string `json:"warnings,omitempty"`
	}{ids, warnings})
}
