package benchkit

import (
	"bytes"
	"strings"
	"sync"
)

// maxLine bounds what is held of a line: output that runs past it
// without a "\n" is handed on as a line of its own there.
const maxLine = 1 << 20

// lineWriter splits what is written to it into lines for onLine, without
// their "\n" or "\r\n". It never blocks but in onLine: a child writing to
// it never waits on a full pipe.
type lineWriter struct {
	mu     sync.Mutex
	buf    []byte
	onLine func(string)
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.buf = append(w.buf, p...)
			if len(w.buf) >= maxLine {
				w.flush()
			}
			break
		}
		w.buf = append(w.buf, p[:i]...)
		w.flush()
		p = p[i+1:]
	}
	return n, nil
}

// end hands on a last line that ended without "\n".
func (w *lineWriter) end() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.flush()
	}
}

func (w *lineWriter) flush() {
	w.onLine(strings.TrimSuffix(string(w.buf), "\r"))
	w.buf = w.buf[:0]
}
