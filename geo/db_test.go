package geo_test

import (
	"bytes"
	"errors"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sinkhole-dns/sinkhole/geo"
	"github.com/sinkhole-dns/sinkhole/geo/geotest"
)

var testCountries = []geotest.Country{
	{Prefix: "192.0.2.0/24", ISO: "US"},
	{Prefix: "192.0.2.128/25", ISO: "CN"}, // nested: overrides the upper half
	{Prefix: "198.51.100.0/24", ISO: "KY"},
	{Prefix: "203.0.113.0/24", Registered: "SC"}, // location unknown, registered in SC
	{Prefix: "2001:db8::/32", ISO: "SG"},
	{Prefix: "2001:db8:cccc::/48", ISO: "CN"},
}

var testASNs = []geotest.ASN{
	{Prefix: "192.0.2.0/24", Number: 64496, Org: "Example Exchange Hosting"},
	{Prefix: "198.51.100.0/24", Number: 64497},
	{Prefix: "2001:db8::/32", Number: 64498, Org: "Example v6 Net"},
}

// logBuffer collects log output safely across goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func openTest(t *testing.T, o geo.Options) (*geo.DB, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	o.Logger = slog.New(slog.NewTextHandler(logs, nil))
	d, err := geo.Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d, logs
}

func TestLookup(t *testing.T) {
	dir := t.TempDir()
	d, _ := openTest(t, geo.Options{
		CountryPath: geotest.CountryFile(t, dir, "GeoLite2-Country.mmdb", testCountries, geotest.Options{}),
		ASNPath:     geotest.ASNFile(t, dir, "GeoLite2-ASN.mmdb", testASNs, geotest.Options{}),
	})
	if !d.HasCountry() || !d.HasASN() {
		t.Fatal("databases not reported loaded")
	}
	tests := []struct {
		ip   string
		want geo.Info
	}{
		{"192.0.2.1", geo.Info{Country: "US", ASN: 64496, ASOrg: "Example Exchange Hosting"}},
		{"192.0.2.200", geo.Info{Country: "CN", ASN: 64496, ASOrg: "Example Exchange Hosting"}},
		{"::ffff:192.0.2.200", geo.Info{Country: "CN", ASN: 64496, ASOrg: "Example Exchange Hosting"}},
		{"198.51.100.7", geo.Info{Country: "KY", ASN: 64497}},
		{"203.0.113.9", geo.Info{Country: "SC"}},
		{"2001:db8::1", geo.Info{Country: "SG", ASN: 64498, ASOrg: "Example v6 Net"}},
		{"2001:db8:cccc::1", geo.Info{Country: "CN", ASN: 64498, ASOrg: "Example v6 Net"}},
		{"2001:db9::1", geo.Info{}},
		{"10.0.0.1", geo.Info{}},
	}
	for _, tt := range tests {
		// Twice: the second answer comes from the record cache.
		for range 2 {
			if got := d.Lookup(netip.MustParseAddr(tt.ip)); got != tt.want {
				t.Errorf("%s: got %+v want %+v", tt.ip, got, tt.want)
			}
		}
	}
	if got := d.Lookup(netip.Addr{}); got != (geo.Info{}) {
		t.Errorf("invalid address: %+v", got)
	}
	st := d.Status()
	if len(st) != 2 || st[0].Kind != "country" || st[0].DatabaseType != geotest.TypeCountry || !st[0].BuildTime.Equal(geotest.DefaultBuild) ||
		st[1].Kind != "asn" || st[1].DatabaseType != geotest.TypeASN || st[0].Error != "" || st[0].Size == 0 || st[0].LoadedAt.IsZero() {
		t.Errorf("status: %+v", st)
	}
}

func TestNoDatabases(t *testing.T) {
	d, _ := openTest(t, geo.Options{})
	if d.HasCountry() || d.HasASN() || d.Lookup(netip.MustParseAddr("192.0.2.1")) != (geo.Info{}) || len(d.Status()) != 0 {
		t.Fatal("empty DB answers")
	}
	if err := d.Reload(); err != nil {
		t.Fatal(err)
	}
	if err := d.Watch(time.Millisecond); err != nil {
		t.Fatal(err)
	}
	var nilDB *geo.DB
	if nilDB.HasCountry() || nilDB.Lookup(netip.MustParseAddr("192.0.2.1")) != (geo.Info{}) {
		t.Fatal("nil DB answers")
	}
}

