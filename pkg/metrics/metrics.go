// Package metrics keeps in-process counters and latency histograms and
// serves them in the Prometheus text format. Each plugin binary is its own
// process, so each exposes its own listener when configured (see Serve).
//
// A hand-written registry rather than the Prometheus client: the plugins
// need two metric kinds with fixed labels, and keeping the dependency tree
// of a gateway plugin small is worth the eighty lines.
package metrics

import (
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Buckets are the latency histogram's upper bounds, in seconds.
var Buckets = []float64{0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1}

type series struct {
	labels string // rendered {k="v",...}
	count  atomic.Uint64
	// histogram only
	buckets []atomic.Uint64
	sumNs   atomic.Uint64
}

type family struct {
	name, help, kind string
	labelNames       []string
	mu               sync.RWMutex
	series           map[string]*series
}

// Counter is a monotonically increasing count with fixed label names.
type Counter struct{ f *family }

// Histogram records durations with fixed label names.
type Histogram struct{ f *family }

var (
	regMu    sync.Mutex
	families []*family
)

func register(name, help, kind string, labels []string) *family {
	regMu.Lock()
	defer regMu.Unlock()
	for _, f := range families {
		if f.name == name {
			return f // same name, same metric: lets tests and plugins share one
		}
	}
	f := &family{name: name, help: help, kind: kind, labelNames: labels, series: map[string]*series{}}
	families = append(families, f)
	return f
}

// NewCounter registers (or returns) the counter called name.
func NewCounter(name, help string, labels ...string) *Counter {
	return &Counter{register(name, help, "counter", labels)}
}

// NewHistogram registers (or returns) the histogram called name.
func NewHistogram(name, help string, labels ...string) *Histogram {
	return &Histogram{register(name, help, "histogram", labels)}
}

func (f *family) get(values []string) *series {
	if len(values) != len(f.labelNames) {
		panic(fmt.Sprintf("metrics: %s takes %d labels, got %d", f.name, len(f.labelNames), len(values)))
	}
	key := strings.Join(values, "\xff")
	f.mu.RLock()
	s := f.series[key]
	f.mu.RUnlock()
	if s != nil {
		return s
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if s = f.series[key]; s == nil {
		parts := make([]string, len(values))
		for i, v := range values {
			parts[i] = fmt.Sprintf("%s=%q", f.labelNames[i], v)
		}
		s = &series{labels: strings.Join(parts, ",")}
		if f.kind == "histogram" {
			s.buckets = make([]atomic.Uint64, len(Buckets))
		}
		f.series[key] = s
	}
	return s
}

// Inc adds one to the series with these label values.
func (c *Counter) Inc(values ...string) { c.f.get(values).count.Add(1) }

// Value reads a series (for tests and the demo).
func (c *Counter) Value(values ...string) uint64 { return c.f.get(values).count.Load() }

// Observe records one duration.
func (h *Histogram) Observe(d time.Duration, values ...string) {
	s := h.f.get(values)
	sec := d.Seconds()
	for i, ub := range Buckets {
		if sec <= ub {
			s.buckets[i].Add(1)
		}
	}
	s.count.Add(1)
	s.sumNs.Add(uint64(d.Nanoseconds()))
}

// Write renders every metric in the Prometheus text exposition format.
func Write(w io.Writer) {
	regMu.Lock()
	fs := append([]*family(nil), families...)
	regMu.Unlock()
	for _, f := range fs {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", f.name, f.help, f.name, f.kind)
		f.mu.RLock()
		keys := make([]string, 0, len(f.series))
		for k := range f.series {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			s := f.series[k]
			if f.kind == "counter" {
				fmt.Fprintf(w, "%s{%s} %d\n", f.name, s.labels, s.count.Load())
				continue
			}
			sep := ""
			if s.labels != "" {
				sep = ","
			}
			for i, ub := range Buckets {
				fmt.Fprintf(w, "%s_bucket{%s%sle=\"%g\"} %d\n", f.name, s.labels, sep, ub, s.buckets[i].Load())
			}
			fmt.Fprintf(w, "%s_bucket{%s%sle=\"+Inf\"} %d\n", f.name, s.labels, sep, s.count.Load())
			fmt.Fprintf(w, "%s_sum{%s} %g\n", f.name, s.labels, float64(s.sumNs.Load())/1e9)
			fmt.Fprintf(w, "%s_count{%s} %d\n", f.name, s.labels, s.count.Load())
		}
		f.mu.RUnlock()
	}
}

// Handler serves Write on /metrics.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		Write(w)
	})
}

// The metrics every plugin records through kongx.
var (
	Decisions = NewCounter("subgate_decisions_total", "Decisions by plugin, outcome and code.", "plugin", "decision", "code")
	Latency   = NewHistogram("subgate_decision_seconds", "Time a plugin spent deciding, PDK calls included.", "plugin")
)
