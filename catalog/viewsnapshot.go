package catalog

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/google/btree"
)

// A view snapshot is what a node keeps on disk to start serving without
// the log: the records in force, as entities, in a compact binary
// encoding that loads a million keys in a few seconds of CPU, most of
// it building the State's indexes (BenchmarkViewSnapshotFile).
//
// Only what the records hold is kept, already resolved: loading decodes
// and indexes, it does not validate or resolve again (the view did when
// it applied the records; a checksum guards the file). Keys, by far the
// most numerous, are plain fields in blocks that decode in parallel, and
// every index is listed in its own order, so that loading builds each
// B-tree by appending.
//
// Layout (integers are unsigned varints unless said otherwise, strings a
// length and bytes, JSON a string):
//
//	magic "TGVIEW\x00\x03"
//	gateway set (1 byte), gateway JSON
//	APIs: count, JSON each
//	webhooks: count, JSON each (not in version 1, which is still read)
//	plans as their records hold them, by id: count, JSON each
//	dropped memberships (see View): count, key id and plan id each
//	keys: count, block count, then blocks of:
//	  byte length, key count, plan reference count, keys by id:
//	  id, name, description, customer id, value hash, value prefix,
//	  enabled (1 byte), created and last updated (signed varints),
//	  tag count and tags (name, value), plan count and plans (index in
//	  the plans above)
//	key positions by name, by value hash; count and positions by
//	customer id (keys that have one)
//	rotations (not in versions 1 and 2, which are still read): count,
//	then for each key with one (APIKey.PreviousValueHash), by id: its
//	position, previous value hash, previous value prefix, and
//	previousValueUntil (signed varint). Apart from the keys' blocks,
//	since few keys have one.
//	CRC-32C of all the above (4 bytes, little-endian)

var (
	viewSnapshotMagic   = []byte("TGVIEW\x00\x03")
	viewSnapshotMagicV2 = []byte("TGVIEW\x00\x02")
	viewSnapshotMagicV1 = []byte("TGVIEW\x00\x01")
)

// keysPerBlock is the number of keys in a block: blocks are decoded in
// parallel.
const keysPerBlock = 1 << 14

// ViewSnapshot is a view frozen for writing: taking one is O(1) (the
// view's trees are shared copy-on-write), writing it is O(size) and may
// run while the view goes on.
type ViewSnapshot struct {
	st         *State
	gatewaySet bool
	plans      *btree.BTreeG[*UsagePlan]
	dropped    *btree.BTreeG[pair]
}

// Snapshot freezes the view for WriteTo.
func (v *View) Snapshot() *ViewSnapshot {
	v.settle()
	return &ViewSnapshot{st: v.st.clone(), gatewaySet: v.gatewaySet, plans: v.plans.Clone(), dropped: v.dropped.Clone()}
}

// NumKeys returns the number of keys in the snapshot.
func (s *ViewSnapshot) NumKeys() int { return s.st.NumKeys() }

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// snapWriter encodes a snapshot, checksumming what it writes.
type snapWriter struct {
	w   *bufio.Writer
	crc hash.Hash32
	n   int64
	buf []byte
	err error
}

func (w *snapWriter) write(b []byte) {
	if w.err != nil {
		return
	}
	w.crc.Write(b)
	var n int
	n, w.err = w.w.Write(b)
	w.n += int64(n)
}

func (w *snapWriter) uvarint(x uint64) { w.write(binary.AppendUvarint(w.buf[:0], x)) }

func (w *snapWriter) str(s string) {
	w.buf = binary.AppendUvarint(w.buf[:0], uint64(len(s)))
	w.buf = append(w.buf, s...)
	w.write(w.buf)
}

func (w *snapWriter) json(v any) {
	b, err := json.Marshal(v)
	if err != nil && w.err == nil {
		w.err = err
	}
	w.str(string(b))
}

