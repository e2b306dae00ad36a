package policy

import (
	"context"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/blocklist"
	"github.com/sinkhole-dns/sinkhole/resolver/query"
)

// Question blocks by query name before anything is asked upstream. Its
// offer (wire.go) answers the names it blocks outright from the packet.
type Question struct {
	Next  query.Handler
	Block *Blocker
	// CountryKnown reports whether a country database is loaded; without one,
	// overseas-scoped rules fail closed and block like scope any. Give it
	// the Answer stage's CountryKnown.
	CountryKnown func() bool
}

// Link makes next the rest of the chain (query.Chain calls it).
func (q *Question) Link(next query.Handler) { q.Next = next }

// ServeDNS answers blocked names and passes the rest on. A name under an
// overseas-scoped rule is passed on with the rule noted in req.NamePolicy,
// for Answer to decide once the addresses are known.
func (q *Question) ServeDNS(ctx context.Context, req *query.Request) (*dns.Msg, error) {
	if resp, done := q.decide(req); done {
		return resp, nil
	}
	return q.Next.ServeDNS(ctx, req)
}

// decide applies the lists to the query name: it sets req.NamePolicy and
// the decision, and returns the block answer when the name is blocked
// (done; nil for the drop action).
func (q *Question) decide(req *query.Request) (*dns.Msg, bool) {
	o := decideQuestion(q.Block, req.Snapshot, req.Name, q.CountryKnown != nil && q.CountryKnown())
	req.NamePolicy = o.policy()
	if o.decision == nil {
		return nil, false
	}
	req.Info.Decision = o.decision
	if !o.decision.Enforced {
		return nil, false
	}
	return q.Block.Response(req, o.decision), true
}

// questionOutcome is what the question stage makes of a name.
type questionOutcome struct {
	match    blocklist.Match
	decision *query.Decision   // a rule on the name fired (enforced or log)
	overseas *blocklist.RuleID // an overseas-scoped rule, left to the answer
	exempt   *blocklist.RuleID // an exception covers the name and its answer
}

// policy is the outcome as the answer stage reads it.
func (o *questionOutcome) policy() query.NamePolicy {
	switch {
	case o.exempt != nil:
		return query.NamePolicy{Kind: query.NameExempt, Rule: *o.exempt}
	case o.overseas != nil:
		return query.NamePolicy{Kind: query.NameOverseas, Rule: *o.overseas}
	case o.decision != nil:
		return query.NamePolicy{Kind: query.NameBlocked, Rule: o.decision.Rule}
	}
	return query.NamePolicy{}
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
		o.decision = b.Decide(snap, m.Rule, query.TriggerQName, "")
		o.decision.Note = noCountryNote
		return o
	}
	o.decision = b.Decide(snap, m.Rule, query.TriggerQName, "")
	return o
}

// noCountryNote explains a fail-closed overseas block in its EDE text.
const noCountryNote = "overseas scope, no country database"
