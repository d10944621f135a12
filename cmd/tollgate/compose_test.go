package main

import (
	"os"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// docker-compose.yml cannot be run here (no Docker engine), so its shape
// is checked: the services the README walks through, ports on 127.0.0.1
// only, and tollgate commands whose flags and TOLLGATE_ variables the
// binary accepts.
func TestDockerComposeFile(t *testing.T) {
	b, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Services map[string]struct {
			Image       string            `yaml:"image"`
			Build       any               `yaml:"build"`
			Command     []string          `yaml:"command"`
			Environment map[string]string `yaml:"environment"`
			Ports       []string          `yaml:"ports"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	for _, name := range []string{"kafka", "clickhouse", "migrate-kafka", "migrate-clickhouse", "aggregator", "reportapi", "enforcer1", "enforcer2", "gateway", "upstream"} {
		if _, ok := f.Services[name]; !ok {
			t.Errorf("no service %q", name)
		}
	}
	used := map[string]bool{}
	for name, s := range f.Services {
		for _, p := range s.Ports {
			if !strings.HasPrefix(p, "127.0.0.1:") {
				t.Errorf("service %s publishes %q: bind it to 127.0.0.1", name, p)
			}
		}
		if s.Image != "tollgate:dev" {
			continue
		}
		if s.Build == nil {
			t.Errorf("service %s: the tollgate image is built from the Dockerfile", name)
		}
		cmd, rest, err := newRoot().Find(s.Command)
		if err != nil || cmd.Name() == "tollgate" {
			t.Errorf("service %s: command %v is not a tollgate command: %v", name, s.Command, err)
			continue
		}
		if err := cmd.ParseFlags(rest); err != nil {
			t.Errorf("service %s: %v: %v", name, s.Command, err)
		}
		for k := range s.Environment {
			if strings.HasPrefix(k, "TOLLGATE_ADMIN_") {
				continue // credentials, not flags
			}
			// Shared by every tollgate service: a variable must set a flag
			// of at least one of them (a misspelt one sets nothing).
			flag := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(k, "TOLLGATE_"), "_", "-"))
			if cmd.Flags().Lookup(flag) != nil {
				used[k] = true
			} else if _, ok := used[k]; !ok {
				used[k] = false
			}
		}
	}
	for k, ok := range used {
		if !ok {
			t.Errorf("%s sets no flag of any tollgate service", k)
		}
	}
	if f.Services["reportapi"].Environment["TOLLGATE_CLICKHOUSE"] == "" {
		t.Error("the report API must read ClickHouse")
	}
}