// WriteTo writes the snapshot to w.
func (s *ViewSnapshot) WriteTo(out io.Writer) (int64, error) {
	w := &snapWriter{w: bufio.NewWriterSize(out, 1<<16), crc: crc32.New(crcTable)}
	w.write(viewSnapshotMagic)
	st := s.st
	if s.gatewaySet {
		w.write([]byte{1})
	} else {
		w.write([]byte{0})
	}
	w.json(st.gateway)
	w.uvarint(uint64(len(st.apis)))
	for i := range st.apis {
		w.json(&st.apis[i])
	}
	w.uvarint(uint64(len(st.webhooks)))
	for i := range st.webhooks {
		w.json(&st.webhooks[i])
	}
	// The plans: their records' versions; st holds them resolved, the
	// same ids.
	planIndex := make(map[string]int, s.plans.Len())
	w.uvarint(uint64(s.plans.Len()))
	s.plans.Ascend(func(p *UsagePlan) bool {
		planIndex[p.ID] = len(planIndex)
		w.json(p)
		return true
	})
	w.uvarint(uint64(s.dropped.Len()))
	s.dropped.Ascend(func(p pair) bool {
		w.str(p.v)
		w.str(p.id)
		return true
	})

	n := st.keys.Len()
	w.uvarint(uint64(n))
	w.uvarint(uint64((n + keysPerBlock - 1) / keysPerBlock))
	pos := make(map[string]int32, n)
	var body []byte
	count, refs := 0, 0
	flush := func() {
		w.uvarint(uint64(len(body)))
		w.uvarint(uint64(count))
		w.uvarint(uint64(refs))
		w.write(body)
		body, count, refs = body[:0], 0, 0
	}
	st.keys.Ascend(func(k *APIKey) bool {
		pos[k.ID] = int32(len(pos))
		for _, f := range [...]string{k.ID, k.Name, k.Description, k.CustomerID, k.ValueHash, k.ValuePrefix} {
			body = binary.AppendUvarint(body, uint64(len(f)))
			body = append(body, f...)
		}
		if k.Enabled {
			body = append(body, 1)
		} else {
			body = append(body, 0)
		}
		body = binary.AppendVarint(body, k.CreatedDate)
		body = binary.AppendVarint(body, k.LastUpdatedDate)
		body = binary.AppendUvarint(body, uint64(len(k.Tags)))
		for name, value := range k.Tags {
			body = binary.AppendUvarint(body, uint64(len(name)))
			body = append(body, name...)
			body = binary.AppendUvarint(body, uint64(len(value)))
			body = append(body, value...)
		}
		body = binary.AppendUvarint(body, uint64(len(k.UsagePlans)))
		for _, p := range k.UsagePlans {
			i, ok := planIndex[p]
			if !ok && w.err == nil {
				w.err = fmt.Errorf("view snapshot: key %s is in plan %s, which is not in the view", k.ID, p)
			}
			body = binary.AppendUvarint(body, uint64(i))
		}
		refs += len(k.UsagePlans)
		if count++; count == keysPerBlock {
			flush()
		}
		return w.err == nil
	})
	if count > 0 {
		flush()
	}
	positions := func(idx *btree.BTreeG[pair]) {
		idx.Ascend(func(p pair) bool {
			w.uvarint(uint64(pos[p.id]))
			return w.err == nil
		})
	}
	positions(st.keyNames)
	positions(st.keyHashes)
	w.uvarint(uint64(st.customers.Len()))
	positions(st.customers)
	var rotated []*APIKey
	st.prevHashes.Ascend(func(p pair) bool {
		rotated = append(rotated, st.Key(p.id))
		return true
	})
	slices.SortFunc(rotated, func(a, b *APIKey) int { return strings.Compare(a.ID, b.ID) })
	w.uvarint(uint64(len(rotated)))
	for _, k := range rotated {
		w.uvarint(uint64(pos[k.ID]))
		w.str(k.PreviousValueHash)
		w.str(k.PreviousValuePrefix)
		w.buf = binary.AppendVarint(w.buf[:0], k.PreviousValueUntil)
		w.write(w.buf)
	}

	if w.err == nil {
		var sum [4]byte
		binary.LittleEndian.PutUint32(sum[:], w.crc.Sum32())
		w.write(sum[:])
	}
	if w.err == nil {
		w.err = w.w.Flush()
	}
	return w.n, w.err
}

// ErrSnapshotFormat: the data is not a view snapshot this version reads
// (another format, a damaged file).
var ErrSnapshotFormat = errors.New("not a view snapshot of this version, or damaged")

// snapReader decodes a snapshot held in one string: the strings it
// returns share its memory, so that loading allocates one buffer for all
// the text of the catalog.
type snapReader struct {
	s   string
	i   int
	err error
}

