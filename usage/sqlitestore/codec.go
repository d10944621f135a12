package sqlitestore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/tollgate/tollgate/schemas"
)

// The events of one batch are stored as one BLOB in this layout (versions
// 1 and 2). uvarint is unsigned LEB128 and varint is zigzag then uvarint,
// both as encoding/binary writes them.
//
//	batch = version:byte(1 or 2)
//	        nstrings:uvarint { len:uvarint bytes }   the dictionary
//	        nevents:uvarint  { event }
//	event = id:16 bytes
//	        dtime:varint       Time - previous event's Time (0 before the first), wrapping
//	        api stage key plan method resource: uvarint each, an index into the dictionary
//	        status:varint decision:byte latency:varint bytesIn:varint bytesOut:varint
//	        count:uvarint      version 2 only: UsageEvent.Count (0 means one request)
//
// Version 2 came with UsageEvent.Count. A batch in which no event has a
// count is still written as version 1, byte for byte as before, so the
// per-request traffic pays nothing for it; a batch with an aggregated
// event (the enforcer's per-minute counts of rejected requests) is
// written as version 2. Both are read: stored batches of either stay
// readable, and a version 1 event decodes with Count 0.
//
// Why this shape: the strings of an event come from the enforcer's catalog,
// so a batch holds few distinct ones; each is written once and an event
// refers to it in one byte. Times of a batch are close (the drainer cuts a
// batch every few hundred milliseconds), so a delta takes 3-4 bytes where
// the absolute time takes 9. Deltas are signed because events arrive in the
// order requests end, not begin. A realistic event takes ~33 bytes, 16 of
// them its random id. The dictionary lists strings in order of first use,
// so equal batches encode to equal bytes.
const (
	batchVersion      = 1 // no event has a count
	batchVersionCount = 2 // events end with their count
)

// minEventLen is the fewest bytes an encoded event takes: its id and one
// byte for each of the other twelve fields (thirteen in version 2). The decoder checks the event
// count against it before allocating.
const minEventLen = len(schemas.EventID{}) + 12

// numStrings is the number of string fields of an event.
const numStrings = 6

// eventRefs holds an event's string fields as dictionary indexes, in the
// order of the layout: api, stage, key, plan, method, resource.
type eventRefs [numStrings]uint32

// batchEncoder encodes batches, reusing its buffers from one to the next.
// Besides the bytes it keeps each event's dictionary indexes (refs) and the
// dictionary (strs) until the next encode, so that the rollups can group
// events by small integers instead of hashing their strings again.
type batchEncoder struct {
	index map[string]uint32
	strs  []string
	refs  []eventRefs
}

// encodeBatch appends the encoding of events to dst.
func encodeBatch(dst []byte, events []schemas.UsageEvent) []byte {
	var enc batchEncoder
	return enc.encode(dst, events)
}

// encode appends the encoding of events to dst.
func (enc *batchEncoder) encode(dst []byte, events []schemas.UsageEvent) []byte {
	enc.reset()
	if enc.index == nil {
		enc.index = make(map[string]uint32)
	}
	enc.refs = slices.Grow(enc.refs, len(events))[:len(events)]
	var last [numStrings]string
	for i := range events {
		e := &events[i]
		fields := [numStrings]string{e.APIID, e.Stage, e.KeyID, e.PlanID, e.Method, e.Resource}
		r := &enc.refs[i]
		for f, s := range fields {
			// Most fields repeat the previous event's: comparing strings
			// (the same catalog string is pointer-equal, a few ns) saves
			// the map lookup.
			if i > 0 && s == last[f] {
				r[f] = enc.refs[i-1][f]
				continue
			}
			r[f] = enc.intern(s)
		}
		last = fields
	}

	version := byte(batchVersion)
	for i := range events {
		if events[i].Count != 0 {
			version = batchVersionCount
			break
		}
	}
	dst = append(dst, version)
	dst = binary.AppendUvarint(dst, uint64(len(enc.strs)))
	for _, s := range enc.strs {
		dst = binary.AppendUvarint(dst, uint64(len(s)))
		dst = append(dst, s...)
	}
	dst = binary.AppendUvarint(dst, uint64(len(events)))
	var prev int64
	for i := range events {
		e := &events[i]
		dst = append(dst, e.ID[:]...)
		dst = binary.AppendVarint(dst, e.Time-prev) // wraps, and so does the decoder's sum
		prev = e.Time
		for _, r := range enc.refs[i] {
			dst = binary.AppendUvarint(dst, uint64(r))
		}
		dst = binary.AppendVarint(dst, int64(e.Status))
		dst = append(dst, byte(e.Decision))
		dst = binary.AppendVarint(dst, e.LatencyMicros)
		dst = binary.AppendVarint(dst, e.BytesIn)
		dst = binary.AppendVarint(dst, e.BytesOut)
		if version == batchVersionCount {
			dst = binary.AppendUvarint(dst, uint64(e.Count))
		}
	}
	return dst
}

