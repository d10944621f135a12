package enforcer

import (
	"bufio"
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/schemas"
)

// recordAll feeds data to a new connection's recorder in the pieces cut
// at the given offsets, as reads would, and returns the block and whether
// it is complete.
func recordAll(data []byte, cuts ...int) (block []byte, complete bool) {
	c := &framingConn{recording: true}
	prev := 0
	for _, cut := range append(cuts, len(data)) {
		cut = min(max(cut, prev), len(data))
		if c.recording {
			c.record(data[prev:cut])
		}
		prev = cut
	}
	if c.buf == nil {
		return nil, false
	}
	return *c.buf, !c.recording && blockEnd(*c.buf, 0) == len(*c.buf)
}

// FuzzFraming checks the framing check against net/http's own parser: the
// recorded block is the header block net/http reads, however the reads
// cut it; a request's own block matches it; no block recorded from the
// middle of it does; and the check sees Content-Length and
// Transfer-Encoding exactly where net/http's header parser does.
func FuzzFraming(f *testing.F) {
	for _, s := range []string{
		"POST /prod/items HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n",
		"POST /prod/items HTTP/1.1\nHost: x\nTransfer-Encoding: chunked\nContent-Length: 4\n\n0\r\n\r\n",
		"POST /p HTTP/1.1\r\nHost: x\nX-A: POST /p HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\n\r\n",
		"POST /p HTTP/1.1\r\nHost: x\r\nX-Note: a\r\n Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
		"POST /p HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
		"GET /prod/health HTTP/1.1\r\nHost: x\r\nx-api-key: k\r\nX-Api-Key: k\r\n\r\n",
	} {
		f.Add([]byte(s), uint16(0), uint16(0))
	}
	f.Fuzz(func(t *testing.T, data []byte, cut1, cut2 uint16) {
		one, complete := recordAll(data)
		cut := []int{int(cut1) % (len(data) + 1), int(cut2) % (len(data) + 1)}
		if cut[0] > cut[1] {
			cut[0], cut[1] = cut[1], cut[0]
		}
		if pieces, pc := recordAll(data, cut...); !bytes.Equal(pieces, one) || pc != complete {
			t.Fatalf("recorded in pieces at %v: %q (complete %v), in one read: %q (complete %v)", cut, pieces, pc, one, complete)
		}
		br := bufio.NewReaderSize(bytes.NewReader(data), len(data)+16)
		r, err := http.ReadRequest(br)
		if err != nil {
			return // net/http refuses it; the gateway never sees it
		}
		if consumed := len(data) - br.Buffered(); !complete || len(one) != consumed {
			t.Fatalf("recorded block %q (complete %v); net/http read %d bytes of headers", one, complete, consumed)
		}
		// What net/http's header parser sees, before net/http removes
		// the framing fields.
		tp := textproto.NewReader(bufio.NewReader(bytes.NewReader(one)))
		tp.ReadLine()
		h, err := tp.ReadMIMEHeader()
		if err != nil {
			t.Fatalf("textproto refuses a block net/http read: %v", err)
		}
		if hosts := len(h["Host"]); r.ProtoAtLeast(1, 1) && hosts != 1 || hosts > 1 {
			return // net/http's server refuses these Host headers
		}
		f, ok := inspectBlock(one, r)
		if len(r.TransferEncoding) > 0 && len(h["Trailer"]) > 0 {
			if ok {
				t.Fatalf("chunked request announcing trailers passes: %q", one)
			}
			return // refused by design, see inspectBlock
		}
		if !ok {
			t.Fatalf("block %q is not its own request's: %s %s %s %v", one, r.Method, r.RequestURI, r.Proto, r.Header)
		}
		if f.contentLength != len(h["Content-Length"]) || f.transferEncoding != len(h["Transfer-Encoding"]) || f.host != len(h["Host"]) {
			t.Fatalf("counted %+v; net/http's parser: Content-Length %q, Transfer-Encoding %q, Host %q (%q)",
				f, h["Content-Length"], h["Transfer-Encoding"], h["Host"], one)
		}
		// A block recorded from inside a chunked request's own never
		// hides its Content-Length.
		if len(r.TransferEncoding) == 0 {
			return
		}
		step := 1
		if len(one) > 256 {
			step = len(one)/64 + 1
		}
		for k := 1; k < len(one); k += step {
			b, complete := recordAll(data[k:])
			if !complete {
				continue
			}
			if g, ok := inspectBlock(b, r); ok && (g.contentLength > 0) != (f.contentLength > 0) {
				t.Fatalf("block recorded from offset %d, %q, passes for the request %q", k, b, one)
			}
		}
	})
}

type answerAll struct{}

func (answerAll) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: 200, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{}, Body: http.NoBody, Request: r}, nil
}

type countEvents struct{ evs []schemas.UsageEvent }

func (c *countEvents) Offer(ev schemas.UsageEvent) bool { c.evs = append(c.evs, ev); return true }

// FuzzAPIKeyHeader checks the gateway's handling of x-api-key values:
// any number (split on NUL), empty, very long, any bytes. Two or more
// are 400; one is admitted exactly when it is the key's value; anything
// else is 403. Each request yields one event, carrying the key only when
// the key was found, and (the requests have no body) no answer closes the
// connection.
func FuzzAPIKeyHeader(f *testing.F) {
	const key = "bench-key-00000000000000000001"
	for _, s := range []string{key, "", key + "\x00" + key, "\x00", strings.Repeat("k", 200), key[:19], key + " ", "bench-key-0000000000000000000\xff", "\x00\x00" + key} {
		f.Add(s)
	}
	ev := &countEvents{}
	g, err := New(Config{Events: ev, Transport: answerAll{}}, testCatalog(f, benchYAML))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		ev.evs = ev.evs[:0]
		keys := strings.Split(raw, "\x00")
		r := httptest.NewRequest("GET", "http://127.0.0.1/prod/items", nil)
		r.Header[hAPIKey] = keys
		w := httptest.NewRecorder()
		g.ServeHTTP(w, r)
		g.FlushRejections() // rejections without a key are counted per minute
		want := 403
		switch {
		case len(keys) > 1:
			want = 400
		case keys[0] == key:
			want = 200
		}
		if w.Code != want {
			t.Fatalf("x-api-key %q: %d, want %d", keys, w.Code, want)
		}
		if w.Header().Get("Connection") == "close" {
			t.Errorf("a request without a body closed its connection (status %d)", w.Code)
		}
		if len(ev.evs) != 1 {
			t.Fatalf("%d events", len(ev.evs))
		}
		if e := ev.evs[0]; int(e.Status) != want || (e.KeyID != "") != (want == 200) || e.Requests() != 1 {
			t.Fatalf("event %+v for %q", e, keys)
		}
		// Only values of real keys are remembered as verified.
		n := 0
		g.table.Load().keys.byValue.each(func(e *keyEntry) bool {
			n++
			v, _ := e.recorded()
			return v == key
		})
		if n > 1 {
			t.Fatalf("%d verified key values after %q", n, keys)
		}
	})
}
