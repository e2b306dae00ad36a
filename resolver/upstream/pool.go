// Package upstream forwards queries to the configured upstream resolvers:
// in order, with a per-try timeout, failing over on timeouts and network
// errors, retrying over TCP when a UDP answer is truncated, and never
// trusting an answer that does not match the question.
package upstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/resolver"
)

// DefaultTimeout is the per-try timeout.
const DefaultTimeout = 2 * time.Second

// Upstream is one upstream resolver and its health.
type Upstream struct {
	Addr string // host:port

	requests  atomic.Uint64
	failures  atomic.Uint64
	consec    atomic.Int32
	healthy   atomic.Bool
	lastError atomic.Pointer[string]
	lastRTT   atomic.Int64 // nanoseconds
}

// Health is a point-in-time view of an upstream, for status output.
type Health struct {
	Addr      string        `json:"addr"`
	Healthy   bool          `json:"healthy"`
	Requests  uint64        `json:"requests"`
	Failures  uint64        `json:"failures"`
	LastError string        `json:"last_error,omitempty"`
	LastRTT   time.Duration `json:"last_rtt_ns"`
}

// Config configures a Pool.
type Config struct {
	// Addrs are "host" or "host:port" (port 53 by default), tried in order.
	Addrs []string
	// Timeout is the per-try timeout (DefaultTimeout if 0).
	Timeout time.Duration
	// FailThreshold consecutive failures mark an upstream unhealthy; it is
	// then tried only after the healthy ones (default 3).
	FailThreshold int
	// Observe, when set, is told about every exchange (for metrics).
	Observe func(addr string, rtt time.Duration, err error)
	Logger  *slog.Logger
}

// Pool is the last stage of the chain: it answers from the upstreams.
type Pool struct {
	ups     []*Upstream
	timeout time.Duration
	thresh  int32
	udp     *dns.Client
	tcp     *dns.Client
	observe func(string, time.Duration, error)
	log     *slog.Logger
}

// NormalizeAddr turns "IP" or "IP:port" (IPv6 as "[IP]:port") into
// "IP:port" with port 53 by default. Upstreams must be addresses: a name
// would need DNS to find the DNS server.
func NormalizeAddr(a string) (string, error) {
	a = strings.TrimSpace(a)
	if a == "" {
		return "", errors.New("empty upstream address")
	}
	if ip, err := netip.ParseAddr(strings.Trim(a, "[]")); err == nil && ip.Zone() == "" {
		return netip.AddrPortFrom(ip, 53).String(), nil
	}
	ap, err := netip.ParseAddrPort(a)
	if err != nil || ap.Port() == 0 || ap.Addr().Zone() != "" {
		return "", fmt.Errorf("upstream %q: want an IP address or IP:port", a)
	}
	return ap.String(), nil
}

// SystemResolvers reads the nameservers of a resolv.conf file as host:port.
func SystemResolvers(path string) ([]string, error) {
	cc, err := dns.ClientConfigFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if len(cc.Servers) == 0 {
		return nil, fmt.Errorf("%s lists no nameserver", path)
	}
	out := make([]string, len(cc.Servers))
	for i, s := range cc.Servers {
		out[i] = net.JoinHostPort(s, cc.Port)
	}
	return out, nil
}

