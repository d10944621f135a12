package catalog

import (
	"context"
	"errors"
	"testing"
	"time"
)

// conflicting is a Changer whose first conflicts changes fail with
// ErrConflict (another writer got there first); later ones apply to a
// new State.
type conflicting struct {
	conflicts, calls int
	err              error // returned instead of a conflict, if set
}

func (c *conflicting) Change(_ context.Context, f func(tx *Tx) error) (*State, error) {
	c.calls++
	tx := NewState().Begin()
	if err := f(tx); err != nil {
		return nil, err
	}
	if c.err != nil {
		return nil, c.err
	}
	if c.calls <= c.conflicts {
		return nil, ErrConflict
	}
	return tx.State, nil
}

func TestApplyFileToRetriesConflicts(t *testing.T) {
	f, err := ParseFile("x.yaml", []byte("usagePlans:\n  - name: Free\n"))
	if err != nil {
		t.Fatal(err)
	}
	now := func() time.Time { return time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC) }
	for _, tt := range []struct {
		conflicts, wantCalls int
		other                error
		wantErr              error
	}{
		{0, 1, nil, nil},
		{2, 3, nil, nil},                // applied at the third attempt
		{5, 3, nil, ErrConflict},        // gives up after three
		{0, 1, errors.New("disk"), nil}, // not a conflict: not retried
	} {
		c := &conflicting{conflicts: tt.conflicts, err: tt.other}
		retries := 0
		ch, err := ApplyFileTo(context.Background(), c, f, now, func(error) { retries++ })
		switch {
		case tt.other != nil:
			if err == nil || c.calls != 1 {
				t.Errorf("another error: %v after %d calls", err, c.calls)
			}
		case tt.wantErr != nil:
			if !errors.Is(err, tt.wantErr) || c.calls != tt.wantCalls {
				t.Errorf("%d conflicts: %v after %d calls, want %v after %d", tt.conflicts, err, c.calls, tt.wantErr, tt.wantCalls)
			}
		default:
			if err != nil || c.calls != tt.wantCalls || retries != tt.wantCalls-1 || ch == nil || !ch.Changed {
				t.Errorf("%d conflicts: %v, %d calls, %d retries, changes %+v", tt.conflicts, err, c.calls, retries, ch)
			}
		}
	}
}
