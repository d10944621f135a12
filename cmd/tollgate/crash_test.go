package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/catalog/catalogdb"
	"github.com/tollgate/tollgate/ingest"
	"github.com/tollgate/tollgate/internal/kafkatest"
	"github.com/tollgate/tollgate/internal/poll"
)

// startServe runs `tollgate serve` as a process with the admin token
// "crash-test-token" and returns it with its admin address.
func startServe(t *testing.T, ctx context.Context, data, cfg string, extra ...string) (*exec.Cmd, string) {
	t.Helper()
	return serveProcess(t, ctx, []string{"TOLLGATE_ADMIN_TOKEN=crash-test-token"}, adminListenRE, append([]string{"serve", "--config", cfg, "--data-dir", data,
		"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--admin-rate-limit", "1000"}, extra...))
}

func adminRequest(t *testing.T, method, url, contentType string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer crash-test-token")
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	return req, nil
}

// importCSV builds an ImportApiKeys file of n keys in plan.
func importCSV(n int, plan string) string {
	var b strings.Builder
	b.WriteString("Name,Key,Enabled,UsagePlanIds\n")
	for i := range n {
		fmt.Fprintf(&b, "imp-%06d,import-key-value-%08d,true,%s\n", i, i, plan)
	}
	return b.String()
}

// A serve killed (SIGKILL) while it imports keys restarts with all of the
// import or none of it: the import is one transaction of the catalog
// database.
func TestImportKilledIsAllOrNothing(t *testing.T) {
	testImportKilled(t, func(int) ([]string, func() float64, func(t *testing.T, data string) *catalog.State) {
		return nil, nil, func(t *testing.T, data string) *catalog.State {
			// The restart recovers the database (the WAL), then serves.
			cmd, _ := startServe(t, t.Context(), data, fixtureConfig(t))
			cmd.Process.Kill()
			cmd.Wait()
			db, err := catalogdb.Open(filepath.Join(data, catalogFile))
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			s, err := db.Load(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
	})
}

// The same in a fleet (serve --kafka): the import is one transaction of
// the config log, and a node that starts again (from its snapshot, then
// the log) holds all of it or none of it.
func TestFleetImportKilledIsAllOrNothing(t *testing.T) {
	_, brokers := kafkatest.Start(t)
	testImportKilled(t, func(round int) ([]string, func() float64, func(t *testing.T, data string) *catalog.State) {
		// A log of its own for each round.
		prefix := fmt.Sprintf("crash%d.", round)
		k := ingest.Kafka{Brokers: brokers, Prefix: prefix, Partitions: 1, Timeout: 5 * time.Second}
		if _, err := ingest.Migrate(context.Background(), k); err != nil {
			t.Fatal(err)
		}
		flags := []string{"--kafka", brokers[0], "--topic-prefix", prefix, "--node", "crash"}
		// How much of the import's records (a key and a membership per
		// row) the config topic holds: the kills land while it is
		// written.
		f := k.Fetcher()
		progress := func() float64 {
			_, end, err := f.Offsets(context.Background(), k.Topics().Config, 0)
			if err != nil {
				t.Fatal(err)
			}
			return float64(end) / (2 * importRows)
		}
		return flags, progress, func(t *testing.T, data string) *catalog.State {
			l, err := ingest.OpenConfigLog(ingest.ConfigLogConfig{Kafka: k, Snapshot: filepath.Join(data, "catalog-snapshot.json")})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { l.Run(ctx); close(done) }()
			defer func() { cancel(); <-done }()
			select {
			case <-l.Loaded():
			case <-time.After(30 * time.Second):
				t.Fatal("config log not loaded after 30s")
			}
			return l.State()
		}
	})
}

// fixtureConfig is the configuration file of the fixture, written once
// per test.
func fixtureConfig(t *testing.T) string {
	t.Helper()
	if c, ok := fixtureConfigs.Load(t.Name()); ok {
		return c.(string)
	}
	_, _, cfg := fixture(t)
	fixtureConfigs.Store(t.Name(), cfg)
	return cfg
}

var fixtureConfigs sync.Map

// importRows is the size of the import testImportKilled kills.
const importRows = 50000

// testImportKilled imports importRows keys by CSV into a serve, and kills
// it (SIGKILL) at 20%, 50%, 80% and 95% of the import, each time on a data
// folder of its own. For each round (0 for the whole import, then 1...),
// setup returns serve's extra flags, how far the import is (nil: by the
// time a whole import takes), and a function that returns the catalog a
// restart of the data folder holds, which must have all of the import's
// keys or none.
func testImportKilled(t *testing.T, setup func(round int) ([]string, func() float64, func(t *testing.T, data string) *catalog.State)) {
	const n = importRows
	cfg := fixtureConfig(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	run := func(data string, extra []string, progress func() float64, frac float64, killAfter time.Duration) (time.Duration, bool) {
		cmd, admin := startServe(t, ctx, data, cfg, extra...)
		var plans struct {
			Item []struct{ ID string } `json:"item"`
		}
		poll.Until(t, 30*time.Second, 10*time.Millisecond, "the fixture's plan shows", func() bool {
			req, _ := adminRequest(t, "GET", "http://"+admin+"/usageplans", "", nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			json.NewDecoder(resp.Body).Decode(&plans)
			resp.Body.Close()
			return len(plans.Item) > 0
		})
		body := importCSV(n, plans.Item[0].ID)
		req, _ := adminRequest(t, "POST", "http://"+admin+"/apikeys?mode=import&format=csv", "text/csv", strings.NewReader(body))
		start := time.Now()
		done := make(chan error, 1)
		go func() {
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				msg, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusCreated {
					err = fmt.Errorf("import answered %d: %s", resp.StatusCode, msg)
				}
			}
			done <- err
		}()
		if killAfter == 0 {
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			took := time.Since(start)
			cmd.Process.Kill() // what was answered is stored
			cmd.Wait()
			return took, true
		}
		due := time.After(killAfter)
		if progress != nil {
			due = nil
		}
		for waiting := true; waiting; {
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
				took := time.Since(start)
				cmd.Process.Kill()
				cmd.Wait()
				return took, true // answered before the kill
			case <-due:
				waiting = false
			case <-time.After(time.Millisecond):
				waiting = progress == nil || progress() < frac
			}
		}
		cmd.Process.Kill()
		cmd.Wait()
		return time.Since(start), false
	}
	count := func(s *catalog.State) int {
		n := 0
		s.KeysByName("imp-", "", func(*catalog.APIKey) bool { n++; return true })
		return n
	}

	data := filepath.Join(t.TempDir(), "data")
	extra, _, restarted := setup(0)
	took, _ := run(data, extra, nil, 0, 0)
	if got := count(restarted(t, data)); got != n {
		t.Fatalf("a whole import: %d of %d keys after a restart", got, n)
	}
	t.Logf("%d keys imported in %v", n, took)
	killed := 0
	for i, frac := range []float64{0.2, 0.5, 0.8, 0.95} {
		extra, progress, restarted := setup(i + 1)
		data := filepath.Join(t.TempDir(), "data")
		_, answered := run(data, extra, progress, frac, time.Duration(frac*float64(took)))
		if !answered {
			killed++
		}
		if got := count(restarted(t, data)); got != 0 && got != n {
			t.Fatalf("kill %d at %.0f%% of the import: %d of %d keys after the restart", i, frac*100, got, n)
		}
	}
	if killed == 0 {
		t.Fatal("every import finished before its kill: the test killed none")
	}
}
