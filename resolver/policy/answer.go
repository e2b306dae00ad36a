package policy

import (
	"context"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/blocklist"
	"github.com/sinkhole-dns/sinkhole/geo"
	"github.com/sinkhole-dns/sinkhole/resolver/query"
)

// Answer polices what the upstream returned: CNAME and DNAME targets
// (cloaking), answer addresses against IP and prefix rules (the RPZ
// response-IP trigger), their ASN against AS rules, and their country for
// overseas-scoped names.
type Answer struct {
	Next  query.Handler
	Block *Blocker
	// Geo looks up country and ASN; may be nil.
	Geo geo.Lookuper
	// Home is the home country (ISO code, upper case); answers located
	// elsewhere are overseas.
	Home string
}

// CountryKnown reports whether a country database is loaded, so that
// overseas-scoped rules can look at the answer (Question.CountryKnown).
func (a *Answer) CountryKnown() bool { return a.Geo != nil && a.Geo.HasCountry() }

// Link makes next the rest of the chain (query.Chain calls it).
func (a *Answer) Link(next query.Handler) { a.Next = next }

// ServeDNS asks Next and blocks the answer when a rule fires.
func (a *Answer) ServeDNS(ctx context.Context, req *query.Request) (*dns.Msg, error) {
	resp, err := a.Next.ServeDNS(ctx, req)
	if err != nil || resp == nil {
		return resp, err
	}
	return a.police(req, resp), nil
}

// police applies the lists to an upstream answer under req.NamePolicy: it
// returns resp, or the block answer (nil for the drop action) with the
// decision recorded.
func (a *Answer) police(req *query.Request, resp *dns.Msg) *dns.Msg {
	np := req.NamePolicy
	if np.Kind == query.NameExempt {
		return resp
	}
	var overseas *blocklist.RuleID
	if np.Kind == query.NameOverseas {
		overseas = &np.Rule
	}
	d := a.Check(req.Snapshot, overseas, resp)
	if d == nil {
		return resp
	}
	d.Addrs = answerAddrs(resp, a.Geo, d.Addr)
	if prev := req.Info.Decision; prev == nil || (!prev.Enforced && d.Enforced) {
		req.Info.Decision = d
	}
	if !d.Enforced {
		return resp
	}
	d.Replaced = resp
	return a.Block.Response(req, d)
}

// Decider decides an upstream answer the cache holds as the question and
// answer stages would (query.Decider), without asking upstream.
type Decider struct {
	Question *Question
	Answer   *Answer
}

// Decide applies the lists to req's name and then to resp.
func (d *Decider) Decide(req *query.Request, resp *dns.Msg) *dns.Msg {
	if out, done := d.Question.decide(req); done {
		return out
	}
	return d.Answer.police(req, resp)
}

// Check returns the decision for an upstream answer, or nil when nothing
// applies. overseas, when set, is the overseas-scoped rule the query name
// matched. An enforced decision is preferred over a monitor-only one.
func (a *Answer) Check(snap *blocklist.Snapshot, overseas *blocklist.RuleID, resp *dns.Msg) *query.Decision {
	return a.check(snap, overseas, resp, nil)
}

// checkState collects decisions while an answer is checked.
type checkState struct {
	first   *query.Decision // first enforced decision
	logOnly *query.Decision // first monitor-only decision
	explain bool            // keep going after the first enforced decision
}

// note records d and reports whether checking can stop.
func (st *checkState) note(d *query.Decision) bool {
	if !d.Enforced {
		if st.logOnly == nil {
			st.logOnly = d
		}
		return false
	}
	if st.first == nil {
		st.first = d
	}
	return !st.explain
}

func (st *checkState) result() *query.Decision {
	if st.first != nil {
		return st.first
	}
	return st.logOnly
}

