package main

import (
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/blocklist"
	"github.com/sinkhole-dns/sinkhole/geo/geotest"
)

// ipList polices answers: listed hosts and prefixes for any name, an AS, an
// exception, and an overseas-scoped name (a platform's mirror that is
// licensed when hosted at home).
const ipList = `# platform: IPHost
192.0.2.66
# platform: IPNet
198.51.100.0/24
@@198.51.100.192/26
2001:db8:bad::/48
# platform: ASHost
AS64500
# platform: Mirror
# scope: overseas
exch-mirror.test
`

// Home is CN. 203.0.113.0/25 is abroad (US), 203.0.113.128/25 at home;
// 2001:db8::/32 abroad (SG) but 2001:db8:c0::/48 at home.
var (
	geoCountries = []geotest.Country{
		{Prefix: "192.0.2.0/24", ISO: "KY"},
		{Prefix: "198.51.100.0/24", ISO: "SC"},
		{Prefix: "203.0.113.0/25", ISO: "US"},
		{Prefix: "203.0.113.128/25", ISO: "CN"},
		{Prefix: "2001:db8::/32", ISO: "SG"},
		{Prefix: "2001:db8:c0::/48", ISO: "CN"},
	}
	geoASNs = []geotest.ASN{
		{Prefix: "203.0.113.0/26", Number: 64500, Org: "Bad Host"},
		{Prefix: "203.0.113.64/26", Number: 64502, Org: "Foreign CDN"},
		{Prefix: "203.0.113.128/25", Number: 64501, Org: "Home ISP"},
		{Prefix: "2001:db8::/32", Number: 64503, Org: "V6 Transit"},
	}
)

func geoUpstream(t *testing.T) string {
	up := startUpstream(t,
		"listed-ip.test. 300 IN A 192.0.2.66",
		"any-other-name.test. 300 IN A 192.0.2.66",
		"moved.test. 300 IN A 198.51.100.20",
		"exempt.test. 300 IN A 198.51.100.200",
		"v6.test. 300 IN AAAA 2001:db8:bad::5",
		"asn.test. 300 IN A 203.0.113.5",
		"clean.test. 300 IN A 203.0.113.200",
		"clean.test. 300 IN AAAA 2001:db8::99",
		"exch-mirror.test. 300 IN A 203.0.113.130",
		"abroad.exch-mirror.test. 300 IN A 203.0.113.70",
		"v6.exch-mirror.test. 300 IN AAAA 2001:db8::10",
		"v6home.exch-mirror.test. 300 IN AAAA 2001:db8:c0::1",
		"cdn.exch-mirror.test. 300 IN A 203.0.113.131",
		"cdn.exch-mirror.test. 300 IN A 203.0.113.71",
	)
	return up.Addr
}

// geoFiles writes the test databases and returns their paths.
func geoFiles(t *testing.T) (dir, country, asn string) {
	dir = t.TempDir()
	country = geotest.CountryFile(t, dir, "GeoLite2-Country.mmdb", geoCountries, geotest.Options{})
	asn = geotest.ASNFile(t, dir, "GeoLite2-ASN.mmdb", geoASNs, geotest.Options{})
	return dir, country, asn
}

