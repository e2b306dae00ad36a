package policy

import (
	"net/netip"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/geo"
	"github.com/sinkhole-dns/sinkhole/resolver/query"
)

// maxAuditAddrs caps the addresses recorded for one decision.
const maxAuditAddrs = 32

// answerAddrs lists the A and AAAA addresses of an upstream answer with
// what geo knows of each, for the audit log of an answer-based decision.
// known, when set, is an address already looked up.
func answerAddrs(resp *dns.Msg, g geo.Lookuper, known *query.AddrInfo) []query.AddrInfo {
	var out []query.AddrInfo
	for _, rr := range resp.Answer {
		ip, ok := recordAddr(rr)
		if !ok {
			continue
		}
		if len(out) == maxAuditAddrs {
			break
		}
		ai := query.AddrInfo{IP: ip}
		switch {
		case known != nil && known.IP == ip:
			ai.Info = known.Info
		case g != nil:
			ai.Info = g.Lookup(ip)
		}
		out = append(out, ai)
	}
	return out
}

// recordAddr returns the address of an A or AAAA record (IPv4-mapped
// IPv6 addresses as IPv4).
func recordAddr(rr dns.RR) (netip.Addr, bool) {
	var ip netip.Addr
	switch v := rr.(type) {
	case *dns.A:
		ip, _ = netip.AddrFromSlice(v.A.To4())
	case *dns.AAAA:
		ip, _ = netip.AddrFromSlice(v.AAAA)
	}
	return ip.Unmap(), ip.IsValid()
}