// check is Check, also filling ex (when not nil) with every record's
// matches. It looks at CNAME and DNAME targets first: a target under an
// overseas-scoped rule makes the addresses decide, as for the query name.
func (a *Answer) check(snap *blocklist.Snapshot, overseas *blocklist.RuleID, resp *dns.Msg, ex *Explanation) *query.Decision {
	st := checkState{explain: ex != nil}
	countryKnown := a.CountryKnown()
	var recs []*RecordCheck
	if ex != nil {
		recs = make([]*RecordCheck, len(resp.Answer))
	}
	for i, rr := range resp.Answer {
		var target string
		switch v := rr.(type) {
		case *dns.CNAME:
			target = v.Target
		case *dns.DNAME:
			target = v.Target
		default:
			continue
		}
		name := query.CanonicalName(target)
		m := snap.MatchName(name)
		// An overseas-scoped target leaves the decision to the addresses.
		deferred := m.Blocked() && snap.Section(m.Rule).Scope == blocklist.ScopeOverseas && countryKnown
		if ex != nil {
			rc := newRecordCheck(rr, name)
			if m.HasRule {
				rc.addRule(a.Block, snap, query.TriggerCNAME, m.Rule, m.Blocked() && !deferred)
			}
			if m.HasAllow {
				rc.addRule(a.Block, snap, query.TriggerCNAME, m.Allow, false)
			}
			recs[i] = rc
		}
		if !m.Blocked() {
			continue
		}
		if deferred {
			if overseas == nil {
				rule := m.Rule
				overseas = &rule
			}
			continue
		}
		d := a.Block.Decide(snap, m.Rule, query.TriggerCNAME, name)
		if snap.Section(m.Rule).Scope == blocklist.ScopeOverseas {
			d.Note = noCountryNote
		}
		if st.note(d) {
			return st.result()
		}
	}
	if ex != nil && overseas != nil {
		r := ruleInfo(a.Block, snap, *overseas)
		ex.Overseas = &r
	}
	needASN := snap.HasASNRules() && a.Geo != nil && a.Geo.HasASN()
	for i, rr := range resp.Answer {
		ip, ok := recordAddr(rr)
		if !ok {
			continue
		}
		var info *query.AddrInfo
		lookup := func() *query.AddrInfo {
			if info == nil {
				info = &query.AddrInfo{IP: ip}
				if a.Geo != nil {
					info.Info = a.Geo.Lookup(ip)
				}
			}
			return info
		}
		var rc *RecordCheck
		if ex != nil {
			rc = newRecordCheck(rr, ip.String())
			rc.setGeo(lookup().Info, a.Home, countryKnown)
			recs[i] = rc
		}
		m := snap.MatchIP(ip)
		rc.addMatches(a.Block, snap, query.TriggerIP, m)
		if m.Blocked() {
			d := a.Block.Decide(snap, m.Rule, query.TriggerIP, ip.String())
			d.Addr = lookup()
			if st.note(d) {
				return st.result()
			}
		}
		if needASN {
			if in := lookup(); in.ASN != 0 {
				m := snap.MatchASN(in.ASN)
				rc.addMatches(a.Block, snap, query.TriggerASN, m)
				if m.Blocked() {
					d := a.Block.Decide(snap, m.Rule, query.TriggerASN, ip.String())
					d.Addr = in
					if st.note(d) {
						return st.result()
					}
				}
			}
		}
		// An address whose country is not known counts as overseas, and so
		// does every address when no country database is loaded: the rule
		// fails closed.
		if overseas != nil {
			if in := lookup(); !countryKnown || in.Country != a.Home {
				d := a.Block.Decide(snap, *overseas, query.TriggerOverseas, ip.String())
				d.Addr = in
				if !countryKnown {
					d.Note = noCountryNote
				}
				rc.addRule(a.Block, snap, query.TriggerOverseas, *overseas, true)
				if st.note(d) {
					return st.result()
				}
			}
		}
	}
	if ex != nil {
		for _, rc := range recs {
			if rc != nil {
				ex.Records = append(ex.Records, *rc)
			}
		}
	}
	return st.result()
}
