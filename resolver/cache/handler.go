package cache

import (
	"context"
	"encoding/binary"
	"net/netip"
	"time"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/resolver/query"
)

// prefetchTimeout bounds one background refresh.
const prefetchTimeout = 10 * time.Second

// ServeDNS is the full path: hits that the wire path did not take (TCP,
// truncation, unusual queries), and misses, which go down the chain once
// per key however many clients ask at the same time.
func (c *Cache) ServeDNS(ctx context.Context, req *query.Request) (*dns.Msg, error) {
	var kb [262]byte
	key, err := query.CacheKey(kb[:], req.Msg)
	if err != nil {
		return c.cfg.Next.ServeDNS(ctx, req)
	}
	gen := c.version(req.Snapshot.Generation)
	now := c.now().UnixNano()
	e := c.get(key)
	if e != nil && e.gen == gen && now < e.expires {
		c.stats.Hits.Add(1)
		c.maybePrefetch(e, now)
		return c.respond(req, e, now, false)
	}
	c.stats.Misses.Add(1)
	s := c.shardOf(key)
	s.mu.Lock()
	if cl := s.calls[string(key)]; cl != nil {
		s.mu.Unlock()
		c.stats.Coalesced.Add(1)
		select {
		case <-cl.done:
		case <-ctx.Done():
			return nil, &query.EDEError{Code: dns.ExtendedErrorCodeNoReachableAuthority, Text: "query deadline passed", Err: ctx.Err()}
		}
		now = c.now().UnixNano()
		if e2 := c.get(key); e2 != nil && e2.gen == gen && now < e2.expires {
			return c.respond(req, e2, now, false)
		}
		// The shared answer was not cacheable (SERVFAIL, truncated...):
		// this query asks on its own.
		return c.fetch(ctx, req, key, e, gen)
	}
	cl := &call{done: make(chan struct{})}
	s.calls[string(key)] = cl
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.calls, string(key))
		s.mu.Unlock()
		close(cl.done)
	}()
	return c.fetch(ctx, req, key, e, gen)
}

// fetch runs the rest of the chain for a miss, stores the answer, and falls
// back to a stale entry when every upstream fails.
func (c *Cache) fetch(ctx context.Context, req *query.Request, key []byte, old *entry, gen uint64) (*dns.Msg, error) {
	now := c.now().UnixNano()
	if old != nil && old.gen != gen && now < old.rawExpires && c.cfg.Decider != nil {
		// Decided under an older list generation but still fresh: decide it
		// again from the upstream answer it holds, without a network trip.
		if held := c.reusable(req, old, now, false); held != nil {
			resp := c.cfg.Decider.Decide(req, held)
			req.Info.Upstream = "cache"
			if resp != nil {
				c.store(key, req, resp, held, gen, now)
			}
			return resp, nil
		}
	}
	resp, err := c.cfg.Next.ServeDNS(ctx, req)
	failed := err != nil || (resp != nil && resp.Rcode == dns.RcodeServerFailure && req.Info.Decision == nil)
	if failed && old != nil && c.stale > 0 {
		if sr := c.serveStale(ctx, req, old, gen, now); sr != nil {
			return sr, nil
		}
	}
	if err == nil && resp != nil {
		c.store(key, req, resp, nil, gen, now)
	}
	return resp, err
}

// reusable unpacks the upstream answer an entry holds, made the answer to
// req (its ID, header bits and OPT: query.ForClient), with its TTLs counted
// down (or set to StaleTTL).
func (c *Cache) reusable(req *query.Request, e *entry, now int64, stale bool) *dns.Msg {
	raw := e.upstreamWire()
	if raw == nil {
		return nil
	}
	m := new(dns.Msg)
	if m.Unpack(raw) != nil || len(m.Question) != 1 {
		return nil
	}
	m.Question[0].Name = req.Msg.Question[0].Name // the client's spelling
	query.ForClient(req.Msg, m)
	age := uint32(max((now-e.stored)/1e9, 0))
	for _, sec := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			h := rr.Header()
			switch {
			case stale:
				h.Ttl = StaleTTL
			case h.Ttl > age:
				h.Ttl -= age
			default:
				h.Ttl = 0
			}
		}
	}
	return m
}

