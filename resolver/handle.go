package resolver

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/resolver/query"
)

// wireScratch is one read loop's (or one stream query's) reusable state
// for answering without allocating.
type wireScratch struct {
	q       query.WireQuery
	offered query.Offered
	key     [262]byte
	out     []byte
	req     query.Request
	// clientName is the client's self-declared name (DoH), for observers.
	clientName string
	// now, when set, is when the packets being answered were read (a UDP
	// batch's read): their requests' Start, so a batch takes the clock
	// once. Zero: the clock is read per query.
	now time.Time
}

func newWireScratch() *wireScratch { return &wireScratch{out: make([]byte, dns.MaxMsgSize)} }

// HandlePacket answers one query message that arrived over a message
// transport (DoH, DoQ): admission (ACL, rate limit, max-inflight), the
// fast-path offers, the full chain, observers, all exactly as UDP/TCP. The
// answer is packed to at most maxSize bytes (truncation with TC when
// over). send is false when nothing is to be sent (drop). resp may be
// retained by the caller.
func (s *Server) HandlePacket(ctx context.Context, pkt []byte, client netip.AddrPort, proto string, maxSize int) (resp []byte, send bool) {
	if len(pkt) < 12 || !s.enter() {
		return nil, false
	}
	defer s.streams.Done()
	defer func() {
		if p := recover(); p != nil {
			s.panicked(p, "query panic; dropped", "client", client.String(), "proto", proto)
			resp, send = nil, false
		}
	}()
	maxSize = min(max(maxSize, dns.MinMsgSize), dns.MaxMsgSize)
	w := s.tcpScratch.Get().(*wireScratch)
	defer s.tcpScratch.Put(w)
	w.clientName = query.ClientName(ctx)
	defer func() { w.clientName = "" }()
	out, scratch := s.answerMessage(ctx, w, pkt, client, proto, maxSize)
	if out == nil {
		return nil, false
	}
	if scratch {
		out = append([]byte(nil), out...) // w.out is reused for the next query
	}
	return out, true
}

// answerMessage returns the wire-format answer to a query that arrived
// over a stream or message transport (nil for none): admission, the fast
// path, then the chain, packed to at most maxSize bytes and, over an
// encrypted transport, padded for a client that pads (RFC 8467). scratch
// reports that out aliases w.out.
func (s *Server) answerMessage(ctx context.Context, w *wireScratch, pkt []byte, from netip.AddrPort, proto string, maxSize int) (out []byte, scratch bool) {
	if out, scratch, done := s.fastMessage(w, pkt, from, proto, maxSize); done {
		return out, scratch
	}
	return s.chainMessage(ctx, pkt, from, proto, maxSize), false
}

// fastMessage is the part of answerMessage that needs no chain: admission,
// then the stages' fast-path offers. done is false when the query must
// take the chain (chainMessage); a stream's reader calls it inline.
func (s *Server) fastMessage(w *wireScratch, pkt []byte, from netip.AddrPort, proto string, maxSize int) (out []byte, scratch, done bool) {
	if out, pass := s.admit(pkt, from, proto, maxSize); !pass {
		return s.padded(out, pkt, proto, maxSize), false, true
	}
	n, ok := s.offer(w, pkt, from, proto, maxSize)
	switch {
	case !ok:
		return nil, false, false
	case n == 0:
		return nil, false, true // dropped
	}
	return s.padded(w.out[:n], pkt, proto, maxSize), true, true
}

// chainMessage answers an admitted query the fast path declined through
// the chain, packed and padded as answerMessage says.
func (s *Server) chainMessage(ctx context.Context, pkt []byte, from netip.AddrPort, proto string, maxSize int) []byte {
	_, resp := s.handle(ctx, pkt, from, proto)
	if resp == nil {
		return nil
	}
	return s.padded(s.pack(resp, maxSize), pkt, proto, maxSize)
}

// padded pads out for a client that pads over an encrypted transport (in
// place when out is a scratch buffer: its capacity is the largest message).
func (s *Server) padded(out, pkt []byte, proto string, maxSize int) []byte {
	if out != nil && Encrypted(proto) && WantsPadding(pkt) {
		return Pad(out, maxSize)
	}
	return out
}

// offer answers pkt from the fast path: the chain's offers, in chain
// order, on the packet as it came (query.Pipeline.Offer), into w.out,
// observing the query. limit is the largest answer the transport takes
// (0 over UDP: the client's UDP size). It reports the answer's length (0:
// send nothing) and false when the full path must take it. A panic on the
// fast path is counted and logged, and the query takes the full path.
func (s *Server) offer(w *wireScratch, pkt []byte, from netip.AddrPort, proto string, limit int) (n int, ok bool) {
	defer func() {
		if p := recover(); p != nil {
			s.panicked(p, "wire path panic; the query takes the full path", "client", from.String(), "proto", proto)
			n, ok = 0, false
		}
	}()
	if s.offers == nil || query.ParseWireQuery(pkt, w.key[:0], &w.q) != nil {
		return 0, false
	}
	w.q.Limit = limit
	if limit == 0 {
		w.q.Limit = w.q.UDPSize
	}
	o := &w.offered
	o.Snapshot, o.Out, o.Now = s.cfg.Snapshot(), w.out, w.now
	if o.Now.IsZero() {
		o.Now = time.Now() // one clock read for the offers and the observers
	}
	if s.offers.Offer(&w.q, o) != query.Answered || o.N > w.q.Limit {
		return 0, false
	}
	if s.cfg.Observe != nil {
		r := &w.req
		*r = query.Request{Name: o.Name, Qtype: w.q.Qtype, Client: from, Proto: proto, ClientName: w.clientName, Start: o.Now, Snapshot: o.Snapshot,
			Info: o.Info, Packet: pkt, Answer: w.out[:o.N]}
		r.Info.Cached, r.Info.Dropped = o.Cached, o.N == 0
		if o.N > 0 {
			r.Info.Rcode = int(w.out[3] & 0xF)
		}
		s.cfg.Observe(r, nil)
		*r = query.Request{}
	}
	return o.N, true
}