// TestDatabaseTypes checks that every country-capable and ASN layout loads,
// and that a file given for the other kind is refused naming its type.
func TestDatabaseTypes(t *testing.T) {
	dir := t.TempDir()
	for _, typ := range []string{geotest.TypeCountry, geotest.TypeCity, geotest.TypeDBIPCountry, geotest.TypeDBIPCity, "GeoIP2-Country", "GeoIP2-City"} {
		p := geotest.CountryFile(t, dir, "c.mmdb", testCountries, geotest.Options{DatabaseType: typ})
		d, _ := openTest(t, geo.Options{CountryPath: p})
		if got := d.Lookup(netip.MustParseAddr("198.51.100.1")).Country; got != "KY" {
			t.Errorf("%s: country %q", typ, got)
		}
	}
	for _, typ := range []string{geotest.TypeASN, geotest.TypeDBIPASN} {
		p := geotest.ASNFile(t, dir, "a.mmdb", testASNs, geotest.Options{DatabaseType: typ})
		d, _ := openTest(t, geo.Options{ASNPath: p})
		if got := d.Lookup(netip.MustParseAddr("198.51.100.1")).ASN; got != 64497 {
			t.Errorf("%s: ASN %d", typ, got)
		}
	}
	asn := geotest.ASNFile(t, dir, "GeoLite2-ASN.mmdb", testASNs, geotest.Options{})
	country := geotest.CountryFile(t, dir, "GeoLite2-Country.mmdb", testCountries, geotest.Options{})
	custom := geotest.CountryFile(t, dir, "custom.mmdb", testCountries, geotest.Options{DatabaseType: "My-Own-DB"})
	tests := []struct {
		o    geo.Options
		want []string
	}{
		{geo.Options{CountryPath: asn}, []string{"country database " + asn + ": is a GeoLite2-ASN database, not a country database"}},
		{geo.Options{ASNPath: country}, []string{"asn database " + country + ": is a GeoLite2-Country database, not an ASN database"}},
		{geo.Options{CountryPath: custom}, []string{custom, `database type "My-Own-DB" is not supported`}},
	}
	for _, tt := range tests {
		_, err := geo.Open(tt.o)
		for _, w := range tt.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%+v: error %v, want %q", tt.o, err, w)
			}
		}
	}
}

