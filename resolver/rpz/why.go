package rpz

import (
	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/blocklist"
)

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

var whyKeys = [4]string{"platform", "authority", "order", "contact"}

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
