package reportapi

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// MaxConns bounds the connections the admin listener holds open at once
// (WrapListener). Each costs a caller nothing to open and the server a
// file descriptor, a goroutine and about 14 KiB of heap until a timeout
// ends it; without a bound, callers who never authenticate could use up
// the process's file descriptors, which the gateway's listener shares.
// Past it, new connections wait in the kernel's accept queue.
const MaxConns = 1024

// WrapListener makes ln hold at most MaxConns connections open at once:
// past them, Accept waits until one closes. Serve the admin API on it.
func WrapListener(ln net.Listener) net.Listener { return limitListener(ln, MaxConns) }

func limitListener(ln net.Listener, n int) net.Listener {
	return &limitedListener{Listener: ln, open: make(chan struct{}, n), closed: make(chan struct{})}
}

type limitedListener struct {
	net.Listener
	open      chan struct{} // a token per open connection
	closed    chan struct{}
	closeOnce sync.Once
}

func (l *limitedListener) Accept() (net.Conn, error) {
	select {
	case l.open <- struct{}{}:
	case <-l.closed:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.open
		return nil, err
	}
	return &limitedConn{Conn: c, l: l}, nil
}

// Close also ends an Accept waiting for a connection to close.
func (l *limitedListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

type limitedConn struct {
	net.Conn
	l    *limitedListener
	once sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { <-c.l.open })
	return err
}

// MaxHeaderBytes bounds a request's headers on the admin listener (net/http
// reads 4 KiB past it before refusing): larger ones get 431. A SigV4
// request's headers, session token included, take a few KiB.
const MaxHeaderBytes = 32 << 10

// NewServer returns the server for the admin API handler h: it waits 10 s
// for a request's headers (MaxHeaderBytes at most), 2 min for the whole
// request (the body of one from an unknown sender: 10 s), and keeps an
// idle connection 2 min. Serve it on a listener from WrapListener.
func NewServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 2 * time.Minute,
		IdleTimeout: 2 * time.Minute, MaxHeaderBytes: MaxHeaderBytes}
}
