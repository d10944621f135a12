package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/catalog/catalogdb"
	"github.com/tollgate/tollgate/internal/dirlock"
)

// startProcess runs `tollgate serve` as a real process on cfg and data,
// with extra flags, and returns it and its gateway address once it listens.
func startProcess(t *testing.T, ctx context.Context, data, cfg string, extra ...string) (*exec.Cmd, string) {
	t.Helper()
	return serveProcess(t, ctx, nil, listenRE, append([]string{"serve", "--config", cfg, "--data-dir", data,
		"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"}, extra...))
}

// serveProcess runs the test binary as tollgate with args and the
// environment variables env, and returns it and the address its log
// reports (the first submatch of addr) once it does.
func serveProcess(t *testing.T, ctx context.Context, env []string, addr *regexp.Regexp, args []string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(append(os.Environ(), "TOLLGATE_TEST_MAIN=1"), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		if m := addr.FindStringSubmatch(sc.Text()); m != nil {
			go func() {
				for sc.Scan() {
				}
			}()
			return cmd, m[1]
		}
	}
	t.Fatalf("%v never logged a line like %s", args, addr)
	return nil, ""
}

// A second serve on a data folder in use exits at once, naming the pid of
// the process that holds it; the first goes on undisturbed.
func TestSecondServeOnOneDataFolderExits(t *testing.T) {
	_, data, cfg := fixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	first, _ := startProcess(t, ctx, data, cfg)
	catalogBefore := catalogBytes(t, data)

	second := exec.CommandContext(ctx, os.Args[0], "serve", "--config", cfg, "--data-dir", data,
		"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0")
	second.Env = append(os.Environ(), "TOLLGATE_TEST_MAIN=1")
	began := time.Now()
	out, err := second.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("second serve: %v, want a non-zero exit; output %s", err, out)
	}
	if took := time.Since(began); took > 10*time.Second {
		t.Errorf("second serve took %v to give up", took)
	}
	if want := "locked by process " + strconv.Itoa(first.Process.Pid); !strings.Contains(string(out), want) {
		t.Fatalf("second serve said %q, want it to contain %q", out, want)
	}
	if after := catalogBytes(t, data); after != catalogBefore {
		t.Fatal("the second serve changed the first's catalog")
	}
	if first.ProcessState != nil {
		t.Fatal("the first serve exited")
	}
	first.Process.Signal(syscall.SIGTERM)
	if err := first.Wait(); err != nil {
		t.Fatalf("first serve: %v", err)
	}
}

// Every role with a data folder takes its lock before it does anything
// else with it (or with the network).
func TestEveryRoleLocksItsDataFolder(t *testing.T) {
	for _, args := range [][]string{
		{"serve"},
		{"serve", "--kafka", "127.0.0.1:1"},
		{"enforcer", "--kafka", "127.0.0.1:1"},
		{"reportapi", "--kafka", "127.0.0.1:1"},
		{"aggregator", "--kafka", "127.0.0.1:1", "--clickhouse", "clickhouse://127.0.0.1:1/default"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			data := t.TempDir()
			l, err := dirlock.Acquire(data, dataLockFile)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Release()
			args = append(args, "--data-dir", data)
			switch args[0] {
			case "serve", "enforcer":
				args = append(args, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0")
			case "reportapi":
				args = append(args, "--admin-listen", "127.0.0.1:0")
			}
			// Bounded: a role that ignored the lock would go on serving.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			root := newRoot()
			root.SetOut(io.Discard)
			root.SetErr(io.Discard)
			root.SetArgs(args)
			err = root.ExecuteContext(ctx)
			if !errors.Is(err, dirlock.ErrHeld) || !strings.Contains(err.Error(), "locked by process "+strconv.Itoa(os.Getpid())) {
				t.Fatalf("got %v, want the folder named as locked by this process", err)
			}
		})
	}
}

// A data folder that cannot be written is refused with that reason.
func TestServeOnAReadOnlyDataFolder(t *testing.T) {
	parent := t.TempDir()
	data := filepath.Join(parent, "data")
	if err := os.Mkdir(data, 0o555); err != nil {
		t.Fatal(err)
	}
	bin := os.Args[0]
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		// Root writes through permission bits: run as nobody, from a
		// copy of this binary nobody can reach.
		os.Chmod(filepath.Dir(parent), 0o755) // t.TempDir makes both 0700
		os.Chmod(parent, 0o755)
		b, err := os.ReadFile(bin)
		if err != nil {
			t.Fatal(err)
		}
		bin = filepath.Join(parent, "tollgate")
		if err := os.WriteFile(bin, b, 0o755); err != nil {
			t.Fatal(err)
		}
		cred = &syscall.Credential{Uid: 65534, Gid: 65534}
	}
	cmd := exec.Command(bin, "serve", "--data-dir", data, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), "TOLLGATE_TEST_MAIN=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), data+" is not writable by this user") {
		t.Fatalf("serve on a read-only folder: %v, said %q; want it to say the folder is not writable", err, out)
	}
	// A read-only file system says so too.
	err = dataDirError("/data", "lock data folder", &os.PathError{Op: "open", Path: "/data/tollgate.lock", Err: syscall.EROFS})
	if !strings.Contains(err.Error(), "/data is on a read-only file system") {
		t.Errorf("EROFS: message %q", err)
	}
}

