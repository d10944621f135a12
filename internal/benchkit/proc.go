package benchkit

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tollgate/tollgate/internal/procgroup"
)

// StopGrace is how long a process has to exit after SIGTERM before
// SIGKILL: long enough for an enforcer to save its catalog snapshot.
const StopGrace = 30 * time.Second

// tailLines is how many of its last output lines a Proc keeps, for
// errors.
const tailLines = 20

// Proc is a process a benchmark started, in a process group of its own
// (on Linux it dies with the benchmark). Its output, stdout and stderr, is
// read line by line as it comes (a process that logs a line per key
// created must never block on a full pipe): the listeners it announces
// and the messages it logs are kept, and its last lines, for errors.
type Proc struct {
	name    string
	cmd     *exec.Cmd
	started time.Time
	onLine  func(string)
	done    chan struct{} // closed once the process has exited and its output is read
	err     error         // what Wait returned; read after done

	mu      sync.Mutex
	log     *os.File // nil: no log file
	tail    []string
	addrs   map[string]string   // "gateway", "admin", ... → host:port
	logged  map[string]struct{} // the messages (slog's msg) it has logged
	changed chan struct{}       // closed and replaced when addrs or logged grow
}

// Start starts the binary at path with args and env. Its output goes to
// logPath, appended, when that is not empty, and a line at a time to
// onLine when that is not nil (called from the output readers,
// concurrently for stdout and stderr).
func Start(name, path string, args, env []string, logPath string, onLine func(string)) (*Proc, error) {
	p := &Proc{name: name, onLine: onLine, done: make(chan struct{}),
		addrs: map[string]string{}, logged: map[string]struct{}{}, changed: make(chan struct{})}
	if logPath != "" {
		log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(log, "# %s %s %s\n", time.Now().UTC().Format(time.RFC3339), path, strings.Join(args, " "))
		p.log = log
	}
	cmd := exec.Command(path, args...)
	cmd.Env = env
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		p.closeLog()
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		p.closeLog()
		return nil, err
	}
	procgroup.Set(cmd)
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		p.closeLog()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p.cmd = cmd
	var readers sync.WaitGroup
	readers.Go(func() { p.read(stdout) })
	readers.Go(func() { p.read(stderr) })
	go func() {
		readers.Wait() // Wait closes the pipes: read them to the end first
		p.err = cmd.Wait()
		p.closeLog()
		close(p.done)
	}()
	return p, nil
}

func (p *Proc) closeLog() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.log != nil {
		p.log.Close()
		p.log = nil
	}
}

func (p *Proc) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		p.line(sc.Text())
	}
	io.Copy(io.Discard, r) // a line past 1 MiB: keep the pipe drained
}

// line records a line of output. tollgate's listeners announce
// themselves as `msg="gateway listening" addr=127.0.0.1:40123` (slog's
// text format).
func (p *Proc) line(s string) {
	kind, addr, listens := ListenLine(s)
	msg, hasMsg := LogField(s, "msg")
	p.mu.Lock()
	if p.log != nil {
		fmt.Fprintln(p.log, s)
	}
	if len(p.tail) == tailLines {
		p.tail = append(p.tail[:0], p.tail[1:]...)
	}
	p.tail = append(p.tail, s)
	grew := false
	if _, seen := p.logged[msg]; hasMsg && !seen {
		p.logged[msg] = struct{}{}
		grew = true
	}
	if listens && p.addrs[kind] == "" {
		p.addrs[kind] = addr
		grew = true
	}
	if grew {
		close(p.changed)
		p.changed = make(chan struct{})
	}
	p.mu.Unlock()
	if p.onLine != nil {
		p.onLine(s)
	}
}

// Addr waits until the process announces the address of its listener
// kind ("gateway", "admin"), exits, or ctx ends.
func (p *Proc) Addr(ctx context.Context, kind string) (string, error) {
	var addr string
	err := p.await(ctx, "its "+kind+" listened", func() bool {
		addr = p.addrs[kind]
		return addr != ""
	})
	return addr, err
}

// Logged waits until the process logs a line whose message (slog's msg)
// is msg, exits, or ctx ends.
func (p *Proc) Logged(ctx context.Context, msg string) error {
	return p.await(ctx, fmt.Sprintf("it logged %q", msg), func() bool {
		_, ok := p.logged[msg]
		return ok
	})
}

// await waits until cond, called under p.mu, holds.
func (p *Proc) await(ctx context.Context, what string, cond func() bool) error {
	for {
		p.mu.Lock()
		ok, changed := cond(), p.changed
		p.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-changed:
		case <-p.done:
			return fmt.Errorf("%s exited before %s: %s", p.name, what, p.LastLine())
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Wait waits for the process to exit (or ctx to end, which stops it) and
// returns its error with its last line.
func (p *Proc) Wait(ctx context.Context) error {
	select {
	case <-p.done:
	case <-ctx.Done():
		p.Stop()
		return ctx.Err()
	}
	if p.err != nil {
		return fmt.Errorf("%s: %v: %s", p.name, p.err, p.LastLine())
	}
	return nil
}

// Exited returns, once the process has exited, an error that says how,
// with its last line; nil while it runs.
func (p *Proc) Exited() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s exited (%v): %s", p.name, p.err, p.LastLine())
	default:
		return nil
	}
}

// Started is when the process was started.
func (p *Proc) Started() time.Time { return p.started }

// LastLine is the process's last output line, for an error message (the
// log file, if any, has them all).
func (p *Proc) LastLine() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.tail) == 0 {
		return "no output"
	}
	return p.tail[len(p.tail)-1]
}

// Stop sends SIGTERM to the process group, then SIGKILL after
// StopGrace, and waits for the process. It reports whether the process
// exited on SIGTERM (or had exited already).
func (p *Proc) Stop() bool {
	select {
	case <-p.done:
		return true
	default:
	}
	procgroup.Signal(p.cmd.Process, syscall.SIGTERM)
	select {
	case <-p.done:
		return true
	case <-time.After(StopGrace):
	}
	procgroup.Signal(p.cmd.Process, syscall.SIGKILL)
	<-p.done
	return false
}

// CPU is the CPU time the process used: its rusage once it has exited,
// else /proc.
func (p *Proc) CPU() (time.Duration, error) {
	select {
	case <-p.done:
		return p.cmd.ProcessState.UserTime() + p.cmd.ProcessState.SystemTime(), nil
	default:
		return PIDCPU(p.cmd.Process.Pid)
	}
}

// RSS is the process's resident set size, in bytes.
func (p *Proc) RSS() (int64, error) { return PIDRSS(p.cmd.Process.Pid) }

// Procs are the processes a benchmark (or one of its steps) runs,
// stopped together at its end. The zero value is ready to use.
type Procs struct {
	mu   sync.Mutex
	list []*Proc
}

// Start starts a process as the function Start does, and keeps it.
func (ps *Procs) Start(name, path string, args, env []string, logPath string, onLine func(string)) (*Proc, error) {
	p, err := Start(name, path, args, env, logPath, onLine)
	if err == nil {
		ps.mu.Lock()
		ps.list = append(ps.list, p)
		ps.mu.Unlock()
	}
	return p, err
}

// StopAll stops every process, concurrently.
func (ps *Procs) StopAll() {
	ps.mu.Lock()
	list := ps.list
	ps.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range list {
		wg.Go(func() { p.Stop() })
	}
	wg.Wait()
}

// ChildEnv is this process's environment without tollgate's settings
// (every flag of tollgate can come from a TOLLGATE_ variable: the
// benchmark's flags alone must decide), plus extra.
func ChildEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TOLLGATE_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}
