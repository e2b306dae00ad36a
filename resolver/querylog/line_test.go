package querylog

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/blocklist"
	"github.com/sinkhole-dns/sinkhole/geo"
	"github.com/sinkhole-dns/sinkhole/resolver/policy"
	"github.com/sinkhole-dns/sinkhole/resolver/query"
)

const testList = `# platform: Binance
binance.com
# platform: Pilot Ünïcode
# action: log
pilot.test
203.0.113.0/24
`

// loadSnapshot compiles files into a snapshot through the real store.
func loadSnapshot(t testing.TB, files map[string]string) *blocklist.Snapshot {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	st := blocklist.NewStore(blocklist.Options{Dirs: []string{dir}, Logger: slog.New(slog.DiscardHandler)})
	rep, err := st.Reload(context.Background(), "test")
	if err != nil || rep.Failed() {
		t.Fatalf("reload: %v %v", err, rep.Errors())
	}
	return st.Current()
}

// request builds a request for name/qtype from client, decided under snap.
func request(snap *blocklist.Snapshot, client, name string, qtype uint16) *query.Request {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	req := query.NewRequest(m, netip.MustParseAddrPort(client), "udp", snap)
	req.Start = time.Date(2026, 3, 4, 5, 6, 7, 123456000, time.FixedZone("X", 3600))
	return req
}

func decodeLine(t *testing.T, line []byte) map[string]any {
	t.Helper()
	if len(line) == 0 || line[len(line)-1] != '\n' {
		t.Fatalf("line does not end in a newline: %q", line)
	}
	var v map[string]any
	if err := json.Unmarshal(line, &v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, line)
	}
	return v
}

func TestAppendAudit(t *testing.T) {
	snap := loadSnapshot(t, map[string]string{"exchanges.txt": testList})
	block := &policy.Blocker{Default: blocklist.ActionNXDomain}

	// A name block.
	req := request(snap, "192.0.2.1:5353", "WWW.Binance.com.", dns.TypeAAAA)
	m := snap.MatchName(req.Name)
	req.Info.Decision = block.Decide(snap, m.Rule, query.TriggerQName, req.Name)
	got := decodeLine(t, AppendAudit(nil, req))
	want := map[string]any{
		"time": "2026-03-04T04:06:07.123456Z", "client": "192.0.2.1:5353", "proto": "udp",
		"name": "www.binance.com", "type": "AAAA", "action": "nxdomain", "enforced": true,
		"rule": "binance.com", "file": "exchanges.txt", "line": 2.0, "platform": "Binance",
		"generation": 1.0, "trigger": "qname", "target": "www.binance.com",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("name block:\n got %v\nwant %v", got, want)
	}

	// A monitored answer-based decision with every answer address and its
	// geolocation; the platform and AS name need escaping.
	req = request(snap, "[2001:db8::1]:40000", "cdn.example", dns.TypeA)
	m = snap.MatchIP(netip.MustParseAddr("203.0.113.9"))
	d := block.Decide(snap, m.Rule, query.TriggerIP, "203.0.113.9")
	d.Addr = &query.AddrInfo{IP: netip.MustParseAddr("203.0.113.9"), Info: geo.Info{Country: "KY", ASN: 64500, ASOrg: "Example \"Org\""}}
	d.Addrs = []query.AddrInfo{{IP: netip.MustParseAddr("192.0.2.7")}, *d.Addr}
	req.Info.Decision = d
	got = decodeLine(t, AppendAudit(nil, req))
	want = map[string]any{
		"time": "2026-03-04T04:06:07.123456Z", "client": "[2001:db8::1]:40000", "proto": "udp",
		"name": "cdn.example", "type": "A", "action": "log", "enforced": false,
		"rule": "203.0.113.0/24", "file": "exchanges.txt", "line": 6.0, "platform": "Pilot Ünïcode",
		"generation": 1.0, "trigger": "ip", "target": "203.0.113.9",
		"ips": []any{
			map[string]any{"ip": "192.0.2.7", "country": "", "asn": 0.0, "as_org": ""},
			map[string]any{"ip": "203.0.113.9", "country": "KY", "asn": 64500.0, "as_org": `Example "Org"`},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("answer block:\n got %v\nwant %v", got, want)
	}
}

func TestAppendQuery(t *testing.T) {
	snap := loadSnapshot(t, map[string]string{"exchanges.txt": testList})
	req := request(snap, "127.0.0.1:999", "www.example.com", 65280) // an unassigned type
	req.Proto = "tcp"
	req.Info.Upstream = "192.0.2.53:53"
	resp := query.Reply(req.Msg, dns.RcodeNameError)
	req.Info.Rcode = resp.Rcode // as the server sets it before observers run
	got := decodeLine(t, AppendQuery(nil, req, resp, 1500*time.Microsecond))
	want := map[string]any{
		"time": "2026-03-04T04:06:07.123456Z", "client": "127.0.0.1:999", "proto": "tcp",
		"name": "www.example.com", "type": "TYPE65280", "rcode": "NXDOMAIN", "upstream": "192.0.2.53:53",
		"duration_us": 1500.0, "cached": false, "generation": 1.0,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("allowed:\n got %v\nwant %v", got, want)
	}

	// A dropped query has no rcode; a stale cached one says so.
	req.Info.Dropped, req.Info.Cached, req.Info.Stale = true, true, true
	got = decodeLine(t, AppendQuery(nil, req, resp, 0))
	if _, ok := got["rcode"]; ok || got["cached"] != true || got["stale"] != true {
		t.Errorf("dropped stale: %v", got)
	}

	// A blocked query carries the audit fields.
	req = request(snap, "127.0.0.1:999", "binance.com", dns.TypeA)
	m := snap.MatchName(req.Name)
	req.Info.Decision = (&policy.Blocker{Default: blocklist.ActionRefused}).Decide(snap, m.Rule, query.TriggerQName, req.Name)
	req.Info.Rcode = dns.RcodeRefused
	got = decodeLine(t, AppendQuery(nil, req, query.Reply(req.Msg, dns.RcodeRefused), time.Microsecond))
	if got["rcode"] != "REFUSED" || got["action"] != "refused" || got["rule"] != "binance.com" || got["line"] != 2.0 ||
		got["upstream"] != "" || got["generation"] != 1.0 {
		t.Errorf("blocked: %v", got)
	}
}

func TestAppendStringEscapes(t *testing.T) {
	for _, s := range []string{
		"", "plain", `quote " and \ backslash`, "ctl \x00\x01\x1f\n\r\t", "bad utf8 \xff\xfe end",
		"unicode é 中文 \u2028 \u2029", "\\032space",
	} {
		b := appendString([]byte("x"), s)
		var got string
		if err := json.Unmarshal(b[1:], &got); err != nil {
			t.Errorf("%q: %v (%s)", s, err, b)
			continue
		}
		want := string([]rune(s)) // invalid bytes become U+FFFD
		if got != want {
			t.Errorf("%q: round trip %q", s, got)
		}
	}
}

func BenchmarkAuditLine(b *testing.B) {
	snap := loadSnapshot(b, map[string]string{"exchanges.txt": testList})
	req := request(snap, "192.0.2.1:5353", "www.binance.com", dns.TypeA)
	m := snap.MatchName(req.Name)
	req.Info.Decision = (&policy.Blocker{}).Decide(snap, m.Rule, query.TriggerQName, req.Name)
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendAudit(buf[:0], req)
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkQueryLine(b *testing.B) {
	snap := loadSnapshot(b, map[string]string{"exchanges.txt": testList})
	req := request(snap, "192.0.2.1:5353", "www.example.com", dns.TypeA)
	req.Info.Upstream = "192.0.2.53:53"
	resp := query.Reply(req.Msg, dns.RcodeSuccess)
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendQuery(buf[:0], req, resp, 42*time.Microsecond)
	}
	b.SetBytes(int64(len(buf)))
}

// special8 agrees with the byte-by-byte rule for every byte value at every
// position of a word, among plain and special neighbours.
func TestSpecial8(t *testing.T) {
	special := func(c byte) bool { return c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' }
	for _, fill := range []byte{'a', '-', '0', 0x20, 0x7f, 0x21, 0x5b, 0x5d, '"', 0x1f, 0x80} {
		for pos := range 8 {
			for c := range 256 {
				var w [8]byte
				for i := range w {
					w[i] = fill
				}
				w[pos] = byte(c)
				want := false
				for _, x := range w {
					want = want || special(x)
				}
				if got := special8(binary.LittleEndian.Uint64(w[:])); got != want {
					t.Fatalf("%q: special8 %v, want %v", w, got, want)
				}
			}
		}
	}
	for _, s := range []string{"", "abcdefg", "abcdefgh", "abcdefgh\"", "abcdefghijklmnop\\", "www.example.com", "münchen.example.de", "a\x00b"} {
		if got, want := plainJSON([]byte(s)), !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r >= utf8.RuneSelf || r == '"' || r == '\\' }); got != want {
			t.Errorf("plainJSON(%q) = %v, want %v", s, got, want)
		}
	}
}

