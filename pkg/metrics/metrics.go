// Package metrics declares subgate's Prometheus metrics and serves them,
// through github.com/prometheus/client_golang, on a registry of its own
// (not the library's global default, so nothing another package registers
// there leaks into subgate's exposition). Each plugin binary is its own
// process, so each exposes its own listener when configured (kongx.Serve,
// -metrics-addr).
//
// The packages whose state is observed (redisconn, jwtverify, payevents,
// usercontext) import this one and register what they expose (NewCounter,
// RegisterGaugeFunc, RegisterCounterFunc); this package imports none of
// them.
package metrics

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime/debug"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
)

// Buckets are the latency histogram's upper bounds, in seconds.
var Buckets = []float64{0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1}

// registry holds every subgate metric plus the Go runtime and process
// collectors.
var registry = prometheus.NewRegistry()

func init() {
	registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
}

// Registry is subgate's registry (for tests and for embedding the metrics
// in another exposition).
func Registry() *prometheus.Registry { return registry }

var (
	byNameMu sync.Mutex
	byName   = map[string]prometheus.Collector{}
)

// register registers c under name once: a second declaration of the same
// name returns the first one (tests and plugins may share a metric). A
// different kind under a taken name is a programming error.
func register[C prometheus.Collector](name string, c C) C {
	byNameMu.Lock()
	defer byNameMu.Unlock()
	if old, ok := byName[name]; ok {
		if o, ok := old.(C); ok {
			return o
		}
		panic(fmt.Sprintf("metrics: %s is already registered as another kind", name))
	}
	registry.MustRegister(c)
	byName[name] = c
	return c
}

// Counter is a monotonically increasing count with fixed label names.
type Counter struct{ vec *prometheus.CounterVec }

// Histogram records durations, in seconds, with fixed label names.
type Histogram struct{ vec *prometheus.HistogramVec }

// NewCounter registers (or returns) the counter called name.
func NewCounter(name, help string, labels ...string) *Counter {
	return register(name, &Counter{prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)})
}

// NewHistogram registers (or returns) the histogram called name, with
// Buckets.
func NewHistogram(name, help string, labels ...string) *Histogram {
	return register(name, &Histogram{prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: Buckets}, labels)})
}

// Describe and Collect make a Counter a prometheus.Collector.
func (c *Counter) Describe(ch chan<- *prometheus.Desc) { c.vec.Describe(ch) }

// Collect implements prometheus.Collector.
func (c *Counter) Collect(ch chan<- prometheus.Metric) { c.vec.Collect(ch) }

// Describe implements prometheus.Collector.
func (h *Histogram) Describe(ch chan<- *prometheus.Desc) { h.vec.Describe(ch) }

// Collect implements prometheus.Collector.
func (h *Histogram) Collect(ch chan<- prometheus.Metric) { h.vec.Collect(ch) }

// Inc adds one to the series with these label values (in the order the
// labels were declared). A wrong number of values panics.
func (c *Counter) Inc(values ...string) { c.vec.WithLabelValues(values...).Inc() }

// Value reads a series (for tests and the demo).
func (c *Counter) Value(values ...string) uint64 {
	var m dto.Metric
	if err := c.vec.WithLabelValues(values...).Write(&m); err != nil {
		panic(err)
	}
	return uint64(m.GetCounter().GetValue())
}

// Observe records one duration.
func (h *Histogram) Observe(d time.Duration, values ...string) {
	h.vec.WithLabelValues(values...).Observe(d.Seconds())
}

// Exposition is the page Handler serves, for tests and tools.
func Exposition() string {
	rec := httptest.NewRecorder()
	Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	return rec.Body.String()
}

// Handler serves the registry in the format the scraper asks for (text by
// default), with promhttp's own request counters. A collector that fails
// is logged and left out; the rest is still served.
func Handler() http.Handler {
	return promhttp.InstrumentMetricHandler(registry, promhttp.HandlerFor(registry, promhttp.HandlerOpts{
		ErrorLog:      logger{},
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      registry,
	}))
}

type logger struct{}

func (logger) Println(v ...any) { slog.Warn("metrics: " + fmt.Sprint(v...)) }

// The metrics every plugin records through kongx, by plugin and route
// (RouteLabel).
var (
	Decisions = NewCounter("subgate_decisions_total", "Decisions by plugin, route, outcome (allow/deny) and denial code.", "plugin", "route", "decision", "code")
	Latency   = NewHistogram("subgate_decision_seconds", "Time a plugin spent deciding, PDK calls included.", "plugin", "route")
)

// MaxRoutes bounds the route label's values in one process: past it, new
// ones read "other" (a config naming thousands of routes must not grow the
// exposition without bound).
const MaxRoutes = 256

