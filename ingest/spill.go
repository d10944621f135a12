package ingest

// A Spill keeps, on local disk, the batches the drainer could not hand to
// Kafka, until a replayer produces them, oldest first.
//
// Files in SpillConfig.Dir:
//
//	00000000000000000001.spill  segments, named by a zero-padded 20-digit
//	00000000000000000002.spill  sequence number: records are appended to
//	...                         the highest and read from the lowest
//	cursor                      "SEGMENT OFFSET\n" in decimal: where the
//	                            first unacknowledged record starts
//	lost.json                   drops not yet reported: a JSON array of
//	                            schemas.LostUsage
//
// A segment is a sequence of records, one per Append:
//
//	length   4 bytes, big-endian: payload bytes
//	crc      4 bytes, big-endian: CRC-32C (Castagnoli) of the payload
//	payload  uvarint event count (>= 1), then per event:
//	         uvarint n, n bytes of schemas.AppendUsageEvent
//
// Durability. Append writes its record with one write and one fsync, and
// Peek sees a record only once it is fsynced. A new segment's directory
// entry is fsynced before anything is written to it or points at it. The
// cursor and lost.json are replaced atomically (temporary file, fsync,
// rename, fsync of the directory). Ack writes the cursor before it deletes
// the segments the cursor has left, so a crash in between leaves files
// that OpenSpill deletes; a crash before the cursor write replays a batch
// twice, which is harmless (consumers drop duplicate event ids).
//
// Recovery. OpenSpill reads every record from the cursor on, checking
// lengths, CRCs and framing, to recount Len and Bytes. Only the last
// record of the last segment can be torn by a crash, since each earlier
// one was fsynced before the next was written. So a bad record there is
// cut off when it is evidently that last one: its header is short, its
// declared end is at or past the end of the file (a short payload, a bad
// CRC), or its header is all zeros (the file grew but the write never
// reached the disk). Any other bad record is an error naming the file and
// offset: replay stops rather than skip events silently. (A header zeroed
// by a disk fault in the middle of the last segment is, by this rule, taken
// for a torn tail: nothing tells the two apart.)
//
// Cap. MaxBytes bounds the segment files together, including the bytes
// already read in the oldest segment, because segments are deleted whole.
// If a record does not fit while the log is empty but its segment holds
// read bytes, Append starts a new segment first, so read bytes never keep
// new events out. A record that still does not fit keeps the oldest
// events of its batch that do; the others are dropped and tallied per
// key, plan, API and stage in lost.json, for reconciliation.
//
// Locking. appendMu serializes Append and the segment rolls it makes;
// readMu serializes Peek and Ack; cursorMu and lostMu serialize writes of
// the cursor and of lost.json. mu guards the state they share and is never
// held during I/O, so Append's fsync does not stall Peek, Ack or the
// metrics getters.

import (
	"bufio"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/tollgate/tollgate/internal/atomicfile"
	"github.com/tollgate/tollgate/internal/dirlock"
	"github.com/tollgate/tollgate/schemas"
)

const (
	spillSuffix     = ".spill"
	spillCursorName = "cursor"
	spillLostName   = "lost.json"

	recordHeaderBytes = 8
	// maxRecordPayload bounds one record: far above any batch the drainer
	// makes, low enough that a corrupt length cannot make a reader
	// allocate gigabytes.
	maxRecordPayload = 256 << 20
	// framePrefix is the room Append reserves before a record's events
	// for the header and the longest uvarint count.
	framePrefix = recordHeaderBytes + binary.MaxVarintLen64

	defaultSpillMaxBytes     = 1 << 30
	defaultSpillSegmentBytes = 64 << 20
)

var (
	castagnoli     = crc32.MakeTable(crc32.Castagnoli)
	errSpillClosed = errors.New("spill: closed")
)

