package benchkit

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
