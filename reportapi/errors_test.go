package reportapi

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"testing"

	"github.com/tollgate/tollgate/catalog"
)

// Every error the admin API answers maps here, wrapped or not.
func TestErrorOf(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("doing something: %w", err) }
	for _, tt := range []struct {
		err    error
		status int
	}{
		{badRequest("x"), 400},
		{wrap(&http.MaxBytesError{Limit: 10}), 413},
		{wrap(os.ErrDeadlineExceeded), 408},
		{wrap(&catalog.ValidationError{}), 400},
		{wrap(catalog.ErrConflict), 409},
		{wrap(catalog.ErrUnavailable), 503},
		{wrap(catalog.ErrNoSuchKeyPlan), 404},
		{wrap(catalog.ErrNoQuota), 400},
		{wrap(catalog.ErrRemainingOutOfRange), 400},
		{wrap(ErrNotSupported), 501},
		{errors.New("disk full"), 500},
	} {
		if got := errorOf("", tt.err); got.status != tt.status {
			t.Errorf("errorOf(%v) = %d, want %d", tt.err, got.status, tt.status)
		}
	}
	if got := bodyError(errors.New("connection reset"), 10); got.status != 400 {
		t.Errorf("bodyError of a read error = %d, want 400", got.status)
	}
}
