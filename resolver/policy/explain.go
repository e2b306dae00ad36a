package policy

import (
	"context"
	"net/netip"
	"strings"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/blocklist"
	"github.com/sinkhole-dns/sinkhole/resolver"
)

// Explanation is what the policy decides for a query, and why. It is built
// by Explainer for operators ("sinkhole query", the admin API); it runs the
// same matchers as the chain but bypasses the cache and the query logs.
type Explanation struct {
	Name  string
	Qtype uint16
	// Question is the match of the query name.
	Question blocklist.Match
	// Decision is the rule that fired (nil when allowed). It is
	// monitor-only when Decision.Enforced is false.
	Decision *resolver.Decision
	// Pending is set when an overseas-scoped rule matched and the decision
	// depends on the answer; Resolved tells whether the answer was checked.
	Pending  *blocklist.RuleID
	Resolved bool
	// Records are the upstream's answer records with their addresses'
	// geolocation and any rule each triggered.
	Records    []RecordInfo
	ResolveErr error
}

// RecordInfo is one answer record.
type RecordInfo struct {
	Text     string
	Addr     *resolver.AddrInfo // for A and AAAA
	Target   string             // for CNAME and DNAME
	Decision *resolver.Decision // a rule this record triggers, if any
}

// Explainer decides names the way the chain does.
type Explainer struct {
	Question *Question
	Answer   *Answer
	// Exchange asks the upstreams (nil for offline explanations).
	Exchange func(ctx context.Context, q *dns.Msg) (*dns.Msg, error)
}

// Explain decides name (any case, trailing dot optional) for qtype under
// snap. With an Exchange it resolves the name to check the answer, unless
// the name is blocked outright.
func (e *Explainer) Explain(ctx context.Context, snap *blocklist.Snapshot, name string, qtype uint16) *Explanation {
	ex := &Explanation{Name: name, Qtype: qtype}
	ex.Question = snap.MatchName(name)
	block := e.Question.Block
	if ex.Question.Blocked() {
		sec := snap.Section(ex.Question.Rule)
		if sec.Scope == blocklist.ScopeOverseas && e.Question.CountryKnown != nil && e.Question.CountryKnown() {
			r := ex.Question.Rule
			ex.Pending = &r
		} else {
			ex.Decision = block.Decide(snap, ex.Question.Rule, "qname", name)
			if ex.Decision.Enforced {
				return ex
			}
		}
	}
	if e.Exchange == nil {
		return ex
	}
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), qtype)
	q.SetEdns0(resolver.ServerUDPSize, false)
	resp, err := e.Exchange(ctx, q)
	if err != nil {
		ex.ResolveErr = err
		return ex
	}
	ex.Resolved = true
	for _, rr := range resp.Answer {
		ex.Records = append(ex.Records, e.record(snap, ex.Pending, rr))
	}
	if ex.Question.HasAllow {
		return ex // an exception on the name exempts its answer
	}
	if d := e.Answer.Check(snap, ex.Pending, resp); d != nil && (ex.Decision == nil || d.Enforced) {
		ex.Decision = d
	}
	return ex
}

// record annotates one answer record.
func (e *Explainer) record(snap *blocklist.Snapshot, overseas *blocklist.RuleID, rr dns.RR) RecordInfo {
	ri := RecordInfo{Text: strings.ReplaceAll(rr.String(), "\t", " ")}
	var ip netip.Addr
	switch v := rr.(type) {
	case *dns.CNAME:
		ri.Target = strings.ToLower(strings.TrimSuffix(v.Target, "."))
	case *dns.DNAME:
		ri.Target = strings.ToLower(strings.TrimSuffix(v.Target, "."))
	case *dns.A:
		ip, _ = netip.AddrFromSlice(v.A.To4())
	case *dns.AAAA:
		ip, _ = netip.AddrFromSlice(v.AAAA)
	}
	if ri.Target != "" {
		if m := snap.MatchName(ri.Target); m.Blocked() {
			ri.Decision = e.Question.Block.Decide(snap, m.Rule, "cname", ri.Target)
		}
		return ri
	}
	if !ip.IsValid() {
		return ri
	}
	// Check this one record on its own.
	one := &dns.Msg{Answer: []dns.RR{rr}}
	ri.Decision = e.Answer.Check(snap, overseas, one)
	ri.Addr = &resolver.AddrInfo{IP: ip}
	if e.Answer.Geo != nil {
		ri.Addr.Info = e.Answer.Geo.Lookup(ip)
	}
	return ri
}
