// Package promtest reads metrics back in tests: from a registry
// (Gather) or from a /metrics endpoint over HTTP (Scrape), flattened to
// one value per series, named as Prometheus writes them:
// name{label="value",...}, labels sorted. A histogram is its _count and
// _sum series (buckets left out).
package promtest

import (
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Series are metric values by series name.
type Series map[string]float64

// Gather reads g.
func Gather(t testing.TB, g prometheus.Gatherer) Series {
	t.Helper()
	fams, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	return flatten(fams)
}

// Scrape reads the /metrics at url; header, when not empty, is sent as
// the Authorization header.
func Scrape(t testing.TB, url, authorization string) Series {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("scrape %s: %d %s", url, resp.StatusCode, b)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	byName, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	fams := make([]*dto.MetricFamily, 0, len(byName))
	for _, f := range byName {
		fams = append(fams, f)
	}
	return flatten(fams)
}

func flatten(fams []*dto.MetricFamily) Series {
	s := Series{}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			labels := make([]string, 0, len(m.GetLabel()))
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			sort.Strings(labels)
			ls := ""
			if len(labels) > 0 {
				ls = "{" + strings.Join(labels, ",") + "}"
			}
			name := f.GetName()
			switch {
			case m.Counter != nil:
				s[name+ls] = m.Counter.GetValue()
			case m.Gauge != nil:
				s[name+ls] = m.Gauge.GetValue()
			case m.Untyped != nil:
				s[name+ls] = m.Untyped.GetValue()
			case m.Histogram != nil:
				s[name+"_count"+ls] = float64(m.Histogram.GetSampleCount())
				s[name+"_sum"+ls] = m.Histogram.GetSampleSum()
			case m.Summary != nil:
				s[name+"_count"+ls] = float64(m.Summary.GetSampleCount())
				s[name+"_sum"+ls] = m.Summary.GetSampleSum()
			}
		}
	}
	return s
}

// Families returns the names of the families with a series in s (a
// histogram's by its name, without _count and _sum).
func (s Series) Families() map[string]bool {
	f := map[string]bool{}
	for k := range s {
		name, _, _ := strings.Cut(k, "{")
		if h, ok := strings.CutSuffix(name, "_count"); ok {
			if _, sum := s[h+"_sum"+k[len(name):]]; sum {
				name = h
			}
		}
		f[name] = true
	}
	return f
}

// With returns the series of s whose name starts with prefix.
func (s Series) With(prefix string) Series {
	out := Series{}
	for k, v := range s {
		if strings.HasPrefix(k, prefix) {
			out[k] = v
		}
	}
	return out
}
