package policy

import (
	"context"
	"net/netip"
	"strings"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/blocklist"
	"github.com/sinkhole-dns/sinkhole/geo"
	"github.com/sinkhole-dns/sinkhole/resolver"
)

// Answer polices what the upstream returned: CNAME and DNAME targets
// (cloaking), answer addresses against IP and prefix rules, their ASN
// against AS rules, and their country for overseas-scoped names.
type Answer struct {
	Next  resolver.Handler
	Block *Blocker
	// Geo looks up country and ASN; may be nil.
	Geo geo.Lookuper
	// Home is the home country (ISO code, upper case); answers located
	// elsewhere are overseas.
	Home string
}

// ServeDNS asks Next and blocks the answer when a rule fires.
func (a *Answer) ServeDNS(ctx context.Context, req *resolver.Request) (*dns.Msg, error) {
	resp, err := a.Next.ServeDNS(ctx, req)
	if err != nil || resp == nil || req.Info.Exempt != nil {
		return resp, err
	}
	d := a.Check(req.Snapshot, req.Info.Overseas, resp)
	if d == nil {
		return resp, nil
	}
	d.Addrs = answerAddrs(resp, a.Geo, d.Addr)
	if prev := req.Info.Decision; prev == nil || (!prev.Enforced && d.Enforced) {
		req.Info.Decision = d
	}
	if !d.Enforced {
		return resp, nil
	}
	return a.Block.Response(req, d), nil
}

// Check returns the decision for an upstream answer, or nil when nothing
// applies. overseas, when set, is the overseas-scoped rule the query name
// matched. An enforced decision is preferred over a monitor-only one.
func (a *Answer) Check(snap *blocklist.Snapshot, overseas *blocklist.RuleID, resp *dns.Msg) *resolver.Decision {
	var logOnly *resolver.Decision
	consider := func(d *resolver.Decision) bool {
		if d.Enforced {
			return true
		}
		if logOnly == nil {
			logOnly = d
		}
		return false
	}
	needASN := snap.HasASNRules() && a.Geo != nil && a.Geo.HasASN()
	needCountry := overseas != nil && a.Geo != nil && a.Geo.HasCountry()
	for _, rr := range resp.Answer {
		var target string
		var ip netip.Addr
		switch v := rr.(type) {
		case *dns.CNAME:
			target = v.Target
		case *dns.DNAME:
			target = v.Target
		case *dns.A:
			ip, _ = netip.AddrFromSlice(v.A.To4())
		case *dns.AAAA:
			ip, _ = netip.AddrFromSlice(v.AAAA)
		default:
			continue
		}
		if target != "" {
			name := strings.ToLower(strings.TrimSuffix(target, "."))
			if m := snap.MatchName(name); m.Blocked() {
				if consider(a.Block.Decide(snap, m.Rule, "cname", name)) {
					return a.Block.Decide(snap, m.Rule, "cname", name)
				}
			}
			continue
		}
		if !ip.IsValid() {
			continue
		}
		var info *resolver.AddrInfo
		lookup := func() *resolver.AddrInfo {
			if info == nil {
				info = &resolver.AddrInfo{IP: ip}
				if a.Geo != nil {
					info.Info = a.Geo.Lookup(ip)
				}
			}
			return info
		}
		if m := snap.MatchIP(ip); m.Blocked() {
			d := a.Block.Decide(snap, m.Rule, "ip", ip.String())
			d.Addr = lookup()
			if consider(d) {
				return d
			}
		}
		if needASN {
			if in := lookup(); in.ASN != 0 {
				if m := snap.MatchASN(in.ASN); m.Blocked() {
					d := a.Block.Decide(snap, m.Rule, "asn", ip.String())
					d.Addr = in
					if consider(d) {
						return d
					}
				}
			}
		}
		if needCountry {
			// An address with no known country counts as overseas: the
			// rule fails closed.
			if in := lookup(); in.Country != a.Home {
				d := a.Block.Decide(snap, *overseas, "overseas", ip.String())
				d.Addr = in
				if consider(d) {
					return d
				}
			}
		}
	}
	return logOnly
}
