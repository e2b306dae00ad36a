package resolver

import (
	"context"
	"net/netip"

	"github.com/sinkhole-dns/sinkhole/resolver/query"
)

// AnswerPacket runs one packet through the server's whole query path
// (admission, parsing, the chain, response rate limiting, truncation,
// packing) as if it had arrived over proto, without a socket: for the
// fuzz target.
func (s *Server) AnswerPacket(pkt []byte, from netip.AddrPort, proto string) []byte {
	w := newWireScratch()
	var out []byte
	if proto == "tcp" {
		out, _ = s.answerMessage(context.Background(), w, pkt, from, "tcp", 65535)
	} else {
		out = s.answerUDP(w, pkt, from)
	}
	return append([]byte(nil), out...) // out may alias the scratch buffer
}

// Scratch is a read loop's reusable state, for benchmarks of the whole
// packet path.
type Scratch = wireScratch

// NewScratch returns a read loop's scratch state.
func NewScratch() *Scratch { return newWireScratch() }

// AnswerUDPInto is the UDP read loop's whole path for one packet; the
// answer may alias w.
func (s *Server) AnswerUDPInto(w *Scratch, pkt []byte, from netip.AddrPort) []byte {
	return s.answerUDP(w, pkt, from)
}

// ServerUDPSizeForTest is the EDNS UDP size sinkhole advertises.
const ServerUDPSizeForTest = query.ServerUDPSize

// AddrPort is the first bound address.
func (s *Server) AddrPort() netip.AddrPort { return netip.MustParseAddrPort(s.Addrs()[0]) }