// SpillConfig configures a Spill.
type SpillConfig struct {
	// Dir holds the segment files, the cursor and lost.json. Required;
	// created (0750) if missing. One Spill per directory: two processes
	// sharing one would corrupt it.
	Dir string
	// MaxBytes caps the segment files together, including the bytes
	// already read in the oldest segment (segments are deleted whole).
	// An Append that would pass it keeps what fits and drops the rest.
	// Default 1 GiB.
	MaxBytes int64
	// SegmentBytes is the size past which Append starts a new segment
	// file (a record is never split, so a segment may end beyond it).
	// Smaller segments give read bytes back to MaxBytes sooner. Default
	// 64 MiB, or MaxBytes if that is smaller; must not exceed MaxBytes.
	SegmentBytes int64
	// Node names this enforcer in LostUsage records. May be "".
	Node string
}

// Validate reports every problem with the configuration.
func (c *SpillConfig) Validate() error {
	var errs []error
	if c.Dir == "" {
		errs = append(errs, errors.New("spill: Dir is required"))
	}
	if c.MaxBytes < 0 {
		errs = append(errs, fmt.Errorf("spill: MaxBytes must not be negative, got %d", c.MaxBytes))
	}
	if c.SegmentBytes < 0 {
		errs = append(errs, fmt.Errorf("spill: SegmentBytes must not be negative, got %d", c.SegmentBytes))
	}
	if maxBytes, segBytes := c.sizes(); c.MaxBytes >= 0 && segBytes > maxBytes {
		errs = append(errs, fmt.Errorf("spill: SegmentBytes (%d) must not exceed MaxBytes (%d)", segBytes, maxBytes))
	}
	return errors.Join(errs...)
}

// sizes returns MaxBytes and SegmentBytes with defaults applied.
func (c *SpillConfig) sizes() (maxBytes, segBytes int64) {
	maxBytes, segBytes = c.MaxBytes, c.SegmentBytes
	if maxBytes == 0 {
		maxBytes = defaultSpillMaxBytes
	}
	if segBytes == 0 {
		segBytes = min(defaultSpillSegmentBytes, maxBytes)
	}
	return maxBytes, segBytes
}

// Spill is a capped, segmented log of usage-event batches on local disk:
// one goroutine appends batches Kafka could not take, another replays
// them in order with Peek and Ack. Every method is safe for concurrent
// use.
type Spill struct {
	lock *dirlock.Lock // the folder's LOCK: one enforcer per spill folder, or records would interleave
	cfg  SpillConfig

	appendMu sync.Mutex // serializes Append; guards the fields below
	w        *os.File   // the tail segment, open for writing
	buf      []byte     // framePrefix, then the batch's encoded events
	ends     []int      // ends[i]: bytes of events 0..i after framePrefix
	scratch  []byte     // one event's encoding

	readMu      sync.Mutex // serializes Peek and Ack; guards the fields below
	peeked      []schemas.UsageEvent
	peekedBytes int64    // size of the peeked record
	rf          *os.File // the segment Peek reads, rseq
	rseq        uint64
	rbuf        []byte

	cursorMu sync.Mutex // serializes writes of the cursor file
	lostMu   sync.Mutex // serializes writes of lost.json

	dropped  atomic.Uint64
	appended atomic.Uint64 // bytes Append wrote (Appended)

	mu       sync.Mutex // guards the fields below; never held during I/O
	segs     []segment  // segs[0] holds the cursor; the last is being written
	obsolete []segment  // read to the end; deleted once the cursor written is past them
	cur      spillPos   // the first unacknowledged record
	events   int64      // pending events
	pending  int64      // bytes of pending records
	files    int64      // bytes of every segment file, obsolete ones included
	lost     map[lostKey]*lostTally
	lostVer  uint64 // bumped by every change to lost
	lostSeen uint64 // lostVer of the last lost.json written or read
	closed   bool
	broken   error // set when a failed write could not be undone
}

type segment struct {
	seq  uint64
	size int64 // bytes fsynced and checked; the tail's grows
}

type spillPos struct {
	seq uint64
	off int64
}

type lostKey struct{ keyID, planID, apiID, stage string }

type lostTally struct{ count, admitted, from, to int64 }

