package main

import (
	"fmt"
	"io"
	"log/slog"
	"sort"

	"github.com/tollgate/tollgate/catalog"
)

// reportApplied logs what applying a file created and prints the values
// generated for new keys: once, on standard output only (the catalog
// keeps a hash).
func reportApplied(stdout io.Writer, logger *slog.Logger, cur *catalog.State, ch *catalog.Changes) {
	// A file of a million keys is not a million log lines: the first
	// ones, then how many.
	const shown = 20
	for _, c := range ch.Created[:min(len(ch.Created), shown)] {
		logger.Info("created " + c)
	}
	if len(ch.Created) > shown {
		logger.Info(fmt.Sprintf("created %d more plans and keys", len(ch.Created)-shown))
	}
	ids := make([]string, 0, len(ch.GeneratedKeys))
	for id := range ch.GeneratedKeys {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		if k := cur.Key(id); k != nil {
			fmt.Fprintf(stdout, "API key %q (id %s) value: %s\n", k.Name, id, ch.GeneratedKeys[id])
		}
	}
}
