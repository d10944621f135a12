// Package metrics holds what tollgate's components share to expose
// their metrics on the prometheus.Registerer each is given: a collector
// made of a function (Read) that reads a component's counters at scrape time
// (Collector), and registration that a nil registerer skips (Register).
// There is no global registry: cmd/tollgate makes one per process.
package metrics

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Collector is a prometheus.Collector whose metrics Read builds from a
// component's counters at scrape time, as constant metrics of Descs.
type Collector struct {
	Descs []*prometheus.Desc
	Read  func(ch chan<- prometheus.Metric)
	// Also are collectors (histograms, typically) collected with it.
	Also []prometheus.Collector
}

var _ prometheus.Collector = (*Collector)(nil)

// Describe sends Descs and those of Also.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.Descs {
		ch <- d
	}
	for _, a := range c.Also {
		a.Describe(ch)
	}
}

// Collect calls Read, then collects Also.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	if c.Read != nil {
		c.Read(ch)
	}
	for _, a := range c.Also {
		a.Collect(ch)
	}
}

// Register registers cs on r for component (named in the error). A nil
// r registers nothing.
func Register(r prometheus.Registerer, component string, cs ...prometheus.Collector) error {
	if r == nil {
		return nil
	}
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			return fmt.Errorf("register %s metrics: %w", component, err)
		}
	}
	return nil
}

// Desc is prometheus.NewDesc without constant labels.
func Desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

// Counter is a constant counter of desc.
func Counter[T ~int | ~int64 | ~uint64](desc *prometheus.Desc, v T, labels ...string) prometheus.Metric {
	return prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(v), labels...)
}

// Gauge is a constant gauge of desc.
func Gauge[T ~int | ~int64 | ~uint64 | ~float64](desc *prometheus.Desc, v T, labels ...string) prometheus.Metric {
	return prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, float64(v), labels...)
}
