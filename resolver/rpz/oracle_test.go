package rpz

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/blocklist"
)

// The export as it was built before it followed deltas: the whole zone
// from the snapshot's triggers, rule by rule. Tests compare the compact
// zone (built whole or changed by deltas) with it.

// uniformWhy finds the platform, authority, order and contact that every
// exported block shares. RPZ has no place for per-rule text (any record at
// a trigger is policy), so what the whole zone shares is all it can carry:
// the export writes those values as TXT records at the apex, in
// list-directive form ("authority: Ministry of Finance"), and sinkhole's
// RPZ reader applies them to every rule of the zone.
type uniformWhy struct {
	seen   bool
	values [4]string
	mixed  [4]bool
}

func (u *uniformWhy) see(sec *blocklist.Section) {
	v := [4]string{sec.Platform, sec.Authority, sec.Order, sec.Contact}
	if !u.seen {
		u.seen, u.values = true, v
		return
	}
	for i := range v {
		if v[i] != u.values[i] {
			u.mixed[i] = true
		}
	}
}

// records returns the apex TXT records of the shared values.
func (u *uniformWhy) records(ttl uint32) []record {
	var out []record
	for i, k := range whyKeys {
		if u.seen && !u.mixed[i] && u.values[i] != "" {
			// The list parser forbids '"' and '\' in these values, so
			// quoting is enough.
			out = append(out, record{owner: "", rtype: dns.TypeTXT, ttl: ttl, rdata: `"` + k + ": " + u.values[i] + `"`})
		}
	}
	return out
}

// buildRecords turns a snapshot into the sorted records of an RPZ zone
// (without SOA and NS) that blocks what sinkhole blocks. Exceptions are
// resolved as sinkhole resolves them (an exception wins over any block):
// a block whose name or subdomains an exception covers is left out, and
// every exception becomes rpz-passthru, so RPZ's own precedence (exact
// over wildcard, longest wildcard, longest prefix) gives the same answers.
func buildRecords(snap *blocklist.Snapshot, o BuildOptions) ([]record, Skipped) {
	var (
		out     []record
		skipped Skipped
		seen    = map[string]bool{} // owners written
		allowIP = map[netip.Prefix]bool{}
		why     uniformWhy // the directives every exported block shares
	)
	for t := range snap.Triggers() {
		if t.Type == blocklist.RuleIP && t.Allow {
			allowIP[t.Prefix] = true
		}
	}
	add := func(owner string, recs ...record) {
		if seen[owner] {
			return
		}
		seen[owner] = true
		for _, r := range recs {
			r.owner = owner
			if r.ttl == 0 {
				r.ttl = o.TTL
			}
			out = append(out, r)
		}
	}
	passthru := record{rtype: dns.TypeCNAME, rdata: blocklist.RPZPassthru}
	for t := range snap.Triggers() {
		switch t.Type {
		case blocklist.RuleASN:
			if !t.Allow {
				skipped.ASN++
			}
			continue
		case blocklist.RuleIP:
			owner := blocklist.RPZIPName(t.Prefix)
			if t.Allow {
				add(owner, passthru)
				continue
			}
			if coveredByAllow(t.Prefix, allowIP) {
				continue
			}
		}
		var owners []string
		if t.Type == blocklist.RuleDomain {
			exact, wild := t.Name, "*."+t.Name
			switch t.Kind {
			case blocklist.MatchExact:
				owners = []string{exact}
			case blocklist.MatchWildcard:
				owners = []string{wild}
			default:
				owners = []string{exact, wild}
			}
			if t.Allow {
				for _, ow := range owners {
					add(ow, passthru)
				}
				continue
			}
		}
		sec := snap.Section(t.ID)
		if !sec.Action.Enforced() {
			skipped.Monitor++
			continue
		}
		if sec.Scope == blocklist.ScopeOverseas {
			skipped.Overseas++
			continue
		}
		recs := policyRecords(snap, t.ID, sec.Action, o)
		if len(recs) == 0 {
			continue
		}
		if t.Type == blocklist.RuleIP {
			add(blocklist.RPZIPName(t.Prefix), recs...)
			why.see(sec)
			continue
		}
		for _, ow := range owners {
			// Write the block only where sinkhole itself would answer with
			// this rule: no exception covers the owner, and no other rule
			// for the same name wins.
			probe := ow
			if strings.HasPrefix(ow, "*.") {
				probe = probeLabel + ow[2:]
			}
			if m := snap.MatchName(probe); m.Blocked() && m.Rule == t.ID {
				add(ow, recs...)
				why.see(sec)
			}
		}
	}
	out = append(out, why.records(o.TTL)...)
	slices.SortFunc(out, compareRecords)
	return out, skipped
}
