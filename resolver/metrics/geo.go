package metrics

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
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