// New returns a pool over cfg.Addrs.
func New(cfg Config) (*Pool, error) {
	if len(cfg.Addrs) == 0 {
		return nil, errors.New("no upstream resolvers configured")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.FailThreshold <= 0 {
		cfg.FailThreshold = 3
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	p := &Pool{
		timeout: cfg.Timeout,
		thresh:  int32(cfg.FailThreshold),
		udp:     &dns.Client{Net: "udp", UDPSize: 4096},
		tcp:     &dns.Client{Net: "tcp"},
		observe: cfg.Observe,
		log:     cfg.Logger,
	}
	for _, a := range cfg.Addrs {
		n, err := NormalizeAddr(a)
		if err != nil {
			return nil, err
		}
		u := &Upstream{Addr: n}
		u.healthy.Store(true)
		p.ups = append(p.ups, u)
	}
	return p, nil
}

// Health returns every upstream's state.
func (p *Pool) Health() []Health {
	out := make([]Health, len(p.ups))
	for i, u := range p.ups {
		h := Health{Addr: u.Addr, Healthy: u.healthy.Load(), Requests: u.requests.Load(),
			Failures: u.failures.Load(), LastRTT: time.Duration(u.lastRTT.Load())}
		if e := u.lastError.Load(); e != nil {
			h.LastError = *e
		}
		out[i] = h
	}
	return out
}

// order returns the upstreams to try: healthy ones in configured order,
// then the unhealthy ones as a last resort.
func (p *Pool) order() []*Upstream {
	allHealthy := true
	for _, u := range p.ups {
		if !u.healthy.Load() {
			allHealthy = false
			break
		}
	}
	if allHealthy {
		return p.ups
	}
	out := make([]*Upstream, 0, len(p.ups))
	for _, u := range p.ups {
		if u.healthy.Load() {
			out = append(out, u)
		}
	}
	for _, u := range p.ups {
		if !u.healthy.Load() {
			out = append(out, u)
		}
	}
	return out
}

// Query builds the message sent upstream for a client query: same question
// and RD/CD bits, the client's EDNS buffer size and DO bit, a fresh ID.
func Query(client *dns.Msg) *dns.Msg {
	q := new(dns.Msg)
	q.Id = dns.Id()
	q.RecursionDesired = client.RecursionDesired
	q.CheckingDisabled = client.CheckingDisabled
	q.AuthenticatedData = client.AuthenticatedData
	q.Question = []dns.Question{client.Question[0]}
	if opt := client.IsEdns0(); opt != nil {
		q.SetEdns0(max(opt.UDPSize(), dns.MinMsgSize), opt.Do())
	}
	return q
}

// ServeDNS forwards req and returns the first valid answer.
func (p *Pool) ServeDNS(ctx context.Context, req *resolver.Request) (*dns.Msg, error) {
	if req.Reuse != nil {
		resp := req.Reuse.Copy()
		resp.Id = req.Msg.Id
		req.Info.Upstream = "cache"
		return resp, nil
	}
	resp, up, err := p.Exchange(ctx, Query(req.Msg))
	if err != nil {
		return nil, err
	}
	req.Info.Upstream = up
	resp.Id = req.Msg.Id
	return resp, nil
}

// Exchange sends q to the upstreams in turn and returns the first valid
// answer and the upstream that gave it. When all fail the error is a
// *resolver.EDEError with code 22 (all timed out) or 23 (network errors).
func (p *Pool) Exchange(ctx context.Context, q *dns.Msg) (*dns.Msg, string, error) {
	var errs []string
	timeouts := 0
	for _, u := range p.order() {
		if ctx.Err() != nil {
			break
		}
		resp, err := p.try(ctx, u, q)
		if err == nil {
			return resp, u.Addr, nil
		}
		if isTimeout(err) {
			timeouts++
		}
		errs = append(errs, u.Addr+": "+err.Error())
	}
	code, text := dns.ExtendedErrorCodeNetworkError, "no upstream answered"
	if timeouts == len(errs) {
		code = dns.ExtendedErrorCodeNoReachableAuthority
		text = "every upstream timed out"
	}
	if len(errs) == 0 {
		return nil, "", &resolver.EDEError{Code: dns.ExtendedErrorCodeNoReachableAuthority, Text: "query deadline passed", Err: ctx.Err()}
	}
	return nil, "", &resolver.EDEError{Code: code, Text: text, Err: errors.New(strings.Join(errs, "; "))}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// try asks one upstream, over UDP and then TCP when the answer is truncated.
func (p *Pool) try(ctx context.Context, u *Upstream, q *dns.Msg) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	u.requests.Add(1)
	start := time.Now()
	resp, _, err := p.udp.ExchangeContext(ctx, q, u.Addr)
	if err == nil && resp.Truncated {
		resp, _, err = p.tcp.ExchangeContext(ctx, q, u.Addr)
	}
	if err == nil {
		err = validate(q, resp)
	}
	rtt := time.Since(start)
	if p.observe != nil {
		p.observe(u.Addr, rtt, err)
	}
	if err != nil {
		u.failures.Add(1)
		msg := err.Error()
		u.lastError.Store(&msg)
		if u.consec.Add(1) >= p.thresh && u.healthy.CompareAndSwap(true, false) {
			p.log.Warn("upstream marked unhealthy", "upstream", u.Addr, "err", err)
		}
		return nil, err
	}
	u.lastRTT.Store(int64(rtt))
	u.consec.Store(0)
	if u.healthy.CompareAndSwap(false, true) {
		p.log.Info("upstream healthy again", "upstream", u.Addr)
	}
	return resp, nil
}

// ErrMismatch is returned for an answer that does not belong to the query.
var ErrMismatch = errors.New("answer does not match the question")

// validate rejects answers that are not responses to q.
func validate(q, r *dns.Msg) error {
	if !r.Response || r.Id != q.Id || r.Opcode != q.Opcode {
		return ErrMismatch
	}
	if len(r.Question) != 1 {
		if len(r.Question) == 0 && r.Rcode != dns.RcodeSuccess {
			return nil // some servers drop the question on errors
		}
		return ErrMismatch
	}
	a, b := r.Question[0], q.Question[0]
	if a.Qtype != b.Qtype || a.Qclass != b.Qclass || !strings.EqualFold(a.Name, b.Name) {
		return ErrMismatch
	}
	return nil
}
