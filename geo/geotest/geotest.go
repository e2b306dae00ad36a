// Package geotest builds small MaxMind DB (.mmdb) files for tests: country
// databases in the record layout of GeoLite2-Country (and City, and DB-IP
// lite) and ASN databases in the layout of GeoLite2-ASN, for whatever IPv4
// and IPv6 prefixes a test names. Nothing is downloaded.
package geotest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// Database types as the real files carry them in their metadata.
const (
	TypeCountry     = "GeoLite2-Country"
	TypeCity        = "GeoLite2-City"
	TypeDBIPCountry = "DBIP-Country-Lite"
	TypeDBIPCity    = "DBIP-City-Lite"
	TypeASN         = "GeoLite2-ASN"
	TypeDBIPASN     = "DBIP-ASN-Lite (compat=GeoLite2-ASN)"
)

// Country places a prefix in a country.
type Country struct {
	Prefix string // "192.0.2.0/24", "2001:db8::/32"
	// ISO is the country where the network is (country.iso_code); may be
	// empty, as for some anycast and satellite networks.
	ISO string
	// Registered is where the network is registered
	// (registered_country.iso_code); ISO when empty.
	Registered string
}

// ASN places a prefix in an autonomous system.
type ASN struct {
	Prefix string
	Number uint32
	Org    string
}

// Options tunes a generated file.
type Options struct {
	// DatabaseType overrides the metadata type (TypeCountry or TypeASN by
	// default), e.g. TypeCity or TypeDBIPCountry.
	DatabaseType string
	// BuildEpoch is the metadata build time; a fixed 2024-01-02 when zero.
	BuildEpoch time.Time
}

// DefaultBuild is the build time of generated files when Options leaves it zero.
var DefaultBuild = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

func newTree(dbType string, o Options) (*mmdbwriter.Tree, error) {
	if o.DatabaseType != "" {
		dbType = o.DatabaseType
	}
	build := o.BuildEpoch
	if build.IsZero() {
		build = DefaultBuild
	}
	return mmdbwriter.New(mmdbwriter.Options{
		DatabaseType:            dbType,
		Description:             map[string]string{"en": "sinkhole test database"},
		Languages:               []string{"en"},
		RecordSize:              24,
		BuildEpoch:              build.Unix(),
		IncludeReservedNetworks: true, // tests use documentation prefixes
	})
}

func insert(t *mmdbwriter.Tree, prefix string, rec mmdbtype.Map) error {
	_, n, err := net.ParseCIDR(prefix)
	if err != nil {
		return fmt.Errorf("geotest: prefix %q: %w", prefix, err)
	}
	if err := t.Insert(n, rec); err != nil {
		return fmt.Errorf("geotest: insert %s: %w", prefix, err)
	}
	return nil
}

func countryRecord(iso string) mmdbtype.Map {
	return mmdbtype.Map{
		"geoname_id": mmdbtype.Uint32(geonameID(iso)),
		"iso_code":   mmdbtype.String(iso),
		"names":      mmdbtype.Map{"en": mmdbtype.String("Country " + iso)},
	}
}

// geonameID makes up a stable id for a test country code.
func geonameID(iso string) uint32 {
	var id uint32
	for i := 0; i < len(iso); i++ {
		id = id*31 + uint32(iso[i])
	}
	return id
}

// BuildCountry returns a country database holding entries, in the
// GeoLite2-Country record layout (continent, country, registered_country).
// Later entries overwrite earlier ones where they overlap.
func BuildCountry(entries []Country, o Options) ([]byte, error) {
	t, err := newTree(TypeCountry, o)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		rec := mmdbtype.Map{
			"continent": mmdbtype.Map{"code": mmdbtype.String("XX"), "names": mmdbtype.Map{"en": mmdbtype.String("Test continent")}},
		}
		if e.ISO != "" {
			rec["country"] = countryRecord(e.ISO)
		}
		reg := e.Registered
		if reg == "" {
			reg = e.ISO
		}
		if reg != "" {
			rec["registered_country"] = countryRecord(reg)
		}
		if err := insert(t, e.Prefix, rec); err != nil {
			return nil, err
		}
	}
	return write(t)
}

// BuildASN returns an ASN database holding entries, in the GeoLite2-ASN
// record layout (autonomous_system_number, autonomous_system_organization).
func BuildASN(entries []ASN, o Options) ([]byte, error) {
	t, err := newTree(TypeASN, o)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		rec := mmdbtype.Map{"autonomous_system_number": mmdbtype.Uint32(e.Number)}
		if e.Org != "" {
			rec["autonomous_system_organization"] = mmdbtype.String(e.Org)
		}
		if err := insert(t, e.Prefix, rec); err != nil {
			return nil, err
		}
	}
	return write(t)
}

func write(t *mmdbwriter.Tree) ([]byte, error) {
	var buf bytes.Buffer
	if _, err := t.WriteTo(&buf); err != nil {
		return nil, fmt.Errorf("geotest: write: %w", err)
	}
	return buf.Bytes(), nil
}

// WriteFile writes data to path atomically (temporary file and rename), as
// a database updater would.
func WriteFile(tb testing.TB, path string, data []byte) {
	tb.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		tb.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		tb.Fatal(err)
	}
}

// CountryFile builds a country database and writes it to dir/name,
// returning the path.
func CountryFile(tb testing.TB, dir, name string, entries []Country, o Options) string {
	tb.Helper()
	data, err := BuildCountry(entries, o)
	if err != nil {
		tb.Fatal(err)
	}
	path := filepath.Join(dir, name)
	WriteFile(tb, path, data)
	return path
}

// ASNFile builds an ASN database and writes it to dir/name, returning the
// path.
func ASNFile(tb testing.TB, dir, name string, entries []ASN, o Options) string {
	tb.Helper()
	data, err := BuildASN(entries, o)
	if err != nil {
		tb.Fatal(err)
	}
	path := filepath.Join(dir, name)
	WriteFile(tb, path, data)
	return path
}
