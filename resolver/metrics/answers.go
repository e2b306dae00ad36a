package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sinkhole-dns/sinkhole/resolver/upstream"
)

var (
	scrubbedDesc = prometheus.NewDesc(namespace+"_upstream_scrubbed_records_total",
		"Records removed from upstream answers for not belonging to the question (RFC 2181 5.4.1), by upstream and section: answer, authority, additional.",
		[]string{"upstream", "section"}, nil)
	badAnswerDesc = prometheus.NewDesc(namespace+"_upstream_bad_answers_total",
		"Upstream answers with SERVFAIL, REFUSED, NOTIMP or FORMERR, each of which made sinkhole ask the next upstream.",
		[]string{"upstream"}, nil)
	noEDNSDesc = prometheus.NewDesc(namespace+"_upstream_no_edns",
		"1 while an upstream that rejected EDNS (FORMERR or NOTIMP) is asked without it, else 0.",
		[]string{"upstream"}, nil)
)

// SetUpstreamAnswers exports what the pool did to upstream answers, read
// from health at every scrape: sinkhole_upstream_scrubbed_records_total,
// sinkhole_upstream_bad_answers_total and sinkhole_upstream_no_edns.
func (m *Metrics) SetUpstreamAnswers(health func() []upstream.Health) {
	m.reg.MustRegister(&answersCollector{f: health})
}

type answersCollector struct{ f func() []upstream.Health }

func (c *answersCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- scrubbedDesc
	ch <- badAnswerDesc
	ch <- noEDNSDesc
}

func (c *answersCollector) Collect(ch chan<- prometheus.Metric) {
	for _, h := range c.f() {
		for _, s := range []struct {
			name string
			n    uint64
		}{{"answer", h.Scrubbed.Answer}, {"authority", h.Scrubbed.Authority}, {"additional", h.Scrubbed.Additional}} {
			ch <- prometheus.MustNewConstMetric(scrubbedDesc, prometheus.CounterValue, float64(s.n), h.Addr, s.name)
		}
		ch <- prometheus.MustNewConstMetric(badAnswerDesc, prometheus.CounterValue, float64(h.BadAnswers), h.Addr)
		no := 0.0
		if h.NoEDNS {
			no = 1
		}
		ch <- prometheus.MustNewConstMetric(noEDNSDesc, prometheus.GaugeValue, no, h.Addr)
	}
}
