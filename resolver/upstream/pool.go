// Package upstream forwards queries to the configured upstream resolvers:
// in order, with a per-try timeout, failing over on timeouts, network
// errors and bad answers (SERVFAIL, REFUSED, NOTIMP, FORMERR), retrying
// over TCP when a UDP answer is truncated and without EDNS when an upstream
// rejects it, never trusting an answer that does not match the question,
// and scrubbing every answer down to what belongs to the question (package
// scrub). An upstream that fails FailThreshold times in a row is marked
// unhealthy, tried only after the healthy ones, and probed until it
// answers again.
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

	"github.com/sinkhole-dns/sinkhole/resolver/query"
	"github.com/sinkhole-dns/sinkhole/resolver/scrub"
)

// DefaultTimeout is the per-try timeout.
const DefaultTimeout = 2 * time.Second

// DefaultFailThreshold is how many consecutive failures mark an upstream
// unhealthy.
const DefaultFailThreshold = 3

// DefaultProbeInterval is how often an unhealthy upstream is probed.
const DefaultProbeInterval = 5 * time.Second

// DefaultNoEDNSMemory is how long an upstream that rejected EDNS is asked
// without it before EDNS is tried again (as Unbound's infra-host-ttl).
const DefaultNoEDNSMemory = 15 * time.Minute

// Upstream is one upstream resolver and its health.
type Upstream struct {
	Addr string // host:port, or tls://, https://, quic:// (see NormalizeAddr)
	// ex exchanges with an encrypted upstream (nil: UDP, then TCP).
	ex exchanger

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
	// badAnswers counts SERVFAIL, REFUSED, NOTIMP and FORMERR answers.
	badAnswers atomic.Uint64
	// noEDNSUntil is when (Unix nanoseconds) EDNS is tried again with an
	// upstream that answered FORMERR or NOTIMP to it; 0: never rejected.
	noEDNSUntil atomic.Int64
	// scrubbed counts records scrubbed from its answers, by section.
	scrubbed [3]atomic.Uint64
}

// ednsRejected reports whether u is, for now, asked without EDNS.
func (u *Upstream) ednsRejected(now time.Time) bool {
	until := u.noEDNSUntil.Load()
	return until != 0 && now.UnixNano() < until
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
	// BadAnswers counts SERVFAIL, REFUSED, NOTIMP and FORMERR answers,
	// each of which made the pool try the next upstream.
	BadAnswers uint64 `json:"bad_answers"`
	// NoEDNS is set while the upstream is asked without EDNS because it
	// rejected it.
	NoEDNS bool `json:"no_edns"`
	// Scrubbed counts records removed from its answers for not belonging
	// to the question, by section.
	Scrubbed Scrubbed `json:"scrubbed"`
}

// Scrubbed counts scrubbed records by section.
type Scrubbed struct {
	Answer     uint64 `json:"answer"`
	Authority  uint64 `json:"authority"`
	Additional uint64 `json:"additional"`
}

// Total is the number of scrubbed records.
func (s Scrubbed) Total() uint64 { return s.Answer + s.Authority + s.Additional }

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
	// NoEDNSMemory is how long an upstream that rejected EDNS is asked
	// without it (DefaultNoEDNSMemory if 0).
	NoEDNSMemory time.Duration
	// Observe, when set, is told about every exchange (for metrics).
	Observe func(addr string, rtt time.Duration, err error)
	// Tap, when set, is told about every message exchanged with an
	// upstream (for dnstap FORWARDER_QUERY and FORWARDER_RESPONSE): proto
	// is "udp" or "tcp", resp is nil when none came. It must not block or
	// keep q or resp.
	Tap    func(addr, proto string, sent time.Time, q, resp *dns.Msg)
	Logger *slog.Logger
	// TLS authenticates and reaches the encrypted upstreams.
	TLS TLSOptions
}

