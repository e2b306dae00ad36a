// Package upstream forwards queries to the configured upstream resolvers:
// in order, with a per-try timeout, failing over on timeouts and network
// errors, retrying over TCP when a UDP answer is truncated, and never
// trusting an answer that does not match the question. An upstream that
// fails FailThreshold times in a row is marked unhealthy, tried only after
// the healthy ones, and probed until it answers again.
package upstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/resolver"
)

// DefaultTimeout is the per-try timeout.
const DefaultTimeout = 2 * time.Second

// DefaultFailThreshold is how many consecutive failures mark an upstream
// unhealthy.
const DefaultFailThreshold = 3

// DefaultProbeInterval is how often an unhealthy upstream is probed.
const DefaultProbeInterval = 5 * time.Second

// Upstream is one upstream resolver and its health.
type Upstream struct {
	Addr string // host:port

	requests  atomic.Uint64
	failures  atomic.Uint64
	consec    atomic.Int32
	healthy   atomic.Bool
	lastError atomic.Pointer[string]
	lastRTT   atomic.Int64 // nanoseconds
	// mismatched counts UDP answers dropped for not matching the query
	// (wrong ID or question, unparseable).
	mismatched atomic.Uint64
	probes     atomic.Uint64
	probing    atomic.Bool // a probe goroutine owns this upstream
}

// Health is a point-in-time view of an upstream, for status output.
type Health struct {
	Addr      string        `json:"addr"`
	Healthy   bool          `json:"healthy"`
	Requests  uint64        `json:"requests"`
	Failures  uint64        `json:"failures"`
	LastError string        `json:"last_error,omitempty"`
	LastRTT   time.Duration `json:"last_rtt_ns"`
	// Mismatched counts answers dropped for not matching their query.
	Mismatched uint64 `json:"mismatched"`
	// Probes counts health probes sent while unhealthy.
	Probes uint64 `json:"probes"`
}

// Config configures a Pool.
type Config struct {
	// Addrs are "host" or "host:port" (port 53 by default), tried in order.
	Addrs []string
	// Timeout is the per-try timeout (DefaultTimeout if 0).
	Timeout time.Duration
	// FailThreshold consecutive failures mark an upstream unhealthy; it is
	// then tried only after the healthy ones, and probed every
	// ProbeInterval until it answers (defaults DefaultFailThreshold and
	// DefaultProbeInterval).
	FailThreshold int
	ProbeInterval time.Duration
	// Observe, when set, is told about every exchange (for metrics).
	Observe func(addr string, rtt time.Duration, err error)
	Logger  *slog.Logger
}

