package main

import (
	"bytes"
	"io"
	"os"
	"strings"
	"testing"
)

func TestProgressReader(t *testing.T) {
	var w bytes.Buffer
	data := bytes.Repeat([]byte("x"), 200<<10)
	got, err := io.ReadAll(&progressReader{r: bytes.NewReader(data), w: &w, label: "upload", total: int64(len(data))})
	if err != nil || len(got) != len(data) {
		t.Fatalf("read %d, %v", len(got), err)
	}
	if !strings.Contains(w.String(), "upload [") || !strings.HasSuffix(w.String(), "100%\n") {
		t.Errorf("progress = %q", w.String())
	}
	if progressTo(&w) != nil {
		t.Error("a progress bar for output that is not a terminal")
	}
	f, _ := os.CreateTemp(t.TempDir(), "out")
	defer f.Close()
	if progressTo(f) != nil {
		t.Error("a progress bar for a regular file")
	}
}
