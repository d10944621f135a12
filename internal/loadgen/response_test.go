package loadgen

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestReadResponse(t *testing.T) {
	tests := []struct {
		name      string
		raw       string
		head      bool
		wantCode  int
		wantClose bool
		wantErr   error // nil, or the error errors.Is must match
		rest      string
	}{
		{
			name:     "content length",
			raw:      "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\nhello",
			wantCode: 200,
		},
		{
			name:     "no reason phrase, bare LF, mixed-case header",
			raw:      "HTTP/1.1 403\ncontent-LENGTH:  2 \n\n{}",
			wantCode: 403,
		},
		{
			name:     "chunked with extension and trailers",
			raw:      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n",
			wantCode: 200,
		},
		{
			name:     "chunked wins over content length",
			raw:      "HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
			wantCode: 200,
		},
		{
			name:     "interim 100 continue skipped",
			raw:      "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
			wantCode: 201,
		},
		{
			name:     "204 has no body",
			raw:      "HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n",
			wantCode: 204,
		},
		{
			name:     "HEAD has no body",
			raw:      "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",
			head:     true,
			wantCode: 200,
		},
		{
			name:      "connection close",
			raw:       "HTTP/1.1 503 Service Unavailable\r\nConnection: keep-alive, Close\r\nContent-Length: 1\r\n\r\nx",
			wantCode:  503,
			wantClose: true,
		},
		{
			name:      "HTTP/1.0 closes by default",
			raw:       "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx",
			wantCode:  200,
			wantClose: true,
		},
		{
			name:     "HTTP/1.0 keep-alive",
			raw:      "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx",
			wantCode: 200,
		},
		{
			name:      "no length reads to close",
			raw:       "HTTP/1.1 200 OK\r\n\r\nthe body runs to the end",
			wantCode:  200,
			wantClose: true,
		},
		{
			name:      "clean close before response",
			raw:       "",
			wantClose: true,
			wantErr:   io.EOF,
		},
		{
			name:      "close inside headers",
			raw:       "HTTP/1.1 200 OK\r\nContent-Le",
			wantClose: true,
			wantErr:   io.ErrUnexpectedEOF,
		},
		{
			name:      "short body",
			raw:       "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
			wantCode:  200,
			wantClose: true,
			wantErr:   io.ErrUnexpectedEOF,
		},
		{
			name:      "bad status line",
			raw:       "HTTP/2 200 OK\r\n\r\n",
			wantClose: true,
			wantErr:   errStatusLine,
		},
		{
			name:      "conflicting content length",
			raw:       "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx",
			wantClose: true,
			wantErr:   errContentLength,
		},
		{
			name:      "bad chunk size",
			raw:       "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
			wantCode:  200,
			wantClose: true,
			wantErr:   errChunk,
		},
		{
			name:      "missing CRLF after chunk",
			raw:       "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n0\r\n\r\n",
			wantCode:  200,
			wantClose: true,
			wantErr:   errChunk,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const next = "HTTP/1.1 299 Next\r\nContent-Length: 0\r\n\r\n"
			raw := tt.raw
			if tt.wantErr == nil && !tt.wantClose {
				raw += next // a following response proves the body was consumed exactly
			}
			br := bufio.NewReader(strings.NewReader(raw))
			code, closeConn, err := readResponse(br, tt.head)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err == nil && code != tt.wantCode {
				t.Errorf("status = %d, want %d", code, tt.wantCode)
			}
			if closeConn != tt.wantClose {
				t.Errorf("closeConn = %v, want %v", closeConn, tt.wantClose)
			}
			if tt.wantErr == nil && !tt.wantClose {
				code, _, err := readResponse(br, false)
				if err != nil || code != 299 {
					t.Errorf("next response: status %d, err %v; want 299 (body not consumed exactly)", code, err)
				}
			}
		})
	}
}

// repeatReader serves the same bytes forever.
type repeatReader struct {
	data []byte
	off  int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.data[r.off:])
		n += c
		r.off = (r.off + c) % len(r.data)
	}
	return n, nil
}

func TestReadResponseDoesNotAllocate(t *testing.T) {
	for _, raw := range []string{
		"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n{\"message\":\"ok\"}\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
	} {
		br := bufio.NewReaderSize(&repeatReader{data: []byte(raw)}, readBufferSize)
		n := testing.AllocsPerRun(1000, func() {
			if _, _, err := readResponse(br, false); err != nil {
				t.Fatal(err)
			}
		})
		if n != 0 {
			t.Errorf("readResponse allocates %v times per response, want 0", n)
		}
	}
}

func BenchmarkReadResponse(b *testing.B) {
	raw := "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\nContent-Length: 100\r\n\r\n" + strings.Repeat("x", 100)
	br := bufio.NewReaderSize(&repeatReader{data: []byte(raw)}, readBufferSize)
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if _, _, err := readResponse(br, false); err != nil {
			b.Fatal(err)
		}
	}
}