// A data folder whose state does not hang together is refused, naming
// what is missing and how to recover; --recreate-missing recovers, and the
// plans and keys of the file come back with their ids, so their usage is
// theirs again.
func TestServeRefusesAnInconsistentDataFolder(t *testing.T) {
	_, data, cfg := fixture(t)
	now := frozen
	n := start(t, data, cfg, &now)
	gw := "http://" + n.addrs.gateway + "/prod/items"
	for range 2 {
		if code, body := get(t, gw, "widgetwidgetwidget0001"); code != 200 {
			t.Fatalf("request: %d %s", code, body)
		}
	}
	n.stop(t)
	before := loadCatalogDB(t, data)

	run := func(extra ...string) error {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		o := testServeOptions(data, cfg, &now)
		for _, e := range extra {
			if e == "--recreate-missing" {
				o.recreateMissing = true
			}
		}
		ready := make(chan serveAddrs, 1)
		done := make(chan error, 1)
		go func() { done <- run(ctx, o, &strings.Builder{}, slog.New(slog.DiscardHandler), ready) }()
		select {
		case err := <-done:
			return err
		case <-ready:
			cancel()
			return <-done
		}
	}

	// The catalog gone, the record of the applied file and the usage
	// still there.
	for _, f := range []string{catalogFile, catalogFile + "-wal", catalogFile + "-shm"} {
		os.Rename(filepath.Join(data, f), filepath.Join(data, "moved-"+f))
	}
	err := run()
	for _, want := range []string{"is inconsistent", "catalog.db is missing", "config-applied.sha256", "usage.db (usage was recorded)", "--recreate-missing"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("start without catalog.db: got %v, want it to say %q", err, want)
		}
	}
	// Both the catalog and the record gone: still refused (usage stays).
	os.Remove(filepath.Join(data, appliedFile))
	if err := run(); err == nil || !strings.Contains(err.Error(), "usage.db (usage was recorded)") {
		t.Fatalf("start without catalog.db and record: got %v", err)
	}
	if _, err := os.Stat(filepath.Join(data, catalogFile)); err == nil {
		t.Fatal("a refused start wrote a catalog")
	}
	// Recovery: rebuilt from the file, with the same ids.
	if err := run("--recreate-missing"); err != nil {
		t.Fatal(err)
	}
	after := loadCatalogDB(t, data)
	for _, p := range before.UsagePlans {
		if got := after.PlanByName(p.Name); got == nil || got.ID != p.ID {
			t.Errorf("plan %q: id %s before, %v after the rebuild", p.Name, p.ID, got)
		}
	}
	for _, k := range before.APIKeys {
		if got := after.KeyByName(k.Name); got == nil || got.ID != k.ID {
			t.Errorf("key %q: id %s before, %v after the rebuild", k.Name, k.ID, got)
		}
	}
	// ... so the quota counted before the loss still counts: 2 of 5 used.
	n = start(t, data, cfg, &now)
	gw = "http://" + n.addrs.gateway + "/prod/items"
	now = now.Add(10 * time.Second) // tokens back
	for i, want := range []int{200, 200, 200, 429} {
		if i == 3 {
			now = now.Add(10 * time.Second)
		}
		code, body := get(t, gw, "widgetwidgetwidget0001")
		if code != want || want == 429 && body != `{"message":"Limit Exceeded"}` {
			t.Fatalf("after the rebuild, request %d: %d %s, want %d (the quota's 5 with the 2 used before)", i, code, body, want)
		}
	}
	n.stop(t)

	// The usage store gone, the catalog there.
	os.Rename(filepath.Join(data, usageFile), filepath.Join(data, "moved.db"))
	os.Remove(filepath.Join(data, usageFile+"-wal"))
	os.Remove(filepath.Join(data, usageFile+"-shm"))
	if err := run(); err == nil || !strings.Contains(err.Error(), "usage.db is missing") || !strings.Contains(err.Error(), "--recreate-missing") {
		t.Fatalf("start without usage.db: got %v", err)
	}
	if err := run("--recreate-missing"); err != nil {
		t.Fatal(err)
	}
}

// A damaged usage store stops the start with a message that says so and
// what to do, instead of a gateway that meters nothing.
func TestServeRefusesACorruptUsageStore(t *testing.T) {
	_, data, cfg := fixture(t)
	now := frozen
	n := start(t, data, cfg, &now)
	n.stop(t)
	path := filepath.Join(data, usageFile)
	if err := os.WriteFile(path, []byte(strings.Repeat("not a database; ", 4096)), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := runCLI("serve", "--config", cfg, "--data-dir", data, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0")
	for _, want := range []string{"usage store is corrupt", path, "Restore", "--recreate-missing"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("got %v, want it to say %q", err, want)
		}
	}
}

// catalogBytes is the content of the catalog's database files, to see
// that a process left them alone.
func catalogBytes(t *testing.T, data string) string {
	t.Helper()
	var b strings.Builder
	for _, f := range []string{catalogFile, catalogFile + "-wal"} {
		c, err := os.ReadFile(filepath.Join(data, f))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		b.Write(c)
	}
	if b.Len() == 0 {
		t.Fatalf("no catalog in %s", data)
	}
	return b.String()
}

// loadCatalogDB reads the catalog a stopped serve left in data.
func loadCatalogDB(t *testing.T, data string) *catalog.Catalog {
	t.Helper()
	db, err := catalogdb.Open(filepath.Join(data, catalogFile))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	st, err := db.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st.Catalog()
}
