package backoff

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestNext(t *testing.T) {
	var got []time.Duration
	w := time.Duration(0)
	for range 6 {
		w = Next(w, 100*time.Millisecond, time.Second)
		got = append(got, w)
	}
	want := []time.Duration{100e6, 200e6, 400e6, 800e6, 1e9, 1e9}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("waits %v, want %v", got, want)
		}
	}
}

func TestRetry(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	w := time.Duration(0)
	if !Retry(context.Background(), log, &w, time.Millisecond, time.Second, "fetch failed; retrying", "partition", 3) {
		t.Fatal("Retry with a live context: false")
	}
	if w != time.Millisecond || !strings.Contains(buf.String(), "partition=3 retry_in=1ms") {
		t.Errorf("wait %v, log %q", w, buf.String())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	buf.Reset()
	if Retry(ctx, log, &w, time.Millisecond, time.Second, "x") || buf.Len() != 0 || w != time.Millisecond {
		t.Errorf("Retry with an ended context: logged %q, wait %v", buf.String(), w)
	}
	if Sleep(ctx, time.Hour) {
		t.Error("Sleep with an ended context: true")
	}
}
