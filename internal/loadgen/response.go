package loadgen

import (
	"bufio"
	"bytes"
	"io"
	"math"
)

// malformedError is a response the parser cannot read. It is a string type
// so that the errors below are constants and returning one never allocates.
type malformedError string

func (e malformedError) Error() string { return "malformed response: " + string(e) }

const (
	errStatusLine    malformedError = "bad status line"
	errHeaderLine    malformedError = "bad header line"
	errTooManyLines  malformedError = "too many header lines"
	errLineTooLong   malformedError = "line longer than the read buffer"
	errContentLength malformedError = "bad or conflicting Content-Length"
	errChunk         malformedError = "bad chunk framing"
	errUpgrade       malformedError = "101 Switching Protocols is not supported"
)

// maxHeaderLines bounds the header lines of one response.
const maxHeaderLines = 256

// respHead is what the parser needs from a status line and headers.
type respHead struct {
	status        int
	http10        bool
	contentLength int64 // -1 when absent
	chunked       bool  // chunked is the final transfer coding
	untilClose    bool  // another transfer coding: the body runs to close
	connClose     bool
	connKeepAlive bool
}

// readResponse reads one whole response from br, skipping interim 1xx
// responses, and discards its body. head says the request was HEAD, whose
// response has no body whatever its headers say. closeConn reports that
// the connection cannot carry another request: the server said so, or the
// body ran to the close, or err is not nil. It allocates nothing.
func readResponse(br *bufio.Reader, head bool) (status int, closeConn bool, err error) {
	for {
		var h respHead
		if err := readHead(br, &h); err != nil {
			return 0, true, err
		}
		if h.status < 200 {
			if h.status == 101 {
				return h.status, true, errUpgrade
			}
			continue // an interim response; the final one follows
		}
		closeConn = h.connClose || (h.http10 && !h.connKeepAlive)
		switch {
		case head || h.status == 204 || h.status == 304:
		case h.chunked:
			err = readChunked(br)
		case h.untilClose || h.contentLength < 0:
			// No length: the body ends when the server closes.
			_, err = io.Copy(io.Discard, br)
			closeConn = true
		default:
			err = discard(br, h.contentLength)
		}
		if err != nil {
			closeConn = true
		}
		return h.status, closeConn, err
	}
}

// readHead parses a status line and the header lines up to the blank line.
func readHead(br *bufio.Reader, h *respHead) error {
	line, err := readLine(br)
	if err != nil {
		return err // io.EOF here means a clean close between responses
	}
	// HTTP/1.x SSS[ reason]
	if len(line) < 12 || string(line[:7]) != "HTTP/1." || line[8] != ' ' ||
		(len(line) > 12 && line[12] != ' ') {
		return errStatusLine
	}
	h.http10 = line[7] == '0'
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return errStatusLine
		}
		h.status = h.status*10 + int(c-'0')
	}
	if h.status < 100 {
		return errStatusLine
	}
	h.contentLength = -1
	for n := 0; ; n++ {
		line, end, err := headerLine(br, n)
		if err != nil || end {
			return err
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || line[0] == ' ' || line[0] == '\t' {
			return errHeaderLine
		}
		name, value := line[:colon], trimSpace(line[colon+1:])
		switch {
		case equalFold(name, "content-length"):
			n, ok := parseDecimal(value)
			if !ok || (h.contentLength >= 0 && h.contentLength != n) {
				return errContentLength
			}
			h.contentLength = n
		case equalFold(name, "transfer-encoding"):
			last := value
			if i := bytes.LastIndexByte(value, ','); i >= 0 {
				last = trimSpace(value[i+1:])
			}
			h.chunked = equalFold(last, "chunked")
			h.untilClose = !h.chunked && !equalFold(last, "identity")
		case equalFold(name, "connection"):
			for len(value) > 0 {
				tok := value
				if i := bytes.IndexByte(value, ','); i >= 0 {
					tok, value = value[:i], value[i+1:]
				} else {
					value = nil
				}
				tok = trimSpace(tok)
				h.connClose = h.connClose || equalFold(tok, "close")
				h.connKeepAlive = h.connKeepAlive || equalFold(tok, "keep-alive")
			}
		}
	}
}

// headerLine reads the line after the n first of a header (or trailer)
// section; end is true at the empty line that ends the section. A
// section holds at most maxHeaderLines lines.
func headerLine(br *bufio.Reader, n int) (line []byte, end bool, err error) {
	if n == maxHeaderLines {
		return nil, false, errTooManyLines
	}
	line, err = readLine(br)
	if err != nil {
		return nil, false, unexpectedEOF(err)
	}
	return line, len(line) == 0, nil
}

// readChunked discards a chunked body and its trailers.
func readChunked(br *bufio.Reader) error {
	for {
		line, err := readLine(br)
		if err != nil {
			return unexpectedEOF(err)
		}
		if i := bytes.IndexAny(line, "; \t"); i >= 0 {
			line = line[:i] // chunk extensions
		}
		size, ok := parseHex(line)
		if !ok {
			return errChunk
		}
		if size == 0 {
			for n := 0; ; n++ { // trailer section
				if _, end, err := headerLine(br, n); err != nil || end {
					return err
				}
			}
		}
		if err := discard(br, size); err != nil {
			return err
		}
		line, err = readLine(br)
		if err != nil {
			return unexpectedEOF(err)
		}
		if len(line) != 0 {
			return errChunk
		}
	}
}

// readLine returns the next line without its CRLF (or bare LF). The slice
// points into br's buffer and is valid until the next read.
func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		if err == bufio.ErrBufferFull {
			return nil, errLineTooLong
		}
		if err == io.EOF && len(line) > 0 {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

// discard skips n body bytes.
func discard(br *bufio.Reader, n int64) error {
	for n > 0 {
		step := int(min(n, math.MaxInt32))
		d, err := br.Discard(step)
		n -= int64(d)
		if err != nil {
			return unexpectedEOF(err)
		}
	}
	return nil
}

// unexpectedEOF turns io.EOF inside a response into io.ErrUnexpectedEOF.
func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// equalFold reports whether b equals lower, ignoring ASCII case; lower
// must be lower case.
func equalFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// parseDecimal parses a non-negative decimal of at most 18 digits.
func parseDecimal(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// parseHex parses a chunk size of at most 15 hex digits.
func parseHex(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 15 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, false
		}
		n = n<<4 | int64(d)
	}
	return n, true
}
