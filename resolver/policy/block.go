// Package policy holds the chain stages that apply the lists: Question
// checks the query name before anything else (and its offer, wire.go,
// answers names blocked outright straight from the packet), Answer checks
// what the upstream returned (CNAME and DNAME targets, addresses, their
// ASN and country), Blocker builds the response a block gets, and Decider
// runs the two policies on an answer the cache holds (after a reload)
// without asking upstream. explain.go explains a decision for operators.
package policy

import (
	"net"
	"net/netip"
	"strings"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/blocklist"
	"github.com/sinkhole-dns/sinkhole/resolver/query"
)

// Blocker builds block responses.
type Blocker struct {
	// Default is the action for rules whose section sets none.
	Default blocklist.Action
	// SinkholeV4 and SinkholeV6 answer A and AAAA queries under the
	// sinkhole action.
	SinkholeV4, SinkholeV6 netip.Addr
	// TTL of synthesized records and of the SOA (negative caching).
	TTL uint32
	// DryRun turns every rule into action log (serve --dry-run): answers
	// are never changed; would-be blocks are audited as not enforced.
	DryRun bool
}

// Resolve returns the action in force for a section's action: log under
// DryRun, else the section's, falling back to the default.
func (b *Blocker) Resolve(a blocklist.Action) blocklist.Action {
	if b.DryRun {
		return blocklist.ActionLog
	}
	if a == blocklist.ActionDefault {
		if b.Default == blocklist.ActionDefault {
			return blocklist.ActionNXDomain
		}
		return b.Default
	}
	return a
}

// Decide builds the decision for a matched rule.
func (b *Blocker) Decide(snap *blocklist.Snapshot, rule blocklist.RuleID, trigger query.Trigger, target string) *query.Decision {
	act := b.Resolve(snap.Section(rule).Action)
	return &query.Decision{
		Snapshot: snap, Rule: rule, Action: act, Enforced: act.Enforced(),
		Trigger: trigger, Target: target,
	}
}

// Response builds the answer for an enforced decision. For ActionDrop it
// marks the request dropped and returns nil.
func (b *Blocker) Response(req *query.Request, d *query.Decision) *dns.Msg {
	q := req.Msg
	var m *dns.Msg
	switch d.Action {
	case blocklist.ActionDrop:
		req.Info.Dropped = true
		return nil
	case blocklist.ActionRefused:
		m = query.Reply(q, dns.RcodeRefused)
	case blocklist.ActionLocalData:
		m = query.Reply(q, dns.RcodeSuccess)
		m.Answer = localAnswer(q.Question[0], d.Snapshot.LocalData(d.Rule))
		if len(m.Answer) == 0 {
			m.Ns = []dns.RR{b.soa(req, d)}
		}
	case blocklist.ActionNoData:
		m = query.Reply(q, dns.RcodeSuccess)
		m.Ns = []dns.RR{b.soa(req, d)}
	case blocklist.ActionSinkhole:
		m = query.Reply(q, dns.RcodeSuccess)
		if rr := b.sinkholeRR(q.Question[0]); rr != nil {
			m.Answer = []dns.RR{rr}
		} else {
			m.Ns = []dns.RR{b.soa(req, d)}
		}
	default: // NXDOMAIN
		m = query.Reply(q, dns.RcodeNameError)
		m.Ns = []dns.RR{b.soa(req, d)}
	}
	query.AddEDE(m, dns.ExtendedErrorCodeCensored, d.Reason())
	return m
}

// localAnswer answers q from an RPZ rule's local data: the records of the
// asked type (every record for ANY), or else the CNAME, whose wildcard
// target "*.garden.example." becomes "<qname>.garden.example.". Records take
// the query name as owner. An empty answer means NODATA.
func localAnswer(q dns.Question, data []dns.RR) []dns.RR {
	var out []dns.RR
	var cname *dns.CNAME
	for _, rr := range data {
		if c, ok := rr.(*dns.CNAME); ok {
			cname = c
			continue
		}
		if q.Qtype == rr.Header().Rrtype || q.Qtype == dns.TypeANY {
			cp := dns.Copy(rr)
			cp.Header().Name = q.Name
			out = append(out, cp)
		}
	}
	if cname == nil {
		return out
	}
	c := dns.Copy(cname).(*dns.CNAME)
	c.Hdr.Name = q.Name
	if strings.HasPrefix(c.Target, "*.") {
		c.Target = strings.TrimSuffix(q.Name, ".") + c.Target[1:]
		if _, ok := dns.IsDomainName(c.Target); !ok || len(c.Target) > 254 {
			return nil // the expanded name is too long: answer NODATA
		}
	}
	return []dns.RR{c}
}

func (b *Blocker) sinkholeRR(q dns.Question) dns.RR {
	hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: b.TTL}
	switch q.Qtype {
	case dns.TypeA:
		if b.SinkholeV4.Is4() {
			hdr.Rrtype = dns.TypeA
			return &dns.A{Hdr: hdr, A: net.IP(b.SinkholeV4.AsSlice())}
		}
	case dns.TypeAAAA:
		if b.SinkholeV6.IsValid() {
			hdr.Rrtype = dns.TypeAAAA
			return &dns.AAAA{Hdr: hdr, AAAA: net.IP(b.SinkholeV6.AsSlice())}
		}
	}
	return nil
}

// soa is the negative-caching SOA of a block response. Its owner is the
// listed domain for name rules (so resolvers below cache the block for the
// whole listed zone), the query name otherwise.
func (b *Blocker) soa(req *query.Request, d *query.Decision) dns.RR {
	owner := req.Msg.Question[0].Name
	if d.Trigger == query.TriggerQName && d.Rule.Type() == blocklist.RuleDomain {
		r := d.Describe()
		if !r.Allow && r.Text != "" && r.Text[0] != '=' && r.Text[0] != '*' {
			owner = dns.Fqdn(r.Text)
		}
	}
	return &dns.SOA{
		Hdr:     dns.RR_Header{Name: owner, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: b.TTL},
		Ns:      "sinkhole.invalid.",
		Mbox:    "hostmaster.sinkhole.invalid.",
		Serial:  uint32(d.Snapshot.Generation),
		Refresh: 3600,
		Retry:   600,
		Expire:  86400,
		Minttl:  b.TTL,
	}
}
