package resolver

import (
	"context"
	"errors"
	"net"
	"net/netip"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/resolver/query"
)

// udpLoop reads one UDP socket: each packet is answered in the loop when
// the fast path can (answerFast), else handed to a goroutine for the
// chain.
func (s *Server) udpLoop(c *net.UDPConn) {
	defer s.loops.Done()
	buf := make([]byte, dns.MaxMsgSize)
	w := newWireScratch()
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if s.closing.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Debug("udp read", "err", err)
			continue
		}
		if n < 12 {
			continue // not even a header: drop
		}
		if out, done := s.answerFast(w, buf[:n], from); done {
			s.writeUDP(c, out, from)
			continue
		}
		s.chainUDP(c, buf[:n], from)
	}
}

// chainUDP hands a query the fast path declined to a goroutine for the
// chain, which writes the answer itself; pkt is copied, so the caller may
// reuse it at once.
func (s *Server) chainUDP(c *net.UDPConn, pkt []byte, from netip.AddrPort) {
	bp := s.bufPool.Get().(*[]byte)
	own := append((*bp)[:0], pkt...)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.serveUDP(c, own, from)
		if cap(own) <= slowPathBuf { // oversized packets do not stay pooled
			*bp = own[:0]
			s.bufPool.Put(bp)
		}
	}()
}

// answerFast answers one UDP packet, in the read loop, from what needs no
// chain: admission (ACL, rate limit, malformed packets), then the stages'
// fast-path offers (a cache hit, a blocked name...), with response rate
// limiting. done is false when the query must take the chain (answerChain);
// out (nil: send nothing) may alias w.out. A batching read loop calls it
// once per packet with one scratch per loop.
func (s *Server) answerFast(w *wireScratch, pkt []byte, from netip.AddrPort) (out []byte, done bool) {
	if out, pass := s.admit(pkt, from, "udp", 0); !pass {
		return out, true
	}
	n, ok := s.offer(w, pkt, from, "udp", 0)
	switch {
	case !ok:
		return nil, false
	case n == 0:
		return nil, true // dropped
	}
	return s.limitUDP(w.out[:n], from), true
}

// answerUDP is the whole UDP path of one packet (answerFast, then the chain).
func (s *Server) answerUDP(w *wireScratch, pkt []byte, from netip.AddrPort) []byte {
	if out, done := s.answerFast(w, pkt, from); done {
		return out
	}
	return s.answerChain(pkt, from)
}

// serveUDP answers an admitted UDP query through the chain (the read loop
// ran answerFast) and writes the answer.
func (s *Server) serveUDP(c *net.UDPConn, pkt []byte, from netip.AddrPort) {
	defer func() {
		if p := recover(); p != nil {
			s.panicked(p, "query panic; dropped", "client", from.String(), "proto", "udp")
		}
	}()
	s.writeUDP(c, s.answerChain(pkt, from), from)
}

// answerChain answers an admitted UDP query through the chain, packed to
// the client's UDP size and rate limited.
func (s *Server) answerChain(pkt []byte, from netip.AddrPort) []byte {
	req, resp := s.handle(context.Background(), pkt, from, "udp")
	if resp == nil {
		return nil
	}
	size := dns.MinMsgSize
	if req != nil {
		size = query.ClientUDPSize(req)
	}
	out := s.pack(resp, size)
	if out == nil {
		return nil
	}
	return s.limitUDP(out, from)
}

// writeUDP sends out to the client (nothing when out is nil).
func (s *Server) writeUDP(c *net.UDPConn, out []byte, from netip.AddrPort) {
	if out == nil {
		return
	}
	if _, err := c.WriteToUDPAddrPort(out, from); err != nil {
		s.log.Debug("udp write", "client", from.String(), "err", err)
	}
}
