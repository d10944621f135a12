package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/tollgate/tollgate/enforcer"
	"github.com/tollgate/tollgate/internal/atomicfile"
)

// localCountsFile keeps, across an enforcer's restart, what it admitted
// of each key's quota in the current period (enforcer.LocalCount) and
// the fleet's size: written when the enforcer stops, read and removed
// when it starts, before the signals snapshot is applied. Without it a
// restart grants its lease again (the local count starts at 0): a
// rolling restart of three enforcers during an aggregator outage
// admitted 940 into a quota of 600 (TestFleetQuotaHoldsWhenSignalsStop
// with this file taken out, and the fail-safe lease). A crash (kill -9) writes nothing: the restart then re-grants
// at most its share once.
const localCountsFile = "local-counts.json"

// runningFile marks an enforcer's data folder from its start until its
// stop wrote the local counts: found at a start, the last run ended
// without a stop (killed, crashed), which that start logs and counts
// (tollgate_enforcer_unclean_start): its queued events (at most
// --flush-interval of them) were lost, and it may grant each key's lease
// once more (at most its share of what the key has left), as its local
// counts died with it.
const runningFile = "enforcer-running"

type localCounts struct {
	Fleet  int                   `json:"fleet,omitempty"`
	Counts []enforcer.LocalCount `json:"counts"`
}

// saveLocalCounts writes the gateway's local counts to the data folder,
// and removes the running mark.
func saveLocalCounts(dir string, gw *enforcer.Gateway) error {
	b, err := json.Marshal(localCounts{Fleet: gw.Fleet(), Counts: gw.LocalCounts()})
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, localCountsFile), b); err != nil {
		return fmt.Errorf("save local counts: %w", err)
	}
	if err := os.Remove(filepath.Join(dir, runningFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// markRunning reports whether the last run left its running mark (it
// ended without a stop), and marks this one.
func markRunning(dir string) (unclean bool, err error) {
	path := filepath.Join(dir, runningFile)
	_, err = os.Stat(path)
	unclean = err == nil
	return unclean, atomicfile.WriteFile(path, []byte("an enforcer runs on this folder; a stop removes this file\n"))
}

// restoreLocalCounts gives the gateway the counts a stop saved, and
// removes the file: a later crash must not restore them again. It
// returns how many it restored.
func restoreLocalCounts(dir string, gw *enforcer.Gateway) (int, error) {
	path := filepath.Join(dir, localCountsFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var lc localCounts
	if err := json.Unmarshal(b, &lc); err != nil {
		return 0, fmt.Errorf("%s: %w (delete it to start without the counts of the last run)", path, err)
	}
	if lc.Fleet > 0 {
		gw.SetFleet(lc.Fleet)
	}
	n := gw.RestoreLocal(lc.Counts)
	if err := os.Remove(path); err != nil {
		return n, err
	}
	return n, nil
}
