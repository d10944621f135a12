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
// rolling restart during an aggregator outage admitted 3,473 into a quota
// of 2,000. A crash (kill -9) writes nothing: the restart then re-grants
// at most its share once.
const localCountsFile = "local-counts.json"

type localCounts struct {
	Fleet  int                   `json:"fleet,omitempty"`
	Counts []enforcer.LocalCount `json:"counts"`
}

// saveLocalCounts writes the gateway's local counts to the data folder.
func saveLocalCounts(dir string, gw *enforcer.Gateway) error {
	b, err := json.Marshal(localCounts{Fleet: gw.Fleet(), Counts: gw.LocalCounts()})
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, localCountsFile), b); err != nil {
		return fmt.Errorf("save local counts: %w", err)
	}
	return nil
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
