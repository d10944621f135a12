package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/catalog"
	"github.com/tollgate/tollgate/catalog/catalogdb"
)

// startServe runs `tollgate serve` as a process with the admin token
// "crash-test-token" and returns it with its admin address.
func startServe(t *testing.T, ctx context.Context, data, cfg string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.CommandContext(ctx, os.Args[0], "serve", "--config", cfg, "--data-dir", data,
		"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--admin-rate-limit", "1000")
	cmd.Env = append(os.Environ(), "TOLLGATE_TEST_MAIN=1", "TOLLGATE_ADMIN_TOKEN=crash-test-token")
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
		if m := adminListenRE.FindStringSubmatch(sc.Text()); m != nil {
			go func() {
				for sc.Scan() {
				}
			}()
			return cmd, m[1]
		}
	}
	t.Fatal("serve never said where its admin API listens")
	return nil, ""
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
	const n = 50000
	_, _, cfg := fixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	run := func(data string, killAfter time.Duration) (time.Duration, bool) {
		cmd, admin := startServe(t, ctx, data, cfg)
		req, _ := adminRequest(t, "GET", "http://"+admin+"/usageplans", "", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var plans struct {
			Item []struct{ ID string } `json:"item"`
		}
		json.NewDecoder(resp.Body).Decode(&plans)
		resp.Body.Close()
		if len(plans.Item) == 0 {
			t.Fatal("the fixture has no plan")
		}
		body := importCSV(n, plans.Item[0].ID)
		req, _ = adminRequest(t, "POST", "http://"+admin+"/apikeys?mode=import&format=csv", "text/csv", strings.NewReader(body))
		start := time.Now()
		done := make(chan error, 1)
		go func() {
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusCreated {
					err = fmt.Errorf("import answered %d", resp.StatusCode)
				}
			}
			done <- err
		}()
		if killAfter == 0 {
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			return time.Since(start), true
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			return time.Since(start), true // answered before the kill
		case <-time.After(killAfter):
		}
		cmd.Process.Kill()
		cmd.Wait()
		return time.Since(start), false
	}
	count := func(data string) int {
		db, err := catalogdb.Open(filepath.Join(data, catalogFile))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		s, err := db.Load(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		s.KeysByName("imp-", "", func(*catalog.APIKey) bool { n++; return true })
		return n
	}

	took, _ := run(filepath.Join(t.TempDir(), "data"), 0)
	t.Logf("%d keys imported in %v", n, took)
	killed := 0
	for i, frac := range []float64{0.2, 0.5, 0.8, 0.95} {
		data := filepath.Join(t.TempDir(), "data")
		_, answered := run(data, time.Duration(frac*float64(took)))
		if !answered {
			killed++
		}
		// The restart recovers the database (the WAL), then serves.
		cmd, _ := startServe(t, ctx, data, cfg)
		cmd.Process.Kill()
		cmd.Wait()
		if got := count(data); got != 0 && got != n {
			t.Fatalf("kill %d at %.0f%% of the import: %d of %d keys after the restart", i, frac*100, got, n)
		}
	}
	if killed == 0 {
		t.Fatal("every import finished before its kill: the test killed none")
	}
}
