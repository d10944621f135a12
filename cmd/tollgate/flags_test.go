package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/tollgate/tollgate/internal/kafkatest"
	"github.com/tollgate/tollgate/internal/poll"
)

func TestFlagsFromEnvironment(t *testing.T) {
	var o options
	cmd := &cobra.Command{Use: "x", RunE: func(*cobra.Command, []string) error { return nil }}
	o.kafka.addFlags(cmd.Flags(), "")
	o.addCommonFlags(cmd.Flags(), "")
	o.addGatewayFlags(cmd.Flags())
	env := map[string]string{
		"TOLLGATE_KAFKA":         "k1:9092,k2:9092",
		"TOLLGATE_TOPIC_PREFIX":  "acme.",
		"TOLLGATE_LISTEN":        "0.0.0.0:1",
		"TOLLGATE_DRAIN_TIMEOUT": "3s",
	}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	// The command line wins over the environment.
	if err := cmd.ParseFlags([]string{"--listen", "127.0.0.1:2"}); err != nil {
		t.Fatal(err)
	}
	if err := flagsFromEnv(cmd, lookup); err != nil {
		t.Fatal(err)
	}
	if strings.Join(o.kafka.brokers, ",") != "k1:9092,k2:9092" || o.kafka.prefix != "acme." || o.listen != "127.0.0.1:2" || o.drainTimeout != 3*time.Second {
		t.Fatalf("options %+v", o)
	}
	// A bad value names the variable and the flag.
	env["TOLLGATE_SPILL_MAX_BYTES"] = "lots"
	err := flagsFromEnv(cmd, lookup)
	if err == nil || !strings.Contains(err.Error(), `TOLLGATE_SPILL_MAX_BYTES="lots" (for --spill-max-bytes)`) {
		t.Fatalf("err = %v", err)
	}
}

func TestFleetCommandErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"enforcer without kafka", []string{"enforcer"}, nil, "--kafka is required (or TOLLGATE_KAFKA)"},
		{"reportapi without kafka", []string{"reportapi"}, nil, "--kafka is required"},
		{"migrate without kafka", []string{"migrate", "kafka"}, nil, "--kafka is required"},
		{"broker without port", []string{"enforcer", "--kafka", "localhost"}, nil, `broker address "localhost" has no port`},
		{"empty prefix", []string{"migrate", "kafka", "--kafka", "127.0.0.1:1", "--topic-prefix", ""}, nil, "--topic-prefix must not be empty"},
		{"bad environment value", []string{"enforcer"}, map[string]string{"TOLLGATE_EVENT_QUEUE": "many"}, "TOLLGATE_EVENT_QUEUE=\"many\" (for --event-queue)"},
		{"bad queue size", []string{"enforcer", "--kafka", "127.0.0.1:1", "--event-queue", "1", "--data-dir", "DATA"}, nil, "--event-queue: queue capacity must be between"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			args := tt.args
			for i, a := range args {
				if a == "DATA" {
					args[i] = t.TempDir()
				}
			}
			_, err := runCLI(args...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestMigrateKafkaCommand(t *testing.T) {
	_, brokers := kafkatest.Start(t)
	out, err := runCLI("migrate", "kafka", "--kafka", brokers[0], "--topic-prefix", "m.", "--partitions", "3")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"created topic m.events", "created topic m.config", "created topic m.signals", "created topic m.lost-usage", `kafka topics under "m." are ready`} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// From the environment, and idempotent.
	t.Setenv("TOLLGATE_KAFKA", brokers[0])
	t.Setenv("TOLLGATE_TOPIC_PREFIX", "m.")
	if out, err = runCLI("migrate", "kafka"); err != nil || strings.Contains(out, "created") {
		t.Fatalf("second migrate: %v\n%s", err, out)
	}
}

// serve --kafka runs every role in one process: the gateway serves the
// catalog from Kafka, its events come back through Kafka into the usage
// store, and UpdateUsage adjusts its gateway. A reportapi without a
// gateway says UpdateUsage needs the aggregator.
func TestServeOnKafka(t *testing.T) {
	f := newFleet(t)
	o := f.options(true, true)
	o.config = f.config
	n := f.start(o)
	for range 5 {
		if code := n.status("widgetwidgetwidget0001"); code != 200 {
			t.Fatalf("gateway: %d", code)
		}
	}
	poll.UntilOK(t, 10*time.Second, 10*time.Millisecond, "/v1/usage counts the 5 requests", func() error {
		if got := admittedUsage(t, n); got != 5 {
			return fmt.Errorf("/v1/usage counts %d admitted requests, want 5", got)
		}
		return nil
	})
	api := f.start(f.options(false, true))
	plan := planID(t, api, "Fleet")
	code, keys := api.admin(t, "GET", "/apikeys?name=widget", "")
	id := keys["item"].([]any)[0].(map[string]any)["id"].(string)
	code, out := api.admin(t, "PATCH", "/usageplans/"+plan+"/keys/"+id+"/usage", `{"patchOperations":[{"op":"replace","path":"/remaining","value":"1"}]}`)
	if code != 501 || !strings.Contains(out["message"].(string), "UpdateUsage needs the quota authority") {
		t.Fatalf("UpdateUsage on reportapi: %d %v, want 501 saying why", code, out)
	}
	// serve --kafka holds the gateway's counters: one request left.
	if code, out = n.admin(t, "PATCH", "/usageplans/"+plan+"/keys/"+id+"/usage", `{"patchOperations":[{"op":"replace","path":"/remaining","value":"1"}]}`); code != 200 {
		t.Fatalf("UpdateUsage on serve --kafka: %d %v", code, out)
	}
	if a, b := n.status("widgetwidgetwidget0001"), n.status("widgetwidgetwidget0001"); a != 200 || b != 429 {
		t.Fatalf("after setting remaining to 1: %d then %d, want 200 then 429", a, b)
	}
	// A restart restores the counters from the store (and from the
	// events the store had not loaded yet): the quota stays used up.
	n.stop(t)
	n = f.start(o)
	poll.UntilOK(t, 10*time.Second, 10*time.Millisecond, "after a restart, 429 (the quota was used up before it)", func() error {
		switch code := n.status("widgetwidgetwidget0001"); code {
		case 429:
			return nil
		case 200:
			return fmt.Errorf("still %d", code)
		default:
			t.Fatalf("after a restart: %d, want 429 (the quota was used up before it)", code)
			return nil
		}
	})
}

func TestNodeStopsCleanlyWhileWaitingForKafka(t *testing.T) {
	// No snapshot and no broker: the enforcer waits for the catalog, and
	// a stop ends the wait.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	o := options{kafka: kafkaOptions{brokers: []string{"127.0.0.1:1"}, prefix: "tollgate.", timeout: time.Second}, gateway: true,
		dataDir: t.TempDir(), listen: "127.0.0.1:0", queueSize: 16, spillMax: 1 << 20, drainTimeout: time.Second, shutdownTimeout: time.Second}
	go func() { done <- run(ctx, o, io.Discard, slog.New(slog.DiscardHandler), nil) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the enforcer did not stop within 10s")
	}
}
