package main

import (
	"fmt"
	"io"
	"os"
)

// progressTo returns where to draw a progress bar for output going to
// out: standard error, when out is a terminal; nil otherwise (pipes,
// files and tests get clean output).
func progressTo(out io.Writer) io.Writer {
	f, ok := out.(*os.File)
	if !ok {
		return nil
	}
	fi, err := f.Stat()
	if err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return nil
	}
	return os.Stderr
}

// progressReader reports on w how much of r has been read.
type progressReader struct {
	r     io.Reader
	w     io.Writer
	label string
	total int64 // 0 when unknown
	n     int64
	last  int64
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n += int64(n)
	if p.n-p.last >= 64<<10 || err == io.EOF {
		p.last = p.n
		if p.total > 0 {
			width := 30
			done := int(int64(width) * p.n / p.total)
			fmt.Fprintf(p.w, "\r%s [%-*s] %3d%%", p.label, width, repeat('#', done), 100*p.n/p.total)
		} else {
			fmt.Fprintf(p.w, "\r%s %d KiB", p.label, p.n>>10)
		}
		if err == io.EOF {
			fmt.Fprintln(p.w)
		}
	}
	return n, err
}

func repeat(c byte, n int) string {
	b := make([]byte, max(n, 0))
	for i := range b {
		b[i] = c
	}
	return string(b)
}
