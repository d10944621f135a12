package benchkit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// A child that announces a listener and a message, then waits to be
// stopped.
const script = `echo 'time=x level=INFO msg="admin listening" component=reportapi addr=127.0.0.1:4242'
echo 'time=x level=INFO msg="start memory released" took=1ms' >&2
exec sleep 60`

func TestProc(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	log := filepath.Join(t.TempDir(), "child.log")
	var ps Procs
	defer ps.StopAll()
	p, err := ps.Start("child", sh, []string{"-c", script}, ChildEnv(), log, nil)
	if err != nil {
		t.Fatal(err)
	}
	if addr, err := p.Addr(ctx, "admin"); err != nil || addr != "127.0.0.1:4242" {
		t.Fatalf("Addr = %q, %v; want 127.0.0.1:4242", addr, err)
	}
	if err := p.Logged(ctx, "start memory released"); err != nil {
		t.Fatal(err)
	}
	if err := p.Exited(); err != nil {
		t.Fatalf("Exited while it runs: %v", err)
	}
	if _, err := p.CPU(); err != nil {
		t.Errorf("CPU: %v", err)
	}
	if !p.Stop() {
		t.Error("the child did not stop on SIGTERM")
	}
	if err := p.Exited(); err == nil {
		t.Error("Exited after Stop: nil")
	}
	// A listener never announced: the wait ends with the process.
	if _, err := p.Addr(ctx, "gateway"); err == nil || !strings.Contains(err.Error(), "child exited before its gateway listened") {
		t.Errorf("Addr of a stopped child: %v", err)
	}
	b, err := os.ReadFile(log)
	if err != nil || !strings.Contains(string(b), "admin listening") || !strings.HasPrefix(string(b), "# ") {
		t.Errorf("log file: %q, %v", b, err)
	}
}

func TestChildEnvDropsTollgateSettings(t *testing.T) {
	t.Setenv("TOLLGATE_ADMIN_TOKEN", "x")
	env := ChildEnv("TOLLGATE_KAFKA=k")
	for _, kv := range env {
		if strings.HasPrefix(kv, "TOLLGATE_ADMIN_TOKEN=") {
			t.Errorf("ChildEnv kept %s", kv)
		}
	}
	if env[len(env)-1] != "TOLLGATE_KAFKA=k" {
		t.Errorf("ChildEnv's last entry %q, want the extra one", env[len(env)-1])
	}
}

// shell is the path of sh; the test is skipped without one.
func shell(t *testing.T) string {
	t.Helper()
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	return sh
}

// stubborn ignores SIGTERM, says "ready" once it does, and sleeps.
const stubborn = `trap '' TERM; echo ready; exec sleep 60`

// startStubborn starts stubborn with grace and ctx, kept by ps, and waits
// until it is ready.
func startStubborn(t *testing.T, ctx context.Context, ps *Procs, grace time.Duration) *Proc {
	t.Helper()
	ready := make(chan struct{})
	var once sync.Once
	p, err := ps.StartProc(ctx, ProcConfig{Name: "stubborn", Path: shell(t), Args: []string{"-c", stubborn}, Grace: grace,
		OnLine: func(l string) {
			if l == "ready" {
				once.Do(func() { close(ready) })
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-ready:
	case <-p.Done():
		t.Fatalf("exited before it was ready\n%s", p.Failure())
	case <-time.After(10 * time.Second):
		t.Fatalf("not ready within 10s\n%s", p.Failure())
	}
	return p
}

func TestProcStopKillsAfterGrace(t *testing.T) {
	const grace = 200 * time.Millisecond
	var ps Procs
	defer ps.StopAll()
	p := startStubborn(t, context.Background(), &ps, grace)
	began := time.Now()
	if p.Stop() {
		t.Error("Stop says a child that ignores SIGTERM exited on it")
	}
	if d := time.Since(began); d < grace || d > grace+5*time.Second {
		t.Errorf("Stop took %v, want the grace (%v) and a moment", d, grace)
	}
	if err := p.Exited(); err == nil || !strings.Contains(err.Error(), "signal: killed") {
		t.Errorf("Exited after Stop = %v, want it killed", err)
	}
}

func TestProcContextEndKillsTheGroup(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var ps Procs
	defer ps.StopAll()
	p := startStubborn(t, ctx, &ps, 0) // SIGTERM would take StopGrace
	// A grandchild in the group, which ignores SIGTERM too.
	pids := make(chan int, 1)
	q, err := ps.StartProc(ctx, ProcConfig{Name: "parent", Path: shell(t),
		Args: []string{"-c", `trap '' TERM; sleep 60 & echo $!; wait`},
		OnLine: func(l string) {
			if pid, err := strconv.Atoi(l); err == nil {
				pids <- pid
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	var grandchild int
	select {
	case grandchild = <-pids:
	case <-time.After(10 * time.Second):
		t.Fatalf("no grandchild pid\n%s", q.Failure())
	}

	cancel()
	for _, c := range []*Proc{p, q} {
		select {
		case <-c.Done():
		case <-time.After(10 * time.Second):
			t.Fatalf("%s runs 10s after its context ended", c.Name())
		}
	}
	for deadline := time.Now().Add(10 * time.Second); alive(grandchild); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("grandchild %d runs 10s after the context ended", grandchild)
		}
	}
}

// alive reports whether pid is a process that has not exited (a zombie
// has).
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return !os.IsNotExist(err)
	}
	// pid (comm) state ...: comm may hold spaces and parentheses.
	_, rest, _ := strings.Cut(string(stat[bytes.LastIndexByte(stat, ')')+1:]), " ")
	return !strings.HasPrefix(rest, "Z")
}

func TestProcFailure(t *testing.T) {
	tests := []struct {
		name, script string
		tail         int
		want         string
	}{
		{"last lines", `echo a; echo b; echo c; printf d; exit 3`, 3,
			"child exited: exit status 3\nlast output of child:\n  | b\n  | c\n  | d"},
		{"stderr", `echo oops >&2; exit 1`, 0,
			"child exited: exit status 1\nlast output of child:\n  | oops"},
		{"silent", `exit 0`, 0, "child exited: <nil>\nchild wrote nothing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := StartProc(context.Background(), ProcConfig{Name: "child", Path: shell(t),
				Args: []string{"-c", tt.script}, TailLines: tt.tail})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Stop()
			select {
			case <-p.Done():
			case <-time.After(10 * time.Second):
				t.Fatal("did not exit")
			}
			if got := p.Failure(); got != tt.want {
				t.Errorf("Failure =\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestProcConfigValidate(t *testing.T) {
	_, err := StartProc(context.Background(), ProcConfig{Grace: -time.Second, TailLines: -1})
	for _, want := range []string{"Name is required", "Path is required", "Grace must not be negative, got -1s", "TailLines must not be negative, got -1"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("StartProc(bad config) = %v, want it to say %q", err, want)
		}
	}
}

func TestChildEnvSetsExtraOnce(t *testing.T) {
	t.Setenv("GOGC", "100")
	var gogc []string
	for _, kv := range ChildEnv("GOGC=400") {
		if strings.HasPrefix(kv, "GOGC=") {
			gogc = append(gogc, kv)
		}
	}
	if !slices.Equal(gogc, []string{"GOGC=400"}) {
		t.Errorf("ChildEnv(GOGC=400) holds %q, want only GOGC=400", gogc)
	}
}
