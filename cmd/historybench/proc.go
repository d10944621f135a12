package main

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

// stopGrace is how long a process has to exit after SIGTERM before
// SIGKILL.
const stopGrace = 30 * time.Second

// proc is a tollgate process the benchmark started, in a process group of
// its own. Its output (stdout and stderr) goes line by line to a log file
// and to onLine; the admin address it announces and its last lines are
// kept.
type proc struct {
	name  string
	cmd   *exec.Cmd
	began time.Time
	done  chan struct{} // closed once the process has exited and its output is read
	err   error         // what Wait returned; read after done

	mu      sync.Mutex
	log     *os.File
	tail    []string
	admin   string        // host:port of its admin listener, once announced
	changed chan struct{} // closed and replaced when admin is set
	onLine  func(string)
}

const tailLines = 20

// startProc starts the binary at path with args and env; its output goes
// to logPath (appended) and, a line at a time, to onLine (may be nil;
// called from the output readers, concurrently for stdout and stderr).
func startProc(name, path string, args, env []string, logPath string, onLine func(string)) (*proc, error) {
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(log, "# %s %s %s\n", time.Now().UTC().Format(time.RFC3339), path, strings.Join(args, " "))
	p := &proc{name: name, done: make(chan struct{}), log: log, changed: make(chan struct{}), onLine: onLine}
	cmd := exec.Command(path, args...)
	cmd.Env = env
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		log.Close()
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		log.Close()
		return nil, err
	}
	procgroup.Set(cmd)
	p.began = time.Now()
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p.cmd = cmd
	var readers sync.WaitGroup
	readers.Go(func() { p.read(stdout) })
	readers.Go(func() { p.read(stderr) })
	go func() {
		readers.Wait() // Wait closes the pipes: read them to the end first
		p.err = cmd.Wait()
		p.mu.Lock()
		p.log.Close()
		p.mu.Unlock()
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

func (p *proc) line(s string) {
	p.mu.Lock()
	fmt.Fprintln(p.log, s)
	if len(p.tail) == tailLines {
		p.tail = append(p.tail[:0], p.tail[1:]...)
	}
	p.tail = append(p.tail, s)
	// slog's text format: msg="admin listening" addr=127.0.0.1:40123
	if p.admin == "" && strings.Contains(s, `msg="admin listening"`) {
		if _, addr, ok := strings.Cut(s, " addr="); ok {
			p.admin, _, _ = strings.Cut(addr, " ")
			close(p.changed)
			p.changed = make(chan struct{})
		}
	}
	p.mu.Unlock()
	if p.onLine != nil {
		p.onLine(s)
	}
}

// adminAddr waits until the process announces its admin listener's
// address, exits, or ctx ends.
func (p *proc) adminAddr(ctx context.Context) (string, error) {
	for {
		p.mu.Lock()
		a, changed := p.admin, p.changed
		p.mu.Unlock()
		if a != "" {
			return a, nil
		}
		select {
		case <-changed:
		case <-p.done:
			return "", fmt.Errorf("%s exited before its admin listener listened: %s", p.name, p.lastLine())
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

// wait waits for the process to exit (or ctx to end, which stops it)
// and returns its error with its last line.
func (p *proc) wait(ctx context.Context) error {
	select {
	case <-p.done:
	case <-ctx.Done():
		p.stop()
		return ctx.Err()
	}
	if p.err != nil {
		return fmt.Errorf("%s: %v: %s", p.name, p.err, p.lastLine())
	}
	return nil
}

// exited returns the process's error once it has exited, nil while it
// runs.
func (p *proc) exited() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s exited (%v): %s", p.name, p.err, p.lastLine())
	default:
		return nil
	}
}

// started is when the process was started.
func (p *proc) started() time.Time { return p.began }

func (p *proc) lastLine() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.tail) == 0 {
		return "no output"
	}
	return p.tail[len(p.tail)-1]
}

// stop sends SIGTERM to the process group, then SIGKILL after
// stopGrace, and waits for the process.
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	procgroup.Signal(p.cmd.Process, syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(stopGrace):
	}
	procgroup.Signal(p.cmd.Process, syscall.SIGKILL)
	<-p.done
}

// cpu is the CPU time the process used: its rusage once it has exited,
// else /proc.
func (p *proc) cpu() (time.Duration, error) {
	select {
	case <-p.done:
		return p.cmd.ProcessState.UserTime() + p.cmd.ProcessState.SystemTime(), nil
	default:
		return pidCPU(p.cmd.Process.Pid)
	}
}

// procs are the processes the benchmark runs, stopped together at its
// end.
type procs struct {
	mu   sync.Mutex
	list []*proc
}

func (ps *procs) start(name, path string, args, env []string, logPath string, onLine func(string)) (*proc, error) {
	p, err := startProc(name, path, args, env, logPath, onLine)
	if err == nil {
		ps.mu.Lock()
		ps.list = append(ps.list, p)
		ps.mu.Unlock()
	}
	return p, err
}

// stopAll stops every process, concurrently.
func (ps *procs) stopAll() {
	ps.mu.Lock()
	list := ps.list
	ps.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range list {
		wg.Go(p.stop)
	}
	wg.Wait()
}

// childEnv is the benchmark's environment without tollgate's settings
// (every flag of tollgate can come from a TOLLGATE_ variable: the
// benchmark's flags alone must decide), plus extra.
func childEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TOLLGATE_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}
