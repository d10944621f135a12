package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// A handlerSetup registers a server's own flags on fs and returns the
// function that builds its handler once the flags are parsed.
type handlerSetup func(fs *flag.FlagSet) func() (http.Handler, error)

// serveCmd runs one of the baseline servers: it parses --listen and the
// server's own flags, listens, prints "listening on ADDR" to stdout (the
// line the parent waits for) and serves until ctx ends.
func serveCmd(ctx context.Context, name string, args []string, stdout, stderr io.Writer, setup handlerSetup) int {
	fs := flag.NewFlagSet("loadtest "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on")
	build := setup(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "loadtest %s: unexpected arguments %q\n", name, fs.Args())
		return 2
	}
	h, err := build()
	if err != nil {
		fmt.Fprintf(stderr, "loadtest %s: %v\n", name, err)
		return 2
	}
	if err := serve(ctx, *listen, h, stdout); err != nil {
		fmt.Fprintf(stderr, "loadtest %s: %v\n", name, err)
		return 1
	}
	return 0
}

// newServer returns the http.Server every baseline uses.
func newServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
}

// serve listens on addr, announces the address and serves h until ctx
// ends, then shuts down, giving open requests a moment to finish.
func serve(ctx context.Context, addr string, h http.Handler, stdout io.Writer) error {
	return serveWith(ctx, addr, newServer(h), stdout)
}

// runnable is what serveWith runs: an *http.Server, or a fasthttp server
// (fastServer).
type runnable interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
	Close() error
}

// serveWith listens on addr, announces the address and runs srv until
// ctx ends, then shuts it down, giving open requests a moment to finish.
func serveWith(ctx context.Context, addr string, srv runnable, stdout io.Writer) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	if _, err := fmt.Fprintf(stdout, "%s%s\n", listeningPrefix, ln.Addr()); err != nil {
		srv.Close()
		return fmt.Errorf("announce address: %w", err)
	}
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("shutdown: %w", err)
	}
	srv.Close()
	return nil
}

// listeningPrefix starts the line a baseline prints once it listens.
const listeningPrefix = "listening on "
