package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// An enforcer stopped and started again during an aggregator outage
// admits only what was left of its lease: its local counts travel
// through local-counts.json. Without them, each restart granted the
// lease again (TestFleetQuotaHoldsWhenSignalsStop measures a rolling
// restart).
func TestEnforcerRestartKeepsItsLocalCounts(t *testing.T) {
	f := newFleet(t)
	cfg := f.fleetConfig("quota100.yaml", strings.Replace(quotaYAML, "limit: 10000", "limit: 100", 1))
	ao := f.options(false, true)
	ao.config = cfg
	f.start(ao)
	// No aggregator: the fleet of two enforcers that --fleet-size names
	// gives each the fail-safe lease, 50.
	eo := f.options(true, false)
	eo.fleetSize = 2
	e := f.start(eo)
	const key = "sharedsharedshared0001"
	e.waitStatus(t, key, 200, 10*time.Second)
	admitted := 1
	for range 29 {
		if e.status(key) == 200 {
			admitted++
		}
	}
	if admitted != 30 {
		t.Fatalf("before the restart: %d admitted", admitted)
	}
	if _, err := os.Stat(filepath.Join(eo.dataDir, runningFile)); err != nil {
		t.Fatalf("no running mark while it runs: %v", err)
	}
	e.stop(t)
	if _, err := os.Stat(filepath.Join(eo.dataDir, localCountsFile)); err != nil {
		t.Fatalf("no local counts saved: %v", err)
	}
	if _, err := os.Stat(filepath.Join(eo.dataDir, runningFile)); err == nil {
		t.Fatal("the running mark outlived a stop")
	}
	e = f.start(eo)
	after := 0
	for range 100 {
		if e.status(key) == 200 {
			after++
		}
	}
	if after != 20 {
		t.Fatalf("after the restart: %d admitted, want the 20 left of the lease of 50", after)
	}
	if _, err := os.Stat(filepath.Join(eo.dataDir, localCountsFile)); err == nil {
		t.Fatal("the local counts file is still there after the start: a crash would restore it again")
	}
}

// markRunning tells a start after a stop from one after a crash.
func TestMarkRunning(t *testing.T) {
	dir := t.TempDir()
	if unclean, err := markRunning(dir); err != nil || unclean {
		t.Fatalf("first start: unclean %v, %v", unclean, err)
	}
	if unclean, err := markRunning(dir); err != nil || !unclean {
		t.Fatalf("a start after a run that left its mark: unclean %v, %v", unclean, err)
	}
}
