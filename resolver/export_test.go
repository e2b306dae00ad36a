package resolver

import "net/netip"

// AnswerPacket runs one packet through the server's whole query path
// (admission, parsing, the chain, response rate limiting, truncation,
// packing) as if it had arrived over proto, without a socket: for the
// fuzz target.
func (s *Server) AnswerPacket(pkt []byte, from netip.AddrPort, proto string) []byte {
	if proto == "tcp" {
		return s.answerTCP(pkt, from)
	}
	return s.answerUDP(pkt, from)
}
