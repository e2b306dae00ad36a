package metrics

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sinkhole-dns/sinkhole/resolver/upstream"
)

// Upstream error kinds (the kind label of sinkhole_upstream_errors_total).
const (
	errTimeout  = iota // no answer within --upstream-timeout
	errMismatch        // an answer that did not match the question
	errNetwork         // any other failure: refused connection, unreachable, bad packet
	numErrKinds
)

var errKindNames = [numErrKinds]string{"timeout", "mismatch", "network"}

// UpstreamBuckets are the latency histogram's bucket bounds, in seconds:
// from a resolver on the same network to a timeout.
var UpstreamBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}

// upstreamSeries are the resolved series of one upstream.
type upstreamSeries struct {
	requests prometheus.Counter
	errs     [numErrKinds]prometheus.Counter
	latency  prometheus.Observer
}

type upstreamMetrics struct {
	requests *prometheus.CounterVec
	errs     *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	known    map[string]*upstreamSeries // read-only after construction
	mu       sync.Mutex
	extra    map[string]*upstreamSeries // upstreams not configured up front
}

func newUpstreamMetrics(addrs []string) *upstreamMetrics {
	u := &upstreamMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "upstream_requests_total",
			Help: "Exchanges with each upstream resolver (every try, a UDP try retried over TCP counts once), by transport (dns: UDP then TCP; tls, https, quic).",
		}, []string{"upstream", "transport"}),
		errs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "upstream_errors_total",
			Help: "Failed exchanges with each upstream, by kind: timeout, mismatch (answer not matching the question), network.",
		}, []string{"upstream", "transport", "kind"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "upstream_request_duration_seconds",
			Help:    "Time of each exchange with each upstream, failed ones included.",
			Buckets: UpstreamBuckets,
		}, []string{"upstream", "transport"}),
		known: map[string]*upstreamSeries{},
		extra: map[string]*upstreamSeries{},
	}
	for _, a := range addrs {
		if _, ok := u.known[a]; !ok {
			u.known[a] = u.series(a)
		}
	}
	return u
}

func (u *upstreamMetrics) register(reg *prometheus.Registry) {
	reg.MustRegister(u.requests, u.errs, u.latency)
}

func (u *upstreamMetrics) series(addr string) *upstreamSeries {
	tr := upstreamTransport(addr)
	s := &upstreamSeries{requests: u.requests.WithLabelValues(addr, tr), latency: u.latency.WithLabelValues(addr, tr)}
	for k, name := range errKindNames {
		s.errs[k] = u.errs.WithLabelValues(addr, tr, name)
	}
	return s
}

// upstreamTransport is the transport label of an upstream address: the
// scheme of tls://, https:// and quic:// upstreams, "dns" for plain ones.
func upstreamTransport(addr string) string {
	if scheme, _, ok := strings.Cut(addr, "://"); ok {
		return scheme
	}
	return "dns"
}

func (u *upstreamMetrics) lookup(addr string) *upstreamSeries {
	if s, ok := u.known[addr]; ok {
		return s
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	s, ok := u.extra[addr]
	if !ok {
		s = u.series(addr)
		u.extra[addr] = s
	}
	return s
}

// ObserveUpstream records one exchange with an upstream. It has the
// signature of upstream.Config.Observe.
func (m *Metrics) ObserveUpstream(addr string, rtt time.Duration, err error) {
	s := m.upstreams.lookup(addr)
	s.requests.Inc()
	s.latency.Observe(rtt.Seconds())
	if err != nil {
		s.errs[errKind(err)].Inc()
	}
}

func errKind(err error) int {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		return errTimeout
	case errors.Is(err, upstream.ErrMismatch):
		return errMismatch
	}
	return errNetwork
}
