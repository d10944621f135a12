package sqlitestore

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// A damaged file is refused at Open, naming what is wrong, instead of
// being accepted and then failing every write.
func TestOpenRefusesACorruptFile(t *testing.T) {
	for _, tc := range []struct {
		name    string
		corrupt func(b []byte) []byte
	}{
		{"pages overwritten", func(b []byte) []byte {
			for i := 2 * 4096; i < len(b)-4096 && i < 6*4096; i++ {
				b[i] = byte(i * 7)
			}
			return b
		}},
		{"header overwritten", func(b []byte) []byte {
			copy(b, "this is not a database file at all")
			return b
		}},
		{"truncated", func(b []byte) []byte { return b[:len(b)/2] }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "usage.db")
			s, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 20 {
				if err := s.InsertEvents(context.Background(), many(500, int64(i)*60e9, "p", "k")); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Close(); err != nil { // checkpoints the WAL into the file
				t.Fatal(err)
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if len(b) < 8*4096 {
				t.Fatalf("file of %d bytes: too small to damage its inner pages", len(b))
			}
			if err := os.WriteFile(path, tc.corrupt(b), 0o600); err != nil {
				t.Fatal(err)
			}
			s, err = Open(path)
			if err == nil {
				s.Close()
				t.Fatal("Open of a damaged file: got no error")
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open of a damaged file: got %v, want ErrCorrupt", err)
			}
			t.Log(err)
		})
	}
}

func TestHasUsage(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		write func(s *Store) error
		want  bool
	}{
		{"new", func(*Store) error { return nil }, false},
		{"events", func(s *Store) error { return s.InsertEvents(ctx, many(3, 0, "p", "k")) }, true},
		{"adjustment", func(s *Store) error { return s.AdjustQuota(ctx, "p", "k", 20000, 5) }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(filepath.Join(t.TempDir(), "usage.db"))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if err := tc.write(s); err != nil {
				t.Fatal(err)
			}
			if got, err := s.HasUsage(ctx); err != nil || got != tc.want {
				t.Fatalf("HasUsage = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}
