package metrics

import "github.com/prometheus/client_golang/prometheus"

// AddDnstap exports the dnstap writer's counters: records sent and
// dropped (queue full while the collector was away or slow, or a failed
// write), reconnections, and whether a collector is connected now.
func (m *Metrics) AddDnstap(sent, dropped, reconnects func() uint64, connected func() bool) {
	counter := func(name, help string, v func() uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help},
			func() float64 { return float64(v()) })
	}
	m.reg.MustRegister(
		counter("dnstap_sent_total", "dnstap records written to the collector or file.", sent),
		counter("dnstap_dropped_total", "dnstap records dropped because the queue was full (collector away or slow) or a write failed; the queries were answered.", dropped),
		counter("dnstap_reconnects_total", "Connections to the dnstap collector after the first.", reconnects),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Name: "dnstap_connected",
			Help: "1 when the dnstap collector (or file) takes records."}, func() float64 {
			if connected() {
				return 1
			}
			return 0
		}),
	)
}
