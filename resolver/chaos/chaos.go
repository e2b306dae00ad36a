// Package chaos is the chain stage that answers CHAOS-class queries
// (version.bind, hostname.bind, id.server...) itself: they are never
// forwarded, so an upstream's software version and host name never reach
// clients. Without configured texts every CHAOS query is REFUSED; with an
// identity, id.server and hostname.bind are answered with it, and with a
// version string, version.bind and version.server (RFC 4892).
package chaos

import (
	"context"
	"strings"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/resolver/query"
)

// Stage answers CHAOS-class queries and passes every other query on.
type Stage struct {
	// Identity answers id.server and hostname.bind ("" : REFUSED).
	Identity string
	// Version answers version.bind and version.server ("": REFUSED).
	Version string
	next    query.Handler
}

// Link makes next the rest of the chain (query.Chain calls it).
func (s *Stage) Link(next query.Handler) { s.next = next }

// Offer declines CHAOS-class queries (the full path answers them) and
// passes the others.
func (s *Stage) Offer(q *query.WireQuery, _ *query.Offered) query.Verdict {
	if q.Qclass == dns.ClassCHAOS {
		return query.Decline
	}
	return query.Pass
}

// ServeDNS answers a CHAOS query: a TXT record for the names that have a
// configured text (an empty answer for other types), REFUSED for the rest.
func (s *Stage) ServeDNS(ctx context.Context, req *query.Request) (*dns.Msg, error) {
	q := req.Msg.Question[0]
	if q.Qclass != dns.ClassCHAOS {
		return s.next.ServeDNS(ctx, req)
	}
	var text string
	switch req.Name {
	case "id.server", "hostname.bind":
		text = s.Identity
	case "version.bind", "version.server":
		text = s.Version
	}
	if text == "" {
		return query.ErrorReply(req.Msg, dns.RcodeRefused), nil
	}
	m := query.Reply(req.Msg, dns.RcodeSuccess)
	m.Authoritative = true // sinkhole's own data
	if q.Qtype == dns.TypeTXT || q.Qtype == dns.TypeANY {
		m.Answer = []dns.RR{&dns.TXT{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeTXT, Class: dns.ClassCHAOS}, Txt: split(text)}}
	}
	return m, nil
}

// split cuts text into the 255-byte strings a TXT record holds, with
// backslashes escaped (miekg/dns reads the strings in presentation form):
// the client receives the text byte for byte.
func split(text string) []string {
	var out []string
	for {
		n := min(len(text), 255)
		out = append(out, strings.ReplaceAll(text[:n], `\`, `\\`))
		text = text[n:]
		if text == "" {
			return out
		}
	}
}
