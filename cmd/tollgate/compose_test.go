package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
)

// composeFile is what the tests read of docker-compose.yml.
type composeFile struct {
	Services map[string]composeService `yaml:"services"`
}

type composeService struct {
	Image       string            `yaml:"image"`
	Build       any               `yaml:"build"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	Ports       []string          `yaml:"ports"`
	Volumes     []string          `yaml:"volumes"`
}

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	b, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var f composeFile
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return f
}

// docker-compose.yml cannot be run here (no Docker engine), so its shape
// is checked: the services the README walks through, ports on 127.0.0.1
// only, and tollgate commands whose flags and TOLLGATE_ variables the
// binary accepts.
func TestDockerComposeFile(t *testing.T) {
	f := loadCompose(t)
	for _, name := range []string{"kafka", "clickhouse", "migrate-kafka", "migrate-clickhouse", "aggregator", "reportapi", "enforcer1", "enforcer2", "gateway", "upstream", "prometheus", "grafana"} {
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

// command is s's tollgate command with its flags parsed, and those its
// command line leaves unset taken from its environment, as the binary
// does.
func (s composeService) command() (*cobra.Command, error) {
	cmd, rest, err := newRoot().Find(s.Command)
	if err != nil {
		return nil, err
	}
	if cmd.Name() == "tollgate" {
		return nil, fmt.Errorf("%v is not a tollgate command", s.Command)
	}
	if err := cmd.ParseFlags(rest); err != nil {
		return nil, err
	}
	err = flagsFromEnv(cmd, func(k string) (string, bool) {
		v, ok := s.Environment[k]
		return v, ok
	})
	return cmd, err
}

// hostPath is the file or folder of the repository that s mounts at
// container path p ("" if none does).
func (s composeService) hostPath(p string) string {
	best, host := "", ""
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) < 2 || !strings.HasPrefix(parts[0], ".") {
			continue // a named volume
		}
		c := parts[1]
		if (p == c || strings.HasPrefix(p, c+"/")) && len(c) > len(best) {
			best, host = c, filepath.Join("../..", parts[0], strings.TrimPrefix(p, c))
		}
	}
	return host
}

// fleetRoles are the tollgate commands that run for good, each with an
// admin listener that serves /metrics.
var fleetRoles = []string{"serve", "enforcer", "reportapi", "aggregator"}

// TestComposePrometheusScrapesEveryRole reads the Prometheus service's
// configuration and checks that every scrape target is a tollgate
// service's admin listener: the binary's own flag parsing of the
// service's command gives --admin-listen, on every interface at the
// target's port; the path is /metrics, and the bearer token the one the
// service takes. Every fleet role is scraped.
func TestComposePrometheusScrapesEveryRole(t *testing.T) {
	f := loadCompose(t)
	prom, ok := f.Services["prometheus"]
	if !ok {
		t.Fatal("no prometheus service")
	}
	if !strings.HasPrefix(prom.Image, "prom/prometheus:") {
		t.Errorf("prometheus image %q", prom.Image)
	}
	const configPath = "/etc/prometheus/prometheus.yml" // the image's --config.file
	for _, a := range prom.Command {
		if strings.HasPrefix(a, "--config.file") {
			t.Fatalf("prometheus command %v: the test reads the image's default %s", prom.Command, configPath)
		}
	}
	file := prom.hostPath(configPath)
	if file != filepath.Join("../..", "docker/prometheus/prometheus.yml") {
		t.Fatalf("prometheus mounts %q at %s, want docker/prometheus/prometheus.yml", file, configPath)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			MetricsPath   string `yaml:"metrics_path"`
			Scheme        string `yaml:"scheme"`
			Authorization struct {
				Type        string `yaml:"type"`
				Credentials string `yaml:"credentials"`
			} `yaml:"authorization"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	scraped := map[string]bool{}
	for _, job := range cfg.ScrapeConfigs {
		if job.MetricsPath != "/metrics" && job.MetricsPath != "" { // "": Prometheus' default, /metrics
			t.Errorf("job %s scrapes %s, want /metrics", job.JobName, job.MetricsPath)
		}
		if job.Scheme != "" && job.Scheme != "http" {
			t.Errorf("job %s: scheme %s; the admin listeners speak http", job.JobName, job.Scheme)
		}
		if !strings.EqualFold(job.Authorization.Type, "Bearer") {
			t.Errorf("job %s: authorization type %q, want Bearer (/metrics wants the admin credentials)", job.JobName, job.Authorization.Type)
		}
		for _, sc := range job.StaticConfigs {
			for _, target := range sc.Targets {
				host, port, err := net.SplitHostPort(target)
				if err != nil {
					t.Errorf("job %s: target %q: %v", job.JobName, target, err)
					continue
				}
				s, ok := f.Services[host]
				if !ok || s.Image != "tollgate:dev" {
					t.Errorf("job %s: target %s is no tollgate service", job.JobName, target)
					continue
				}
				scraped[host] = true
				cmd, err := s.command()
				if err != nil {
					t.Errorf("job %s: service %s: %v", job.JobName, host, err)
					continue
				}
				fl := cmd.Flags().Lookup("admin-listen")
				if fl == nil {
					t.Errorf("job %s: tollgate %s has no admin listener", job.JobName, cmd.Name())
					continue
				}
				lhost, lport, err := net.SplitHostPort(fl.Value.String())
				switch {
				case fl.Value.String() == "":
					t.Errorf("job %s: service %s has no admin listener (give it --admin-listen 0.0.0.0:%s)", job.JobName, host, port)
				case err != nil:
					t.Errorf("job %s: service %s listens on %q (--admin-listen), not at %s: %v", job.JobName, host, fl.Value, target, err)
				case lport != port:
					t.Errorf("job %s: target %s, but the service's admin listener is %s", job.JobName, target, fl.Value)
				case lhost != "" && lhost != "0.0.0.0" && lhost != "::":
					t.Errorf("job %s: service %s's admin listener %s is out of Prometheus' reach (listen on 0.0.0.0)", job.JobName, host, fl.Value)
				}
				if tok := s.Environment["TOLLGATE_ADMIN_TOKEN"]; tok == "" || tok != job.Authorization.Credentials {
					t.Errorf("job %s: the bearer token is not service %s's TOLLGATE_ADMIN_TOKEN (%q)", job.JobName, host, tok)
				}
			}
		}
	}
	for name, s := range f.Services {
		if s.Image == "tollgate:dev" && len(s.Command) > 0 && slices.Contains(fleetRoles, s.Command[0]) && !scraped[name] {
			t.Errorf("service %s (tollgate %s) is not scraped", name, s.Command[0])
		}
	}
	if len(scraped) < 4 {
		t.Errorf("%d services scraped, want enforcer1, enforcer2, reportapi and aggregator", len(scraped))
	}
}

