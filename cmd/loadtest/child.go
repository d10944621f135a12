package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tollgate/tollgate/internal/procgroup"
)

// child is a server process the harness started. It runs in its own
// process group so that stopping it reaches anything it started, and on
// Linux it dies with the harness even if the harness is killed.
type child struct {
	name string
	cmd  *exec.Cmd
	tail *lineTail
	done chan struct{} // closed once the process has exited
	err  error         // what Wait returned; read after done
}

// stopGrace is how long a child has to exit after SIGTERM before SIGKILL.
const stopGrace = 3 * time.Second

// startChild starts path with args and env. Every line the child writes
// to stdout or stderr goes to onLine (which must not block) and into the
// child's tail, so its output is always drained. If ctx ends, the child's
// process group is killed.
func startChild(ctx context.Context, name, path string, args, env []string, onLine func(line string)) (*child, error) {
	c := &child{name: name, tail: newLineTail(40), done: make(chan struct{})}
	lines := func(line string) {
		c.tail.add(line)
		if onLine != nil {
			onLine(line)
		}
	}
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = env
	cmd.Stdout = &lineWriter{onLine: lines}
	cmd.Stderr = &lineWriter{onLine: lines}
	procgroup.Set(cmd)
	cmd.Cancel = func() error { return procgroup.Signal(cmd.Process, syscall.SIGKILL) }
	cmd.WaitDelay = stopGrace // bounds Wait if a grandchild holds the pipes
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c.cmd = cmd
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// exited reports whether the child has exited.
func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// failure describes the child for an error message: how it exited, if it
// did, and its last output lines.
func (c *child) failure() string {
	var b strings.Builder
	if c.exited() {
		fmt.Fprintf(&b, "%s exited: %v\n", c.name, c.err)
	}
	lines := c.tail.lines()
	if len(lines) == 0 {
		fmt.Fprintf(&b, "%s wrote nothing", c.name)
		return b.String()
	}
	fmt.Fprintf(&b, "last output of %s:", c.name)
	for _, l := range lines {
		b.WriteString("\n  | ")
		b.WriteString(l)
	}
	return b.String()
}

// stop sends SIGTERM to the child's process group, then SIGKILL if it has
// not exited within stopGrace, and waits for it.
func (c *child) stop() {
	if c.exited() {
		return
	}
	procgroup.Signal(c.cmd.Process, syscall.SIGTERM)
	select {
	case <-c.done:
		return
	case <-time.After(stopGrace):
	}
	procgroup.Signal(c.cmd.Process, syscall.SIGKILL)
	select {
	case <-c.done:
	case <-time.After(2 * stopGrace):
		fmt.Fprintf(os.Stderr, "loadtest: %s (pid %d) did not exit after SIGKILL\n", c.name, c.cmd.Process.Pid)
	}
}

// children is every child started, to be stopped together on the way out.
type children struct {
	mu   sync.Mutex
	list []*child
}

func (cs *children) add(c *child) {
	cs.mu.Lock()
	cs.list = append(cs.list, c)
	cs.mu.Unlock()
}

// stopAll stops every child, concurrently, and waits for them.
func (cs *children) stopAll() {
	cs.mu.Lock()
	list := cs.list
	cs.list = nil
	cs.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range list {
		wg.Go(c.stop)
	}
	wg.Wait()
}

// childEnv is the harness's environment with GOGC set to gogc, so that
// every server, baseline and tollgate alike, collects garbage alike.
func childEnv(gogc string) []string {
	env := make([]string, 0, len(os.Environ())+1)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GOGC=") {
			env = append(env, kv)
		}
	}
	return append(env, "GOGC="+gogc)
}

// waitFor waits until ch yields a value, the child exits, timeout passes
// or ctx ends, and says which in the error.
func waitFor[T any](ctx context.Context, c *child, ch <-chan T, timeout time.Duration, what string) (T, error) {
	var zero T
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case v := <-ch:
		return v, nil
	case <-c.done:
		return zero, fmt.Errorf("%s exited before %s\n%s", c.name, what, c.failure())
	case <-t.C:
		return zero, fmt.Errorf("%s: no %s within %v\n%s", c.name, what, timeout, c.failure())
	case <-ctx.Done():
		return zero, fmt.Errorf("waiting for %s of %s: %w", what, c.name, ctx.Err())
	}
}

// lineWriter splits what is written to it into lines for onLine. A line
// longer than maxLine is cut there.
type lineWriter struct {
	mu     sync.Mutex
	buf    []byte
	onLine func(string)
}

const maxLine = 64 << 10

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.buf = append(w.buf, p...)
			if len(w.buf) >= maxLine {
				w.flush()
			}
			break
		}
		w.buf = append(w.buf, p[:i]...)
		w.flush()
		p = p[i+1:]
	}
	return n, nil
}

func (w *lineWriter) flush() {
	w.onLine(strings.TrimRight(string(w.buf), "\r"))
	w.buf = w.buf[:0]
}

// lineTail keeps the last lines written.
type lineTail struct {
	mu   sync.Mutex
	max  int
	list []string
}

func newLineTail(n int) *lineTail { return &lineTail{max: n} }

func (t *lineTail) add(line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.list) == t.max {
		copy(t.list, t.list[1:])
		t.list = t.list[:t.max-1]
	}
	t.list = append(t.list, line)
}

func (t *lineTail) lines() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.list...)
}

// snapshot returns the children started so far.
func (cs *children) snapshot() []*child {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return append([]*child(nil), cs.list...)
}