// Pool is the last stage of the chain: it answers from the upstreams.
type Pool struct {
	ups        []*Upstream
	timeout    time.Duration
	thresh     int32
	probeEvery time.Duration
	tcp        *dns.Client
	observe    func(string, time.Duration, error)
	log        *slog.Logger
	bufs       sync.Pool // UDP receive buffers

	// Probes run until the pool is closed.
	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex // guards closed and probes.Add
	closed bool
	probes sync.WaitGroup
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

// pooledUDPBuf is the size of the pooled UDP receive buffers: enough for
// any answer to a query advertising up to 4096 bytes of EDNS buffer.
const pooledUDPBuf = 4096

// New returns a pool over cfg.Addrs.
func New(cfg Config) (*Pool, error) {
	if len(cfg.Addrs) == 0 {
		return nil, errors.New("no upstream resolvers configured")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.FailThreshold <= 0 {
		cfg.FailThreshold = DefaultFailThreshold
	}
	if cfg.ProbeInterval <= 0 {
		cfg.ProbeInterval = DefaultProbeInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	p := &Pool{
		timeout:    cfg.Timeout,
		thresh:     int32(cfg.FailThreshold),
		probeEvery: cfg.ProbeInterval,
		tcp:        &dns.Client{Net: "tcp"},
		observe:    cfg.Observe,
		log:        cfg.Logger,
	}
	p.bufs.New = func() any { b := make([]byte, pooledUDPBuf); return &b }
	p.ctx, p.cancel = context.WithCancel(context.Background())
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
			Failures: u.failures.Load(), LastRTT: time.Duration(u.lastRTT.Load()),
			Mismatched: u.mismatched.Load(), Probes: u.probes.Load()}
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
	resp, err := p.exchange(ctx, u, q)
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
			p.startProbe(u)
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

// exchange asks u over UDP, and over TCP when the UDP answer is truncated.
func (p *Pool) exchange(ctx context.Context, u *Upstream, q *dns.Msg) (*dns.Msg, error) {
	resp, err := p.exchangeUDP(ctx, u, q)
	if err != nil || !resp.Truncated {
		return resp, err
	}
	resp, _, err = p.tcp.ExchangeContext(ctx, q, u.Addr)
	if err == nil {
		err = validate(q, resp)
	}
	return resp, err
}

// exchangeUDP sends q to u and waits for the answer that matches it. An
// answer that does not parse or does not match (ID, question) is dropped
// and counted, and the wait goes on until ctx ends (RFC 5452 9.1): a
// spoofed or stray packet can neither poison nor cut short the exchange.
func (p *Pool) exchangeUDP(ctx context.Context, u *Upstream, q *dns.Msg) (*dns.Msg, error) {
	out, err := q.Pack()
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "udp", u.Addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	if _, err := conn.Write(out); err != nil {
		return nil, err
	}
	// The answer cannot be larger than the size the query advertised.
	size := dns.MinMsgSize
	if opt := q.IsEdns0(); opt != nil {
		size = max(int(opt.UDPSize()), dns.MinMsgSize)
	}
	var buf []byte
	if size <= pooledUDPBuf {
		bp := p.bufs.Get().(*[]byte)
		defer p.bufs.Put(bp)
		buf = *bp
	} else {
		buf = make([]byte, size)
	}
	dropped, why := 0, ""
	for {
		n, err := conn.Read(buf)
		if err != nil {
			if dropped > 0 {
				return nil, fmt.Errorf("%w (dropped %d answers: %s)", err, dropped, why)
			}
			return nil, err
		}
		r := new(dns.Msg)
		if err := r.Unpack(buf[:n]); err != nil {
			why = "malformed: " + err.Error()
		} else if err := validate(q, r); err != nil {
			why = err.Error()
		} else {
			return r, nil
		}
		dropped++
		u.mismatched.Add(1)
	}
}

// startProbe starts probing u unless it is already being probed or the
// pool is closed.
func (p *Pool) startProbe(u *Upstream) {
	if !u.probing.CompareAndSwap(false, true) {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		u.probing.Store(false)
		return
	}
	p.probes.Add(1)
	go p.probeLoop(u)
}

// probeLoop probes u until it is healthy again or the pool closes.
func (p *Pool) probeLoop(u *Upstream) {
	defer p.probes.Done()
	for {
		p.probeUntilHealthy(u)
		u.probing.Store(false)
		// A query may have marked it unhealthy again while its
		// startProbe saw this loop still running: then carry on.
		if p.ctx.Err() != nil || u.healthy.Load() || !u.probing.CompareAndSwap(false, true) {
			return
		}
	}
}

func (p *Pool) probeUntilHealthy(u *Upstream) {
	t := time.NewTicker(p.probeEvery)
	defer t.Stop()
	for !u.healthy.Load() {
		select {
		case <-p.ctx.Done():
			return
		case <-t.C:
		}
		if err := p.probe(u); err != nil {
			msg := "probe: " + err.Error()
			u.lastError.Store(&msg)
			p.log.Debug("upstream probe failed", "upstream", u.Addr, "err", err)
			continue
		}
		u.consec.Store(0)
		if u.healthy.CompareAndSwap(false, true) {
			p.log.Info("upstream healthy again", "upstream", u.Addr, "by", "probe")
		}
	}
}

// probe asks u for the root's NS records: any matching NOERROR or NXDOMAIN
// answer shows it is back.
func (p *Pool) probe(u *Upstream) error {
	ctx, cancel := context.WithTimeout(p.ctx, p.timeout)
	defer cancel()
	u.probes.Add(1)
	q := new(dns.Msg)
	q.SetQuestion(".", dns.TypeNS)
	q.SetEdns0(1232, false)
	r, err := p.exchange(ctx, u, q)
	if err != nil {
		return err
	}
	if r.Rcode != dns.RcodeSuccess && r.Rcode != dns.RcodeNameError {
		return fmt.Errorf("answered %s", dns.RcodeToString[r.Rcode])
	}
	return nil
}

// Close stops the health probes. The pool still answers queries.
func (p *Pool) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.cancel()
	p.probes.Wait()
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
