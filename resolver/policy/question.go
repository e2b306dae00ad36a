package policy

import (
	"context"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/blocklist"
	"github.com/sinkhole-dns/sinkhole/resolver/query"
)

// Question blocks by query name before anything is asked upstream.
type Question struct {
	Next  query.Handler
	Block *Blocker
	// CountryKnown reports whether a country database is loaded; without one,
	// overseas-scoped rules fail closed and block like scope any. Give it
	// the Answer stage's CountryKnown.
	CountryKnown func() bool
}

// ServeDNS answers blocked names and passes the rest on. A name under an
// overseas-scoped rule is passed on with the rule noted, for Answer to
// decide once the addresses are known.
func (q *Question) ServeDNS(ctx context.Context, req *query.Request) (*dns.Msg, error) {
	o := decideQuestion(q.Block, req.Snapshot, req.Name, q.CountryKnown != nil && q.CountryKnown())
	req.Info.Exempt, req.Info.Overseas = o.exempt, o.overseas
	if o.decision == nil {
		return q.Next.ServeDNS(ctx, req)
	}
	req.Info.Decision = o.decision
	if !o.decision.Enforced {
		return q.Next.ServeDNS(ctx, req)
	}
	return q.Block.Response(req, o.decision), nil
}

// questionOutcome is what the question stage makes of a name.
type questionOutcome struct {
	match    blocklist.Match
	decision *query.Decision   // a rule on the name fired (enforced or log)
	overseas *blocklist.RuleID // an overseas-scoped rule, left to the answer
	exempt   *blocklist.RuleID // an exception covers the name and its answer
}

// decideQuestion matches name (canonical form) against snap.
func decideQuestion(b *Blocker, snap *blocklist.Snapshot, name string, countryKnown bool) questionOutcome {
	o := questionOutcome{match: snap.MatchName(name)}
	m := o.match
	if !m.Blocked() {
		if m.HasAllow {
			o.exempt = &m.Allow
		}
		return o
	}
	if snap.Section(m.Rule).Scope == blocklist.ScopeOverseas {
		if countryKnown {
			o.overseas = &m.Rule
			return o
		}
		o.decision = b.Decide(snap, m.Rule, "qname", "")
		o.decision.Note = noCountryNote
		return o
	}
	o.decision = b.Decide(snap, m.Rule, "qname", "")
	return o
}

// noCountryNote explains a fail-closed overseas block in its EDE text.
const noCountryNote = "overseas scope, no country database"
