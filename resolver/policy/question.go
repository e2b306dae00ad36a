package policy

import (
	"context"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/blocklist"
	"github.com/sinkhole-dns/sinkhole/resolver"
)

// Question blocks by query name before anything is asked upstream.
type Question struct {
	Next  resolver.Handler
	Block *Blocker
	// CountryKnown reports whether a country database is loaded; without one,
	// overseas-scoped rules fail closed and block like scope any.
	CountryKnown func() bool
}

// ServeDNS answers blocked names and passes the rest on. A name under an
// overseas-scoped rule is passed on with the rule noted, for Answer to
// decide once the addresses are known.
func (q *Question) ServeDNS(ctx context.Context, req *resolver.Request) (*dns.Msg, error) {
	m := req.Snapshot.MatchName(req.Name)
	if !m.Blocked() {
		if m.HasAllow {
			req.Info.Exempt = &m.Allow
		}
		return q.Next.ServeDNS(ctx, req)
	}
	sec := req.Snapshot.Section(m.Rule)
	if sec.Scope == blocklist.ScopeOverseas && q.CountryKnown != nil && q.CountryKnown() {
		req.Info.Overseas = &m.Rule
		return q.Next.ServeDNS(ctx, req)
	}
	d := q.Block.Decide(req.Snapshot, m.Rule, "qname", req.Name)
	req.Info.Decision = d
	if !d.Enforced {
		return q.Next.ServeDNS(ctx, req)
	}
	return q.Block.Response(req, d), nil
}
