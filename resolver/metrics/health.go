package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sinkhole-dns/sinkhole/resolver/upstream"
)

var upstreamHealthyDesc = prometheus.NewDesc(namespace+"_upstream_healthy",
	"1 while an upstream answers; 0 once it failed --upstream-fail-threshold times in a row (it is then probed, and tried only after the healthy ones).",
	[]string{"upstream"}, nil)

// SetUpstreamHealth exports each upstream's health, read from health at
// every scrape, as sinkhole_upstream_healthy.
func (m *Metrics) SetUpstreamHealth(health func() []upstream.Health) {
	m.reg.MustRegister(&healthCollector{f: health})
}

type healthCollector struct{ f func() []upstream.Health }

func (c *healthCollector) Describe(ch chan<- *prometheus.Desc) { ch <- upstreamHealthyDesc }

func (c *healthCollector) Collect(ch chan<- prometheus.Metric) {
	for _, h := range c.f() {
		v := 0.0
		if h.Healthy {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(upstreamHealthyDesc, prometheus.GaugeValue, v, h.Addr)
	}
}