func (r *snapReader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s at byte %d", ErrSnapshotFormat, what, r.i)
	}
}

func (r *snapReader) uvarint() uint64 {
	var x uint64
	for shift := uint(0); r.err == nil; shift += 7 {
		if r.i >= len(r.s) || shift > 63 {
			r.fail("bad varint")
			break
		}
		b := r.s[r.i]
		r.i++
		if b < 0x80 {
			return x | uint64(b)<<shift
		}
		x |= uint64(b&0x7f) << shift
	}
	return 0
}

func (r *snapReader) varint() int64 {
	u := r.uvarint()
	x := int64(u >> 1)
	if u&1 != 0 {
		x = ^x
	}
	return x
}

// count reads a count of items of at least min bytes each.
func (r *snapReader) count(min int) int {
	n := r.uvarint()
	if n > uint64(len(r.s)-r.i)/uint64(min) {
		r.fail("count past the end")
		return 0
	}
	return int(n)
}

func (r *snapReader) byte() byte {
	if r.err != nil || r.i >= len(r.s) {
		r.fail("truncated")
		return 0
	}
	r.i++
	return r.s[r.i-1]
}

func (r *snapReader) str() string {
	n := r.uvarint()
	if r.err != nil || n > uint64(len(r.s)-r.i) {
		r.fail("string past the end")
		return ""
	}
	s := r.s[r.i : r.i+int(n)]
	r.i += int(n)
	return s
}

func (r *snapReader) json(v any) {
	s := r.str()
	if r.err == nil {
		if err := json.Unmarshal([]byte(s), v); err != nil {
			r.fail(err.Error())
		}
	}
}

// ReadView loads a view from a snapshot that ViewSnapshot.WriteTo wrote,
// reading r to its end. A damaged snapshot, or one of another format, is
// an error that wraps ErrSnapshotFormat.
func ReadView(r io.Reader) (*View, error) {
	var b strings.Builder
	if f, ok := r.(*os.File); ok {
		if fi, err := f.Stat(); err == nil {
			if off, err := f.Seek(0, io.SeekCurrent); err == nil && fi.Size() > off {
				b.Grow(int(fi.Size() - off))
			}
		}
	}
	if _, err := io.Copy(&b, r); err != nil {
		return nil, fmt.Errorf("read view snapshot: %w", err)
	}
	return loadView(b.String())
}

func loadView(s string) (*View, error) {
	if len(s) < len(viewSnapshotMagic)+4 || !slices.ContainsFunc([][]byte{viewSnapshotMagic, viewSnapshotMagicV2, viewSnapshotMagicV1}, func(m []byte) bool { return s[:len(m)] == string(m) }) {
		return nil, fmt.Errorf("%w: no view snapshot header", ErrSnapshotFormat)
	}
	v1 := s[:len(viewSnapshotMagic)] == string(viewSnapshotMagicV1)
	v3 := s[:len(viewSnapshotMagic)] == string(viewSnapshotMagic)
	body := s[:len(s)-4]
	crc := crc32.New(crcTable)
	var chunk [1 << 16]byte
	for i := 0; i < len(body); i += len(chunk) {
		crc.Write(chunk[:copy(chunk[:], body[i:])])
	}
	if crc.Sum32() != binary.LittleEndian.Uint32([]byte(s[len(s)-4:])) {
		return nil, fmt.Errorf("%w: checksum mismatch", ErrSnapshotFormat)
	}
	r := &snapReader{s: body, i: len(viewSnapshotMagic)}
	v := newSettledView()
	st := v.st
	v.gatewaySet = r.byte() == 1
	r.json(&st.gateway)
	for range r.count(1) {
		var a API
		r.json(&a)
		st.apis = append(st.apis, a)
	}
	if !v1 {
		for range r.count(1) {
			var wh Webhook
			r.json(&wh)
			st.webhooks = append(st.webhooks, wh)
		}
	}
	var planIDs []string
	for range r.count(1) {
		p := new(UsagePlan)
		r.json(p)
		if r.err != nil {
			break
		}
		v.plans.ReplaceOrInsert(p)
		rp := resolvePlan(*p, st.API)
		st.putPlan(&rp)
		planIDs = append(planIDs, p.ID)
	}
	for range r.count(2) {
		k, p := r.str(), r.str()
		v.addDropped(k, p)
	}

	n := r.count(8)
	blocks := make([]snapBlock, r.count(3))
	keys := make([]APIKey, n)
	at := 0
	for i := range blocks {
		size := r.count(1)
		b := &blocks[i]
		b.count, b.refs = r.count(1), r.uvarint()
		b.first = at
		b.data = r.s[min(r.i, len(r.s)):min(r.i+size, len(r.s))]
		r.i += size
		at += b.count
	}
	if r.err == nil && at != n {
		r.fail("blocks do not hold the key count")
	}
	if r.err != nil {
		return nil, r.err
	}
	if err := decodeBlocks(blocks, keys, planIDs); err != nil {
		return nil, err
	}
	var o keyOrders
	positions := func(m int) []int32 {
		out := make([]int32, 0, min(m, len(r.s)-r.i))
		for range m {
			i := r.uvarint()
			if i >= uint64(n) {
				r.fail("key position out of range")
				return nil
			}
			out = append(out, int32(i))
		}
		return out
	}
	o.names = positions(n)
	o.hashes = positions(n)
	o.customers = positions(r.count(1))
	if v3 {
		for range r.count(4) {
			i := r.uvarint()
			if r.err == nil && i >= uint64(n) {
				r.fail("key position out of range")
			}
			hash, prefix, until := r.str(), r.str(), r.varint()
			if r.err != nil {
				break
			}
			k := &keys[i]
			k.PreviousValueHash, k.PreviousValuePrefix, k.PreviousValueUntil = hash, prefix, until
		}
	}
	if r.err == nil && r.i != len(r.s) {
		r.fail("trailing data")
	}
	if r.err != nil {
		return nil, r.err
	}
	ptrs := make([]*APIKey, n)
	for i := range keys {
		ptrs[i] = &keys[i]
	}
	st.loadKeys(ptrs, &o, planIDs)
	return v, nil
}

