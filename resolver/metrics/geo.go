package metrics

import (
	"net/netip"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sinkhole-dns/sinkhole/geo"
)

// Geo databases and lookup results (the labels of sinkhole_geo_lookups_total).
const (
	GeoCountry = "country"
	GeoASN     = "asn"

	GeoFound    = "found"     // the database knows the address
	GeoNotFound = "not_found" // the address is not in the database
	GeoError    = "error"     // the lookup failed (corrupt or closed database)
)

var (
	geoDBNames     = [...]string{GeoCountry, GeoASN, OtherLabel}
	geoResultNames = [...]string{GeoFound, GeoNotFound, GeoError, OtherLabel}
)

// geoCollector counts geo lookups by database and result in a fixed array.
type geoCollector struct {
	n [len(geoDBNames)][len(geoResultNames)]atomic.Uint64
}

func newGeoCollector() *geoCollector { return &geoCollector{} }

var geoLookupsDesc = prometheus.NewDesc(namespace+"_geo_lookups_total",
	"GeoIP lookups of answer addresses, by database (country, asn) and result (found, not_found, error).",
	[]string{"db", "result"}, nil)

// Describe implements prometheus.Collector.
func (g *geoCollector) Describe(ch chan<- *prometheus.Desc) { ch <- geoLookupsDesc }

// Collect implements prometheus.Collector. The known combinations are
// always exported (zero until the first lookup); "other" only once used.
func (g *geoCollector) Collect(ch chan<- prometheus.Metric) {
	for d := range geoDBNames {
		for r := range geoResultNames {
			v := g.n[d][r].Load()
			if v == 0 && (geoDBNames[d] == OtherLabel || geoResultNames[r] == OtherLabel) {
				continue
			}
			ch <- prometheus.MustNewConstMetric(geoLookupsDesc, prometheus.CounterValue, float64(v), geoDBNames[d], geoResultNames[r])
		}
	}
}

func indexOf(names []string, v string) int {
	for i, n := range names[:len(names)-1] {
		if n == v {
			return i
		}
	}
	return len(names) - 1
}

// GeoLookup counts one lookup in database db (GeoCountry or GeoASN) with
// its result (GeoFound, GeoNotFound or GeoError); other values count as
// "other". Safe for concurrent use, no allocation.
func (m *Metrics) GeoLookup(db, result string) {
	m.geo.n[indexOf(geoDBNames[:], db)][indexOf(geoResultNames[:], result)].Add(1)
}

// CountGeo wraps a geo lookuper so that every lookup is counted in
// sinkhole_geo_lookups_total: for each loaded database, found when it
// knew the address (a country, an ASN), else not_found. Lookups that fail
// inside the databases are not visible through geo.Lookuper; a geo
// package that can tell calls GeoLookup with GeoError itself.
func (m *Metrics) CountGeo(l geo.Lookuper) geo.Lookuper {
	if l == nil {
		return nil
	}
	return &countingGeo{Lookuper: l, m: m}
}

type countingGeo struct {
	geo.Lookuper
	m *Metrics
}

// Lookup looks ip up and counts the lookup per loaded database.
func (c *countingGeo) Lookup(ip netip.Addr) geo.Info {
	info := c.Lookuper.Lookup(ip)
	if c.HasCountry() {
		r := 1 // not_found
		if info.Country != "" {
			r = 0
		}
		c.m.geo.n[0][r].Add(1)
	}
	if c.HasASN() {
		r := 1
		if info.ASN != 0 {
			r = 0
		}
		c.m.geo.n[1][r].Add(1)
	}
	return info
}