// OpenSpill opens the log in cfg.Dir, creating it if needed, and recovers
// it after a crash: see the comment at the top of spill.go.
func OpenSpill(cfg SpillConfig) (*Spill, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.MaxBytes, cfg.SegmentBytes = cfg.sizes()
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("spill: create dir: %w", err)
	}
	lock, err := dirlock.Acquire(cfg.Dir, "LOCK")
	if err != nil {
		return nil, err
	}
	s := &Spill{
		cfg:  cfg,
		buf:  make([]byte, framePrefix, 64<<10),
		lost: make(map[lostKey]*lostTally),
		lock: lock,
	}
	if err := s.recover(); err != nil {
		if s.w != nil {
			s.w.Close()
		}
		lock.Release()
		return nil, err
	}
	return s, nil
}

func (s *Spill) recover() error {
	dir := s.cfg.Dir
	for _, name := range []string{spillCursorName, spillLostName} {
		// Leftovers of a write a crash interrupted.
		if err := os.Remove(filepath.Join(dir, name+".tmp")); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("spill: %w", err)
		}
	}
	if err := s.loadLost(); err != nil {
		return err
	}
	seqs, err := listSegments(dir)
	if err != nil {
		return err
	}
	cur, hasCursor, err := readCursor(dir)
	if err != nil {
		return err
	}
	if !hasCursor && len(seqs) > 0 {
		cur = spillPos{seq: seqs[0]}
	}
	// Segments before the cursor's were read to the end: a crash came
	// between the cursor write and their deletion.
	for len(seqs) > 0 && seqs[0] < cur.seq {
		if err := os.Remove(s.segPath(seqs[0])); err != nil {
			return fmt.Errorf("spill: delete read segment: %w", err)
		}
		seqs = seqs[1:]
	}
	if len(seqs) == 0 {
		// Nothing to replay. Number the new segment past anything the
		// cursor names, so no name is ever reused.
		seq := uint64(1)
		if hasCursor {
			seq = cur.seq + 1
		}
		f, err := createSegment(s.segPath(seq))
		if err != nil {
			return err
		}
		s.w = f
		s.segs = []segment{{seq: seq}}
		s.cur = spillPos{seq: seq}
		if hasCursor {
			return s.persistCursor()
		}
		return nil
	}
	if seqs[0] != cur.seq {
		return fmt.Errorf("spill: cursor names segment %s, which is missing; remove %s to replay from %s",
			s.segPath(cur.seq), filepath.Join(dir, spillCursorName), s.segPath(seqs[0]))
	}
	for i, seq := range seqs {
		last := i == len(seqs)-1
		start := int64(0)
		if i == 0 {
			start = cur.off
		}
		flag := os.O_RDONLY
		if last {
			flag = os.O_RDWR
		}
		path := s.segPath(seq)
		f, err := os.OpenFile(path, flag, 0)
		if err != nil {
			return fmt.Errorf("spill: %w", err)
		}
		size, events, pending, err := scanSegment(f, path, start, last)
		if last && err == nil {
			s.w = f
		} else {
			f.Close()
		}
		if err != nil {
			return err
		}
		s.segs = append(s.segs, segment{seq: seq, size: size})
		s.files += size
		s.events += events
		s.pending += pending
	}
	s.cur = cur
	if s.advance() {
		return s.persistCursor()
	}
	return nil
}

// scanSegment checks the records of f from start on and returns the
// file's size and the events and bytes of those records. In the last
// segment a torn tail is cut off; any other bad record is an error.
func scanSegment(f *os.File, path string, start int64, last bool) (size, events, pending int64, err error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, 0, 0, fmt.Errorf("spill: %w", err)
	}
	size = fi.Size()
	if start > size {
		return 0, 0, 0, fmt.Errorf("spill: %s: cursor offset %d is past the end (%d bytes)", path, start, size)
	}
	r := bufio.NewReaderSize(io.NewSectionReader(f, start, size-start), 1<<20)
	var buf []byte
	for off := start; off < size; {
		n, rerr := readRecord(r, size-off, &buf)
		var count int
		if rerr == nil {
			count, rerr = walkPayload(buf, nil)
		}
		if rerr != nil {
			if !last || !tornTail(f, off, n, size) {
				return 0, 0, 0, fmt.Errorf("spill: %s: bad record at offset %d: %w", path, off, rerr)
			}
			// A torn tail: the crash came before its fsync returned, so
			// Append never reported it kept.
			if err := f.Truncate(off); err != nil {
				return 0, 0, 0, fmt.Errorf("spill: cut torn tail: %w", err)
			}
			if err := f.Sync(); err != nil {
				return 0, 0, 0, fmt.Errorf("spill: cut torn tail: %w", err)
			}
			return off, events, pending, nil
		}
		off += n
		events += int64(count)
		pending += n
	}
	return size, events, pending, nil
}