// serveStale answers from an expired entry (RFC 8767): TTL 30 and EDE 3.
// An entry decided under an older list generation is decided again first.
func (c *Cache) serveStale(ctx context.Context, req *query.Request, e *entry, gen uint64, now int64) *dns.Msg {
	if e.gen == gen {
		if now >= e.expires+c.stale {
			return nil
		}
		c.stats.Stale.Add(1)
		m, err := c.respond(req, e, now, true)
		if err != nil {
			return nil
		}
		req.Info.Stale = true
		return m
	}
	if now >= e.rawExpires+c.stale || c.cfg.Decider == nil {
		return nil
	}
	raw := c.reusable(req, e, now, true)
	if raw == nil {
		return nil
	}
	again := *req
	again.Info = query.Info{Upstream: "cache"}
	resp := c.cfg.Decider.Decide(&again, raw)
	if resp == nil {
		return nil
	}
	for _, sec := range [][]dns.RR{resp.Answer, resp.Ns} {
		for _, rr := range sec {
			rr.Header().Ttl = StaleTTL
		}
	}
	query.AddEDE(resp, dns.ExtendedErrorCodeStaleAnswer, "")
	c.stats.Stale.Add(1)
	req.Info = again.Info
	req.Info.Stale, req.Info.Cached = true, true
	return resp
}

// respond renders an entry for a parsed request.
func (c *Cache) respond(req *query.Request, e *entry, now int64, stale bool) (*dns.Msg, error) {
	q := query.WireQuery{ID: req.Msg.Id, RD: req.Msg.RecursionDesired, UDPSize: query.ClientUDPSize(req.Msg)}
	if opt := req.Msg.IsEdns0(); opt != nil {
		q.HasEDNS, q.DO = true, opt.Do()
	}
	var qb [262]byte
	qq := req.Msg.Question[0]
	n, err := dns.PackDomainName(dns.Fqdn(qq.Name), qb[:], 0, nil, false)
	if err != nil || n+4 > len(qb) {
		return nil, err
	}
	qb[n], qb[n+1], qb[n+2], qb[n+3] = byte(qq.Qtype>>8), byte(qq.Qtype), byte(qq.Qclass>>8), byte(qq.Qclass)
	q.Question = qb[:n+4]
	out := make([]byte, e.renderedSize())
	size := e.render(out, &q, now, stale)
	m := new(dns.Msg)
	if err := m.Unpack(out[:size]); err != nil {
		return nil, err
	}
	info := e.info
	info.Cached, info.Stale = true, stale
	req.Info = info
	return m, nil
}

