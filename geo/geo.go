// Package geo answers "where is this address, and who announces it?" from
// GeoIP2 / GeoLite2 / DB-IP .mmdb files: the country and the autonomous
// system (number and organisation) of an IP.
//
// DB reads the files with geoip2-golang (country: GeoIP2/GeoLite2 Country
// or City, DB-IP country or city lite; ASN: GeoLite2-ASN, DB-IP ASN lite),
// verifies them, and swaps a new version in atomically when a file changes,
// keeping the last good one when the new one is broken. Lookups take no
// lock. The geotest subpackage builds small databases for tests.
package geo

import "net/netip"

// Info is what is known about one address. Zero fields mean unknown.
type Info struct {
	Country string // ISO 3166-1 alpha-2, upper case, e.g. "KY"
	ASN     uint32
	ASOrg   string
}

// Lookuper is the one lookup the resolver needs.
type Lookuper interface {
	// Lookup returns what the loaded databases know about ip.
	Lookup(ip netip.Addr) Info
	// HasCountry reports whether a country database is loaded.
	HasCountry() bool
	// HasASN reports whether an ASN database is loaded.
	HasASN() bool
}
