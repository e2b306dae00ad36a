// Package bypass is the chain stage that tells clients this network's
// resolver is not to be bypassed, by answering the signal names that
// clients ask before they switch to their own encrypted resolver or relay:
//
//   - use-application-dns.net, the canary domain of Firefox's DNS over
//     HTTPS rollout: NXDOMAIN keeps Firefox on the network's resolver;
//   - mask.icloud.com and mask-h2.icloud.com, Apple's iCloud Private
//     Relay: NXDOMAIN tells Apple devices that Private Relay is not
//     available on this network.
//
// Each answer is NXDOMAIN with a SOA (so that it is cached negatively for
// the block TTL) and EDE 15 (Blocked) naming the reason. The names are
// matched exactly (not their subdomains). The stage sits in front of the
// cache and the lists, so the answer never depends on an upstream or a
// list file.
package bypass

import (
	"context"
	"sync/atomic"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/resolver/query"
)

// The signal names.
const (
	FirefoxCanary = "use-application-dns.net"
	PrivateRelay  = "mask.icloud.com"
	PrivateRelay2 = "mask-h2.icloud.com"
)

// Stage answers the signal names it is configured for and passes every
// other query on.
type Stage struct {
	// Canary answers use-application-dns.net with NXDOMAIN.
	Canary bool
	// PrivateRelay answers mask.icloud.com and mask-h2.icloud.com with
	// NXDOMAIN.
	PrivateRelay bool
	// TTL of the SOA (negative caching), in seconds.
	TTL uint32
	// Next is the rest of the chain.
	Next query.Handler

	canary, relay atomic.Uint64
}

// Link makes next the rest of the chain.
func (s *Stage) Link(next query.Handler) { s.Next = next }

// Enabled reports whether the stage answers any name (a disabled stage
// need not be in the chain).
func (s *Stage) Enabled() bool { return s.Canary || s.PrivateRelay }

// wire forms of the signal names, lower case, as in a cache key.
var (
	canaryWire = wireName(FirefoxCanary)
	relayWire  = wireName(PrivateRelay)
	relay2Wire = wireName(PrivateRelay2)
)

func wireName(name string) string {
	b := make([]byte, 256)
	n, _ := dns.PackDomainName(dns.Fqdn(name), b, 0, nil, false)
	return string(b[:n])
}

// Offer declines the signal names the stage answers (the full path
// answers them) and passes every other query.
func (s *Stage) Offer(q *query.WireQuery, _ *query.Offered) query.Verdict {
	n := query.WireName(q.Key)
	if (s.Canary && string(n) == canaryWire) || (s.PrivateRelay && (string(n) == relayWire || string(n) == relay2Wire)) {
		return query.Decline
	}
	return query.Pass
}

// Answered returns how many queries for the Firefox canary and for the
// Private Relay names were answered.
func (s *Stage) Answered() (canary, privateRelay uint64) { return s.canary.Load(), s.relay.Load() }

// ServeDNS answers a signal name, or hands the query on.
func (s *Stage) ServeDNS(ctx context.Context, req *query.Request) (*dns.Msg, error) {
	if req.Msg.Question[0].Qclass != dns.ClassINET {
		return s.Next.ServeDNS(ctx, req)
	}
	var text string
	switch {
	case s.Canary && req.Name == FirefoxCanary:
		s.canary.Add(1)
		text = "DNS over HTTPS canary: this network's resolver filters (use-application-dns.net)"
	case s.PrivateRelay && (req.Name == PrivateRelay || req.Name == PrivateRelay2):
		s.relay.Add(1)
		text = "iCloud Private Relay is not available on this network"
	default:
		return s.Next.ServeDNS(ctx, req)
	}
	q := req.Msg.Question[0]
	m := query.Reply(req.Msg, dns.RcodeNameError)
	m.Question = req.Msg.Question
	m.Ns = []dns.RR{&dns.SOA{
		Hdr:     dns.RR_Header{Name: q.Name, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: s.TTL},
		Ns:      "sinkhole.invalid.",
		Mbox:    "hostmaster.sinkhole.invalid.",
		Serial:  1,
		Refresh: 3600,
		Retry:   600,
		Expire:  86400,
		Minttl:  s.TTL,
	}}
	query.AddEDE(m, dns.ExtendedErrorCodeBlocked, text)
	return m, nil
}
