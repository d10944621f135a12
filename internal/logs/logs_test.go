package logs

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestFor(t *testing.T) {
	var buf bytes.Buffer
	For(slog.New(slog.NewTextHandler(&buf, nil)), "sink").Info("kafka is back", "err", "none")
	if got := buf.String(); !strings.Contains(got, `msg="kafka is back" component=sink err=none`) {
		t.Errorf("logged %q, want the message, then component=sink", got)
	}
	For(nil, "sink").Info("discarded") // a nil logger discards, and does not panic
}