// Pool is the last stage of the chain: it answers from the upstreams.
type Pool struct {
	ups        []*Upstream
	timeout    time.Duration
	thresh     int32
	probeEvery time.Duration
	noEDNSFor  time.Duration
	tcp        *dns.Client
	observe    func(string, time.Duration, error)
	tap        func(string, string, time.Time, *dns.Msg, *dns.Msg)
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
//
// Encrypted upstreams are "tls://IP[:853][#NAME]", "quic://IP[:853][#NAME]"
// and "https://HOST[:443][/PATH]" (encrypted.go).
func NormalizeAddr(a string) (string, error) {
	a = strings.TrimSpace(a)
	if a == "" {
		return "", errors.New("empty upstream address")
	}
	if isEncrypted(a) {
		e, err := parseEncrypted(a)
		return e.String(), err
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

// udpReadBuffer is the receive buffer asked for each UDP exchange's socket.
const udpReadBuffer = 1 << 20

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
	if cfg.NoEDNSMemory <= 0 {
		cfg.NoEDNSMemory = DefaultNoEDNSMemory
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	p := &Pool{
		timeout:    cfg.Timeout,
		thresh:     int32(cfg.FailThreshold),
		probeEvery: cfg.ProbeInterval,
		noEDNSFor:  cfg.NoEDNSMemory,
		tcp:        &dns.Client{Net: "tcp"},
		observe:    cfg.Observe,
		tap:        cfg.Tap,
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
		if isEncrypted(n) {
			if u.ex, err = newExchanger(n, cfg.TLS, cfg.Timeout); err != nil {
				return nil, err
			}
		}
		u.healthy.Store(true)
		p.ups = append(p.ups, u)
	}
	return p, nil
}

// Health returns every upstream's state.
func (p *Pool) Health() []Health {
	out := make([]Health, len(p.ups))
	now := time.Now()
	for i, u := range p.ups {
		h := Health{Addr: u.Addr, Healthy: u.healthy.Load(), Requests: u.requests.Load(),
			Failures: u.failures.Load(), LastRTT: time.Duration(u.lastRTT.Load()),
			Mismatched: u.mismatched.Load(), Probes: u.probes.Load(),
			BadAnswers: u.badAnswers.Load(), NoEDNS: u.ednsRejected(now),
			Scrubbed: Scrubbed{Answer: u.scrubbed[0].Load(), Authority: u.scrubbed[1].Load(), Additional: u.scrubbed[2].Load()}}
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

// ServeDNS forwards req and returns the first valid answer, made
// sinkhole's own for the client (query.ForClient).
func (p *Pool) ServeDNS(ctx context.Context, req *query.Request) (*dns.Msg, error) {
	resp, up, err := p.Exchange(ctx, Query(req.Msg))
	if err != nil {
		return nil, err
	}
	req.Info.Upstream = up
	// The upstream's header bits and OPT are for its hop, not the client's.
	return query.ForClient(req.Msg, resp), nil
}

// Exchange sends q to the upstreams in turn and returns the first good
// answer, scrubbed, and the upstream that gave it. An answer with SERVFAIL,
// REFUSED, NOTIMP or FORMERR moves on to the next upstream; when every
// upstream gave one, the last is returned. When none answered at all the
// error is a *query.EDEError with code 22 (all timed out) or 23
// (network errors).
func (p *Pool) Exchange(ctx context.Context, q *dns.Msg) (*dns.Msg, string, error) {
	var errs []string
	timeouts := 0
	var bad *dns.Msg // the last bad answer
	var badFrom *Upstream
	for _, u := range p.order() {
		if ctx.Err() != nil {
			break
		}
		resp, err := p.try(ctx, u, q)
		if err != nil {
			if isTimeout(err) {
				timeouts++
			}
			errs = append(errs, u.Addr+": "+err.Error())
			continue
		}
		if badRcode(resp.Rcode) {
			u.badAnswers.Add(1)
			p.log.Debug("upstream answered an error, trying the next", "upstream", u.Addr,
				"name", q.Question[0].Name, "rcode", dns.RcodeToString[resp.Rcode])
			bad, badFrom = resp, u
			continue
		}
		p.scrub(u, q, resp)
		return resp, u.Addr, nil
	}
	if bad != nil {
		p.scrub(badFrom, q, bad)
		return bad, badFrom.Addr, nil
	}
	code, text := dns.ExtendedErrorCodeNetworkError, "no upstream answered"
	if timeouts == len(errs) {
		code = dns.ExtendedErrorCodeNoReachableAuthority
		text = "every upstream timed out"
	}
	if len(errs) == 0 {
		return nil, "", &query.EDEError{Code: dns.ExtendedErrorCodeNoReachableAuthority, Text: "query deadline passed", Err: ctx.Err()}
	}
	return nil, "", &query.EDEError{Code: code, Text: text, Err: errors.New(strings.Join(errs, "; "))}
}

// badRcode reports whether an answer with rcode says the upstream could
// not or would not answer, so that another upstream should be asked.
func badRcode(rcode int) bool {
	switch rcode {
	case dns.RcodeServerFailure, dns.RcodeRefused, dns.RcodeNotImplemented, dns.RcodeFormatError:
		return true
	}
	return false
}

// scrub removes from resp, u's answer to q, what does not belong to q's
// question, and counts it.
func (p *Pool) scrub(u *Upstream, q, resp *dns.Msg) {
	c := scrub.Message(q.Question[0], resp)
	if c.Total() == 0 {
		return
	}
	u.scrubbed[0].Add(uint64(c.Answer))
	u.scrubbed[1].Add(uint64(c.Authority))
	u.scrubbed[2].Add(uint64(c.Additional))
	p.log.Debug("scrubbed records not belonging to the question", "upstream", u.Addr, "name", q.Question[0].Name,
		"answer", c.Answer, "authority", c.Authority, "additional", c.Additional)
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
	resp, err := p.exchangeEDNS(ctx, u, q, start)
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

// exchangeEDNS asks u, without EDNS when u rejects it. An EDNS query
// answered FORMERR or NOTIMP is asked once more without EDNS (RFC 6891
// section 7); when that one is answered, u is asked without EDNS for
// NoEDNSMemory. The answer carries q's ID.
func (p *Pool) exchangeEDNS(ctx context.Context, u *Upstream, q *dns.Msg, now time.Time) (*dns.Msg, error) {
	if q.IsEdns0() == nil {
		return p.exchange(ctx, u, q)
	}
	if u.ednsRejected(now) {
		return p.exchangePlain(ctx, u, q)
	}
	resp, err := p.exchange(ctx, u, q)
	if err != nil || (resp.Rcode != dns.RcodeFormatError && resp.Rcode != dns.RcodeNotImplemented) {
		return resp, err
	}
	plain, perr := p.exchangePlain(ctx, u, q)
	if perr != nil {
		return resp, nil // the first answer stands
	}
	if plain.Rcode != dns.RcodeFormatError && plain.Rcode != dns.RcodeNotImplemented {
		now := time.Now()
		if old := u.noEDNSUntil.Swap(now.Add(p.noEDNSFor).UnixNano()); old < now.UnixNano() {
			p.log.Warn("upstream rejects EDNS: asking it without EDNS for a while", "upstream", u.Addr,
				"rcode", dns.RcodeToString[resp.Rcode], "for", p.noEDNSFor)
		}
	}
	return plain, nil
}

// exchangePlain asks u the question of q without EDNS, under a fresh ID,
// and gives the answer q's ID.
func (p *Pool) exchangePlain(ctx context.Context, u *Upstream, q *dns.Msg) (*dns.Msg, error) {
	pq := withoutEDNS(q)
	resp, err := p.exchange(ctx, u, pq)
	if err != nil {
		return nil, err
	}
	resp.Id = q.Id
	return resp, nil
}

// withoutEDNS returns a copy of q without its OPT record, under a new ID.
func withoutEDNS(q *dns.Msg) *dns.Msg {
	pq := q.CopyTo(new(dns.Msg))
	pq.Id = dns.Id()
	extra := pq.Extra[:0]
	for _, rr := range pq.Extra {
		if rr.Header().Rrtype != dns.TypeOPT {
			extra = append(extra, rr)
		}
	}
	pq.Extra = extra
	return pq
}

// exchange asks u over UDP, and over TCP when the UDP answer is truncated.
func (p *Pool) exchange(ctx context.Context, u *Upstream, q *dns.Msg) (*dns.Msg, error) {
	sent := time.Now()
	if u.ex != nil {
		resp, err := u.ex.Exchange(ctx, q)
		if p.tap != nil {
			p.tap(u.ex.Dialed(), u.ex.Proto(), sent, q, resp)
		}
		return resp, err
	}
	resp, err := p.exchangeUDP(ctx, u, q)
	if p.tap != nil {
		p.tap(u.Addr, "udp", sent, q, resp)
	}
	if err != nil || !resp.Truncated {
		return resp, err
	}
	sent = time.Now()
	resp, _, err = p.tcp.ExchangeContext(ctx, q, u.Addr)
	if p.tap != nil {
		p.tap(u.Addr, "tcp", sent, q, resp)
	}
	if err == nil {
		err = validate(q, resp)
	}
	return resp, err
}

// exchangeUDP sends q to u and waits for the answer that matches it. An
// answer that does not parse or does not match (ID, question) is dropped
// and counted, and the wait goes on until ctx ends (RFC 5452 9.1): a
// spoofed or stray packet can neither poison nor cut short the exchange.
// Packets with the wrong ID are dropped from their header alone, so a
// burst of them is read off the socket fast; and when any was dropped and
// no answer came by half the time left, the query is sent once more, in
// case the real answer was lost in the burst.
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
	if uc, ok := conn.(*net.UDPConn); ok {
		// Room for a burst of forged answers ahead of the real one (the
		// kernel caps it at net.core.rmem_max).
		uc.SetReadBuffer(udpReadBuffer)
	}
	deadline, hasDeadline := ctx.Deadline()
	resendAt := time.Time{}
	if hasDeadline {
		resendAt = time.Now().Add(time.Until(deadline) / 2)
		conn.SetDeadline(resendAt)
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
			if !resendAt.IsZero() && ctx.Err() == nil && isTimeout(err) {
				// Half the time is gone: resend if packets were dropped, and
				// wait for the rest of it.
				resend := dropped > 0
				resendAt = time.Time{}
				conn.SetDeadline(deadline)
				if ctx.Err() == nil { // not cancelled while the deadline moved
					if !resend {
						continue
					}
					if _, err = conn.Write(out); err == nil {
						continue
					}
				}
			}
			if dropped > 0 {
				return nil, fmt.Errorf("%w (dropped %d answers: %s)", err, dropped, why)
			}
			return nil, err
		}
		if n < 12 || buf[2]&0x80 == 0 {
			why = "not a response"
		} else if buf[0] != out[0] || buf[1] != out[1] {
			why = "wrong ID"
		} else if r, err := unpack(buf[:n]); err != nil {
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

func unpack(b []byte) (*dns.Msg, error) {
	r := new(dns.Msg)
	return r, r.Unpack(b)
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
	if !u.ednsRejected(time.Now()) {
		q.SetEdns0(1232, false)
	}
	r, err := p.exchange(ctx, u, q)
	if err != nil {
		return err
	}
	if r.Rcode != dns.RcodeSuccess && r.Rcode != dns.RcodeNameError {
		return fmt.Errorf("answered %s", dns.RcodeToString[r.Rcode])
	}
	return nil
}

// Close stops the health probes and closes the encrypted upstreams' open
// connections. The pool still answers queries (opening new ones).
func (p *Pool) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.cancel()
	p.probes.Wait()
	for _, u := range p.ups {
		if u.ex != nil {
			u.ex.Close()
		}
	}
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