func TestGeoAnswerPolicy(t *testing.T) {
	_, country, asn := geoFiles(t)
	ts := startSinkhole(t, writeLists(t, map[string]string{"ips.txt": ipList}),
		"--upstream", geoUpstream(t), "--geoip-country", country, "--geoip-asn", asn, "--home-country", "cn")
	tests := []struct {
		name  string
		qtype uint16
		ede   string // "" when the answer passes
	}{
		// Listed IPs and prefixes, whatever name was asked.
		{"listed-ip.test", dns.TypeA, "blocked by ips.txt:2 (IPHost); 192.0.2.66 (KY)"},
		{"any-other-name.test", dns.TypeA, "blocked by ips.txt:2 (IPHost); 192.0.2.66 (KY)"},
		{"moved.test", dns.TypeA, "blocked by ips.txt:4 (IPNet); 198.51.100.20 (SC)"},
		{"v6.test", dns.TypeAAAA, "blocked by ips.txt:6 (IPNet); 2001:db8:bad::5 (SG, AS64503 V6 Transit)"},
		// An "@@" prefix exempts.
		{"exempt.test", dns.TypeA, ""},
		// AS rule.
		{"asn.test", dns.TypeA, "blocked by ips.txt:8 (ASHost); 203.0.113.5 (US, AS64500 Bad Host)"},
		{"clean.test", dns.TypeA, ""},
		{"clean.test", dns.TypeAAAA, ""},
		// Overseas scope: home answers pass, foreign ones are blocked.
		{"exch-mirror.test", dns.TypeA, ""},
		{"abroad.exch-mirror.test", dns.TypeA, "blocked by ips.txt:11 (Mirror); 203.0.113.70 (US, AS64502 Foreign CDN)"},
		{"v6.exch-mirror.test", dns.TypeAAAA, "blocked by ips.txt:11 (Mirror); 2001:db8::10 (SG, AS64503 V6 Transit)"},
		{"v6home.exch-mirror.test", dns.TypeAAAA, ""},
		{"cdn.exch-mirror.test", dns.TypeA, "blocked by ips.txt:11 (Mirror); 203.0.113.71 (US, AS64502 Foreign CDN)"},
		{"exch-mirror.test", dns.TypeMX, ""}, // no address, nothing to judge
	}
	for _, proto := range []string{"udp", "tcp"} {
		for _, tt := range tests {
			r := ts.query(t, proto, tt.name, tt.qtype)
			if tt.ede == "" {
				if r.Rcode != dns.RcodeSuccess || ede(r) != nil || (tt.qtype != dns.TypeMX && len(r.Answer) == 0) {
					t.Errorf("%s %s %s: want the upstream's answer, got %v", proto, tt.name, dns.TypeToString[tt.qtype], r)
				}
				continue
			}
			e := ede(r)
			if r.Rcode != dns.RcodeNameError || len(r.Answer) != 0 || e == nil || e.InfoCode != dns.ExtendedErrorCodeCensored || e.ExtraText != tt.ede {
				t.Errorf("%s %s %s: rcode %s EDE %v, want NXDOMAIN and %q", proto, tt.name, dns.TypeToString[tt.qtype], dns.RcodeToString[r.Rcode], e, tt.ede)
			}
			// The SOA of an answer-based block is owned by the query name.
			if len(r.Ns) != 1 || !strings.EqualFold(r.Ns[0].Header().Name, dns.Fqdn(tt.name)) {
				t.Errorf("%s %s: authority %v", proto, tt.name, r.Ns)
			}
		}
	}
	if w := ts.in.geoWarnings(); len(w) != 0 {
		t.Errorf("unexpected warnings: %q", w)
	}
	// The explanation the admin query route serves.
	ex, err := ts.in.answer.ExplainQuery(t.Context(), ts.in.store.Current(), "cdn.exch-mirror.test", dns.TypeA)
	if err != nil {
		t.Fatal(err)
	}
	if ex.Verdict != "blocked" || len(ex.Records) != 2 || ex.Records[0].Country != "CN" || ex.Records[0].Blocked ||
		ex.Records[1].Country != "US" || ex.Records[1].ASN != 64502 || !ex.Records[1].Blocked || ex.Overseas == nil || ex.Overseas.Where() != "ips.txt:11" {
		t.Errorf("explanation:\n%s", ex)
	}
}

