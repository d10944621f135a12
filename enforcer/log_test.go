package enforcer

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// The gateway's lines carry component=enforcer (ARCHITECTURE.md, "Logs").
func TestLogsNameTheComponent(t *testing.T) {
	var buf bytes.Buffer
	if _, err := New(Config{Logger: slog.New(slog.NewTextHandler(&buf, nil))}, nil); err != nil {
		t.Fatal(err)
	}
	line := buf.String()
	if !strings.Contains(line, `msg="catalog loaded"`) || !strings.Contains(line, "component=enforcer") {
		t.Errorf("log %q, want catalog loaded with component=enforcer", line)
	}
}