// intern returns s's dictionary index, adding it if new.
func (enc *batchEncoder) intern(s string) uint32 {
	if i, ok := enc.index[s]; ok {
		return i
	}
	i := uint32(len(enc.strs))
	enc.index[s] = i
	enc.strs = append(enc.strs, s)
	return i
}

// reset empties the dictionary, dropping the references to the last
// batch's strings.
func (enc *batchEncoder) reset() {
	clear(enc.index)
	clear(enc.strs)
	enc.strs = enc.strs[:0]
	enc.refs = enc.refs[:0]
}

// errCorruptBatch is wrapped by every decoding error.
var errCorruptBatch = errors.New("corrupt event batch")

// decodeBatch decodes an encoded batch. It returns an error, never panics,
// for any input that encodeBatch cannot have produced: an unknown version,
// a truncated field, a varint longer than 64 bits, a status or count
// outside its 32 bits,
// a dictionary index out of range, or bytes after the last event. It
// allocates in proportion to len(b), whatever the counts in b claim.
func decodeBatch(b []byte) ([]schemas.UsageEvent, error) {
	return appendDecoded(nil, b)
}

// appendDecoded appends the events decoded from b to dst. On error it
// returns dst unchanged.
func appendDecoded(dst []schemas.UsageEvent, b []byte) ([]schemas.UsageEvent, error) {
	d := decoder{b: b}
	if len(b) == 0 {
		return dst, fmt.Errorf("%w: empty", errCorruptBatch)
	}
	version := d.byte()
	if version != batchVersion && version != batchVersionCount {
		return dst, fmt.Errorf("%w: unknown version %d", errCorruptBatch, version)
	}

	nstr := d.uvarint()
	if nstr > uint64(d.remaining()) { // each string takes at least its length byte
		return dst, d.fail("dictionary of %d strings in %d bytes", nstr, d.remaining())
	}
	strs := make([]string, nstr)
	for i := range strs {
		n := d.uvarint()
		if n > uint64(d.remaining()) {
			return dst, d.fail("string of %d bytes in %d", n, d.remaining())
		}
		strs[i] = string(d.b[d.off : d.off+int(n)])
		d.off += int(n)
	}

	nev := d.uvarint()
	if d.err != nil {
		return dst, d.err
	}
	if nev > uint64(d.remaining()/minEventLen) {
		return dst, d.fail("%d events in %d bytes", nev, d.remaining())
	}
	out := slices.Grow(dst, int(nev))
	var t int64
	for range nev {
		var e schemas.UsageEvent
		if d.remaining() < len(e.ID) {
			return dst, d.fail("truncated id")
		}
		copy(e.ID[:], d.b[d.off:])
		d.off += len(e.ID)
		t += d.varint()
		e.Time = t
		e.APIID = d.str(strs)
		e.Stage = d.str(strs)
		e.KeyID = d.str(strs)
		e.PlanID = d.str(strs)
		e.Method = d.str(strs)
		e.Resource = d.str(strs)
		status := d.varint()
		if status < math.MinInt32 || status > math.MaxInt32 {
			d.fail("status %d out of range", status)
		}
		e.Status = int32(status)
		e.Decision = schemas.Decision(d.byte())
		e.LatencyMicros = d.varint()
		e.BytesIn = d.varint()
		e.BytesOut = d.varint()
		if version == batchVersionCount {
			count := d.uvarint()
			if count > math.MaxUint32 {
				d.fail("count %d out of range", count)
			}
			e.Count = uint32(count)
		}
		if d.err != nil {
			return dst, d.err
		}
		out = append(out, e)
	}
	if d.remaining() != 0 {
		return dst, d.fail("%d bytes after the last event", d.remaining())
	}
	return out, nil
}

// decoder reads the fields of an encoded batch. The first failure is kept
// in err; after it, reads return zero values and do not advance.
type decoder struct {
	b   []byte
	off int
	err error
}

func (d *decoder) remaining() int { return len(d.b) - d.off }

// fail records the first failure, with the offset it happened at.
func (d *decoder) fail(format string, args ...any) error {
	if d.err == nil {
		d.err = fmt.Errorf("%w: at byte %d: %s", errCorruptBatch, d.off, fmt.Sprintf(format, args...))
	}
	return d.err
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if d.off >= len(d.b) {
		d.fail("truncated")
		return 0
	}
	c := d.b[d.off]
	d.off++
	return c
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.off:])
	if n <= 0 {
		if n == 0 {
			d.fail("truncated varint")
		} else {
			d.fail("varint overflows 64 bits")
		}
		return 0
	}
	d.off += n
	return v
}

func (d *decoder) varint() int64 {
	u := d.uvarint()
	return int64(u>>1) ^ -int64(u&1) // zigzag, as binary.Varint
}

// str reads a dictionary index and returns its string.
func (d *decoder) str(strs []string) string {
	i := d.uvarint()
	if i >= uint64(len(strs)) {
		if d.err == nil {
			d.fail("string index %d of %d", i, len(strs))
		}
		return ""
	}
	return strs[i]
}
