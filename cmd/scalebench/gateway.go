package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/tollgate/tollgate/internal/benchkit"
)

// startUpstream serves 200 "ok" on a free loopback port: where the
// gateways send the requests they admit.
func startUpstream() (url string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("upstream: %w", err)
	}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String(), func() { srv.Close() }, nil
}

// status is the gateway's answer to GET /prod/items with key; 0 with an
// error when there was none.
func status(ctx context.Context, client *http.Client, addr, key string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+addr+gatewayPath, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("x-api-key", key)
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// waitAdmitted asks the gateway at addr every interval until it no longer
// answers 403 for key, and returns when that answer came. An answer other
// than 403 or 200 is an error: the key was let through but the request
// was not served.
func waitAdmitted(ctx context.Context, client *http.Client, addr, key string, interval time.Duration, p *benchkit.Proc) (time.Time, error) {
	last := "no answer yet"
	for {
		code, err := status(ctx, client, addr, key)
		switch {
		case code == 200:
			return time.Now(), nil
		case code != 0 && code != 403:
			return time.Time{}, fmt.Errorf("gateway %s answered %d for key %s", addr, code, key)
		case err != nil:
			last = err.Error()
		default:
			last = "403"
		}
		if p != nil {
			if err := p.Exited(); err != nil {
				return time.Time{}, err
			}
		}
		if err := benchkit.Pause(ctx, interval); err != nil {
			return time.Time{}, fmt.Errorf("%w (last answer: %s)", err, last)
		}
	}
}

// timeToServe is the time from p's start until its gateway admits key,
// polled every 10 ms.
func timeToServe(ctx context.Context, client *http.Client, p *benchkit.Proc, key string) (time.Duration, error) {
	addr, err := p.Addr(ctx, "gateway")
	if err != nil {
		return 0, err
	}
	at, err := waitAdmitted(ctx, client, addr, key, 10*time.Millisecond, p)
	if err != nil {
		return 0, err
	}
	return at.Sub(p.Started()), nil
}
