package policy

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/blocklist"
	"github.com/sinkhole-dns/sinkhole/geo"
	"github.com/sinkhole-dns/sinkhole/resolver/query"
)

// Explanation is everything the policy makes of one query: the rule on the
// query name and, record by record, what the upstream's answer matched. It
// is what "sinkhole query" and the admin API show; its Decision is the one
// the server takes for the same query under the same snapshot.
type Explanation struct {
	Name  string `json:"name"`
	Qtype string `json:"qtype,omitempty"`
	// Generation of the list snapshot the query was decided under.
	Generation uint64 `json:"generation"`
	// Question is the rule the query name matched (block or exception).
	Question *RuleInfo `json:"question,omitempty"`
	// Exception is the "@@" rule covering the name when it overrides a
	// block rule (Question then holds the overridden block).
	Exception *RuleInfo `json:"exception,omitempty"`
	// Exempt: an exception covers the name, so its answer is not policed.
	Exempt bool `json:"exempt,omitempty"`
	// Overseas is the overseas-scoped rule (on the name or a CNAME target)
	// that makes the answer's countries decide.
	Overseas *RuleInfo `json:"overseas,omitempty"`
	// Home is the home country foreign answers are judged against.
	Home string `json:"home_country,omitempty"`
	// CountryKnown: a country database is loaded. Without one, overseas
	// rules block (fail closed).
	CountryKnown bool `json:"country_known"`
	// Resolved: the upstream was asked. A name blocked by its own rule is
	// not resolved, as in service.
	Resolved bool   `json:"resolved"`
	Upstream string `json:"upstream,omitempty"`
	// ResolveError says why the upstream could not be asked (the answer's
	// rules are then unchecked).
	ResolveError string `json:"resolve_error,omitempty"`
	Rcode        string `json:"rcode,omitempty"` // the upstream's
	// Records are the answer's CNAME, DNAME, A and AAAA records, in order.
	Records []RecordCheck `json:"records,omitempty"`
	// Verdict is "blocked", "logged" (a monitor-only rule fired),
	// "allowed" (an exception on the name) or "passed".
	Verdict string `json:"verdict"`
	// Reason is the decision's text, as in the EDE and the logs.
	Reason string `json:"reason,omitempty"`
	// Decision is the decision the server takes; nil when it passes.
	Decision *query.Decision `json:"-"`
}

// RecordCheck is one answer record and every rule it matched.
type RecordCheck struct {
	Owner string `json:"owner"`
	Type  string `json:"type"` // A, AAAA, CNAME or DNAME
	// Data is the address or the target name.
	Data    string `json:"data"`
	Country string `json:"country,omitempty"`
	ASN     uint32 `json:"asn,omitempty"`
	ASOrg   string `json:"as_org,omitempty"`
	// Foreign: the address is outside the home country (or its country is
	// not known). Only set for addresses when a home country is set.
	Foreign *bool `json:"foreign,omitempty"`
	// Matches are the rules that matched this record: blocks and exceptions.
	Matches []RuleInfo `json:"matches,omitempty"`
	// Blocked: a rule fires on this record.
	Blocked bool `json:"blocked"`
}

// RuleInfo describes a rule that matched, for people and JSON.
type RuleInfo struct {
	// Trigger is what matched: qname, cname, ip, asn or overseas.
	Trigger  string `json:"trigger"`
	Text     string `json:"rule"` // e.g. "binance.com", "198.51.100.0/24", "@@AS64501"
	File     string `json:"file"`
	Line     int    `json:"line"`
	Platform string `json:"platform,omitempty"`
	// Why is the rule's authority, order and contact.
	blocklist.Why
	// Action is the resolved action (never "default").
	Action    string `json:"action"`
	Scope     string `json:"scope"`
	Exception bool   `json:"exception,omitempty"`
	// Fires: the rule decides (a block not overridden by an exception).
	Fires bool `json:"fires"`
}

// Where returns "file:line".
func (r RuleInfo) Where() string { return fmt.Sprintf("%s:%d", r.File, r.Line) }