var routes = struct {
	sync.Mutex
	seen map[string]bool
}{seen: map[string]bool{}}

// RouteLabel is the route label of a plugin instance's series, from the
// metadata Kong adds to its config (no PDK call): the instance's name when
// the operator gave one (Kong's plugin instance_name), else its route's id,
// else "service:<id>" for a plugin on a service, else "global". Kong keeps
// a declarative route's id across reloads (a UUIDv5 of its name), so the
// series does too. Values past MaxRoutes read "other".
func RouteLabel(instanceName, routeID, serviceID string) string {
	v := instanceName
	switch {
	case v != "":
	case routeID != "":
		v = routeID
	case serviceID != "":
		v = "service:" + serviceID
	default:
		v = "global"
	}
	routes.Lock()
	defer routes.Unlock()
	if !routes.seen[v] {
		if len(routes.seen) >= MaxRoutes {
			return "other"
		}
		routes.seen[v] = true
	}
	return v
}

// InstanceStarted starts a plugin instance's allow count and latency
// histogram at zero, so that rate() counts its first decisions
// (client_golang shows a labelled series only once it exists).
func InstanceStarted(plugin, route string) {
	Decisions.vec.WithLabelValues(plugin, route, "allow", "")
	Latency.vec.WithLabelValues(plugin, route)
}

var buildInfo = register("subgate_build_info", prometheus.NewGaugeVec(prometheus.GaugeOpts{
	Name: "subgate_build_info",
	Help: "Always 1: the plugin this process serves, its version and the VCS revision it was built from (unknown when built without VCS stamping).",
}, []string{"version", "revision", "plugin"}))

// SetBuildInfo records which plugin this process serves and its version
// (kongx.Serve calls it; this package cannot import kongx's Version). The
// decision series start with each instance (InstanceStarted).
func SetBuildInfo(plugin, version string) {
	buildInfo.Reset()
	buildInfo.WithLabelValues(version, revision(), plugin).Set(1)
}

// Revision, when set at link time (go build -ldflags "-X
// github.com/subgate/subgate/pkg/metrics.Revision=$(git rev-parse HEAD)"),
// is the build_info revision: a build without the repository's .git (the
// Docker build context excludes it) or with -buildvcs=false has no VCS
// stamp to read.
var Revision string

func revision() string {
	if Revision != "" {
		return Revision
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		rev, dirty := "", false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if rev != "" {
			if dirty {
				rev += "-dirty"
			}
			return rev
		}
	}
	return "unknown"
}

// funcCollector reads its values at scrape time from the package that
// registered it.
type funcCollector struct {
	desc    *prometheus.Desc
	kind    prometheus.ValueType
	collect func(emit func(value float64, labelValues ...string))
}

func (f *funcCollector) Describe(ch chan<- *prometheus.Desc) { ch <- f.desc }

func (f *funcCollector) Collect(ch chan<- prometheus.Metric) {
	f.collect(func(v float64, lv ...string) {
		m, err := prometheus.NewConstMetric(f.desc, f.kind, v, lv...)
		if err != nil {
			m = prometheus.NewInvalidMetric(f.desc, err)
		}
		ch <- m
	})
}

// RegisterGaugeFunc registers a gauge whose series are read at each
// scrape: collect calls emit once per series, with the label values in
// the order of labels. Each set of label values must be emitted once per
// scrape (aggregate first). Label values are exposed as they are: never
// pass a secret (see URLLabel).
func RegisterGaugeFunc(name, help string, labels []string, collect func(emit func(value float64, labelValues ...string))) {
	registerFunc(name, help, prometheus.GaugeValue, labels, collect)
}

// RegisterCounterFunc is RegisterGaugeFunc for a value that only grows
// (for example a count kept by a library, such as go-redis' pool stats).
func RegisterCounterFunc(name, help string, labels []string, collect func(emit func(value float64, labelValues ...string))) {
	registerFunc(name, help, prometheus.CounterValue, labels, collect)
}

func registerFunc(name, help string, kind prometheus.ValueType, labels []string, collect func(emit func(value float64, labelValues ...string))) {
	byNameMu.Lock()
	defer byNameMu.Unlock()
	if _, ok := byName[name]; ok {
		panic("metrics: " + name + " is registered twice")
	}
	c := &funcCollector{desc: prometheus.NewDesc(name, help, labels, nil), kind: kind, collect: collect}
	registry.MustRegister(c)
	byName[name] = c
}

// URLLabel is a URL as a label value: scheme, host and path only. User
// info, query and fragment may carry credentials (an API key in the
// query, a password before the host) and never reach the exposition.
func URLLabel(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "invalid"
	}
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
}
