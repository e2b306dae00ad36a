package main

import (
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/urfave/cli/v2"

	"github.com/sinkhole-dns/sinkhole/blocklist"
	"github.com/sinkhole-dns/sinkhole/geo"
)

// geoFlags are the serve flags of the answer policy's geolocation.
func geoFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "geoip-country", Usage: "country database `FILE` (GeoLite2/GeoIP2 Country or City, DB-IP country or city lite .mmdb)"},
		&cli.StringFlag{Name: "geoip-asn", Usage: "ASN database `FILE` (GeoLite2-ASN or DB-IP ASN lite .mmdb), for AS rules"},
		&cli.StringFlag{Name: "home-country", Usage: "ISO 3166-1 alpha-2 `CC` whose addresses are domestic for \"# scope: overseas\" rules, e.g. CN"},
	}
}

// geoConfigFrom validates the geolocation flags into cfg. A country
// database is only used to tell home from overseas, so it needs
// --home-country; --home-country alone is accepted (overseas rules then
// fail closed and the server warns).
func geoConfigFrom(c *cli.Context, cfg *serveConfig) error {
	cfg.geoCountry, cfg.geoASN = c.String("geoip-country"), c.String("geoip-asn")
	if hc := c.String("home-country"); hc != "" {
		if len(hc) != 2 || !isASCIILetter(hc[0]) || !isASCIILetter(hc[1]) {
			return usagef("--home-country %q: want a two-letter ISO 3166-1 country code, e.g. CN", hc)
		}
		cfg.homeCountry = strings.ToUpper(hc)
	}
	if cfg.geoCountry != "" && cfg.homeCountry == "" {
		return usagef("--geoip-country needs --home-country (the ISO code of the country whose addresses are domestic, e.g. CN)")
	}
	return nil
}

func isASCIILetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// openGeo opens the configured databases. A file that cannot be loaded is
// an error naming its path.
func (in *instance) openGeo() error {
	var err error
	in.geo, err = geo.Open(geo.Options{CountryPath: in.cfg.geoCountry, ASNPath: in.cfg.geoASN, Logger: in.log})
	return err
}

// geoRuleWarnings describes rules the loaded databases cannot serve.
func geoRuleWarnings(snap *blocklist.Snapshot, g *geo.DB) []string {
	var out []string
	if snap.HasOverseasRules() && !g.HasCountry() {
		out = append(out, "\"# scope: overseas\" rules are loaded but no --geoip-country database is: they block whatever the answer (fail closed)")
	}
	if snap.HasASNRules() && !g.HasASN() {
		out = append(out, "AS rules are loaded but no --geoip-asn database is: they cannot match")
	}
	return out
}

// geoWarnings returns what "sinkhole status" should warn about: rules the
// databases cannot serve, and database files whose version on disk is
// broken (the last good version serves meanwhile).
func (in *instance) geoWarnings() []string {
	out := geoRuleWarnings(in.store.Current(), in.geo)
	for _, f := range in.geo.Status() {
		if f.Error != "" {
			out = append(out, fmt.Sprintf("geoip %s database: %s", f.Kind, f.Error))
		}
	}
	return out
}

// geoWarner logs each rule warning once: at start, and again only after a
// reload that brings it back.
type geoWarner struct {
	active atomic.Value // string: the warnings last logged, joined
}

func (w *geoWarner) onReload(in *instance, snap *blocklist.Snapshot) {
	warns := geoRuleWarnings(snap, in.geo)
	key := strings.Join(warns, "\n")
	prev, _ := w.active.Swap(key).(string)
	for _, msg := range warns {
		if !strings.Contains(prev, msg) {
			in.log.Warn(msg)
		}
	}
}
