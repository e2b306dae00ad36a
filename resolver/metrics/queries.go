package metrics

import (
	"sync/atomic"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sinkhole-dns/sinkhole/resolver/query"
)

// Query results, one per query (the result label of sinkhole_queries_total).
const (
	resultAnswered = iota // answered from upstream (any rcode but SERVFAIL and REFUSED)
	resultBlocked         // an enforced rule answered
	resultCached          // answered from the cache
	resultServFail        // SERVFAIL: no upstream answered, or an internal error
	resultRefused         // REFUSED that was not a block (the upstream refused)
	resultDropped         // no answer was sent (rpz-drop)
	numResults
)

var resultNames = [numResults]string{"answered", "blocked", "cached", "servfail", "refused", "dropped"}

// Protocols (the proto label).
var protoNames = [...]string{"udp", "tcp", "dot", "doh", "doh3", "doq", "other"}

const numProtos = len(protoNames)

func protoIndex(p string) int {
	switch p {
	case "udp":
		return 0
	case "tcp":
		return 1
	case "dot":
		return 2
	case "doh":
		return 3
	case "doh3":
		return 4
	case "doq":
		return 5
	}
	return 6
}

// Query types with their own label value; every other type is "other".
var typeNames = [...]string{"A", "AAAA", "CNAME", "MX", "TXT", "NS", "SOA", "PTR", "SRV", "HTTPS", "SVCB",
	"DS", "DNSKEY", "CAA", "NAPTR", "ANY", "other"}

const numTypes = len(typeNames)

func typeIndex(t uint16) int {
	switch t {
	case dns.TypeA:
		return 0
	case dns.TypeAAAA:
		return 1
	case dns.TypeCNAME:
		return 2
	case dns.TypeMX:
		return 3
	case dns.TypeTXT:
		return 4
	case dns.TypeNS:
		return 5
	case dns.TypeSOA:
		return 6
	case dns.TypePTR:
		return 7
	case dns.TypeSRV:
		return 8
	case dns.TypeHTTPS:
		return 9
	case dns.TypeSVCB:
		return 10
	case dns.TypeDS:
		return 11
	case dns.TypeDNSKEY:
		return 12
	case dns.TypeCAA:
		return 13
	case dns.TypeNAPTR:
		return 14
	case dns.TypeANY:
		return 15
	}
	return numTypes - 1
}

// Result classifies an answered query. A query has exactly one result:
// dropped, then blocked (an enforced decision, even when served from the
// cache), then cached, then by response code.
func Result(req *query.Request, resp *dns.Msg) string {
	return resultNames[result(req, resp)]
}

func result(req *query.Request, resp *dns.Msg) int {
	switch {
	case req.Info.Dropped:
		return resultDropped
	case req.Info.Decision != nil && req.Info.Decision.Enforced:
		return resultBlocked
	case req.Info.Cached:
		return resultCached
	case req.Info.Rcode == dns.RcodeServerFailure:
		return resultServFail
	case req.Info.Rcode == dns.RcodeRefused:
		return resultRefused
	}
	return resultAnswered
}

// queryCounters counts queries by type, protocol and result in a fixed
// array: counting is one atomic add, and only the combinations seen are
// exported.
type queryCounters struct {
	n [numTypes * numProtos * numResults]atomic.Uint64
}

var queriesDesc = prometheus.NewDesc(namespace+"_queries_total",
	"DNS queries answered, by query type (common types, else other), protocol and result (answered, blocked, cached, servfail, refused, dropped).",
	[]string{"type", "proto", "result"}, nil)

func (q *queryCounters) add(typ, proto, res int) {
	q.n[(typ*numProtos+proto)*numResults+res].Add(1)
}

// Describe implements prometheus.Collector.
func (q *queryCounters) Describe(ch chan<- *prometheus.Desc) { ch <- queriesDesc }

// Collect implements prometheus.Collector.
func (q *queryCounters) Collect(ch chan<- prometheus.Metric) {
	for i := range q.n {
		v := q.n[i].Load()
		if v == 0 {
			continue
		}
		res := i % numResults
		proto := (i / numResults) % numProtos
		typ := i / (numResults * numProtos)
		ch <- prometheus.MustNewConstMetric(queriesDesc, prometheus.CounterValue, float64(v),
			typeNames[typ], protoNames[proto], resultNames[res])
	}
}

// Observe counts one answered query: its result, and for a rule that
// fired, a block (or a monitored would-be block) of its platform and file.
// It is a resolver.Observer.
func (m *Metrics) Observe(req *query.Request, resp *dns.Msg) {
	m.queries.add(typeIndex(req.Qtype), protoIndex(req.Proto), result(req, resp))
	if d := req.Info.Decision; d != nil {
		m.blocks.inc(d)
	}
}
