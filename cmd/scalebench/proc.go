package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tollgate/tollgate/internal/procgroup"
)

// stopGrace is how long a process has to exit after SIGTERM before
// SIGKILL: long enough for an enforcer to save its catalog snapshot.
const stopGrace = 30 * time.Second

// proc is a tollgate process the benchmark started, in a process group of
// its own. Its output is read line by line as it comes (a process that
// logs a line per key created must never block on a full pipe): the
// addresses it announces are kept, and its last lines, for errors.
type proc struct {
	name    string
	cmd     *exec.Cmd
	started time.Time
	done    chan struct{} // closed once the process has exited
	err     error         // what Wait returned; read after done

	mu       sync.Mutex
	tail     []string
	addrs    map[string]string // "gateway", "admin" → host:port
	released bool              // it logged "start memory released"
	changed  chan struct{}     // closed and replaced when addrs or released change
}

const tailLines = 20

// startProc starts the binary at path with args and env.
func startProc(name, path string, args, env []string) (*proc, error) {
	p := &proc{name: name, done: make(chan struct{}), addrs: map[string]string{}, changed: make(chan struct{})}
	cmd := exec.Command(path, args...)
	cmd.Env = env
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	procgroup.Set(cmd)
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p.cmd = cmd
	var readers sync.WaitGroup
	readers.Go(func() { p.read(stdout) })
	readers.Go(func() { p.read(stderr) })
	go func() {
		readers.Wait() // Wait closes the pipes: read them to the end first
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		p.line(sc.Text())
	}
	io.Copy(io.Discard, r) // a line past 1 MiB: keep the pipe drained
}

// line records a line of output; tollgate's listeners announce themselves
// as `msg="gateway listening" addr=127.0.0.1:40123` (slog's text format).
func (p *proc) line(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.tail) == tailLines {
		p.tail = append(p.tail[:0], p.tail[1:]...)
	}
	p.tail = append(p.tail, s)
	if strings.Contains(s, `msg="start memory released"`) {
		p.released = true
		close(p.changed)
		p.changed = make(chan struct{})
	}
	for _, kind := range []string{"gateway", "admin"} {
		if !strings.Contains(s, `msg="`+kind+` listening"`) {
			continue
		}
		if _, addr, ok := strings.Cut(s, " addr="); ok {
			addr, _, _ = strings.Cut(addr, " ")
			p.addrs[kind] = addr
			close(p.changed)
			p.changed = make(chan struct{})
		}
	}
}

// addr waits until the process announces the address of its listener
// kind ("gateway" or "admin"), exits, or ctx ends.
func (p *proc) addr(ctx context.Context, kind string) (string, error) {
	for {
		p.mu.Lock()
		a, changed := p.addrs[kind], p.changed
		p.mu.Unlock()
		if a != "" {
			return a, nil
		}
		select {
		case <-changed:
		case <-p.done:
			return "", fmt.Errorf("%s exited before its %s listened: %s", p.name, kind, p.failure())
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

// settled waits until the process reports that it has handed the
// memory of its start back to the OS (serve does so once serving, on
// its own), exits, or ctx ends: RSS is measured after that.
func (p *proc) settled(ctx context.Context) error {
	for {
		p.mu.Lock()
		done, changed := p.released, p.changed
		p.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-changed:
		case <-p.done:
			return fmt.Errorf("%s exited before it released its start's memory: %s", p.name, p.failure())
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// exited reports whether the process has exited, and if so, how.
func (p *proc) exited() (bool, error) {
	select {
	case <-p.done:
		return true, fmt.Errorf("%s exited (%v): %s", p.name, p.err, p.failure())
	default:
		return false, nil
	}
}

// failure is the process's last output line, for an error message (the
// full tail goes to the log).
func (p *proc) failure() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.tail) == 0 {
		return "no output"
	}
	return p.tail[len(p.tail)-1]
}

// stop sends SIGTERM to the process group, then SIGKILL after stopGrace,
// and waits for the process. It reports whether the process exited on
// SIGTERM.
func (p *proc) stop() bool {
	select {
	case <-p.done:
		return true
	default:
	}
	procgroup.Signal(p.cmd.Process, syscall.SIGTERM)
	select {
	case <-p.done:
		return true
	case <-time.After(stopGrace):
	}
	procgroup.Signal(p.cmd.Process, syscall.SIGKILL)
	<-p.done
	return false
}

// rss is the process's resident set size (VmRSS), in bytes.
func (p *proc) rss() (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(p.cmd.Process.Pid) + "/status")
	if err != nil {
		return 0, fmt.Errorf("read RSS: %w", err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("read RSS: %q: %w", line, err)
			}
			return kb << 10, nil
		}
	}
	return 0, errors.New("read RSS: no VmRSS line")
}

// procs are the processes of a size, stopped together when it ends.
type procs []*proc

func (ps *procs) start(name, path string, args, env []string) (*proc, error) {
	p, err := startProc(name, path, args, env)
	if err == nil {
		*ps = append(*ps, p)
	}
	return p, err
}

// stopAll stops every process, concurrently.
func (ps procs) stopAll() {
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Go(func() { p.stop() })
	}
	wg.Wait()
}

// childEnv is the benchmark's environment without tollgate's settings
// (every flag of tollgate can come from TOLLGATE_ variables: the
// benchmark's flags alone must decide), plus the admin credentials.
func childEnv(token string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TOLLGATE_") {
			env = append(env, kv)
		}
	}
	return append(env,
		"TOLLGATE_ADMIN_ACCESS_KEY_ID=TGAKSCALEBENCH000000",
		"TOLLGATE_ADMIN_SECRET_ACCESS_KEY=scalebench-secret-"+token,
		"TOLLGATE_ADMIN_TOKEN="+token)
}