// snapBlock is a block of keys, decoded into keys[first:first+count].
type snapBlock struct {
	data         string
	first, count int
	refs         uint64
}

// decodeBlocks decodes the key blocks, on every core.
func decodeBlocks(blocks []snapBlock, keys []APIKey, planIDs []string) error {
	if err := onEveryCore(len(blocks), func(i int) error { return decodeBlock(&blocks[i], keys, planIDs) }); err != nil {
		return err
	}
	for _, b := range blocks[min(1, len(blocks)):] {
		if b.count > 0 && keys[b.first-1].ID >= keys[b.first].ID {
			return fmt.Errorf("%w: keys out of order", ErrSnapshotFormat)
		}
	}
	return nil
}

func decodeBlock(b *snapBlock, keys []APIKey, planIDs []string) error {
	r := &snapReader{s: b.data}
	if b.refs > uint64(len(b.data)) {
		return fmt.Errorf("%w: block of keys %d: plan references past the end", ErrSnapshotFormat, b.first)
	}
	refs := make([]string, b.refs)
	var prev string
	for i := range b.count {
		k := &keys[b.first+i]
		k.ID, k.Name, k.Description, k.CustomerID, k.ValueHash, k.ValuePrefix = r.str(), r.str(), r.str(), r.str(), r.str(), r.str()
		k.Enabled = r.byte() == 1
		k.CreatedDate, k.LastUpdatedDate = r.varint(), r.varint()
		if nt := r.count(2); nt > 0 {
			k.Tags = make(map[string]string, nt)
			for range nt {
				name := r.str()
				k.Tags[name] = r.str()
			}
		}
		np := r.count(1)
		if np > len(refs) {
			r.fail("plan references past the block's count")
			break
		}
		k.UsagePlans, refs = refs[:np:np], refs[np:]
		for j := range k.UsagePlans {
			p := r.uvarint()
			if p >= uint64(len(planIDs)) {
				r.fail("plan reference out of range")
				break
			}
			k.UsagePlans[j] = planIDs[p]
		}
		if r.err != nil {
			break
		}
		if i > 0 && k.ID <= prev {
			r.fail("keys out of order")
			break
		}
		prev = k.ID
	}
	if r.err == nil && r.i != len(r.s) {
		r.fail("trailing data in a block")
	}
	if r.err != nil {
		return fmt.Errorf("block of keys %d: %w", b.first, r.err)
	}
	return nil
}