// tornTail reports whether the bad record at off, of declared size n (-1:
// short header), can be the last write, cut short by a crash: it reaches
// the end of the file, or its header never reached the disk.
func tornTail(f *os.File, off, n, size int64) bool {
	if n < 0 || off+n >= size {
		return true
	}
	var h [recordHeaderBytes]byte
	if _, err := f.ReadAt(h[:], off); err != nil {
		return false
	}
	return h == [recordHeaderBytes]byte{}
}

// readRecord reads one record from r, which holds remaining bytes, into
// *buf (the payload) and checks its length and CRC. n is the record's
// size as its header declares it, or -1 when the header is short.
func readRecord(r io.Reader, remaining int64, buf *[]byte) (n int64, err error) {
	var h [recordHeaderBytes]byte
	if remaining < recordHeaderBytes {
		return -1, fmt.Errorf("short header: %d bytes", remaining)
	}
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return -1, fmt.Errorf("read header: %w", err)
	}
	length := int64(binary.BigEndian.Uint32(h[0:4]))
	n = recordHeaderBytes + length
	switch {
	case length == 0:
		return n, errors.New("empty record")
	case n > remaining:
		return n, fmt.Errorf("record of %d bytes runs past the end, %d bytes away", n, remaining)
	case length > maxRecordPayload:
		return n, fmt.Errorf("record of %d bytes is over the limit", n)
	}
	*buf = slices.Grow((*buf)[:0], int(length))[:length]
	if _, err := io.ReadFull(r, *buf); err != nil {
		return n, fmt.Errorf("read payload: %w", err)
	}
	if got, want := crc32.Checksum(*buf, castagnoli), binary.BigEndian.Uint32(h[4:8]); got != want {
		return n, fmt.Errorf("checksum %08x, header says %08x", got, want)
	}
	return n, nil
}

// walkPayload checks a record payload's framing, calls f (if not nil)
// with each event's bytes and returns the event count.
func walkPayload(p []byte, f func([]byte) error) (int, error) {
	count, m := binary.Uvarint(p)
	// Each event takes at least its length byte: this bounds count.
	if m <= 0 || count == 0 || count > uint64(len(p)) {
		return 0, errors.New("bad event count")
	}
	p = p[m:]
	for i := range int(count) {
		l, m := binary.Uvarint(p)
		if m <= 0 || l > uint64(len(p)-m) {
			return 0, fmt.Errorf("bad length of event %d", i)
		}
		if f != nil {
			if err := f(p[m : m+int(l)]); err != nil {
				return 0, fmt.Errorf("event %d: %w", i, err)
			}
		}
		p = p[m+int(l):]
	}
	if len(p) != 0 {
		return 0, fmt.Errorf("%d bytes after the last event", len(p))
	}
	return int(count), nil
}

