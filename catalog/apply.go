package catalog

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"
)

// Changes says what Apply did.
type Changes struct {
	// Changed is false when the file matched the catalog already.
	Changed bool
	// Created lists the plans and keys that are new, as "kind name (id)".
	Created []string
	// GeneratedKeys holds the values generated for new keys that had
	// none, by key id. They are shown once and never stored.
	GeneratedKeys map[string]string
}

// Apply merges a file into the current catalog and validates the result
// (ApplyFile on a whole catalog, for tests and tools).
func Apply(current *Catalog, f *File, now time.Time) (*Catalog, *Changes, error) {
	tx := StateOf(current).Begin()
	ch, err := applyFile(tx, f, now, rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	return tx.State.Catalog(), ch, nil
}

// ApplyFile merges a file into the catalog of tx and validates what it
// changed.
//
// APIs are matched by id, plans and keys by name (or by id when the file
// gives one). Matched entities keep their id and creation date; new ones
// get now as creation date and, unless the file gives one, an id derived
// from their name (see fileID). Entities of the catalog that the
// file does not mention are kept. A key without a value keeps its value if
// it exists, and gets a generated one if it is new.
//
// It costs O(entities in the file): each is looked up through the
// indexes and written only if it differs. On error the Tx must be
// abandoned.
func ApplyFile(tx *Tx, f *File, now time.Time) (*Changes, error) {
	return applyFile(tx, f, now, rand.Reader)
}

func applyFile(tx *Tx, f *File, now time.Time, rnd io.Reader) (*Changes, error) {
	ch := &Changes{GeneratedKeys: map[string]string{}}
	src := &f.Catalog
	p := &problems{file: f}

	checkFileNames(p, src)
	// New keys are gathered and added in one sorted pass at the end (see
	// addKeys), unless the file names a key twice: then, as before, a
	// later entry matches the earlier one, and validation reports it.
	bulk := bulkNewKeys && len(p.list) == 0
	var added []newKey
	// The gateway block is declarative as a whole: a file that has one
	// replaces the stored settings (omitted fields take their defaults);
	// a file without one leaves them as they are.
	if f.hasGateway && !sameJSON(tx.Gateway(), src.Gateway) {
		tx.SetGateway(src.Gateway)
	}
	for _, a := range src.APIs {
		if old := tx.API(a.ID); old == nil || !sameJSON(old, &a) {
			tx.PutAPI(a)
		}
	}
	planIDs := make(map[string]string, len(src.UsagePlans)) // name → id, for key references
	for _, pl := range src.UsagePlans {
		var old *UsagePlan
		if pl.ID != "" {
			old = tx.Plan(pl.ID)
		} else {
			old = tx.PlanByName(pl.Name)
		}
		if old != nil {
			pl.ID, pl.CreatedDate = old.ID, old.CreatedDate
			if !sameJSON(old, &pl) {
				tx.PutPlan(pl)
			}
		} else {
			if pl.ID == "" {
				pl.ID = fileID(tx.State, "usagePlan", pl.Name, rnd)
			}
			pl.CreatedDate = now.Unix()
			tx.PutPlan(pl)
			ch.Created = append(ch.Created, fmt.Sprintf("usage plan %q (%s)", pl.Name, pl.ID))
		}
		planIDs[pl.Name] = pl.ID
	}
	for _, k := range src.APIKeys {
		var old *APIKey
		if k.ID != "" {
			old = tx.Key(k.ID)
		} else {
			old = tx.KeyByName(k.Name)
		}
		if k.Value != "" {
			if msg := CheckKeyValue(k.Value); msg != "" {
				p.add("apiKeys", k.Name, k.ID, "value", "%s", msg)
				continue
			}
			k.ValueHash, k.ValuePrefix = HashKey(k.Value), k.Value[:4]
		}
		refs := make([]string, len(k.UsagePlans))
		for i, r := range k.UsagePlans {
			if id, ok := planIDs[r]; ok {
				refs[i] = id
			} else if pl := tx.PlanByNameOrID(r); pl != nil {
				refs[i] = pl.ID
			} else {
				refs[i] = r // reported by validation
			}
		}
		k.UsagePlans = refs
		k.Value = ""
		if old != nil {
			k.ID, k.CreatedDate, k.LastUpdatedDate = old.ID, old.CreatedDate, old.LastUpdatedDate
			if k.ValueHash == "" {
				k.ValueHash, k.ValuePrefix = old.ValueHash, old.ValuePrefix
			}
			if k.ValueHash == old.ValueHash {
				// A file declares values, not rotations: a rotation
				// stays while the file keeps the key's value (or
				// names none), and ends when it declares another one.
				k.PreviousValueHash, k.PreviousValuePrefix, k.PreviousValueUntil = old.PreviousValueHash, old.PreviousValuePrefix, old.PreviousValueUntil
			}
			if !sameJSON(old, &k) {
				tx.PutKey(k)
			}
			continue
		}
		derived := k.ID == ""
		if derived {
			k.ID = fileID(tx.State, "apiKey", k.Name, rnd)
		}
		k.CreatedDate = now.Unix()
		var generated string
		if k.ValueHash == "" {
			generated = NewKeyValue(rnd)
			k.ValueHash, k.ValuePrefix = HashKey(generated), generated[:4]
		}
		if bulk {
			added = append(added, newKey{&k, derived, generated})
			continue
		}
		if generated != "" {
			ch.GeneratedKeys[k.ID] = generated
		}
		tx.PutKey(k)
		ch.Created = append(ch.Created, fmt.Sprintf("API key %q (%s)", k.Name, k.ID))
	}
	if len(added) > 0 {
		tx.addKeys(added, rnd)
		for _, a := range added {
			if a.generated != "" {
				ch.GeneratedKeys[a.k.ID] = a.generated
			}
			ch.Created = append(ch.Created, fmt.Sprintf("API key %q (%s)", a.k.Name, a.k.ID))
		}
	}
	tx.validate(p)
	if err := p.err(); err != nil {
		return nil, err
	}
	tx.validated = true
	ch.Changed = !tx.Delta().Empty()
	return ch, nil
}

// bulkNewKeys turns addKeys on; tests turn it off to compare.
var bulkNewKeys = true

// newKey is a key of a file that is new to the catalog, gathered for
// addKeys.
type newKey struct {
	k *APIKey
	// derived: its id was derived from its name (fileID), not given.
	derived   bool
	generated string // the value generated for it, if any
}

// addKeys adds the new keys of a file to tx in one pass, sorted (see
// State.fillKeys): a file of a million keys is then a sort and a fill of
// each tree, not a million searches of growing trees.
//
// The ids were checked against the catalog (fileID) but not against each
// other: two keys whose derived ids collide, or a derived id equal to an
// id the file gives another key, leave one key with the id (the one
// whose id was given, else the first in the file) and give the others a
// random id, as fileID does for an id the catalog holds.
func (tx *Tx) addKeys(added []newKey, rnd io.Reader) {
	keys := make([]*APIKey, len(added))
	for i := range added {
		keys[i] = added[i].k
	}
	byID := func(a, b *APIKey) int { return strings.Compare(a.ID, b.ID) }
	slices.SortStableFunc(keys, byID)
	var moved bool
	for i := 0; i < len(keys); {
		j := i + 1
		for j < len(keys) && keys[j].ID == keys[i].ID {
			j++
		}
		if j-i > 1 {
			keep := i // the given id, else the first in the file
			for m := i; m < j; m++ {
				if !isDerived(added, keys[m]) {
					keep = m
					break
				}
			}
			for m := i; m < j; m++ {
				if m == keep {
					continue
				}
				for {
					id := newID(rnd)
					if tx.Plan(id) == nil && tx.Key(id) == nil && tx.API(id) == nil && !hasID(keys, id) {
						keys[m].ID = id
						break
					}
				}
				moved = true
			}
		}
		i = j
	}
	if moved {
		slices.SortFunc(keys, byID)
	}
	compactKeys(keys)
	var wg sync.WaitGroup
	tx.State.fillKeys(&wg, keys)
	wg.Wait()
	for _, k := range keys {
		tx.keys[k.ID] = true
	}
	tx.touched()
}

// compactKeys moves keys, new to the catalog, into memory of their own:
// the structs into arrays of a few hundred, each key's strings into one
// allocation (as a key read from the catalog database has them), its
// plan list into an array shared with its neighbours. Replaced in keys.
//
// The keys of a file are made among the file's own garbage (the parsed
// file, lookups, hashes) of the same sizes; left there, the pages they
// share with it stay in use after it is collected: a million-key start
// kept ~300 MB of such pages. Copied together once the garbage is made,
// they fill whole pages, and the pages of the garbage are given back.
// A key changed later is a new allocation; an array is freed with the
// last of its keys.
func compactKeys(keys []*APIKey) {
	const perArray = 256
	var arr []APIKey
	var plans []string
	for i, k := range keys {
		if len(arr) == 0 {
			arr = make([]APIKey, min(perArray, len(keys)-i))
			n := 0
			for _, k := range keys[i : i+len(arr)] {
				n += len(k.UsagePlans)
			}
			plans = make([]string, n)
		}
		c := &arr[0]
		arr = arr[1:]
		*c = *k
		var b strings.Builder
		b.Grow(len(k.ID) + len(k.Name) + len(k.Description) + len(k.CustomerID) + len(k.ValueHash) + len(k.ValuePrefix) + len(k.PreviousValueHash) + len(k.PreviousValuePrefix))
		fields := [...]*string{&c.ID, &c.Name, &c.Description, &c.CustomerID, &c.ValueHash, &c.ValuePrefix, &c.PreviousValueHash, &c.PreviousValuePrefix}
		for _, f := range fields {
			b.WriteString(*f)
		}
		all, at := b.String(), 0
		for _, f := range fields {
			n := len(*f)
			*f = all[at : at+n]
			at += n
		}
		if k.UsagePlans != nil {
			n := copy(plans, k.UsagePlans)
			c.UsagePlans, plans = plans[:n:n], plans[n:]
		}
		keys[i] = c
	}
}

// isDerived reports whether k's id was derived from its name.
func isDerived(added []newKey, k *APIKey) bool {
	for _, a := range added {
		if a.k == k {
			return a.derived
		}
	}
	return true
}

// hasID reports whether keys, sorted by id, hold id.
func hasID(keys []*APIKey, id string) bool {
	_, ok := slices.BinarySearchFunc(keys, id, func(k *APIKey, id string) int { return strings.Compare(k.ID, id) })
	return ok
}

// checkFileNames reports ids and names given twice in one file: merging
// by name or id would otherwise let the second silently win.
func checkFileNames(p *problems, src *Catalog) {
	unique(p, "apis", "APIs", src.APIs, "id", func(a API) (string, string) { return a.Name, a.ID })
	unique(p, "usagePlans", "plans", src.UsagePlans, "id", func(pl UsagePlan) (string, string) { return pl.Name, pl.ID })
	unique(p, "usagePlans", "plans", src.UsagePlans, "name", func(pl UsagePlan) (string, string) { return pl.Name, pl.Name })
	unique(p, "apiKeys", "keys", src.APIKeys, "id", func(k APIKey) (string, string) { return k.Name, k.ID })
	unique(p, "apiKeys", "keys", src.APIKeys, "name", func(k APIKey) (string, string) { return k.Name, k.Name })
}

// unique reports the entities of list whose field (as get returns it,
// with the entity's name) repeats an earlier one's.
func unique[T any](p *problems, kind, plural string, list []T, field string, get func(T) (name, value string)) {
	seen := make(map[string]bool, len(list))
	for i, e := range list {
		name, v := get(e)
		if v != "" && seen[v] {
			p.addAt(kind, i, name, field, "%q is used by two %s", v, plural)
		}
		seen[v] = true
	}
}

// Clone returns a deep copy.
func (c *Catalog) Clone() *Catalog {
	b, err := json.Marshal(c)
	if err != nil {
		panic("catalog: clone: " + err.Error()) // only plain data types: cannot fail
	}
	var out Catalog
	if err := json.Unmarshal(b, &out); err != nil {
		panic("catalog: clone: " + err.Error())
	}
	return &out
}

// Equal reports whether two catalogs hold the same content.
func (c *Catalog) Equal(o *Catalog) bool {
	a, _ := json.Marshal(c)
	b, _ := json.Marshal(o)
	return string(a) == string(b)
}

const idAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789"

// fileID returns the id of a plan or key that a file names without an id:
// derived from its kind and name, so that applying the same file to an
// empty catalog gives the same ids every time. A catalog that was lost and
// is rebuilt from its file thus finds its stored usage and quota counters
// again, which are kept by id. If the derived id is taken (an entity
// created through the admin API, or renamed there, holds it), the id is
// random, as the admin API's are.
func fileID(s *State, kind, name string, rnd io.Reader) string {
	id := randomString(&hashStream{seed: "tollgate " + kind + "\x00" + name}, 10, idAlphabet)
	if s.Plan(id) != nil || s.Key(id) != nil || s.API(id) != nil {
		return newID(rnd)
	}
	return id
}

// hashStream is an endless deterministic byte stream: SHA-256 of the
// seed and a block counter, block after block.
type hashStream struct {
	seed  string
	block uint64
	buf   []byte
}

func (h *hashStream) Read(p []byte) (int, error) {
	for n := 0; n < len(p); {
		if len(h.buf) == 0 {
			sum := sha256.Sum256(binary.BigEndian.AppendUint64([]byte(h.seed), h.block))
			h.block++
			h.buf = sum[:]
		}
		c := copy(p[n:], h.buf)
		h.buf, n = h.buf[c:], n+c
	}
	return len(p), nil
}

// newID returns a 10-character AWS-style id.
func newID(rnd io.Reader) string { return randomString(rnd, 10, idAlphabet) }

// NewID returns a 10-character AWS-style id from rnd (nil: crypto/rand).
func NewID(rnd io.Reader) string {
	if rnd == nil {
		rnd = rand.Reader
	}
	return newID(rnd)
}

// NewKeyValue returns a 40-character key value from rnd (nil:
// crypto/rand), the length AWS generates.
func NewKeyValue(rnd io.Reader) string {
	if rnd == nil {
		rnd = rand.Reader
	}
	return randomString(rnd, 40, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
}

// RandomString returns n characters of alphabet drawn uniformly from
// crypto/rand, for ids, key values and credentials.
func RandomString(n int, alphabet string) string { return randomString(rand.Reader, n, alphabet) }

func randomString(rnd io.Reader, n int, alphabet string) string {
	out := make([]byte, 0, n)
	var buf [64]byte
	// Rejection sampling keeps the distribution uniform. Reads ask for
	// about what n characters take (an id derived from a name is then
	// one SHA-256 block of its hashStream, not two).
	limit := 256 - 256%len(alphabet)
	chunk := buf[:min(len(buf), n+n/4+2)]
	for len(out) < n {
		if _, err := io.ReadFull(rnd, chunk); err != nil {
			panic("catalog: random source failed: " + err.Error()) // crypto/rand does not fail
		}
		for _, b := range chunk {
			if int(b) < limit && len(out) < n {
				out = append(out, alphabet[int(b)%len(alphabet)])
			}
		}
	}
	return string(out)
}

// Changer applies a change to a catalog: a Manager, or the report API's
// view of one.
type Changer interface {
	Change(ctx context.Context, f func(tx *Tx) error) (*State, error)
}

// applyAttempts is how many times ApplyFileTo applies a file whose
// change conflicted with another writer's.
const applyAttempts = 3

// ApplyFileTo applies f to the catalog c holds, as ApplyFile does, in one
// change; if another writer changed the catalog meanwhile (ErrConflict:
// two nodes applying a file at once, an admin call), it applies the file
// again to the catalog that now holds that change, up to three times.
// Applying a file is idempotent, so the retry is safe. onRetry, if set,
// is called with each conflict before the retry.
func ApplyFileTo(ctx context.Context, c Changer, f *File, now func() time.Time, onRetry func(error)) (*Changes, error) {
	var ch *Changes
	var err error
	for attempt := 1; ; attempt++ {
		_, err = c.Change(ctx, func(tx *Tx) error {
			var aerr error
			ch, aerr = ApplyFile(tx, f, now())
			return aerr
		})
		if !errors.Is(err, ErrConflict) || attempt == applyAttempts {
			break
		}
		if onRetry != nil {
			onRetry(err)
		}
	}
	if err != nil {
		return nil, err
	}
	return ch, nil
}
