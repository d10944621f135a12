package catalog

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// auditChunk is how much of the log Recent reads at a time: some hundred
// lines of keys. A line longer than what is held is read in reads as
// large as what is held, so that a long line costs O(its length), not
// O(length² / chunk).
const auditChunk = 64 << 10

// Recent returns up to n entries of the log that match, newest first.
// It reads the log backwards from its end and never reads more than its
// last maxBytes bytes, so that what it costs is bounded whatever the
// log's size: the log grows with every change and an import writes a
// line per key, so Read's whole file is no way to show a key's last
// changes (a console's view of a key) in bounded time.
//
// complete is true when no older match can exist: Recent found n
// matches or reached the start of the file. It is false when it stopped
// at maxBytes (a line is read only if its start, and the newline before
// it, lie in the last maxBytes bytes; a longer line stops it too).
//
// contains, if not empty, is a cheap prefilter: a line whose bytes do
// not contain it is skipped without being decoded, nor checked. It is
// looked for in the JSON as written, so it must appear there verbatim in
// every line match accepts; for AuditMatchID(id), pass the id as
// json.Marshal writes it, quotes included (its escaping is the log's).
// A contains with a newline matches no line.
//
// match nil matches every entry; n < 1 asks for nothing; a missing log
// is (nil, true, nil). A last line without its newline is a write in
// progress (or torn by a crash) and is not read. A line that does not
// decode is an error naming its byte offset.
func (l *AuditLog) Recent(contains string, match func(*AuditEntry) bool, n int, maxBytes int64) (entries []AuditEntry, complete bool, err error) {
	return l.recent(contains, match, n, maxBytes, auditChunk)
}

// AuditMatchID matches the entries of the entity id (of whichever kind:
// an id is unique within its kind, and the ids tollgate makes are unique
// across kinds). Give Recent the id as json.Marshal writes it as
// contains, so that only the lines that name it are decoded.
func AuditMatchID(id string) func(*AuditEntry) bool {
	return func(e *AuditEntry) bool { return e.ID == id }
}

// recent is Recent reading chunk bytes at a time (the tests' lines span
// many chunks).
func (l *AuditLog) recent(contains string, match func(*AuditEntry) bool, n int, maxBytes int64, chunk int) ([]AuditEntry, bool, error) {
	if n < 1 || strings.Contains(contains, "\n") {
		return nil, true, nil
	}
	f, err := os.Open(l.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, true, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("audit log: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, false, fmt.Errorf("audit log: %w", err)
	}
	size := fi.Size()
	r := &backReader{f: f, lo: max(size-max(maxBytes, 0), 0), pos: size}
	r.buf = make([]byte, min(int64(chunk), size-r.lo))
	r.s, r.e = len(r.buf), len(r.buf)

	// Find the end of the last whole line; what follows it is being
	// written, and is not kept.
	for {
		ok, err := r.more(chunk)
		if err != nil {
			return nil, false, fmt.Errorf("audit log %s: %w", l.Path, err)
		}
		if !ok {
			// No newline in reach: no whole line at all if this is
			// the start of the file.
			return nil, r.pos == 0, nil
		}
		if i := bytes.LastIndexByte(r.buf[r.s:r.e], '\n'); i >= 0 {
			r.e = r.s + i
			break
		}
		r.e = r.s
	}

	// r.buf[r.s:r.e] now holds lines, newline-separated, that begin at
	// r.pos; the first is whole only if r.pos is the start of the file.
	sub := []byte(contains)
	var out []AuditEntry
	for {
		b := r.buf[r.s:r.e]
		start, end := 0, len(b) // the newest line that may match
		none := false           // no line but perhaps the first one
		if len(sub) == 0 {
			start = bytes.LastIndexByte(b, '\n') + 1
		} else if i := bytes.LastIndex(b, sub); i < 0 {
			none = true
		} else {
			start = bytes.LastIndexByte(b[:i], '\n') + 1
			if j := bytes.IndexByte(b[i+len(sub):], '\n'); j >= 0 {
				end = i + len(sub) + j
			}
		}
		if start == 0 && r.pos > 0 {
			// The first line may begin before what was read: keep it
			// alone (the lines after it are done with) and read on.
			if i := bytes.IndexByte(b, '\n'); i >= 0 {
				r.e = r.s + i
			}
			ok, err := r.more(max(chunk, r.e-r.s))
			if err != nil {
				return out, false, fmt.Errorf("audit log %s: %w", l.Path, err)
			}
			if !ok {
				return out, false, nil // at maxBytes
			}
			continue
		}
		if none {
			return out, true, nil // the first line of the file is whole and does not match
		}
		var e AuditEntry
		if err := json.Unmarshal(b[start:end], &e); err != nil {
			return out, false, fmt.Errorf("audit log %s: the line at byte %d: %w", l.Path, r.pos+int64(start), err)
		}
		if match == nil || match(&e) {
			out = append(out, e)
			if len(out) == n {
				return out, true, nil
			}
		}
		if start == 0 {
			return out, true, nil // the first line of the file
		}
		r.e = r.s + start - 1 // and its newline
	}
}

// backReader reads a file backwards, down to an offset.
type backReader struct {
	f  *os.File
	lo int64 // the lowest offset it reads
	// buf[s:e] is what is read and not yet done with, from offset pos.
	buf  []byte
	s, e int
	pos  int64
}

// more reads up to m bytes more, those before pos, keeping buf[s:e]; it
// returns false, reading nothing, at lo.
func (r *backReader) more(m int) (bool, error) {
	m = int(min(int64(m), r.pos-r.lo))
	if m == 0 {
		return false, nil
	}
	if r.s < m {
		// Move what is kept to the end of a buffer with room before
		// it: buf itself if it is large enough, else one twice the
		// size (never more than the window), so that growing for a
		// long line is amortised.
		live := r.e - r.s
		to := r.buf
		if len(to) < live+m {
			to = make([]byte, max(live+m, int(min(2*int64(len(r.buf)), r.pos-r.lo+int64(live)))))
		}
		copy(to[len(to)-live:], r.buf[r.s:r.e])
		r.buf, r.s, r.e = to, len(to)-live, len(to)
	}
	if _, err := r.f.ReadAt(r.buf[r.s-m:r.s], r.pos-int64(m)); err != nil {
		return false, fmt.Errorf("read at byte %d: %w", r.pos-int64(m), err)
	}
	r.s -= m
	r.pos -= int64(m)
	return true, nil
}