// Append writes events as one record and fsyncs once: the caller batches.
// If the record would take the log past MaxBytes, it keeps the oldest
// events that fit and drops the others, which Dropped counts and Lost
// reports. kept is how many are in the log. On error nothing was written
// or counted, and the batch may be offered again.
func (s *Spill) Append(events []schemas.UsageEvent) (kept int, err error) {
	if len(events) == 0 {
		return 0, nil
	}
	s.appendMu.Lock()
	defer s.appendMu.Unlock()
	s.encode(events)
	n := len(events)
	if size := s.recordBytes(n); size-recordHeaderBytes > maxRecordPayload {
		return 0, fmt.Errorf("spill: batch of %d events takes %d bytes, over the record limit of %d", n, size, maxRecordPayload)
	}

	s.mu.Lock()
	if err := s.usable(); err != nil {
		s.mu.Unlock()
		return 0, err
	}
	tail := s.segs[len(s.segs)-1]
	roll := tail.size >= s.cfg.SegmentBytes ||
		tail.size > 0 && s.files+s.recordBytes(n) > s.cfg.MaxBytes && s.cur == spillPos{tail.seq, tail.size}
	s.mu.Unlock()
	if roll {
		if err := s.roll(); err != nil {
			return 0, err
		}
	}

	s.mu.Lock()
	avail := s.cfg.MaxBytes - s.files
	off := s.segs[len(s.segs)-1].size
	s.mu.Unlock()
	kept = s.fit(avail)
	var size int64
	if kept > 0 {
		rec := s.frame(kept)
		if err := s.write(rec, off); err != nil {
			return 0, err
		}
		size = int64(len(rec))
	}

	s.mu.Lock()
	s.segs[len(s.segs)-1].size += size
	s.files += size
	s.pending += size
	s.events += int64(kept)
	for i := kept; i < n; i++ {
		s.tally(&events[i])
	}
	if kept < n {
		s.lostVer++
	}
	s.mu.Unlock()
	s.appended.Add(uint64(size))
	if kept < n {
		s.dropped.Add(uint64(n - kept))
		// On failure the tallies stay in memory, marked unsaved: the next
		// drop, Reported or Close writes them again, and Close (or
		// Reported) returns the error if it persists.
		_ = s.persistLost()
	}
	return kept, nil
}

func (s *Spill) usable() error {
	if s.closed {
		return errSpillClosed
	}
	return s.broken
}

// encode puts events, each preceded by its length, in s.buf after
// framePrefix and records where each ends.
func (s *Spill) encode(events []schemas.UsageEvent) {
	s.buf = s.buf[:framePrefix]
	s.ends = s.ends[:0]
	for i := range events {
		s.scratch = schemas.AppendUsageEvent(s.scratch[:0], &events[i])
		s.buf = binary.AppendUvarint(s.buf, uint64(len(s.scratch)))
		s.buf = append(s.buf, s.scratch...)
		s.ends = append(s.ends, len(s.buf)-framePrefix)
	}
}

// recordBytes is the size of the record holding the first k >= 1 encoded
// events.
func (s *Spill) recordBytes(k int) int64 {
	return int64(recordHeaderBytes + uvarintLen(uint64(k)) + s.ends[k-1])
}

