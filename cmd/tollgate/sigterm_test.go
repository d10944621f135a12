package main

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/tollgate/tollgate/usage/sqlitestore"
)

// TestMain lets the test binary stand in for the tollgate binary, so a
// test can run `tollgate serve` as a real process and signal it.
func TestMain(m *testing.M) {
	if os.Getenv("TOLLGATE_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

var listenRE = regexp.MustCompile(`msg="gateway listening" addr=(\S+)`)

// SIGTERM stops the process cleanly and every request made before it is
// in the store.
func TestSIGTERMFlushesEveryEvent(t *testing.T) {
	_, data, cfg := fixture(t)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "serve", "--config", cfg, "--data-dir", data,
		"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--flush-interval", "1h")
	cmd.Env = append(os.Environ(), "TOLLGATE_TEST_MAIN=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stderr)
	var addr string
	for addr == "" && sc.Scan() {
		if m := listenRE.FindStringSubmatch(sc.Text()); m != nil {
			addr = m[1]
		}
	}
	if addr == "" {
		t.Fatal("serve never said where it listens")
	}
	go func() {
		for sc.Scan() {
		}
	}()
	const n = 50
	for i := 0; i < n; i++ {
		get(t, "http://"+addr+"/prod/items", "widgetwidgetwidget0001")
	}
	// The flush interval is an hour: only the shutdown can write these.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("serve exited with %v after SIGTERM", err)
	}
	st, err := sqlitestore.Open(filepath.Join(data, "usage.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	evs, err := st.Events(context.Background(), 0, 1<<62, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != n {
		t.Fatalf("%d events stored after SIGTERM, want %d", len(evs), n)
	}
}
