package reportapi

import (
	"net"
	"sync"
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
