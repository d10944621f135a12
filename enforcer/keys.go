package enforcer

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash/maphash"
	"math/bits"
	"sync"
	"sync/atomic"
	"unsafe"
)

// keyEntry is one key as the request path sees it. Entries are
// immutable once published, except stale and the recorded value: a
// change of the key publishes a new entry (sharing the counters of the
// plans it keeps) and marks the old one stale.
type keyEntry struct {
	// The fields a request reads come first, to share few cache lines.

	// stale is set once the entry was replaced or removed: whoever finds
	// it through a lookup that may lag (the verified-value table, a
	// lookup in flight) must look again.
	stale atomic.Bool
	// vlen is the length of the value recorded in val, 0 while none is
	// (valueBusy while one is being written). A value is recorded by the
	// first request whose SHA-256 matched the entry, so that later ones
	// find the entry in keySet.byValue and compare the value instead of
	// hashing it.
	vlen    atomic.Uint32
	val     [maxRecorded]byte
	enabled bool
	// expires is when the key stops (Unix ns, catalog.ExpiresAtTag); 0:
	// never. Compared with the request's time, so every enforcer stops it
	// at the same instant whatever moment the catalog reached it.
	expires int64
	plans   []binding // plans[:1] is one[:] for keys of one plan
	one     [1]binding
	id      [1]string // the key id, as the X-Tollgate-Key-Id header's value
	hash    [32]byte  // SHA-256 of the value
	// fp is the value's fingerprint (catalog.Fingerprint: the hash's
	// first 8 hex characters), for usage events. Bytes in the entry, not
	// a string: the entry stays within its 160-byte size class, and emit
	// takes a string of them without allocating (fingerprint).
	fp [8]byte
}

// binding is a key's membership of a plan: the plan's index in
// table.plans and the key's counters under the plan.
type binding struct {
	plan  int32
	state *keyPlanState
}

// maxRecorded is the longest value recorded in an entry: 40 characters,
// the length of the values AWS and tollgate generate. Longer values are
// valid but hashed on every request.
const maxRecorded = 40

const valueBusy = 1 << 31

func (e *keyEntry) keyID() string { return e.id[0] }

// setHash gives an unpublished entry its value's SHA-256 and fingerprint.
func (e *keyEntry) setHash(h [32]byte) {
	e.hash = h
	hex.Encode(e.fp[:], h[:len(e.fp)/2])
}

// fingerprint returns the value's fingerprint. The string shares the
// entry's bytes, which never change once the entry is built: an event
// that holds it keeps the entry alive, nothing more.
func (e *keyEntry) fingerprint() string { return unsafe.String(&e.fp[0], len(e.fp)) }

// hasValue reports whether v is the entry's recorded value.
func (e *keyEntry) hasValue(v string) bool {
	n := e.vlen.Load()
	return int(n) == len(v) && string(e.val[:n]) == v
}

// record writes v into the entry, unless a value was recorded already
// or is being recorded, or v is too long to record. Only a value whose
// SHA-256 is the entry's may be recorded.
func (e *keyEntry) record(v string) bool {
	if len(v) > maxRecorded || !e.vlen.CompareAndSwap(0, valueBusy) {
		return false
	}
	copy(e.val[:], v)
	e.vlen.Store(uint32(len(v)))
	return true
}

// recorded returns the recorded value, if there is one.
func (e *keyEntry) recorded() (string, bool) {
	n := e.vlen.Load()
	if n == 0 || n == valueBusy {
		return "", false
	}
	return string(e.val[:n]), true
}

// copyValue gives an unpublished entry the value recorded in old, if
// any, and returns it.
func (e *keyEntry) copyValue(old *keyEntry) (string, bool) {
	v, ok := old.recorded()
	if ok {
		copy(e.val[:], v)
		e.vlen.Store(uint32(len(v)))
	}
	return v, ok
}

