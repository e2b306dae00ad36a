package resolver

import "net/netip"

// AnswerPacket runs one packet through the server's whole query path
// (admission, parsing, the chain, response rate limiting, truncation,
// packing) as if it had arrived over proto, without a socket: for the
// fuzz target.
func (s *Server) AnswerPacket(pkt []byte, from netip.AddrPort, proto string) []byte {
	w := newWireScratch()
	var out []byte
	if proto == "tcp" {
		out = s.answerTCP(w, pkt, from)
	} else {
		out = s.answerUDP(w, pkt, from)
	}
	return append([]byte(nil), out...) // out may alias the scratch buffer
}
