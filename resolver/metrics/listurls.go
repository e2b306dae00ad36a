package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sinkhole-dns/sinkhole/blocklist/urlfeed"
)

var listURLRefusedDesc = prometheus.NewDesc(namespace+"_list_url_refused",
	"1 for each --list-url whose last fetched version was refused because its signature (URL.minisig) does not verify with --trusted-key; its last good copy serves.",
	[]string{"list"}, nil)

// SetListURLs exports sinkhole_list_url_refused{list}; status returns the
// list URLs' states.
func (m *Metrics) SetListURLs(status func() []urlfeed.Status) {
	m.reg.MustRegister(&listURLCollector{status})
}

type listURLCollector struct {
	f func() []urlfeed.Status
}

func (c *listURLCollector) Describe(ch chan<- *prometheus.Desc) { ch <- listURLRefusedDesc }

func (c *listURLCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.f() {
		v := 0.0
		if s.LastResult == "refused" {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(listURLRefusedDesc, prometheus.GaugeValue, v, s.Name)
	}
}