// TestComposeGrafanaProvisioning checks the Grafana service: what it
// provisions from docker/grafana/provisioning loads the dashboard file
// the repository has, the data sources are the ones the dashboard names
// (uid and type) and reach the compose services the fleet uses, and the
// plugin each needs is installed.
func TestComposeGrafanaProvisioning(t *testing.T) {
	f := loadCompose(t)
	g, ok := f.Services["grafana"]
	if !ok {
		t.Fatal("no grafana service")
	}
	if !strings.HasPrefix(g.Image, "grafana/grafana:") {
		t.Errorf("grafana image %q", g.Image)
	}
	provisioning := "/etc/grafana/provisioning" // the image's GF_PATHS_PROVISIONING
	if p := g.Environment["GF_PATHS_PROVISIONING"]; p != "" {
		provisioning = p
	}
	dir := g.hostPath(provisioning)
	if dir != filepath.Join("../..", "docker/grafana/provisioning") {
		t.Fatalf("grafana mounts %q at %s, want docker/grafana/provisioning", dir, provisioning)
	}
	readYAML := func(sub string, v any) {
		t.Helper()
		files, _ := filepath.Glob(filepath.Join(dir, sub, "*.y*ml"))
		if len(files) != 1 {
			t.Fatalf("%s/%s: %d files, want one", dir, sub, len(files))
		}
		b, err := os.ReadFile(files[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(b, v); err != nil {
			t.Fatalf("%s: %v", files[0], err)
		}
	}

	// The dashboard provider's folder holds the dashboard, as does the
	// home dashboard's path.
	var dashboards struct {
		Providers []struct {
			Type    string `yaml:"type"`
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	readYAML("dashboards", &dashboards)
	want, _ := filepath.Abs(dashboardFile)
	found := false
	for _, p := range dashboards.Providers {
		host := g.hostPath(p.Options.Path)
		if p.Type != "file" || host == "" {
			t.Errorf("dashboard provider %+v: not a folder the service mounts", p)
			continue
		}
		files, _ := filepath.Glob(filepath.Join(host, "*.json"))
		for _, file := range files {
			if abs, _ := filepath.Abs(file); abs == want {
				found = true
			}
		}
	}
	if !found {
		t.Errorf("no dashboard provider loads %s", dashboardFile)
	}
	if home := g.Environment["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]; home != "" {
		if abs, _ := filepath.Abs(g.hostPath(home)); abs != want {
			t.Errorf("the home dashboard %s is %q on the host, want %s", home, g.hostPath(home), dashboardFile)
		}
	}

	// Data sources: those the dashboard names, reaching the services.
	var provisioned struct {
		Datasources []struct {
			Name     string `yaml:"name"`
			UID      string `yaml:"uid"`
			Type     string `yaml:"type"`
			URL      string `yaml:"url"`
			JSONData struct {
				Host            string `yaml:"host"`
				Port            int    `yaml:"port"`
				Protocol        string `yaml:"protocol"`
				DefaultDatabase string `yaml:"defaultDatabase"`
			} `yaml:"jsonData"`
		} `yaml:"datasources"`
	}
	readYAML("datasources", &provisioned)
	types := map[string]string{} // by uid
	for _, ds := range provisioned.Datasources {
		if ds.UID == "" || types[ds.UID] != "" {
			t.Errorf("data source %q: uid %q empty or not unique (the dashboard names data sources by uid)", ds.Name, ds.UID)
		}
		types[ds.UID] = ds.Type
		switch ds.Type {
		case "prometheus":
			u, err := url.Parse(ds.URL)
			if err != nil || u.Scheme != "http" || u.Port() != "9090" { // Prometheus' --web.listen-address
				t.Errorf("data source %s: url %q, want http://SERVICE:9090", ds.Name, ds.URL)
			} else if s, ok := f.Services[u.Hostname()]; !ok || !strings.HasPrefix(s.Image, "prom/prometheus:") {
				t.Errorf("data source %s: %s is not the prometheus service", ds.Name, u.Hostname())
			}
		case "grafana-clickhouse-datasource":
			// Where the aggregator writes and the report API reads.
			u, err := url.Parse(f.Services["reportapi"].Environment["TOLLGATE_CLICKHOUSE"])
			if err != nil {
				t.Fatal(err)
			}
			if ds.JSONData.Protocol != "native" || net.JoinHostPort(ds.JSONData.Host, strconv.Itoa(ds.JSONData.Port)) != u.Host ||
				ds.JSONData.DefaultDatabase != strings.TrimPrefix(u.Path, "/") {
				t.Errorf("data source %s: %+v, want the native protocol on %s, database %s (TOLLGATE_CLICKHOUSE)", ds.Name, ds.JSONData, u.Host, u.Path)
			}
			plugins := map[string]bool{}
			for _, p := range strings.Split(g.Environment["GF_INSTALL_PLUGINS"], ",") {
				id, _, _ := strings.Cut(strings.TrimSpace(p), " ") // "id" or "id version"
				plugins[id] = true
			}
			if !plugins[ds.Type] {
				t.Errorf("data source %s: plugin %s is not in GF_INSTALL_PLUGINS", ds.Name, ds.Type)
			}
		default:
			t.Errorf("data source %s: type %s the test does not know", ds.Name, ds.Type)
		}
	}
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	refs := map[dsRef]bool{}
	collectRefs(t, b, refs)
	for ref := range refs {
		if typ, ok := types[ref.UID]; !ok || typ != ref.Type {
			t.Errorf("the dashboard names data source %+v, which is not provisioned", ref)
		}
	}
	for uid, typ := range types {
		if !refs[dsRef{Type: typ, UID: uid}] {
			t.Errorf("data source %s (%s) is provisioned but the dashboard does not use it", uid, typ)
		}
	}
}

// collectRefs adds every "datasource" object of the JSON document b to
// refs: panels', targets' and template variables' alike.
func collectRefs(t *testing.T, b []byte, refs map[dsRef]bool) {
	t.Helper()
	var doc any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, c := range v {
				if k != "datasource" {
					walk(c)
					continue
				}
				m, ok := c.(map[string]any)
				if !ok {
					t.Errorf("a data source named as %v, not by {type, uid}", c)
					continue
				}
				typ, _ := m["type"].(string)
				uid, _ := m["uid"].(string)
				refs[dsRef{Type: typ, UID: uid}] = true
			}
		case []any:
			for _, c := range v {
				walk(c)
			}
		}
	}
	walk(doc)
}
