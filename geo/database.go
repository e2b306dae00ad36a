package geo

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"time"

	"github.com/oschwald/geoip2-golang/v2"
	"github.com/oschwald/maxminddb-golang/v2"
)

// Kind says which question a database file answers.
type Kind uint8

// Database kinds.
const (
	// KindCountry is a country-capable database: GeoIP2/GeoLite2 Country or
	// City (and Enterprise), DB-IP country or city lite.
	KindCountry Kind = iota
	// KindASN is an autonomous-system database: GeoLite2-ASN, DB-IP ASN lite
	// (and GeoIP2-ISP).
	KindASN
)

// String names the kind as status and errors show it.
func (k Kind) String() string {
	if k == KindASN {
		return "asn"
	}
	return "country"
}

// maxFileSize bounds what is read into memory (GeoIP2-City is about 130 MB).
const maxFileSize = 1 << 30

// database is one loaded, verified .mmdb file. It is immutable: a reload
// builds a new one and swaps it in.
type database struct {
	kind     Kind
	path     string
	meta     maxminddb.Metadata
	size     int64
	sum      [32]byte // SHA-256 of the file
	loadedAt time.Time
	mm       *maxminddb.Reader
	cache    recordCache
}

// readFile reads a database file into memory. Every error names the path.
//
// The file is read, not memory-mapped: a database replaced in place (cp
// over it, a download tool writing it slowly) must not change, or fault,
// the copy in service.
func readFile(path string, kind Kind) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("%s database %s: %w", kind, path, bareErr(err))
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s database %s: not a regular file", kind, path)
	}
	if st.Size() > maxFileSize {
		return nil, fmt.Errorf("%s database %s: %d bytes is larger than the %d byte limit", kind, path, st.Size(), maxFileSize)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s database %s: %w", kind, path, bareErr(err))
	}
	return data, nil
}

// loadDatabase reads, verifies and opens path as a kind database.
func loadDatabase(path string, kind Kind) (*database, error) {
	data, err := readFile(path, kind)
	if err != nil {
		return nil, err
	}
	return openDatabase(path, kind, data, sha256.Sum256(data))
}

// openDatabase verifies data, read from path, and opens it.
func openDatabase(path string, kind Kind, data []byte, sum [32]byte) (*database, error) {
	db, err := parseDatabase(data, kind)
	if err != nil {
		return nil, fmt.Errorf("%s database %s: %w", kind, path, err)
	}
	db.path, db.size, db.sum = path, int64(len(data)), sum
	return db, nil
}

// bareErr drops the operation and path of a *fs.PathError, which the
// caller's message already names.
func bareErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// parseDatabase opens and verifies an in-memory .mmdb file.
func parseDatabase(data []byte, kind Kind) (*database, error) {
	if len(data) == 0 {
		return nil, errors.New("empty file (not a MaxMind DB)")
	}
	mm, err := maxminddb.OpenBytes(data)
	if err != nil {
		return nil, fmt.Errorf("not a valid MaxMind DB file (truncated or corrupt?): %w", err)
	}
	// Verify walks the whole search tree and data section, so a truncated
	// or damaged file is refused here rather than misanswering later.
	if err := mm.Verify(); err != nil {
		return nil, fmt.Errorf("corrupt MaxMind DB file: %w", err)
	}
	if err := checkKind(data, kind); err != nil {
		return nil, err
	}
	return &database{kind: kind, meta: mm.Metadata, mm: mm, loadedAt: time.Now()}, nil
}

// checkKind asks geoip2-golang, which knows every GeoIP2, GeoLite2 and DB-IP
// database type, whether the file answers country or ASN lookups.
func checkKind(data []byte, kind Kind) error {
	r, err := geoip2.OpenBytes(data)
	var unknown geoip2.UnknownDatabaseTypeError
	if errors.As(err, &unknown) {
		return fmt.Errorf("database type %q is not supported (want %s)", unknown.DatabaseType, kind.want())
	}
	if err != nil {
		return fmt.Errorf("not a valid MaxMind DB file: %w", err)
	}
	probe := netip.IPv4Unspecified()
	switch kind {
	case KindCountry:
		_, err = r.Country(probe)
	case KindASN:
		_, err = r.ASN(probe)
	}
	var wrong geoip2.InvalidMethodError
	if errors.As(err, &wrong) {
		return fmt.Errorf("is a %s database, not %s", wrong.DatabaseType, kind.want())
	}
	return nil
}

func (k Kind) want() string {
	if k == KindASN {
		return "an ASN database such as GeoLite2-ASN or DB-IP ASN lite"
	}
	return "a country database such as GeoLite2-Country, GeoLite2-City or DB-IP country lite"
}

// lookup fills the part of info this database knows about ip.
func (db *database) lookup(ip netip.Addr, info *Info) {
	res := db.mm.Lookup(ip)
	if !res.Found() {
		return
	}
	e := db.cache.get(res.Offset())
	if e == nil {
		e = db.decode(res)
		db.cache.put(e)
	}
	switch db.kind {
	case KindCountry:
		info.Country = e.country
	case KindASN:
		info.ASN, info.ASOrg = e.asn, e.org
	}
}

// decode reads the record at res with geoip2-golang's record types. A
// record that fails to decode (the file was verified, so this is not
// expected) yields an empty entry: unknown.
func (db *database) decode(res maxminddb.Result) *cacheEntry {
	e := &cacheEntry{off: res.Offset()}
	switch db.kind {
	case KindCountry:
		var c geoip2.Country
		if res.Decode(&c) == nil {
			// Where the network is; where it is registered when the
			// location is not known (some anycast and satellite ranges).
			e.country = c.Country.ISOCode
			if e.country == "" {
				e.country = c.RegisteredCountry.ISOCode
			}
		}
	case KindASN:
		var a geoip2.ASN
		if res.Decode(&a) == nil && a.AutonomousSystemNumber <= 1<<32-1 {
			e.asn, e.org = uint32(a.AutonomousSystemNumber), a.AutonomousSystemOrganization
		}
	}
	return e
}
