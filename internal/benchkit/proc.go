package benchkit

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tollgate/tollgate/internal/procgroup"
)

// StopGrace is how long a process has, unless its ProcConfig says
// otherwise, to exit after SIGTERM before SIGKILL: long enough for an
// enforcer to save its catalog snapshot.
const StopGrace = 30 * time.Second

// tailLines is how many of its last output lines a Proc keeps, for
// errors, unless its ProcConfig says otherwise.
const tailLines = 20

// ProcConfig says how to start a process.
type ProcConfig struct {
	// Name names the process in errors ("serve", "aggregator").
	// Required.
	Name string
	// Path is the binary to run. Required.
	Path string
	// Args are its arguments, without the name of the binary.
	Args []string
	// Env is its whole environment (see ChildEnv); nil means this
	// process's.
	Env []string
	// LogPath, when not empty, is a file its output is appended to; ""
	// means no log file.
	LogPath string
	// OnLine, when not nil, is given every line of its output as it
	// comes, from stdout and stderr concurrently. It must not block.
	OnLine func(line string)
	// Grace is how long it has to exit after Stop's SIGTERM before
	// SIGKILL; 0 means StopGrace (30s).
	Grace time.Duration
	// TailLines is how many of its last output lines it keeps, for
	// Failure and errors; 0 means 20.
	TailLines int
}

// Validate reports what is missing or out of range in c.
func (c ProcConfig) Validate() error {
	var errs []error
	if c.Name == "" {
		errs = append(errs, errors.New("Name is required"))
	}
	if c.Path == "" {
		errs = append(errs, errors.New("Path is required"))
	}
	if c.Grace < 0 {
		errs = append(errs, fmt.Errorf("Grace must not be negative, got %v", c.Grace))
	}
	if c.TailLines < 0 {
		errs = append(errs, fmt.Errorf("TailLines must not be negative, got %d", c.TailLines))
	}
	return errors.Join(errs...)
}

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
	grace   time.Duration
	tailMax int
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
// concurrently for stdout and stderr). It is StartProc without a context,
// with the default grace and tail.
func Start(name, path string, args, env []string, logPath string, onLine func(string)) (*Proc, error) {
	return StartProc(context.Background(), ProcConfig{Name: name, Path: path, Args: args, Env: env, LogPath: logPath, OnLine: onLine})
}

// StartProc starts the process cfg describes. When ctx ends, its process
// group is killed at once (SIGKILL); Stop is the graceful end.
func StartProc(ctx context.Context, cfg ProcConfig) (*Proc, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("start %s: %w", cfg.Name, err)
	}
	p := &Proc{name: cfg.Name, onLine: cfg.OnLine, grace: cmp.Or(cfg.Grace, StopGrace), tailMax: cmp.Or(cfg.TailLines, tailLines),
		done: make(chan struct{}), addrs: map[string]string{}, logged: map[string]struct{}{}, changed: make(chan struct{})}
	if cfg.LogPath != "" {
		log, err := os.OpenFile(cfg.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(log, "# %s %s %s\n", time.Now().UTC().Format(time.RFC3339), cfg.Path, strings.Join(cfg.Args, " "))
		p.log = log
	}
	cmd := exec.CommandContext(ctx, cfg.Path, cfg.Args...)
	cmd.Env = cfg.Env
	stdout, stderr := &lineWriter{onLine: p.line}, &lineWriter{onLine: p.line}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	procgroup.Set(cmd)
	cmd.Cancel = func() error { return procgroup.Signal(cmd.Process, syscall.SIGKILL) }
	// Wait returns once the output is read to its end, or WaitDelay after
	// the process exited if something it started holds the pipes open.
	cmd.WaitDelay = p.grace
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		p.closeLog()
		return nil, fmt.Errorf("start %s: %w", cfg.Name, err)
	}
	p.cmd = cmd
	go func() {
		err := cmd.Wait()
		stdout.end()
		stderr.end()
		p.err = err
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
	if len(p.tail) == p.tailMax {
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

// Name is the name the process was started with.
func (p *Proc) Name() string { return p.name }

// Done is closed once the process has exited and its output is read.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Tail is the process's last output lines, oldest first.
func (p *Proc) Tail() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.tail)
}

// Failure describes the process for an error message, on lines of its
// own: how it exited, if it has, and its last output lines.
func (p *Proc) Failure() string {
	var b strings.Builder
	select {
	case <-p.done:
		fmt.Fprintf(&b, "%s exited: %v\n", p.name, p.err)
	default:
	}
	lines := p.Tail()
	if len(lines) == 0 {
		fmt.Fprintf(&b, "%s wrote nothing", p.name)
		return b.String()
	}
	fmt.Fprintf(&b, "last output of %s:", p.name)
	for _, l := range lines {
		b.WriteString("\n  | ")
		b.WriteString(l)
	}
	return b.String()
}

// Stop sends SIGTERM to the process group, then SIGKILL after the grace
// (StopGrace unless the ProcConfig said otherwise), and waits for the
// process. It reports whether the process exited on SIGTERM (or had
// exited already).
func (p *Proc) Stop() bool {
	select {
	case <-p.done:
		return true
	default:
	}
	procgroup.Signal(p.cmd.Process, syscall.SIGTERM)
	t := time.NewTimer(p.grace)
	defer t.Stop()
	select {
	case <-p.done:
		return true
	case <-t.C:
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

// PID is the process's id.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

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
	return ps.StartProc(context.Background(), ProcConfig{Name: name, Path: path, Args: args, Env: env, LogPath: logPath, OnLine: onLine})
}

// StartProc starts a process as the function StartProc does, and keeps
// it.
func (ps *Procs) StartProc(ctx context.Context, cfg ProcConfig) (*Proc, error) {
	p, err := StartProc(ctx, cfg)
	if err == nil {
		ps.mu.Lock()
		ps.list = append(ps.list, p)
		ps.mu.Unlock()
	}
	return p, err
}

// List is the processes started so far, in the order they were.
func (ps *Procs) List() []*Proc {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return slices.Clone(ps.list)
}

// StopAll stops every process, concurrently.
func (ps *Procs) StopAll() {
	var wg sync.WaitGroup
	for _, p := range ps.List() {
		wg.Go(func() { p.Stop() })
	}
	wg.Wait()
}

// ChildEnv is this process's environment without tollgate's settings
// (every flag of tollgate can come from a TOLLGATE_ variable: the
// benchmark's flags alone must decide) and without the variables extra
// sets, plus extra ("GOGC=400").
func ChildEnv(extra ...string) []string {
	setByExtra := func(kv string) bool {
		for _, e := range extra {
			if name, _, _ := strings.Cut(e, "="); strings.HasPrefix(kv, name+"=") {
				return true
			}
		}
		return false
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TOLLGATE_") && !setByExtra(kv) {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}