// TestGeoOverseasWithoutCountryDB: overseas rules fail closed and the server
// warns, at start and after a reload that brings such rules in.
func TestGeoOverseasWithoutCountryDB(t *testing.T) {
	lists := writeLists(t, map[string]string{"a.txt": "# platform: Plain\nplain.test\n"})
	ts := startSinkhole(t, lists, "--upstream", geoUpstream(t), "--reload-debounce", "20ms")
	const warn = `rules are loaded but no --geoip-country database is`
	if strings.Contains(ts.stderr.String(), warn) || len(ts.in.geoWarnings()) != 0 {
		t.Fatalf("warned without overseas rules: %s", ts.stderr.String())
	}
	if err := os.WriteFile(filepath.Join(lists, "ips.txt"), []byte(ipList), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(ts.stderr.String(), warn) {
		if time.Now().After(deadline) {
			t.Fatalf("no warning after the reload:\n%s", ts.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	w := ts.in.geoWarnings()
	if len(w) != 2 || !strings.Contains(w[0], warn) || !strings.Contains(w[1], "AS rules are loaded but no --geoip-asn database") {
		t.Fatalf("status warnings: %q", w)
	}
	// A home answer is blocked too: without a country database the rule
	// cannot tell, so it blocks.
	for _, proto := range []string{"udp", "tcp"} {
		r := ts.query(t, proto, "exch-mirror.test", dns.TypeA)
		if e := ede(r); r.Rcode != dns.RcodeNameError || e == nil || e.ExtraText != "blocked by ips.txt:11 (Mirror); overseas scope, no country database" {
			t.Fatalf("%s: fail closed: %v", proto, r)
		}
	}
	// IP rules still work without databases; the AS rule cannot.
	if r := ts.query(t, "udp", "moved.test", dns.TypeA); r.Rcode != dns.RcodeNameError || ede(r).ExtraText != "blocked by ips.txt:4 (IPNet); 198.51.100.20" {
		t.Fatalf("IP rule without geo: %v", r)
	}
	if r := ts.query(t, "udp", "asn.test", dns.TypeA); r.Rcode != dns.RcodeSuccess {
		t.Fatalf("AS rule without a database: %v", r)
	}
	// Once: a reload that changes nothing else does not warn again.
	os.WriteFile(filepath.Join(lists, "b.txt"), []byte("other.test\n"), 0o644)
	deadline = time.Now().Add(10 * time.Second)
	for ts.in.store.Current().File("b.txt") == nil {
		if time.Now().After(deadline) {
			t.Fatal("b.txt not loaded")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := strings.Count(ts.stderr.String(), warn); n != 1 {
		t.Fatalf("warned %d times:\n%s", n, ts.stderr.String())
	}
}

// TestGeoCorruptDatabaseKeepsLastGood swaps broken databases in while the
// server runs: the error is logged and reported, lookups keep working from
// the last good version, and a good new version then takes over.
func TestGeoCorruptDatabaseKeepsLastGood(t *testing.T) {
	dir, country, asn := geoFiles(t)
	ts := startSinkhole(t, writeLists(t, map[string]string{"ips.txt": ipList}),
		"--upstream", geoUpstream(t), "--geoip-country", country, "--geoip-asn", asn, "--home-country", "CN", "--reload-debounce", "20ms")
	check := func(when string) {
		t.Helper()
		if r := ts.query(t, "udp", "exch-mirror.test", dns.TypeA); r.Rcode != dns.RcodeSuccess {
			t.Fatalf("%s: home mirror blocked: %v", when, r)
		}
		if r := ts.query(t, "udp", "abroad.exch-mirror.test", dns.TypeA); ede(r) == nil || ede(r).ExtraText != "blocked by ips.txt:11 (Mirror); 203.0.113.70 (US, AS64502 Foreign CDN)" {
			t.Fatalf("%s: foreign mirror: %v", when, r)
		}
	}
	check("start")
	good, err := os.ReadFile(country)
	if err != nil {
		t.Fatal(err)
	}
	random := make([]byte, 8192)
	rnd := rand.New(rand.NewPCG(3, 4))
	for i := range random {
		random[i] = byte(rnd.Uint32())
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; log:\n%s", what, ts.stderr.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	for name, data := range map[string][]byte{"truncated": good[:len(good)/2], "random": random} {
		logged := strings.Count(ts.stderr.String(), "geo database reload failed")
		geotest.WriteFile(t, country, data)
		// The warning is set just before the failure is logged: wait for
		// both.
		waitFor(name+" reported and logged", func() bool {
			w := ts.in.geoWarnings()
			return len(w) == 1 && strings.Contains(w[0], "geoip country database: country database "+country+": ") &&
				strings.Contains(w[0], "keeping the version loaded at") &&
				strings.Count(ts.stderr.String(), "geo database reload failed") > logged
		})
		check(name)
		if !strings.Contains(ts.stderr.String(), country) {
			t.Fatalf("%s: not logged:\n%s", name, ts.stderr.String())
		}
	}
	// A new good version moves 203.0.113.128/25 abroad.
	geotest.CountryFile(t, dir, "GeoLite2-Country.mmdb", []geotest.Country{{Prefix: "203.0.113.0/24", ISO: "JP"}}, geotest.Options{})
	waitFor("new database in service", func() bool {
		r := ts.query(t, "udp", "exch-mirror.test", dns.TypeA)
		return ede(r) != nil && ede(r).ExtraText == "blocked by ips.txt:11 (Mirror); 203.0.113.130 (JP, AS64501 Home ISP)"
	})
	if w := ts.in.geoWarnings(); len(w) != 0 {
		t.Fatalf("error not cleared: %q", w)
	}
}

func TestGeoStartErrors(t *testing.T) {
	dir, country, asn := geoFiles(t)
	lists := writeLists(t, map[string]string{"ips.txt": ipList})
	corrupt := filepath.Join(dir, "corrupt.mmdb")
	good, _ := os.ReadFile(country)
	geotest.WriteFile(t, corrupt, good[:len(good)-100])
	missing := filepath.Join(dir, "missing", "GeoLite2-Country.mmdb")
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--geoip-country", missing, "--home-country", "CN"}, exitFailure, "sinkhole: country database " + missing + ": no such file or directory"},
		{[]string{"--geoip-asn", missing}, exitFailure, "sinkhole: asn database " + missing + ": no such file or directory"},
		{[]string{"--geoip-country", corrupt, "--home-country", "CN"}, exitFailure, "sinkhole: country database " + corrupt + ": "},
		{[]string{"--geoip-country", asn, "--home-country", "CN"}, exitFailure, "sinkhole: country database " + asn + ": is a GeoLite2-ASN database, not a country database"},
		{[]string{"--geoip-asn", country}, exitFailure, "sinkhole: asn database " + country + ": is a GeoLite2-Country database, not an ASN database"},
		{[]string{"--geoip-country", country}, exitUsage, "sinkhole: --geoip-country needs --home-country"},
		{[]string{"--home-country", "China"}, exitUsage, `sinkhole: --home-country "China": want a two-letter ISO 3166-1 country code`},
		{[]string{"--home-country", "C1"}, exitUsage, `sinkhole: --home-country "C1": want a two-letter`},
	}
	for _, tt := range tests {
		var stderr syncBuffer
		args := append([]string{"sinkhole", "serve", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--lists", lists, "--upstream", "127.0.0.1:1"}, tt.args...)
		code := run(t.Context(), args, io_discard{}, &stderr)
		out := stderr.String()
		last := out
		if i := strings.LastIndex(strings.TrimSuffix(out, "\n"), "\n"); i >= 0 {
			last = out[i+1:]
		}
		if code != tt.code || !strings.HasPrefix(last, tt.want) {
			t.Errorf("%v: exit %d, last line %q; want %d and %q", tt.args, code, last, tt.code, tt.want)
		}
	}
	// The environment works like the flags.
	t.Setenv("SINKHOLE_HOME_COUNTRY", "xx1")
	var stderr syncBuffer
	code := run(t.Context(), []string{"sinkhole", "serve", "--lists", lists, "--upstream", "127.0.0.1:1"}, io_discard{}, &stderr)
	if code != exitUsage || !strings.Contains(stderr.String(), `--home-country "xx1"`) {
		t.Errorf("env: exit %d, %q", code, stderr.String())
	}
}

// TestExampleIPList loads the example IP list (examples/, not shipped in
// lists/ so that a default start has no placeholder rules) and checks it
// parses, names a platform for every rule, and blocks by address.
func TestExampleIPList(t *testing.T) {
	st := blocklist.NewStore(blocklist.Options{Dirs: []string{"../../examples"}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	rep, err := st.Reload(t.Context(), "test")
	if err != nil || rep.Failed() {
		t.Fatalf("examples: %v %v", err, rep.Errors())
	}
	snap := st.Current()
	f := snap.File("foreign-exchange-ips.txt")
	if f == nil || f.IPs == 0 || f.ASNs == 0 || f.Domains != 0 {
		t.Fatalf("foreign-exchange-ips.txt: %+v", f)
	}
	if snap.HasOverseasRules() {
		t.Error("the example list holds overseas-scoped rules: they would fail closed without a country database")
	}
	for _, ip := range []string{"192.0.2.1", "2001:db8:a::1", "198.51.100.9", "203.0.113.70"} {
		m := snap.MatchIP(netip.MustParseAddr(ip))
		if !m.Blocked() || snap.Rule(m.Rule).Platform == "" || snap.Rule(m.Rule).File != "foreign-exchange-ips.txt" {
			t.Errorf("%s: %+v", ip, m)
		}
	}
	// The README's example names this line.
	if r := snap.Rule(snap.MatchIP(netip.MustParseAddr("198.51.100.9")).Rule); r.Where() != "foreign-exchange-ips.txt:46" || r.Platform != "Example Exchange B" {
		t.Errorf("README example rule moved: %+v", r)
	}
	up := startUpstream(t, "moved-exchange.test. 300 IN A 192.0.2.1", "other.test. 300 IN A 192.0.2.130")
	ts := startSinkhole(t, "../../examples", "--upstream", up.Addr)
	r := ts.query(t, "udp", "moved-exchange.test", dns.TypeA)
	if e := ede(r); r.Rcode != dns.RcodeNameError || e == nil || !strings.HasPrefix(e.ExtraText, "blocked by foreign-exchange-ips.txt:") ||
		!strings.HasSuffix(e.ExtraText, "(Example Exchange A); 192.0.2.1") {
		t.Fatalf("example IP rule: %v", r)
	}
	if r := ts.query(t, "udp", "other.test", dns.TypeA); r.Rcode != dns.RcodeSuccess {
		t.Fatalf("address outside the shipped ranges: %v", r)
	}
}

// TestGeoWithDig checks the answer-based EDE text as dig shows it.
func TestGeoWithDig(t *testing.T) {
	dig, err := exec.LookPath("dig")
	if err != nil {
		t.Skip("dig not installed")
	}
	_, country, asn := geoFiles(t)
	ts := startSinkhole(t, writeLists(t, map[string]string{"ips.txt": ipList}),
		"--upstream", geoUpstream(t), "--geoip-country", country, "--geoip-asn", asn, "--home-country", "CN")
	host, port, _ := strings.Cut(ts.addr, ":")
	for _, q := range []struct{ name, qtype, want string }{
		{"asn.test", "A", "EDE: 16 (Censored): (blocked by ips.txt:8 (ASHost); 203.0.113.5 (US, AS64500 Bad Host))"},
		{"v6.exch-mirror.test", "AAAA", "EDE: 16 (Censored): (blocked by ips.txt:11 (Mirror); 2001:db8::10 (SG, AS64503 V6 Transit))"},
	} {
		for _, tcp := range []string{"+notcp", "+tcp"} {
			out, err := exec.Command(dig, "@"+host, "-p", port, tcp, "+time=5", "+tries=1", q.name, q.qtype).CombinedOutput()
			if err != nil {
				t.Fatalf("dig: %v\n%s", err, out)
			}
			if s := string(out); !strings.Contains(s, "status: NXDOMAIN") || !strings.Contains(s, q.want) {
				t.Fatalf("dig %s %s %s:\n%s", tcp, q.name, q.qtype, s)
			}
		}
	}
}

// A default start ("make run": the shipped lists, no databases) logs no
// warning: lists/ holds no placeholder or AS rules.
func TestShippedListsStartWithoutWarnings(t *testing.T) {
	up := startUpstream(t)
	ts := startSinkhole(t, "../../lists", "--upstream", up.Addr)
	ts.stop()
	if log := ts.stderr.String(); strings.Contains(log, "level=WARN") || strings.Contains(log, "level=ERROR") {
		t.Fatalf("default start logged a warning:\n%s", log)
	}
	if !strings.Contains(ts.stderr.String(), "sinkhole serving") {
		t.Fatalf("no start line in the log:\n%s", ts.stderr.String())
	}
}