func ruleInfo(b *Blocker, snap *blocklist.Snapshot, id blocklist.RuleID) RuleInfo {
	r := snap.Rule(id)
	return RuleInfo{
		Text: r.Text, File: r.File, Line: r.Line, Platform: r.Platform, Why: r.Why,
		Action: b.Resolve(r.Action).String(), Scope: r.Scope.String(), Exception: r.Allow,
	}
}

func newRecordCheck(rr dns.RR, data string) *RecordCheck {
	h := rr.Header()
	return &RecordCheck{Owner: query.CanonicalName(h.Name), Type: dns.TypeToString[h.Rrtype], Data: data}
}

func (rc *RecordCheck) setGeo(in geo.Info, home string, countryKnown bool) {
	rc.Country, rc.ASN, rc.ASOrg = in.Country, in.ASN, in.ASOrg
	if home != "" {
		foreign := !countryKnown || in.Country != home
		rc.Foreign = &foreign
	}
}

// addMatches records the block rule and the exception of m. rc may be nil
// (not explaining).
func (rc *RecordCheck) addMatches(b *Blocker, snap *blocklist.Snapshot, trigger query.Trigger, m blocklist.Match) {
	if rc == nil {
		return
	}
	if m.HasRule {
		rc.addRule(b, snap, trigger, m.Rule, !m.HasAllow)
	}
	if m.HasAllow {
		rc.addRule(b, snap, trigger, m.Allow, false)
	}
}

func (rc *RecordCheck) addRule(b *Blocker, snap *blocklist.Snapshot, trigger query.Trigger, id blocklist.RuleID, fires bool) {
	if rc == nil {
		return
	}
	r := ruleInfo(b, snap, id)
	r.Trigger, r.Fires = trigger.String(), fires
	rc.Matches = append(rc.Matches, r)
	rc.Blocked = rc.Blocked || fires
}

// Explain reports what the question and answer stages make of a query for
// name under snap, given the upstream's answer resp (nil when the name was
// not resolved). name may be in any case, with or without the final dot.
func (a *Answer) Explain(snap *blocklist.Snapshot, name string, resp *dns.Msg) *Explanation {
	name = query.CanonicalName(name)
	ex := &Explanation{Name: name, Generation: snap.Generation, Home: a.Home, CountryKnown: a.CountryKnown()}
	o := decideQuestion(a.Block, snap, name, ex.CountryKnown)
	switch m := o.match; {
	case m.HasRule:
		r := ruleInfo(a.Block, snap, m.Rule)
		r.Trigger, r.Fires = "qname", m.Blocked() && o.overseas == nil
		ex.Question = &r
	case m.HasAllow:
		r := ruleInfo(a.Block, snap, m.Allow)
		r.Trigger = "qname"
		ex.Question = &r
	}
	if m := o.match; m.HasRule && m.HasAllow {
		r := ruleInfo(a.Block, snap, m.Allow)
		r.Trigger = "qname"
		ex.Exception = &r
	}
	ex.Exempt = o.exempt != nil
	d := o.decision
	if resp != nil {
		ex.Resolved = true
		ex.Rcode = dns.RcodeToString[resp.Rcode]
		ad := a.check(snap, o.overseas, resp, ex)
		// As ServeDNS: an exempt name's answer is not policed; an answer
		// decision replaces a monitor-only name decision.
		if !ex.Exempt && ad != nil && (d == nil || (!d.Enforced && ad.Enforced)) {
			d = ad
		}
	}
	if o.overseas != nil && ex.Overseas == nil {
		r := ruleInfo(a.Block, snap, *o.overseas)
		ex.Overseas = &r
	}
	ex.Decision = d
	switch {
	case d != nil && d.Enforced:
		ex.Verdict, ex.Reason = "blocked", d.Reason()
	case d != nil:
		ex.Verdict, ex.Reason = "logged", d.Reason()
	case ex.Exempt && ex.Exception != nil:
		ex.Verdict, ex.Reason = "allowed", ex.Exception.reason()
	case ex.Exempt:
		ex.Verdict, ex.Reason = "allowed", ex.Question.reason()
	default:
		ex.Verdict = "passed"
	}
	return ex
}

func (r *RuleInfo) reason() string {
	if r == nil {
		return ""
	}
	if r.Platform != "" {
		return fmt.Sprintf("allowed by %s (%s)", r.Where(), r.Platform)
	}
	return "allowed by " + r.Where()
}