// appendTime writes what time.RFC3339Nano does in UTC, whichever second
// the cache holds.
func TestAppendTime(t *testing.T) {
	zone := time.FixedZone("X", -7*3600)
	for _, tm := range []time.Time{
		time.Date(2026, 12, 1, 11, 13, 24, 701082156, time.UTC),
		time.Date(2026, 12, 1, 11, 13, 24, 701082150, time.UTC),
		time.Date(2026, 12, 1, 11, 13, 24, 700000000, time.UTC),
		time.Date(2026, 12, 1, 11, 13, 24, 0, time.UTC),
		time.Date(2026, 12, 1, 11, 13, 25, 1, time.UTC),
		time.Date(2026, 12, 1, 4, 13, 25, 999999999, zone),
		time.Date(1999, 12, 31, 23, 59, 59, 500, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 5, time.UTC),
		time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Now(),
	} {
		for range 2 { // once filling the cache, once from it
			got := string(appendTime([]byte("x"), tm))
			if want := "x" + tm.UTC().Format(time.RFC3339Nano); got != want {
				t.Errorf("%v: %s, want %s", tm, got, want)
			}
		}
	}
}

func TestAppendType(t *testing.T) {
	for qtype, want := range map[uint16]string{
		dns.TypeA: `"A"`, dns.TypeAAAA: `"AAAA"`, dns.TypeHTTPS: `"HTTPS"`, dns.TypeCAA: `"CAA"`,
		65280: `"TYPE65280"`, 0: `"None"`, 254: `"MAILA"`, 255: `"ANY"`, 53: `"SMIMEA"`, 250: `"TSIG"`, 251: `"IXFR"`, 60: `"CDNSKEY"`, 100: `"UINFO"`, 200: `"TYPE200"`,
	} {
		if got := string(appendType(nil, qtype)); got != want {
			t.Errorf("type %d: %s, want %s", qtype, got, want)
		}
	}
}
