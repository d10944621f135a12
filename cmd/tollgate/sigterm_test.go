package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tollgate/tollgate/enforcer"
	"github.com/tollgate/tollgate/internal/poll"
	"github.com/tollgate/tollgate/usage/sqlitestore"
)

// TestMain lets the test binary stand in for the tollgate binary, so a
// test can run `tollgate serve` as a real process and signal it.
//
// TOLLGATE_TEST_DATA_PLANE sets --data-plane's default, in the tests and
// the processes they start (make test runs the gateway's on both planes).
func TestMain(m *testing.M) {
	if p := os.Getenv("TOLLGATE_TEST_DATA_PLANE"); p != "" {
		plane, err := enforcer.ParseDataPlane(p)
		if err != nil {
			fmt.Fprintln(os.Stderr, "TOLLGATE_TEST_DATA_PLANE:", err)
			os.Exit(2)
		}
		defaultPlane = plane
	}
	if os.Getenv("TOLLGATE_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

var listenRE = regexp.MustCompile(`msg="gateway listening" (?:\S+ )*?addr=(\S+)`)

// SIGTERM stops the process cleanly and every request made before it is
// in the store.
func TestSIGTERMFlushesEveryEvent(t *testing.T) {
	_, data, cfg := fixture(t)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd, addr := startProcess(t, ctx, data, cfg, "--flush-interval", "1h")
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

var adminListenRE = regexp.MustCompile(`msg="admin listening" (?:\S+ )*?addr=(\S+)`)

// An enforcer killed (SIGKILL) with events in its spill log loses none of
// them: the next start replays the log to Kafka.
func TestEnforcerKilledReplaysItsSpillLog(t *testing.T) {
	f := newFleet(t)
	ao := f.options(false, true)
	ao.config = f.config
	f.start(ao)
	eo := f.options(true, false)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "enforcer", "--kafka", strings.Join(f.kafka.brokers, ","), "--kafka-timeout", "2s",
		"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--data-dir", eo.dataDir, "--flush-interval", "5ms")
	cmd.Env = append(os.Environ(), "TOLLGATE_TEST_MAIN=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	sc := bufio.NewScanner(stderr)
	var gw, admin string
	for (gw == "" || admin == "") && sc.Scan() {
		if m := listenRE.FindStringSubmatch(sc.Text()); m != nil {
			gw = m[1]
		}
		if m := adminListenRE.FindStringSubmatch(sc.Text()); m != nil {
			admin = m[1]
		}
	}
	if gw == "" || admin == "" {
		t.Fatal("the enforcer never said where it listens")
	}
	go func() {
		for sc.Scan() {
		}
	}()
	e := &fleetNode{addrs: serveAddrs{gateway: gw, admin: admin}, data: eo.dataDir}
	e.waitStatus(t, "widgetwidgetwidget0001", 200, 10*time.Second)

	f.proxy.Blackhole(t)
	const n = 100
	for i := range n {
		if code := e.status("widgetwidgetwidget0001"); code != 200 {
			t.Fatalf("request %d: %d", i, code)
		}
	}
	// Kill it once every event is on disk (the queue is memory: what a
	// kill finds there is lost, which is why the drainer flushes every
	// --flush-interval).
	poll.UntilOK(t, 30*time.Second, 10*time.Millisecond, "every event is in the spill log", func() error {
		if got := metric(t, e, "tollgate_usage_events_spill_pending"); got < n {
			return fmt.Errorf("spill log holds %v events, want %d", got, n)
		}
		return nil
	})
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	f.proxy.Restore(t)
	f.start(eo) // the same data folder
	k, _ := f.kafka.config()
	poll.UntilOK(t, 30*time.Second, 20*time.Millisecond, "the restart replays the spill log into Kafka", func() error {
		if got := distinctIDs(readEvents(t, k)); got != n+1 {
			return fmt.Errorf("%d distinct events in Kafka, want %d", got, n+1)
		}
		return nil
	})
}

// metric reads one value from a node's /metrics.
func metric(t *testing.T, n *fleetNode, name string) float64 {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+n.addrs.admin+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+adminCreds(t, n.data).Token)
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	sc := bufio.NewScanner(r.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	t.Fatalf("/metrics has no %s", name)
	return 0
}