// keySet indexes the entries of the keys three ways: by the SHA-256 of
// the value (the catalog's identity of a key value), by the value itself
// once a request has shown it (the verified-value cache: no hashing on
// later requests), and by key id (signals, quota updates, changes).
// Lookups take no lock; writers (changes, and requests recording a value
// in byValue) hold mu.
//
// A key in a rotation (catalog.APIKey.PreviousValueHash) has a second
// entry, for its previous value: in byHash and byValue like any other,
// never in byID (the key's entry there is the current value's), with the
// same id, plans and counters (the same keyPlanState pointers: either
// value takes the same tokens and quota), its own hash and fingerprint,
// and expires at the end of the grace (or the key's expiry if sooner).
// previous finds it by key id for the changes that replace or remove
// it.
type keySet struct {
	seed    maphash.Seed
	byHash  entryTable // first 8 bytes of the SHA-256 → entry
	byValue entryTable // maphash of the value → entry with that recorded value
	byID    entryTable // maphash of the id → entry
	// previous maps a key id to the entry of its previous value, for
	// keys in a rotation. Writers only, under mu.
	previous map[string]*keyEntry
	mu       sync.Mutex

	// unknown remembers values that matched no key, so that a client
	// repeating one (a revoked key, a misconfigured client, a flood of
	// one bad key) is refused without hashing it again: slot by the
	// value's maphash, a tag of a second, independent maphash (seed2) and
	// the keySet's generation, which every put moves on, so that a value
	// a change made a key is never refused from here. Fixed size, no
	// allocation; an attacker varying values only overwrites slots.
	seed2   maphash.Seed
	gen     atomic.Uint64
	unknown [unknownSlots]atomic.Uint64
}

// unknownSlots is the size of keySet.unknown (a power of two).
const unknownSlots = 1024

// unknownTag is the tag of a value in keySet.unknown: 48 bits of its
// second hash, 16 of the generation.
func unknownTag(h2, gen uint64) uint64 { return h2<<16 | gen&0xffff }

func newKeySet(n int) *keySet {
	ks := &keySet{seed: maphash.MakeSeed(), seed2: maphash.MakeSeed(), previous: map[string]*keyEntry{}}
	ks.byHash.init(n)
	ks.byValue.init(n)
	ks.byID.init(n)
	return ks
}

func hashPrefix(h *[32]byte) uint64 { return binary.LittleEndian.Uint64(h[:8]) }

// lookup finds the entry of a key value, or nil. Values outside the
// lengths of valid keys are refused without hashing. It allocates
// nothing.
func (ks *keySet) lookup(v string) *keyEntry {
	if len(v) < 20 || len(v) > 128 {
		return nil
	}
	h := maphash.String(ks.seed, v)
	if len(v) <= maxRecorded {
		e := ks.byValue.get(h, func(e *keyEntry) bool { return e.hasValue(v) })
		if e != nil && !e.stale.Load() {
			return e
		}
	}
	// The generation is read before the lookup: a put that ends after
	// this read makes what the lookup remembers stale, and one that
	// ended before it published its entries first (put).
	tag := unknownTag(maphash.String(ks.seed2, v), ks.gen.Load())
	slot := &ks.unknown[h&(unknownSlots-1)]
	if slot.Load() == tag {
		return nil
	}
	var buf [128]byte
	n := copy(buf[:], v)
	sum := sha256.Sum256(buf[:n])
	e := ks.byHash.get(hashPrefix(&sum), func(e *keyEntry) bool { return e.hash == sum })
	switch {
	case e == nil:
		slot.Store(tag)
	case len(v) <= maxRecorded:
		ks.remember(e, v, h)
	}
	return e
}

// remember records v, whose SHA-256 matched e, in e and in byValue, so
// that the next request with v compares it instead of hashing it. A
// request never waits for this: if a change (or another request) holds
// the lock, or the table is full, the next request tries again.
func (ks *keySet) remember(e *keyEntry, v string, h uint64) {
	if !e.hasValue(v) && !e.record(v) {
		return
	}
	if !ks.mu.TryLock() {
		return
	}
	// Under mu, a change either replaced e already (stale: its
	// successor records the value on its own first request) or will
	// find v in e and move it to the successor.
	if !e.stale.Load() {
		ks.byValue.put(h, e, func(x *keyEntry) bool { return x.hasValue(v) }, false)
	}
	ks.mu.Unlock()
}

// entry returns the entry of a key id, or nil.
func (ks *keySet) entry(id string) *keyEntry {
	return ks.byID.get(maphash.String(ks.seed, id), func(e *keyEntry) bool { return e.keyID() == id })
}

