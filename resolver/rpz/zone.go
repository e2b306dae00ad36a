// Package rpz distributes lists as Response Policy Zones with the DNS's own
// machinery: an Exporter serves the loaded lists as an RPZ zone over AXFR
// and IXFR and sends NOTIFY on every change (sinkhole as the regulator's
// primary), and a Secondary keeps a copy of a primary's RPZ zone by AXFR,
// IXFR, SOA refresh and NOTIFY, writing it where the list store loads it
// (sinkhole as an ISP's resolver). The exported zone is also answered to
// queries, by the export's chain stage (Exporter.Stage), first in the
// chain.
package rpz

import (
	"cmp"
	"net"
	"net/netip"
	"strings"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/blocklist"
)

// record is one resource record of an exported zone in compact form: the
// owner relative to the apex and the RDATA in presentation format.
type record struct {
	owner string // e.g. "binance.com", "*.binance.com", "24.0.100.51.198.rpz-ip"
	rtype uint16
	ttl   uint32
	rdata string // e.g. ".", "rpz-passthru.", "192.0.2.1"
}

func compareRecords(a, b record) int {
	if c := strings.Compare(a.owner, b.owner); c != 0 {
		return c
	}
	if c := cmp.Compare(a.rtype, b.rtype); c != 0 {
		return c
	}
	if c := strings.Compare(a.rdata, b.rdata); c != 0 {
		return c
	}
	return cmp.Compare(a.ttl, b.ttl)
}

// rr builds the record for the wire under apex (an FQDN).
func (r record) rr(apex string) (dns.RR, error) {
	owner := apex
	if r.owner != "" {
		owner = r.owner + "." + apex
	}
	hdr := dns.RR_Header{Name: owner, Rrtype: r.rtype, Class: dns.ClassINET, Ttl: r.ttl}
	switch r.rtype {
	case dns.TypeCNAME:
		return &dns.CNAME{Hdr: hdr, Target: r.rdata}, nil
	case dns.TypeA:
		return &dns.A{Hdr: hdr, A: net.ParseIP(r.rdata).To4()}, nil
	case dns.TypeAAAA:
		return &dns.AAAA{Hdr: hdr, AAAA: net.ParseIP(r.rdata)}, nil
	}
	return dns.NewRR(hdr.String() + r.rdata)
}

// rdataOf returns the presentation form of rr's RDATA.
func rdataOf(rr dns.RR) string {
	return strings.TrimPrefix(rr.String(), rr.Header().String())
}

// BuildOptions says how rules without an RPZ equivalent are written.
type BuildOptions struct {
	// Default is the action of rules whose section sets none
	// (--block-action); ActionDefault means NXDOMAIN.
	Default blocklist.Action
	// SinkholeV4 and SinkholeV6 are the local data of the sinkhole action.
	SinkholeV4, SinkholeV6 netip.Addr
	// TTL of the zone's records.
	TTL uint32
}

// Skipped counts the rules an export could not express in RPZ.
type Skipped struct {
	Monitor  int `json:"monitor"`  // action log: monitor mode has no RPZ form
	Overseas int `json:"overseas"` // scope overseas needs a country database at the resolver
	ASN      int `json:"asn"`      // RPZ has no ASN trigger
}

// probeLabel starts a name no rule can hold ('#' is not allowed in list
// names): the rule matching "#.NAME" is the one covering every subdomain
// of NAME.
const probeLabel = "#."

// coveredByAllow reports whether an exception prefix holds all of p.
func coveredByAllow(p netip.Prefix, allow map[netip.Prefix]bool) bool {
	if len(allow) == 0 {
		return false
	}
	for bits := p.Bits(); bits >= 0; bits-- {
		q, err := p.Addr().Prefix(bits)
		if err == nil && allow[q] {
			return true
		}
	}
	return false
}

// policyRecords returns the RPZ records (owner left empty) for a block rule.
func policyRecords(snap *blocklist.Snapshot, id blocklist.RuleID, act blocklist.Action, o BuildOptions) []record {
	if act == blocklist.ActionDefault {
		act = o.Default
	}
	cname := func(target string) []record {
		return []record{{rtype: dns.TypeCNAME, rdata: target}}
	}
	switch act {
	case blocklist.ActionNoData:
		return cname(blocklist.RPZNoData)
	case blocklist.ActionDrop:
		return cname(blocklist.RPZDrop)
	case blocklist.ActionSinkhole:
		var recs []record
		if o.SinkholeV4.Is4() {
			recs = append(recs, record{rtype: dns.TypeA, rdata: o.SinkholeV4.String()})
		}
		if o.SinkholeV6.IsValid() {
			recs = append(recs, record{rtype: dns.TypeAAAA, rdata: o.SinkholeV6.String()})
		}
		if len(recs) == 0 {
			return cname(blocklist.RPZNoData)
		}
		return recs
	case blocklist.ActionLocalData:
		var recs []record
		for _, rr := range snap.LocalData(id) {
			recs = append(recs, record{rtype: rr.Header().Rrtype, ttl: rr.Header().Ttl, rdata: rdataOf(rr)})
		}
		return recs
	}
	// NXDOMAIN, and REFUSED, which RPZ cannot express: the name must not
	// resolve, so the closest policy is NXDOMAIN.
	return cname(blocklist.RPZNXDomain)
}

// diffRecords returns what to delete from and add to a (sorted) to get b.
func diffRecords(a, b []record) (del, add []record) {
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch c := compareRecords(a[i], b[j]); {
		case c == 0:
			i++
			j++
		case c < 0:
			del = append(del, a[i])
			i++
		default:
			add = append(add, b[j])
			j++
		}
	}
	del = append(del, a[i:]...)
	add = append(add, b[j:]...)
	return del, add
}
