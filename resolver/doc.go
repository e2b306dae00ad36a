// Package resolver is sinkhole's DNS server: transport only. It reads
// queries from UDP and TCP (and from the connections and messages other
// transports hand it: ServeConn, HandlePacket), admits them (the Admit
// hook: ACL and rate limits; FORMERR for malformed queries), tries the
// chain's fast-path offers on the packet, hands everything else to the one
// chain of stages (query.Chain, built in cmd/sinkhole/chain.go), gives each
// answer sinkhole's own OPT record, packs and truncates it for its
// transport, rate limits UDP answers (the LimitResponse hook) and tells the
// observers.
//
// The files follow those jobs: server.go (configuration, listeners,
// shutdown), udp.go (the UDP read loop and answerFast, which answers one
// packet from the fast path into a buffer), tcp.go (stream connections:
// RFC 7766 framing, pipelining, caps), handle.go (one query: admission,
// the offers, the chain, observers), formerr.go (malformed queries),
// respond.go (packing and truncation, RRL, the one panic handler) and
// transfer.go (AXFR/IXFR and NOTIFY hooks). The stages and the types they
// share live in the subpackages: query (Request, Handler, decisions,
// Chain), cache, policy, chaos, upstream, rpz.
//
// Types from github.com/miekg/dns stay inside this package tree and
// blocklist, so the move to its v2 stays local.
package resolver
