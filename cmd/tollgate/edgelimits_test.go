package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/tollgate/tollgate/enforcer"
	"github.com/tollgate/tollgate/reportapi"
)

func TestEdgeLimitFlags(t *testing.T) {
	defaultConfig := enforcer.ServerConfig{BodyTimeout: 29 * time.Second, MaxBodyBytes: 10 << 20, ExchangeTimeout: time.Minute}
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    enforcer.ServerConfig
		wantErr string
	}{
		{"defaults", nil, nil, enforcer.ServerConfig{BodyTimeout: 29 * time.Second, MaxBodyBytes: 10 << 20, ExchangeTimeout: time.Minute}, ""},
		{"flags", []string{"--body-timeout", "5s", "--max-body-bytes", "1000", "--exchange-timeout", "7s"}, nil,
			enforcer.ServerConfig{BodyTimeout: 5 * time.Second, MaxBodyBytes: 1000, ExchangeTimeout: 7 * time.Second}, ""},
		{"environment", nil, map[string]string{"TOLLGATE_MAX_BODY_BYTES": "2048", "TOLLGATE_BODY_TIMEOUT": "1s"},
			enforcer.ServerConfig{BodyTimeout: time.Second, MaxBodyBytes: 2048, ExchangeTimeout: time.Minute}, ""},
		{"zero body timeout", []string{"--body-timeout", "0s"}, nil, enforcer.ServerConfig{}, `invalid argument "0s" for "--body-timeout" flag: must be positive, got 0s`},
		{"negative body size", []string{"--max-body-bytes", "-1"}, nil, enforcer.ServerConfig{}, `invalid argument "-1" for "--max-body-bytes" flag: must be positive, got -1`},
		{"body size not a number", []string{"--max-body-bytes", "10MB"}, nil, enforcer.ServerConfig{}, `invalid argument "10MB" for "--max-body-bytes" flag`},
		{"bad environment", nil, map[string]string{"TOLLGATE_EXCHANGE_TIMEOUT": "0"}, enforcer.ServerConfig{}, `TOLLGATE_EXCHANGE_TIMEOUT="0" (for --exchange-timeout): invalid argument "0" for "--exchange-timeout" flag: must be positive, got 0`},
		{"data plane", []string{"--data-plane", "net/http"}, nil, defaultConfig, ""},
		{"data plane from the environment", nil, map[string]string{"TOLLGATE_DATA_PLANE": "fasthttp"}, defaultConfig, ""},
		{"unknown data plane", []string{"--data-plane", "nginx"}, nil, enforcer.ServerConfig{}, `invalid argument "nginx" for "--data-plane" flag: data plane "nginx": want "fasthttp" or "net/http"`},
	}
	wantPlane := map[string]enforcer.DataPlane{"data plane": enforcer.NetHTTP, "data plane from the environment": enforcer.FastHTTP, "defaults": defaultPlane}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var l edgeLimits
			cmd := &cobra.Command{}
			l.addFlags(cmd.Flags())
			err := cmd.ParseFlags(tt.args)
			if err == nil {
				err = flagsFromEnv(cmd, func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok })
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := l.serverConfig(); got != tt.want {
				t.Errorf("server config %+v, want %+v", got, tt.want)
			}
			if want, ok := wantPlane[tt.name]; ok && l.plane != want {
				t.Errorf("data plane %q, want %q", l.plane, want)
			}
		})
	}
	// Both commands that run a gateway have them.
	for _, cmd := range []*cobra.Command{newServeCmd(), newEnforcerCmd()} {
		for _, name := range []string{"body-timeout", "max-body-bytes", "exchange-timeout", "data-plane"} {
			if cmd.Flags().Lookup(name) == nil {
				t.Errorf("tollgate %s has no --%s", cmd.Name(), name)
			}
		}
	}
}

// serve applies the limits to its gateway listener.
func TestServeAppliesEdgeLimits(t *testing.T) {
	_, data, cfg := fixture(t)
	now := frozen
	o := testServeOptions(data, cfg, &now)
	o.limits.maxBodyBytes = 10
	addrs := startWith(t, o).addrs
	for _, tt := range []struct {
		body   string
		status int
	}{{"0123456789", 200}, {"0123456789x", 413}} {
		req, _ := http.NewRequest("GET", "http://"+addrs.gateway+"/prod/items", strings.NewReader(tt.body))
		req.Header.Set("x-api-key", "widgetwidgetwidget0001")
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != tt.status {
			t.Errorf("body of %d bytes: %d, want %d", len(tt.body), r.StatusCode, tt.status)
		}
	}
}

// serve bounds what a caller can make the admin listener hold while it
// reads request headers, before anyone is authenticated.
func TestServeAdminListenerBoundsHeaders(t *testing.T) {
	_, data, cfg := fixture(t)
	now := frozen
	o := testServeOptions(data, cfg, &now)
	addrs := startWith(t, o).addrs
	for _, tt := range []struct {
		name   string
		size   int
		status int
	}{{"small header", 1 << 10, 200}, {"header past the bound", reportapi.MaxHeaderBytes + 8<<10, 431}} {
		req, _ := http.NewRequest("GET", "http://"+addrs.admin+"/healthz", nil)
		req.Header.Set("X-Filler", strings.Repeat("a", tt.size))
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != tt.status {
			t.Errorf("%s (%d bytes): %d, want %d", tt.name, tt.size, r.StatusCode, tt.status)
		}
	}
}