// put publishes e, the entry of a key's current value, and pe, that of
// its previous value (nil: no rotation), replacing old and oldPrev (the
// key's entries before, nil when absent; they may belong to another
// keySet, that of the table a full load replaces), and marks those
// stale. e and pe must not be published yet. The caller holds mu.
//
// A value may move between the two roles (a rotation makes the current
// value the previous one, a cancellation the other way round): the new
// entry of a value takes the old entry's slots, and the value it
// recorded.
func (ks *keySet) put(e, pe, old, oldPrev *keyEntry) {
	// After the entries are in: a lookup that read the generation
	// before this moved it remembers nothing that holds (see lookup).
	defer ks.gen.Add(1)
	olds := [2]*keyEntry{old, oldPrev}
	news := [2]*keyEntry{e, pe}
	// The old entry of the same value, if any.
	same := func(n *keyEntry) *keyEntry {
		for _, o := range olds {
			if o != nil && n != nil && o.hash == n.hash {
				return o
			}
		}
		return nil
	}
	// A value recorded in an old entry is the new one's too if the hash
	// stayed: give it to the new entry before anyone can see it
	// (requests record values in published entries).
	var values [2]string
	var recorded [2]bool
	for i, n := range news {
		if o := same(n); o != nil {
			values[i], recorded[i] = n.copyValue(o)
		}
	}
	ks.byID.put(maphash.String(ks.seed, e.keyID()), e, func(x *keyEntry) bool { return x == old }, true)
	for _, o := range olds {
		if o == nil || o.hash == e.hash || pe != nil && o.hash == pe.hash {
			continue
		}
		// A value the key no longer has.
		is := func(x *keyEntry) bool { return x == o }
		ks.byHash.del(hashPrefix(&o.hash), is)
		if ov, ok := o.recorded(); ok {
			ks.byValue.del(maphash.String(ks.seed, ov), is)
		}
	}
	for i, n := range news {
		if n == nil {
			continue
		}
		o := same(n)
		is := func(x *keyEntry) bool { return x == o }
		ks.byHash.put(hashPrefix(&n.hash), n, is, true)
		if recorded[i] {
			ks.byValue.put(maphash.String(ks.seed, values[i]), n, is, true)
		}
	}
	if pe != nil {
		ks.previous[e.keyID()] = pe
	} else {
		delete(ks.previous, e.keyID())
	}
	for _, o := range olds {
		if o != nil {
			o.stale.Store(true)
		}
	}
}

// previousOf returns the entry of a key's previous value, or nil. The
// caller holds mu, or Gateway.mu (every change of previous holds both).
func (ks *keySet) previousOf(id string) *keyEntry { return ks.previous[id] }

// remove unpublishes e, a key's entry, and that of its previous value if
// it has one, and marks them stale. The caller holds mu.
func (ks *keySet) remove(e *keyEntry) {
	for _, x := range [2]*keyEntry{e, ks.previous[e.keyID()]} {
		if x == nil {
			continue
		}
		eq := func(y *keyEntry) bool { return y == x }
		if x == e {
			ks.byID.del(maphash.String(ks.seed, e.keyID()), eq)
		}
		ks.byHash.del(hashPrefix(&x.hash), eq)
		if v, ok := x.recorded(); ok {
			ks.byValue.del(maphash.String(ks.seed, v), eq)
		}
		x.stale.Store(true)
	}
	delete(ks.previous, e.keyID())
}

// entryTable maps 64-bit hashes to entries: open addressing with linear
// probing in one array of slots, each an atomic pair of the hash and
// the entry. Readers take no lock and never wait: a writer changes one
// slot at a time (fills an empty slot, replaces an entry in place, or
// leaves a tombstone), and a reader sees each slot before or after.
// Every lookup checks the entry itself (the hash only filters), so a
// reader that sees a slot's hash and entry from two different writes
// at worst skips it. Writers are serialised by the caller. Growing (or
// sweeping tombstones) copies the table into a new array, swapped in
// atomically: O(n), once every time the table doubles, like a Go map.
type entryTable struct {
	arr  atomic.Pointer[slotArray]
	live int // entries (writers only)
	dead int // tombstones (writers only)
}

type slotArray struct{ s []tableSlot }

