package enforcer

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
)

// BenchmarkGatewayProxy is one admitted GET through the gateway over
// loopback, on each data plane in the same run: decision, event, the
// upstream exchange and both HTTP parsers. The client and the upstream
// are raw sockets that parse nothing they need not and allocate nothing,
// so allocs/op is the gateway's own (the events go to a discarding sink;
// the ingest queue's cost is BenchmarkDecide's). ns/op includes the
// client's and the upstream's syscalls.
func BenchmarkGatewayProxy(b *testing.B) {
	for _, plane := range []DataPlane{NetHTTP, FastHTTP} {
		b.Run(string(plane), func(b *testing.B) {
			benchGatewayProxy(b, plane, "GET /prod/items HTTP/1.1\r\nHost: gw\r\nx-api-key: bench-key-00000000000000000001\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n", 200)
		})
	}
}

// BenchmarkGatewayReject is one request refused with 403 (an unknown
// key) over loopback, on each data plane.
func BenchmarkGatewayReject(b *testing.B) {
	for _, plane := range []DataPlane{NetHTTP, FastHTTP} {
		b.Run(string(plane), func(b *testing.B) {
			benchGatewayProxy(b, plane, "GET /prod/items HTTP/1.1\r\nHost: gw\r\nx-api-key: unknown-key-000000000000000001\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n", 403)
		})
	}
}

func benchGatewayProxy(b *testing.B, plane DataPlane, request string, status int) {
	up, accepted := rawUpstream(b)
	gw, err := New(Config{}, testCatalog(b, strings.Replace(benchYAML, "http://127.0.0.1:1", "http://"+up, 1)))
	if err != nil {
		b.Fatal(err)
	}
	srv, err := NewGatewayServer(gw, plane, ServerConfig{})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Close() })
	want := []byte("HTTP/1.1 " + strconv.Itoa(status) + " ")
	b.ReportAllocs()
	b.SetParallelism(4)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		req := []byte(request)
		for pb.Next() {
			if _, err := c.Write(req); err != nil {
				b.Error(err)
				return
			}
			if err := readRawResponse(br, want); err != nil {
				b.Error(err)
				return
			}
		}
	})
	// Kept-alive upstream connections: a handful however many requests.
	b.ReportMetric(float64(accepted.Load()), "upstream-conns")
}

// readRawResponse reads one response with a Content-Length, checking its
// status line starts with want.
func readRawResponse(br *bufio.Reader, want []byte) error {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(line, want) {
		return errors.New("unexpected status line " + string(line))
	}
	n := 0
	for {
		line, err = br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) <= 2 {
			break
		}
		if len(line) > 16 && bytes.EqualFold(line[:15], []byte("content-length:")) {
			n, _ = strconv.Atoi(string(bytes.TrimSpace(line[15:])))
		}
	}
	_, err = br.Discard(n)
	return err
}

// rawUpstream answers every request (headers only, no body) with a small
// fixed response, allocating nothing per request.
func rawUpstream(b *testing.B) (string, *atomic.Int64) {
	var accepted atomic.Int64
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n{\"items\":[1,2]}\n")
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					for {
						line, err := br.ReadSlice('\n')
						if err != nil {
							return
						}
						if len(line) <= 2 {
							break
						}
					}
					if _, err := c.Write(resp); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String(), &accepted
}
