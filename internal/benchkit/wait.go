package benchkit

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Pause waits for d or until ctx ends, and returns ctx's error if it
// ended.
func Pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// WaitHealthy asks GET /healthz at addr (host:port) through client every
// interval until it answers 200 (tollgate's catalog is loaded), p exits
// (p may be nil: not watched), or ctx ends.
func WaitHealthy(ctx context.Context, client *http.Client, addr string, interval time.Duration, p *Proc) error {
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/healthz", nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if p != nil {
			if err := p.Exited(); err != nil {
				return err
			}
		}
		if err := Pause(ctx, interval); err != nil {
			return fmt.Errorf("not healthy: %w", err)
		}
	}
}
