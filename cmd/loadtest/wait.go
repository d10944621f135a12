package main

import (
	"context"
	"fmt"
	"time"

	"github.com/tollgate/tollgate/internal/benchkit"
)

// Every server the harness starts has stopGrace to exit after SIGTERM
// before SIGKILL (none holds anything to save), and keeps its last
// tailLines output lines for the errors that name it.
const (
	stopGrace = 3 * time.Second
	tailLines = 40
)

// procConfig is how the harness starts the server name: the binary at path
// with args and env, every output line to onLine (which must not block).
func procConfig(name, path string, args, env []string, onLine func(string)) benchkit.ProcConfig {
	return benchkit.ProcConfig{Name: name, Path: path, Args: args, Env: env, OnLine: onLine,
		Grace: stopGrace, TailLines: tailLines}
}

// waitFor waits until ch yields a value, p exits, timeout passes or ctx
// ends, and says which in the error.
func waitFor[T any](ctx context.Context, p *benchkit.Proc, ch <-chan T, timeout time.Duration, what string) (T, error) {
	var zero T
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case v := <-ch:
		return v, nil
	case <-p.Done():
		return zero, fmt.Errorf("%s exited before %s\n%s", p.Name(), what, p.Failure())
	case <-t.C:
		return zero, fmt.Errorf("%s: no %s within %v\n%s", p.Name(), what, timeout, p.Failure())
	case <-ctx.Done():
		return zero, fmt.Errorf("waiting for %s of %s: %w", what, p.Name(), ctx.Err())
	}
}

// offer sends v on ch unless ch already holds a value.
func offer(ch chan string, v string) {
	select {
	case ch <- v:
	default:
	}
}
