package blocklist

import (
	"strings"

	"github.com/miekg/dns"
)

// rpzZoneDirectives are directives an RPZ zone carries at its apex, for all
// of its rules: RPZ has no place for per-rule text (any record at a
// trigger is policy), so a zone says on whose authority it blocks with
// TXT records at the apex, in list-directive form:
//
//	@ TXT "authority: Ministry of Finance"
//	@ TXT "contact: https://appeal.example/"
//
// (platform, authority, order, contact). sinkhole's export writes them
// when every exported rule shares the value.
type rpzZoneDirectives struct {
	platform string
	why      Why
}

// apexRecord takes one record at the zone apex: NS, ZONEMD (RFC 8976) and
// DNSSEC records are zone data, TXT records may be directives. It returns
// a warning for anything else ("" when the record is understood).
func (z *rpzZoneDirectives) apexRecord(rr dns.RR) string {
	const ignored = "record at the zone apex is not a policy trigger; ignored"
	if rr == nil {
		return ignored
	}
	switch rr.Header().Rrtype {
	case dns.TypeNS, dns.TypeZONEMD, dns.TypeRRSIG, dns.TypeDNSKEY, dns.TypeNSEC, dns.TypeNSEC3, dns.TypeNSEC3PARAM:
		return ""
	case dns.TypeTXT:
		text := strings.Join(rr.(*dns.TXT).Txt, "")
		key, val, ok := strings.Cut(text, ":")
		key, val = strings.ToLower(strings.TrimSpace(key)), strings.TrimSpace(val)
		if !ok {
			return ignored
		}
		switch key {
		case "platform":
			if strings.ContainsAny(val, "#\\"+`"`) {
				return "platform at the zone apex must not contain '#', '\"' or '\\'; ignored"
			}
			z.platform = val
		case "authority", "order", "contact":
			if msg := z.why.set(key, val); msg != "" {
				return key + " at the zone apex " + msg + "; ignored"
			}
		default:
			return ignored
		}
		return ""
	}
	return ignored
}
