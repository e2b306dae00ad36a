// Package metrics exports sinkhole's Prometheus metrics: queries by type,
// protocol and result, blocks by platform and list file, upstream requests
// and latency, the cache, list reloads, geo lookups, the audit and query
// logs, and build info.
//
// Every Metrics has its own registry (not the global default), so several
// servers can run in one process. The per-query path (Observe) costs a few
// atomic adds: label combinations are resolved once and kept, and every
// label's values are bounded (no query names, no client addresses).
package metrics

import (
	"net/http"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// namespace prefixes every sinkhole metric.
const namespace = "sinkhole"

// Options configures Metrics.
type Options struct {
	// Version is the build's version, exported in sinkhole_build_info.
	Version string
	// Upstreams are the configured upstream addresses (host:port); their
	// series are created up front.
	Upstreams []string
}

// Metrics holds every sinkhole metric and the registry that exports them.
type Metrics struct {
	reg       *prometheus.Registry
	queries   queryCounters
	blocks    *blockCounters
	upstreams *upstreamMetrics
	lists     *listMetrics
	cache     *cacheCollector
	geo       *geoCollector
}

// New creates the metrics and registers them, with the Go runtime and
// process collectors, on a new registry.
func New(opts Options) *Metrics {
	m := &Metrics{
		reg:       prometheus.NewRegistry(),
		blocks:    newBlockCounters(),
		upstreams: newUpstreamMetrics(opts.Upstreams),
		lists:     newListMetrics(),
		cache:     newCacheCollector(),
		geo:       newGeoCollector(),
	}
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "build_info",
		Help:        "Always 1; the labels name the running build.",
		ConstLabels: prometheus.Labels{"version": opts.Version, "goversion": runtime.Version()},
	})
	buildInfo.Set(1)
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildInfo,
		&m.queries,
	)
	m.blocks.register(m.reg)
	m.upstreams.register(m.reg)
	m.lists.register(m.reg)
	m.reg.MustRegister(m.cache, m.geo)
	return m
}

// Registry returns the registry the metrics are registered on, for callers
// that add their own.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	})
}

// AddLog exports the line and drop counters of a log named name ("audit"
// or "query") as sinkhole_log_lines_total and sinkhole_log_dropped_total.
func (m *Metrics) AddLog(name string, lines, dropped func() uint64) {
	labels := prometheus.Labels{"log": name}
	m.reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: namespace, Name: "log_lines_total", ConstLabels: labels,
			Help: "Lines written to the audit or query log.",
		}, func() float64 { return float64(lines()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: namespace, Name: "log_dropped_total", ConstLabels: labels,
			Help: "Lines dropped because the log's buffer was full (the writer could not keep up); the queries were answered.",
		}, func() float64 { return float64(dropped()) }),
	)
}