// fit returns how many of the encoded events, from the first, fit in one
// record of at most avail bytes.
func (s *Spill) fit(avail int64) int {
	lo, hi := 0, len(s.ends) // the answer is in [lo, hi]
	if s.recordBytes(hi) <= avail {
		return hi
	}
	for lo < hi {
		mid := int(uint(lo+hi+1) >> 1)
		if s.recordBytes(mid) <= avail {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo
}

// frame completes, in place, the record of the first k encoded events and
// returns it.
func (s *Spill) frame(k int) []byte {
	m := uvarintLen(uint64(k))
	start := framePrefix - m - recordHeaderBytes
	binary.PutUvarint(s.buf[framePrefix-m:], uint64(k))
	payload := s.buf[framePrefix-m : framePrefix+s.ends[k-1]]
	binary.BigEndian.PutUint32(s.buf[start:], uint32(len(payload)))
	binary.BigEndian.PutUint32(s.buf[start+4:], crc32.Checksum(payload, castagnoli))
	return s.buf[start : framePrefix+s.ends[k-1]]
}

func uvarintLen(v uint64) int {
	n := 1
	for ; v >= 0x80; v >>= 7 {
		n++
	}
	return n
}

// write appends rec to the tail segment at off and fsyncs it.
func (s *Spill) write(rec []byte, off int64) error {
	_, err := s.w.WriteAt(rec, off)
	if err == nil {
		err = s.w.Sync()
	}
	if err == nil {
		return nil
	}
	// Cut the failed record off: a record written after it would make it
	// look like corruption rather than a torn tail. If that fails too, the
	// segment cannot be trusted: refuse appends until a reopen recovers it.
	if terr := s.w.Truncate(off); terr != nil {
		s.mu.Lock()
		s.broken = fmt.Errorf("spill: %s unusable after a failed write: %w", s.w.Name(), terr)
		s.mu.Unlock()
	}
	return fmt.Errorf("spill: write record: %w", err)
}

// roll starts a new tail segment. The caller holds appendMu.
func (s *Spill) roll() error {
	s.mu.Lock()
	seq := s.segs[len(s.segs)-1].seq + 1
	s.mu.Unlock()
	f, err := createSegment(s.segPath(seq))
	if err != nil {
		return err
	}
	old := s.w
	s.w = f
	s.mu.Lock()
	s.segs = append(s.segs, segment{seq: seq})
	moved := s.advance()
	s.mu.Unlock()
	old.Close() // every write to it was fsynced
	if moved {
		// Best effort: until the cursor is written the old segment stays
		// on disk, counted against MaxBytes; the next Ack or OpenSpill
		// deletes it.
		_ = s.persistCursor()
	}
	return nil
}

// advance moves the cursor off the segments it has read to the end, the
// tail excepted, and reports whether it moved. The caller holds mu.
func (s *Spill) advance() bool {
	moved := false
	for len(s.segs) > 1 && s.cur.off == s.segs[0].size {
		s.obsolete = append(s.obsolete, s.segs[0])
		s.segs = s.segs[1:]
		s.cur = spillPos{seq: s.segs[0].seq}
		moved = true
	}
	return moved
}

// Peek returns the oldest batch not yet acknowledged, or nil, nil when the
// log is empty. It returns the same batch until Ack. A record that fails
// its checks is an error naming the file and offset, every time: Peek
// never skips events.
func (s *Spill) Peek() ([]schemas.UsageEvent, error) {
	s.readMu.Lock()
	defer s.readMu.Unlock()
	if s.peeked != nil {
		return s.peeked, nil
	}
	s.mu.Lock()
	closed := s.closed
	pos, end := s.cur, s.segs[0].size
	s.mu.Unlock()
	if closed {
		return nil, errSpillClosed
	}
	if pos.off >= end {
		return nil, nil
	}
	if s.rf == nil || s.rseq != pos.seq {
		f, err := os.Open(s.segPath(pos.seq))
		if err != nil {
			return nil, fmt.Errorf("spill: %w", err)
		}
		if s.rf != nil {
			s.rf.Close()
		}
		s.rf, s.rseq = f, pos.seq
	}
	n, err := readRecord(io.NewSectionReader(s.rf, pos.off, end-pos.off), end-pos.off, &s.rbuf)
	var events []schemas.UsageEvent
	if err == nil {
		// DecodeUsageEvent copies what the strings point into, so the
		// events outlive rbuf.
		_, err = walkPayload(s.rbuf, func(b []byte) error {
			events = append(events, schemas.UsageEvent{})
			return schemas.DecodeUsageEvent(b, &events[len(events)-1])
		})
	}
	if err != nil {
		return nil, fmt.Errorf("spill: %s: bad record at offset %d: %w", s.segPath(pos.seq), pos.off, err)
	}
	s.peeked, s.peekedBytes = events, n
	return events, nil
}

// Ack drops the batch Peek returned: it moves the cursor past it, writes
// the cursor and deletes the segment files read to the end. If writing
// the cursor fails the batch is still gone from this Spill, but may be
// replayed after a restart.
func (s *Spill) Ack() error {
	s.readMu.Lock()
	defer s.readMu.Unlock()
	if s.peeked == nil {
		return errors.New("spill: ack without a peeked batch")
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errSpillClosed
	}
	s.cur.off += s.peekedBytes
	s.events -= int64(len(s.peeked))
	s.pending -= s.peekedBytes
	s.advance()
	s.mu.Unlock()
	s.peeked, s.peekedBytes = nil, 0
	return s.persistCursor()
}

// persistCursor writes the cursor, then deletes the obsolete segments it
// has passed.
func (s *Spill) persistCursor() error {
	s.cursorMu.Lock()
	defer s.cursorMu.Unlock()
	s.mu.Lock()
	c := s.cur
	s.mu.Unlock()
	b := strconv.AppendUint(nil, c.seq, 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, c.off, 10)
	b = append(b, '\n')
	if err := writeFileAtomic(s.cfg.Dir, spillCursorName, b); err != nil {
		return fmt.Errorf("spill: write cursor: %w", err)
	}
	var errs []error
	for {
		s.mu.Lock()
		if len(s.obsolete) == 0 || s.obsolete[0].seq >= c.seq {
			s.mu.Unlock()
			break
		}
		g := s.obsolete[0]
		s.mu.Unlock()
		err := os.Remove(s.segPath(g.seq))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			// Left for the next cursor write, or for OpenSpill.
			errs = append(errs, fmt.Errorf("spill: delete read segment: %w", err))
			break
		}
		s.mu.Lock()
		s.obsolete = s.obsolete[1:]
		s.files -= g.size
		s.mu.Unlock()
	}
	return errors.Join(errs...)
}

// Len returns how many events are pending: appended, not acknowledged.
func (s *Spill) Len() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.events
}