type tableSlot struct {
	h atomic.Uint64
	e atomic.Pointer[keyEntry]
}

// tombstone marks a slot whose entry was removed: lookups go on past
// it; it is reused by an insert.
var tombstone = new(keyEntry)

// The table holds at most maxLoad of its slots (live and tombstones), so
// that there is always an empty slot to end a lookup and probe runs stay
// short; it is built and rebuilt at buildLoad.
const (
	maxLoadNum, maxLoadDen     = 3, 4
	buildLoadNum, buildLoadDen = 3, 5
)

func (t *entryTable) init(n int) {
	t.arr.Store(&slotArray{s: make([]tableSlot, max(16, n*buildLoadDen/buildLoadNum+1))})
	t.live, t.dead = 0, 0
}

// home is the first slot of h's probe sequence: h scaled to the table's
// size (which need not be a power of two).
func home(h uint64, n int) int {
	hi, _ := bits.Mul64(h, uint64(n))
	return int(hi)
}

// get returns the first entry under h that eq accepts, or nil.
func (t *entryTable) get(h uint64, eq func(*keyEntry) bool) *keyEntry {
	s := t.arr.Load().s
	for i := home(h, len(s)); ; {
		sl := &s[i]
		e := sl.e.Load()
		if e == nil {
			return nil
		}
		if e != tombstone && sl.h.Load() == h && eq(e) {
			return e
		}
		if i++; i == len(s) {
			i = 0
		}
	}
}

// put replaces the entry under h that eq accepts with e, or adds e. When
// the table is full it grows if grow is set, and otherwise does nothing
// and returns false.
func (t *entryTable) put(h uint64, e *keyEntry, eq func(*keyEntry) bool, grow bool) bool {
	s := t.arr.Load().s
	free := -1
	i := home(h, len(s))
	for {
		sl := &s[i]
		x := sl.e.Load()
		if x == nil {
			break
		}
		if x == tombstone {
			if free < 0 {
				free = i
			}
		} else if sl.h.Load() == h && eq(x) {
			sl.e.Store(e)
			return true
		}
		if i++; i == len(s) {
			i = 0
		}
	}
	if free < 0 && (t.live+t.dead+1)*maxLoadDen > len(s)*maxLoadNum {
		if !grow {
			return false
		}
		// Room for half as many again before the next rebuild, so
		// that rebuilds cost O(1) per insert on average.
		t.rebuild(t.live*3/2 + 1)
		return t.put(h, e, eq, false)
	}
	if free >= 0 {
		i = free
		t.dead--
	}
	// The hash first: a reader that sees e sees its hash.
	s[i].h.Store(h)
	s[i].e.Store(e)
	t.live++
	return true
}

// del removes the entry under h that eq accepts; it reports whether
// there was one.
func (t *entryTable) del(h uint64, eq func(*keyEntry) bool) bool {
	s := t.arr.Load().s
	for i := home(h, len(s)); ; {
		sl := &s[i]
		x := sl.e.Load()
		if x == nil {
			return false
		}
		if x != tombstone && sl.h.Load() == h && eq(x) {
			sl.e.Store(tombstone)
			t.live--
			t.dead++
			if t.dead > t.live && t.dead > 64 {
				t.rebuild(t.live)
			}
			return true
		}
		if i++; i == len(s) {
			i = 0
		}
	}
}

// rebuild copies the live entries into a new array sized for n.
func (t *entryTable) rebuild(n int) {
	old := t.arr.Load().s
	s := make([]tableSlot, max(16, n*buildLoadDen/buildLoadNum+1))
	for j := range old {
		e := old[j].e.Load()
		if e == nil || e == tombstone {
			continue
		}
		h := old[j].h.Load()
		i := home(h, len(s))
		for s[i].e.Load() != nil {
			if i++; i == len(s) {
				i = 0
			}
		}
		s[i].h.Store(h)
		s[i].e.Store(e)
	}
	t.arr.Store(&slotArray{s: s})
	t.dead = 0
}

// each calls f for every entry until f returns false. Safe for readers.
func (t *entryTable) each(f func(*keyEntry) bool) {
	s := t.arr.Load().s
	for i := range s {
		if e := s[i].e.Load(); e != nil && e != tombstone && !f(e) {
			return
		}
	}
}