// corruptVersions are broken versions of a good database file.
func corruptVersions(good []byte) map[string][]byte {
	rnd := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 4096)
	for i := range random {
		random[i] = byte(rnd.Uint32())
	}
	// Garbage over the search tree, metadata intact: only Verify sees it.
	tree := bytes.Clone(good)
	for i := 0; i < len(tree)/3; i++ {
		tree[i] = 0xff
	}
	return map[string][]byte{
		"empty":     {},
		"truncated": good[:len(good)/2],
		"random":    random,
		"bad tree":  tree,
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "nope", "GeoLite2-Country.mmdb")
	_, err := geo.Open(geo.Options{CountryPath: missing})
	if err == nil || !errors.Is(err, fs.ErrNotExist) || err.Error() != "country database "+missing+": no such file or directory" {
		t.Errorf("missing file: %v", err)
	}
	if _, err := geo.Open(geo.Options{ASNPath: dir}); err == nil || !strings.Contains(err.Error(), dir+": not a regular file") {
		t.Errorf("directory: %v", err)
	}
	good, err := geotest.BuildCountry(testCountries, geotest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range corruptVersions(good) {
		p := filepath.Join(dir, "bad.mmdb")
		geotest.WriteFile(t, p, data)
		_, err := geo.Open(geo.Options{CountryPath: p})
		if err == nil || !strings.HasPrefix(err.Error(), "country database "+p+": ") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestReloadKeepsLastGood swaps broken files in and checks that the last
// good database keeps answering, the error names the path, and a good new
// version replaces it.
func TestReloadKeepsLastGood(t *testing.T) {
	dir := t.TempDir()
	path := geotest.CountryFile(t, dir, "GeoLite2-Country.mmdb", testCountries, geotest.Options{})
	good, _ := os.ReadFile(path)
	d, logs := openTest(t, geo.Options{CountryPath: path})
	ip := netip.MustParseAddr("198.51.100.1")
	for name, data := range corruptVersions(good) {
		geotest.WriteFile(t, path, data)
		err := d.Reload()
		if err == nil || !strings.Contains(err.Error(), "country database "+path+": ") || !strings.Contains(err.Error(), "keeping the version loaded at") {
			t.Fatalf("%s: reload error %v", name, err)
		}
		if got := d.Lookup(ip).Country; got != "KY" {
			t.Fatalf("%s: last good lost: %q", name, got)
		}
		if st := d.Status(); st[0].Error != err.Error() || st[0].ErrorAt.IsZero() || st[0].DatabaseType != geotest.TypeCountry {
			t.Fatalf("%s: status %+v", name, st)
		}
		// The same broken version is not re-read or re-logged.
		n := strings.Count(logs.String(), "reload failed")
		if err2 := d.Reload(); err2 == nil || err2.Error() != err.Error() || strings.Count(logs.String(), "reload failed") != n {
			t.Fatalf("%s: second reload: %v", name, err2)
		}
	}
	// A deleted file keeps the last good too.
	os.Remove(path)
	if err := d.Reload(); err == nil || !strings.Contains(err.Error(), "no such file") || d.Lookup(ip).Country != "KY" {
		t.Fatalf("deleted file: %v", err)
	}
	// A good new version is swapped in and the error clears.
	geotest.CountryFile(t, dir, "GeoLite2-Country.mmdb", []geotest.Country{{Prefix: "198.51.100.0/24", ISO: "CN"}}, geotest.Options{})
	if err := d.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := d.Lookup(ip).Country; got != "CN" {
		t.Fatalf("new version not in service: %q", got)
	}
	if st := d.Status(); st[0].Error != "" {
		t.Fatalf("error not cleared: %+v", st)
	}
}

// TestWatch changes the file on disk and waits (bounded) for the watcher.
func TestWatch(t *testing.T) {
	dir := t.TempDir()
	path := geotest.ASNFile(t, dir, "GeoLite2-ASN.mmdb", testASNs, geotest.Options{})
	d, _ := openTest(t, geo.Options{ASNPath: path})
	if err := d.Watch(20 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr("192.0.2.1")
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// Other files in the directory do not matter.
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("x"), 0o644)
	geotest.ASNFile(t, dir, "GeoLite2-ASN.mmdb", []geotest.ASN{{Prefix: "192.0.2.0/24", Number: 64511, Org: "Moved"}}, geotest.Options{})
	waitFor("new ASN", func() bool { return d.Lookup(ip).ASN == 64511 })
	// Written in place, half the file: refused, the last good stays.
	data, _ := os.ReadFile(path)
	if err := os.WriteFile(path, data[:len(data)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor("error in status", func() bool { return d.Status()[0].Error != "" })
	if got := d.Lookup(ip); got.ASN != 64511 || got.ASOrg != "Moved" {
		t.Fatalf("last good lost: %+v", got)
	}
	// The rest of the file arrives.
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor("error cleared", func() bool { return d.Status()[0].Error == "" })
}

// TestConcurrentLookupAndReload runs lookups while versions are swapped
// (for the race detector).
func TestConcurrentLookupAndReload(t *testing.T) {
	dir := t.TempDir()
	path := geotest.CountryFile(t, dir, "c.mmdb", testCountries, geotest.Options{})
	d, _ := openTest(t, geo.Options{CountryPath: path})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			ips := []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")}
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if c := d.Lookup(ips[i%2]).Country; c == "" {
					t.Error("lookup lost its answer during reload")
					return
				}
			}
		})
	}
	for i := range 10 {
		iso := []string{"US", "CN"}[i%2]
		geotest.CountryFile(t, dir, "c.mmdb", []geotest.Country{{Prefix: "192.0.2.0/24", ISO: iso}, {Prefix: "2001:db8::/32", ISO: iso}},
			geotest.Options{BuildEpoch: time.Unix(int64(1_700_000_000+i), 0)})
		if err := d.Reload(); err != nil {
			t.Error(err)
		}
	}
	close(stop)
	wg.Wait()
}