// Bytes returns the size on disk of the pending records.
func (s *Spill) Bytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pending
}

// Appended returns the bytes Append wrote since OpenSpill.
func (s *Spill) Appended() uint64 { return s.appended.Load() }

// Dropped returns how many events Append dropped at the cap since
// OpenSpill. Lost is the persisted record of drops.
func (s *Spill) Dropped() uint64 { return s.dropped.Load() }

func (s *Spill) tally(e *schemas.UsageEvent) {
	k := lostKey{e.KeyID, e.PlanID, e.APIID, e.Stage}
	t := s.lost[k]
	if t == nil {
		t = &lostTally{from: e.Time, to: e.Time}
		s.lost[k] = t
	}
	t.count += e.Requests() // requests, not events: LostUsage.Count
	if e.Admitted() {
		t.admitted += e.Requests()
	}
	t.from = min(t.from, e.Time)
	t.to = max(t.to, e.Time)
}

// Lost returns the drops not yet reported, one entry per key, plan, API
// and stage, sorted by KeyID, then PlanID, APIID and Stage. After a
// partial Reported an entry's [From, To] still spans every drop it
// counted, reported or not: it may be wider than the drops it holds.
func (s *Spill) Lost() []schemas.LostUsage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lostList()
}

func (s *Spill) lostList() []schemas.LostUsage {
	if len(s.lost) == 0 {
		return nil
	}
	out := make([]schemas.LostUsage, 0, len(s.lost))
	for k, t := range s.lost {
		out = append(out, schemas.LostUsage{
			Type: schemas.EventTypeLostUsage, Node: s.cfg.Node,
			KeyID: k.keyID, PlanID: k.planID, APIID: k.apiID, Stage: k.stage,
			Count: t.count, Admitted: t.admitted, From: t.from, To: t.to,
		})
	}
	slices.SortFunc(out, func(a, b schemas.LostUsage) int {
		return cmp.Or(strings.Compare(a.KeyID, b.KeyID), strings.Compare(a.PlanID, b.PlanID),
			strings.Compare(a.APIID, b.APIID), strings.Compare(a.Stage, b.Stage))
	})
	return out
}

// Reported subtracts drops that were reported (produced to Kafka) from
// what Lost returns, and writes the remainder to lost.json. Entries are
// matched by key, plan, API and stage; Node, From and To are ignored.
func (s *Spill) Reported(done []schemas.LostUsage) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errSpillClosed
	}
	for i := range done {
		d := &done[i]
		k := lostKey{d.KeyID, d.PlanID, d.APIID, d.Stage}
		t := s.lost[k]
		if t == nil {
			continue
		}
		t.count -= d.Count
		t.admitted = min(max(t.admitted-d.Admitted, 0), t.count)
		if t.count <= 0 {
			delete(s.lost, k)
		}
	}
	s.lostVer++
	s.mu.Unlock()
	return s.persistLost()
}