// store keeps a response, if it may be cached. held is the upstream answer
// an older entry held when resp was decided again from it (nil when resp
// came down the chain).
func (c *Cache) store(key []byte, req *query.Request, resp *dns.Msg, held *dns.Msg, gen uint64, now int64) {
	if resp.Truncated || req.Info.Dropped || req.Info.Stale || len(resp.Question) != 1 {
		return
	}
	if resp.Rcode != dns.RcodeSuccess && resp.Rcode != dns.RcodeNameError {
		return
	}
	if d := req.Info.Decision; d != nil && d.Enforced && d.Trigger == query.TriggerQName && held == nil {
		// Blocks on the query name are decided again for each query from the
		// snapshot in service (in well under a microsecond, on the wire path):
		// caching them would only spend memory.
		return
	}
	if opt := resp.IsEdns0(); opt != nil && opt.ExtendedRcode() > 0xF {
		return
	}
	neg := int64(-1)
	if resp.Rcode == dns.RcodeNameError || len(resp.Answer) == 0 {
		// RFC 2308: negative answers are cached for the SOA's TTL capped by
		// its MINIMUM field; without an SOA they are not cached.
		var soa *dns.SOA
		for _, rr := range resp.Ns {
			if s, ok := rr.(*dns.SOA); ok {
				soa = s
				break
			}
		}
		if soa == nil {
			return
		}
		neg = int64(min(soa.Hdr.Ttl, soa.Minttl))
		neg = min(max(neg, int64(c.minTTL)), int64(c.maxTTL))
	}
	wire, offs, opts, err := packForCache(resp)
	if err != nil {
		return
	}
	ttl := clampTTLs(wire, offs, c.minTTL, c.maxTTL, neg)
	if ttl == 0 {
		return
	}
	e := &entry{key: string(key), name: req.Name, wire: wire, ttlOffs: offs, opts: opts,
		qlen: questionLen(wire), stored: now, ttl: ttl, expires: now + int64(ttl)*1e9, gen: gen}
	e.info = query.Info{Rcode: resp.Rcode, Decision: req.Info.Decision, Upstream: req.Info.Upstream}
	// Keep the upstream's answer so a later list generation can decide the
	// entry again without asking upstream.
	var raw *dns.Msg
	if d := req.Info.Decision; d != nil && d.Enforced {
		raw = d.Replaced // the answer a block replaced
		if raw == nil {
			raw = held // blocked by name this time: keep the answer held before
		}
	}
	switch {
	case raw != nil:
		if w, o, _, err := packForCache(raw); err == nil {
			rttl := clampTTLs(w, o, c.minTTL, c.maxTTL, -1)
			e.raw, e.rawExpires = w, now+int64(rttl)*1e9
		}
	case req.Info.Decision == nil || !req.Info.Decision.Enforced:
		e.rawSame, e.rawExpires = true, e.expires // served as the upstream answered
	}
	// The client asking now gets the TTLs later clients will see counted down.
	setTTLs(resp, wire, offs)
	c.put(e)
}

// maybePrefetch refreshes a popular entry in the background when a hit
// finds it in the last tenth of its TTL.
func (c *Cache) maybePrefetch(e *entry, now int64) {
	if !c.cfg.Prefetch || e.ttl < minPrefetchTTL || c.cfg.Snapshot == nil {
		return
	}
	hits := e.hits.Add(1)
	if hits < prefetchHits || e.expires-now > int64(e.ttl)*1e9/prefetchDiv {
		return
	}
	if !e.prefetching.CompareAndSwap(false, true) {
		return
	}
	c.stats.Prefetches.Add(1)
	go c.prefetch(e)
}

func (c *Cache) prefetch(e *entry) {
	m := new(dns.Msg)
	if m.Unpack(e.wire) != nil || len(m.Question) != 1 {
		return
	}
	q := new(dns.Msg)
	q.Id = dns.Id()
	q.RecursionDesired = true
	q.Question = m.Question
	do, cd, ad := query.KeyFlags([]byte(e.key))
	q.CheckingDisabled, q.AuthenticatedData = cd, ad
	q.SetEdns0(query.ServerUDPSize, do)
	key := []byte(e.key)
	s := c.shardOf(key)
	s.mu.Lock()
	if s.calls[e.key] != nil {
		s.mu.Unlock()
		return // a miss is already fetching it
	}
	cl := &call{done: make(chan struct{})}
	s.calls[e.key] = cl
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.calls, e.key)
		s.mu.Unlock()
		close(cl.done)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), prefetchTimeout)
	defer cancel()
	req := query.NewRequest(q, netip.AddrPort{}, "prefetch", c.cfg.Snapshot())
	resp, err := c.cfg.Next.ServeDNS(ctx, req)
	if err != nil || resp == nil || resp.Rcode == dns.RcodeServerFailure {
		return
	}
	c.store(key, req, resp, nil, c.version(req.Snapshot.Generation), c.now().UnixNano())
}

// setTTLs copies the clamped TTLs of the packed form back into the message
// about to be sent (records in wire order, OPT excluded).
func setTTLs(m *dns.Msg, wire []byte, offs []uint16) {
	i := 0
	for _, sec := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			if rr.Header().Rrtype == dns.TypeOPT {
				continue
			}
			if i < len(offs) {
				rr.Header().Ttl = binary.BigEndian.Uint32(wire[offs[i]:])
			}
			i++
		}
	}
}
