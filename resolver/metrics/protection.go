package metrics

import "github.com/prometheus/client_golang/prometheus"

// Protection are the counters of what the server turned away or shed:
// read at every scrape, so each function must be cheap and safe for
// concurrent use.
type Protection struct {
	ACLRefused  func() uint64 // clients outside --allow answered REFUSED
	ACLDropped  func() uint64 // clients outside --allow sent nothing
	RateLimited func() uint64 // queries over a client's rate (dropped)
	RRLDropped  func() uint64 // UDP responses dropped by response rate limiting
	RRLSlipped  func() uint64 // UDP responses sent truncated by RRL (slip)
	Overloaded  func() uint64 // queries dropped over --max-inflight
	TCPRejected func() uint64 // TCP connections closed over a cap
	Malformed   func() uint64 // malformed queries answered FORMERR
	Panics      func() uint64 // query handler panics recovered
	// Mismatched returns, per upstream, the answers dropped for not
	// matching their query (spoofing attempts, late or garbled packets).
	Mismatched func() map[string]uint64
}

// SetProtection exports the protection counters:
// sinkhole_refused_clients_total{action}, sinkhole_rate_limited_total{kind},
// sinkhole_overloaded_total, sinkhole_tcp_rejected_total,
// sinkhole_malformed_queries_total,
// sinkhole_panics_total and sinkhole_upstream_mismatched_total{upstream}.
func (m *Metrics) SetProtection(p Protection) {
	counter := func(name, help string, labels prometheus.Labels, f func() uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help, ConstLabels: labels},
			func() float64 { return float64(f()) })
	}
	m.reg.MustRegister(
		counter("refused_clients_total", "Queries from clients outside --allow, by what they got: refused (REFUSED) or drop (nothing).",
			prometheus.Labels{"action": "refused"}, p.ACLRefused),
		counter("refused_clients_total", "Queries from clients outside --allow, by what they got: refused (REFUSED) or drop (nothing).",
			prometheus.Labels{"action": "drop"}, p.ACLDropped),
		counter("rate_limited_total", "Queries and responses limited: client (a client over --client-qps, dropped), rrl_drop and rrl_slip (identical UDP responses over --rrl-rate, dropped or sent truncated).",
			prometheus.Labels{"kind": "client"}, p.RateLimited),
		counter("rate_limited_total", "Queries and responses limited: client (a client over --client-qps, dropped), rrl_drop and rrl_slip (identical UDP responses over --rrl-rate, dropped or sent truncated).",
			prometheus.Labels{"kind": "rrl_drop"}, p.RRLDropped),
		counter("rate_limited_total", "Queries and responses limited: client (a client over --client-qps, dropped), rrl_drop and rrl_slip (identical UDP responses over --rrl-rate, dropped or sent truncated).",
			prometheus.Labels{"kind": "rrl_slip"}, p.RRLSlipped),
		counter("overloaded_total", "Queries dropped because --max-inflight queries were already being resolved.", nil, p.Overloaded),
		counter("tcp_rejected_total", "TCP connections closed at once for being over --tcp-max-conns or --tcp-max-conns-per-client.", nil, p.TCPRejected),
		counter("malformed_queries_total", "Malformed queries answered FORMERR from the packet, never forwarded (two OPT records, an OPT out of place, counts larger than the records, a question of type 0, OPT or TSIG...).", nil, p.Malformed),
		counter("panics_total", "Query handler panics recovered (each answered SERVFAIL or dropped, and logged).", nil, p.Panics),
		&mismatchCollector{f: p.Mismatched},
	)
}

var mismatchDesc = prometheus.NewDesc(namespace+"_upstream_mismatched_total",
	"Upstream answers dropped for not matching their query (wrong ID or question, garbled): possible spoofing.",
	[]string{"upstream"}, nil)

// mismatchCollector exports the per-upstream mismatch counts.
type mismatchCollector struct{ f func() map[string]uint64 }

func (c *mismatchCollector) Describe(ch chan<- *prometheus.Desc) { ch <- mismatchDesc }

func (c *mismatchCollector) Collect(ch chan<- prometheus.Metric) {
	for up, n := range c.f() {
		ch <- prometheus.MustNewConstMetric(mismatchDesc, prometheus.CounterValue, float64(n), up)
	}
}