// persistLost writes lost.json if the tallies changed since it was last
// written.
func (s *Spill) persistLost() error {
	s.lostMu.Lock()
	defer s.lostMu.Unlock()
	s.mu.Lock()
	ver := s.lostVer
	if ver == s.lostSeen {
		s.mu.Unlock()
		return nil
	}
	list := s.lostList()
	s.mu.Unlock()
	if list == nil {
		list = []schemas.LostUsage{}
	}
	b, err := json.Marshal(list)
	if err == nil {
		err = writeFileAtomic(s.cfg.Dir, spillLostName, append(b, '\n'))
	}
	if err != nil {
		return fmt.Errorf("spill: write %s: %w", spillLostName, err)
	}
	s.mu.Lock()
	s.lostSeen = ver
	s.mu.Unlock()
	return nil
}

func (s *Spill) loadLost() error {
	path := filepath.Join(s.cfg.Dir, spillLostName)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("spill: %w", err)
	}
	var raw []json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return fmt.Errorf("spill: read %s: %w", path, err)
	}
	for _, r := range raw {
		var l schemas.LostUsage
		if err := schemas.DecodeLostUsage(r, &l); err != nil {
			return fmt.Errorf("spill: read %s: %w", path, err)
		}
		k := lostKey{l.KeyID, l.PlanID, l.APIID, l.Stage}
		if t := s.lost[k]; t != nil {
			t.count += l.Count
			t.admitted += l.Admitted
			t.from, t.to = min(t.from, l.From), max(t.to, l.To)
		} else {
			s.lost[k] = &lostTally{count: l.Count, admitted: l.Admitted, from: l.From, to: l.To}
		}
	}
	return nil
}

// Close waits for a running Append, Peek or Ack, writes lost.json if it
// has unsaved changes and closes the files. Further calls fail, except
// Close, Len, Bytes, Dropped and Lost.
func (s *Spill) Close() error {
	s.appendMu.Lock()
	defer s.appendMu.Unlock()
	s.readMu.Lock()
	defer s.readMu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.peeked = nil
	errs := []error{s.persistLost()}
	if s.rf != nil {
		errs = append(errs, s.rf.Close())
	}
	if err := s.w.Close(); err != nil {
		errs = append(errs, fmt.Errorf("spill: close: %w", err))
	}
	errs = append(errs, s.lock.Release())
	return errors.Join(errs...)
}

func (s *Spill) segPath(seq uint64) string {
	return filepath.Join(s.cfg.Dir, fmt.Sprintf("%020d%s", seq, spillSuffix))
}

// listSegments returns the sequence numbers of the segment files in dir,
// ascending. Other files are ignored.
func listSegments(dir string) ([]uint64, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("spill: %w", err)
	}
	var seqs []uint64
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), spillSuffix)
		if !ok || len(name) != 20 || !e.Type().IsRegular() {
			continue
		}
		if seq, err := strconv.ParseUint(name, 10, 64); err == nil {
			seqs = append(seqs, seq)
		}
	}
	slices.Sort(seqs) // ReadDir sorts by name already; this does not rely on it
	return seqs, nil
}

func readCursor(dir string) (pos spillPos, ok bool, err error) {
	path := filepath.Join(dir, spillCursorName)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return spillPos{}, false, nil
	}
	if err != nil {
		return spillPos{}, false, fmt.Errorf("spill: %w", err)
	}
	f := strings.Fields(string(b))
	if len(f) == 2 {
		pos.seq, err = strconv.ParseUint(f[0], 10, 64)
		if err == nil {
			pos.off, err = strconv.ParseInt(f[1], 10, 64)
		}
		if err == nil && pos.off >= 0 {
			return pos, true, nil
		}
	}
	return spillPos{}, false, fmt.Errorf("spill: %s: want \"SEGMENT OFFSET\", got %q", path, b)
}

// createSegment creates an empty segment file and makes its name durable.
func createSegment(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return nil, fmt.Errorf("spill: create segment: %w", err)
	}
	if err := atomicfile.SyncDir(filepath.Dir(path)); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("spill: create segment: %w", err)
	}
	return f, nil
}

// writeFileAtomic replaces dir/name with b: a crash leaves the old
// content or the new, never a mix.
func writeFileAtomic(dir, name string, b []byte) error {
	return atomicfile.WriteFile(filepath.Join(dir, name), b)
}
