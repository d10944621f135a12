package catalog

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
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
			if !sameJSON(old, &k) {
				tx.PutKey(k)
			}
			continue
		}
		if k.ID == "" {
			k.ID = fileID(tx.State, "apiKey", k.Name, rnd)
		}
		k.CreatedDate = now.Unix()
		if k.ValueHash == "" {
			v := NewKeyValue(rnd)
			ch.GeneratedKeys[k.ID] = v
			k.ValueHash, k.ValuePrefix = HashKey(v), v[:4]
		}
		tx.PutKey(k)
		ch.Created = append(ch.Created, fmt.Sprintf("API key %q (%s)", k.Name, k.ID))
	}
	tx.validate(p)
	if err := p.err(); err != nil {
		return nil, err
	}
	tx.validated = true
	ch.Changed = !tx.Delta().Empty()
	return ch, nil
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
	// Rejection sampling keeps the distribution uniform.
	limit := 256 - 256%len(alphabet)
	for len(out) < n {
		if _, err := io.ReadFull(rnd, buf[:]); err != nil {
			panic("catalog: random source failed: " + err.Error()) // crypto/rand does not fail
		}
		for _, b := range buf {
			if int(b) < limit && len(out) < n {
				out = append(out, alphabet[int(b)%len(alphabet)])
			}
		}
	}
	return string(out)
}