// admit asks ServerConfig.Admit about a query. It is called once per
// query, at its entry point, before any answer path. pass reports whether
// the query is to be answered; when it is not, out is what to send
// instead: nothing, or REFUSED (packed to maxSize, or over UDP to the
// client's size and rate limited like any UDP answer).
func (s *Server) admit(pkt []byte, from netip.AddrPort, proto string, maxSize int) (out []byte, pass bool) {
	if s.cfg.Admit == nil {
		return nil, true
	}
	switch s.cfg.Admit(from, proto) {
	case Admit:
		return nil, true
	case Drop:
		return nil, false
	}
	req, resp := refused(pkt)
	if resp == nil {
		return nil, false
	}
	if proto == "udp" {
		return s.limitUDP(s.pack(resp, query.ClientUDPSize(req)), from), false
	}
	return s.pack(resp, maxSize), false
}

// handle parses and answers one admitted query. It returns the parsed
// request (nil when the packet was not a query) and the response (nil to
// stay silent).
func (s *Server) handle(ctx context.Context, pkt []byte, from netip.AddrPort, proto string) (*dns.Msg, *dns.Msg) {
	if len(pkt) < 12 || pkt[2]&0x80 != 0 {
		return nil, nil // not even a header (the transports drop those first), or an answer: never answer answers
	}
	if why := malformed(pkt); why != "" {
		s.malformed.Add(1)
		s.log.Debug("malformed query answered FORMERR", "client", from.String(), "proto", proto, "why", why)
		return nil, formErr(pkt)
	}
	m := new(dns.Msg)
	if err := m.Unpack(pkt); err != nil {
		s.malformed.Add(1)
		return nil, formErr(pkt)
	}
	if m.Opcode != dns.OpcodeQuery {
		if m.Opcode == dns.OpcodeNotify && s.cfg.Notify != nil {
			return m, s.cfg.Notify(pkt, m, from)
		}
		return m, query.ErrorReply(m, dns.RcodeNotImplemented)
	}
	if len(m.Question) != 1 {
		s.malformed.Add(1)
		return m, query.ErrorReply(m, dns.RcodeFormatError)
	}
	if qt := m.Question[0].Qtype; qt == dns.TypeAXFR || qt == dns.TypeIXFR {
		return m, query.ErrorReply(m, dns.RcodeRefused) // transfers run only over streams, in serveTransfer
	}
	if opt := m.IsEdns0(); opt != nil && opt.Version() != 0 {
		// RFC 6891 6.1.3. RA is set, as Unbound and BIND do: the query
		// itself is sound and recursion is available to the client.
		r := query.ErrorReply(m, dns.RcodeBadVers)
		r.RecursionAvailable = true
		return m, r
	}
	if s.inflight.Add(1) > int64(s.cfg.MaxInflight) {
		// Overloaded (say, every upstream hangs under a flood): shed the
		// query rather than pile up goroutines waiting on the chain.
		s.inflight.Add(-1)
		s.overloaded.Add(1)
		return m, nil
	}
	defer s.inflight.Add(-1)
	req := query.NewRequest(m, from, proto, s.cfg.Snapshot())
	req.Packet = pkt
	req.ClientName = query.ClientName(ctx)
	resp := s.run(ctx, req)
	if resp != nil {
		req.Info.Rcode = resp.Rcode
	}
	if resp != nil {
		query.OwnOPT(m, resp)
	}
	if s.cfg.Observe != nil {
		s.cfg.Observe(req, resp)
	}
	if req.Info.Dropped {
		return m, nil
	}
	return m, resp
}

// run calls the chain, turning errors and panics into SERVFAIL.
func (s *Server) run(ctx context.Context, req *query.Request) (resp *dns.Msg) {
	defer func() {
		if p := recover(); p != nil {
			s.panicked(p, "query handler panic; answered SERVFAIL", "name", req.Name, "type", dns.TypeToString[req.Qtype],
				"client", req.Client.String(), "proto", req.Proto)
			resp = query.ServFail(req.Msg, dns.ExtendedErrorCodeOther, "internal error")
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, s.cfg.QueryTimeout)
	defer cancel()
	resp, err := s.cfg.Handler.ServeDNS(ctx, req)
	if err != nil {
		var ede *query.EDEError
		if errors.As(err, &ede) {
			resp = query.ServFail(req.Msg, ede.Code, ede.Text)
		} else {
			resp = query.ServFail(req.Msg, dns.ExtendedErrorCodeOther, "")
		}
		s.log.Debug("query failed", "name", req.Name, "type", dns.TypeToString[req.Qtype], "err", err)
	}
	if resp == nil {
		resp = query.ServFail(req.Msg, dns.ExtendedErrorCodeOther, "no response")
	}
	resp.Id = req.Msg.Id
	return resp
}
