package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Encrypted are the encrypted transports' gauges and counters, read at
// every scrape (cheap, safe for concurrent use).
type Encrypted struct {
	// HandshakeFailures returns the failed TLS handshakes per transport
	// (dot, doh, doh3, doq).
	HandshakeFailures func() map[string]uint64
	// CertExpiry returns the expiry time of the certificate in service.
	CertExpiry func() time.Time
}

var (
	handshakeDesc = prometheus.NewDesc(namespace+"_tls_handshake_failures_total",
		"TLS handshakes that failed or timed out on the encrypted listeners, by transport (dot, doh, doh3, doq).",
		[]string{"proto"}, nil)
	certExpiryDesc = prometheus.NewDesc(namespace+"_tls_certificate_expiry_timestamp_seconds",
		"Unix time the TLS certificate in service expires.", nil, nil)
)

// SetEncrypted exports sinkhole_tls_handshake_failures_total{proto} and
// sinkhole_tls_certificate_expiry_timestamp_seconds.
func (m *Metrics) SetEncrypted(e Encrypted) { m.reg.MustRegister(&encryptedCollector{e}) }

type encryptedCollector struct{ e Encrypted }

func (c *encryptedCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- handshakeDesc
	ch <- certExpiryDesc
}

func (c *encryptedCollector) Collect(ch chan<- prometheus.Metric) {
	for proto, n := range c.e.HandshakeFailures() {
		ch <- prometheus.MustNewConstMetric(handshakeDesc, prometheus.CounterValue, float64(n), proto)
	}
	if t := c.e.CertExpiry(); !t.IsZero() {
		ch <- prometheus.MustNewConstMetric(certExpiryDesc, prometheus.GaugeValue, float64(t.Unix()))
	}
}

var bypassDesc = prometheus.NewDesc(namespace+"_bypass_signals_total",
	"Queries for the names clients ask before bypassing the network's resolver, answered NXDOMAIN: doh_canary (use-application-dns.net, Firefox), private_relay (mask.icloud.com, mask-h2.icloud.com).",
	[]string{"signal"}, nil)

// SetBypass exports sinkhole_bypass_signals_total{signal}; answered
// returns the counts of the Firefox canary and the Private Relay names.
func (m *Metrics) SetBypass(answered func() (canary, privateRelay uint64)) {
	m.reg.MustRegister(&bypassCollector{answered})
}

type bypassCollector struct {
	f func() (uint64, uint64)
}

func (c *bypassCollector) Describe(ch chan<- *prometheus.Desc) { ch <- bypassDesc }

func (c *bypassCollector) Collect(ch chan<- prometheus.Metric) {
	canary, relay := c.f()
	ch <- prometheus.MustNewConstMetric(bypassDesc, prometheus.CounterValue, float64(canary), "doh_canary")
	ch <- prometheus.MustNewConstMetric(bypassDesc, prometheus.CounterValue, float64(relay), "private_relay")
}