// ExplainQuery explains a query for name and qtype as the server would
// answer it now under snap: the question stage first and, unless that
// blocks the name outright, the answer asked through Next (the upstream)
// and checked. A name blocked by its own rule is not sent upstream, as in
// service. The error is the upstream's when it could not answer.
func (a *Answer) ExplainQuery(ctx context.Context, snap *blocklist.Snapshot, name string, qtype uint16) (*Explanation, error) {
	canon, err := blocklist.NormalizeName(name)
	if err != nil {
		return nil, err
	}
	o := decideQuestion(a.Block, snap, canon, a.CountryKnown())
	var resp *dns.Msg
	var upstream string
	if o.decision == nil || !o.decision.Enforced {
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(canon), qtype)
		m.SetEdns0(query.ServerUDPSize, false)
		req := query.NewRequest(m, netip.AddrPort{}, "api", snap)
		if resp, err = a.Next.ServeDNS(ctx, req); err != nil {
			// The name rule still explains; the answer could not be checked.
			ex := a.Explain(snap, canon, nil)
			ex.Qtype, ex.ResolveError = dns.TypeToString[qtype], fmt.Sprintf("resolve %s %s: %v", canon, dns.TypeToString[qtype], err)
			return ex, nil
		}
		upstream = req.Info.Upstream
	}
	ex := a.Explain(snap, canon, resp)
	ex.Qtype, ex.Upstream = dns.TypeToString[qtype], upstream
	return ex, nil
}

// String renders the explanation for a terminal, one fact per line.
func (ex *Explanation) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: %s", ex.Name, ex.Qtype, ex.Verdict)
	if ex.Reason != "" {
		fmt.Fprintf(&b, " (%s)", ex.Reason)
	}
	b.WriteByte('\n')
	if r := ex.Question; r != nil {
		fmt.Fprintf(&b, "  name rule: %s\n", r.describe())
	}
	if r := ex.Overseas; r != nil {
		fmt.Fprintf(&b, "  overseas scope: %s; home country %s", r.describe(), orDash(ex.Home))
		if !ex.CountryKnown {
			b.WriteString("; no country database: blocks (fail closed)")
		}
		b.WriteByte('\n')
	}
	if !ex.Resolved {
		b.WriteString("  not resolved: blocked by name before the upstream is asked\n")
		return b.String()
	}
	fmt.Fprintf(&b, "  upstream %s: %s, %d records\n", orDash(ex.Upstream), ex.Rcode, len(ex.Records))
	if ex.Exempt {
		b.WriteString("  answer not policed: an exception covers the name\n")
	}
	for _, rc := range ex.Records {
		fmt.Fprintf(&b, "  %s %s %s", rc.Owner, rc.Type, rc.Data)
		if rc.Type == "A" || rc.Type == "AAAA" {
			fmt.Fprintf(&b, " country %s", orDash(rc.Country))
			if rc.ASN != 0 {
				fmt.Fprintf(&b, " AS%d", rc.ASN)
				if rc.ASOrg != "" {
					fmt.Fprintf(&b, " %s", rc.ASOrg)
				}
			}
			if rc.Foreign != nil && *rc.Foreign {
				b.WriteString(" (foreign)")
			}
		}
		b.WriteByte('\n')
		for _, r := range rc.Matches {
			fmt.Fprintf(&b, "    %s rule: %s\n", r.Trigger, r.describe())
		}
	}
	return b.String()
}

func (r *RuleInfo) describe() string {
	s := fmt.Sprintf("%s at %s", r.Text, r.Where())
	if r.Platform != "" {
		s += " (" + r.Platform + ")"
	}
	s += string(r.Why.AppendText(nil))
	s += ", action " + r.Action
	if r.Scope != blocklist.ScopeAny.String() {
		s += ", scope " + r.Scope
	}
	switch {
	case r.Exception:
		s += ", exception"
	case r.Fires:
		s += ", fires"
	case r.Scope == blocklist.ScopeOverseas.String():
		s += ", fires only on a foreign answer"
	default:
		s += ", overridden by an exception"
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
