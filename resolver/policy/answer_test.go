package policy_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/blocklist"
	"github.com/sinkhole-dns/sinkhole/geo"
	"github.com/sinkhole-dns/sinkhole/geo/geotest"
	"github.com/sinkhole-dns/sinkhole/resolver/policy"
	"github.com/sinkhole-dns/sinkhole/resolver/query"
)

const answerList = `# platform: ExIP
192.0.2.0/24
@@192.0.2.128/25
2001:db8:bad::/48
# platform: ExAS
AS64500
# platform: Mirror
# scope: overseas
mirror.example
# scope: any
# platform: Cloak
cloak-target.example
# platform: Monitor
# action: log
198.51.100.77
# action: default
# platform: Safe
@@safe.example
`

// upstreamRecords are what the test upstream answers, by question name.
var upstreamRecords = map[string][]string{
	"ip.test.":             {"ip.test. 60 IN A 192.0.2.5"},
	"ip-exempt.test.":      {"ip-exempt.test. 60 IN A 192.0.2.130"},
	"ip6.test.":            {"ip6.test. 60 IN AAAA 2001:db8:bad::1"},
	"ip6-mapped.test.":     {"ip6-mapped.test. 60 IN AAAA ::ffff:192.0.2.9"},
	"asn.test.":            {"asn.test. 60 IN A 203.0.113.5"},
	"asn-other.test.":      {"asn-other.test. 60 IN A 203.0.113.200"},
	"mixed.test.":          {"mixed.test. 60 IN A 198.51.100.1", "mixed.test. 60 IN A 192.0.2.7"},
	"home.test.":           {"home.test. 60 IN A 198.51.100.1"},
	"mirror.example.":      {"mirror.example. 60 IN A 198.51.100.1"},
	"www.mirror.example.":  {"www.mirror.example. 60 IN A 203.0.113.200"},
	"v6.mirror.example.":   {"v6.mirror.example. 60 IN AAAA 2001:db8::1"},
	"dark.mirror.example.": {"dark.mirror.example. 60 IN A 10.0.0.1"},
	"via.test.":            {"via.test. 60 IN CNAME cdn.mirror.example.", "cdn.mirror.example. 60 IN A 198.51.100.2"},
	"via-abroad.test.":     {"via-abroad.test. 60 IN CNAME cdn.mirror.example.", "cdn.mirror.example. 60 IN A 203.0.113.201"},
	"cloaked.test.":        {"cloaked.test. 60 IN CNAME www.cloak-target.example.", "www.cloak-target.example. 60 IN A 198.51.100.3"},
	"monitor.test.":        {"monitor.test. 60 IN A 198.51.100.77"},
	"safe.example.":        {"safe.example. 60 IN A 192.0.2.1"},
}

// staticUpstream answers from upstreamRecords, like an upstream resolver.
func staticUpstream(t *testing.T) query.Handler {
	return query.HandlerFunc(func(_ context.Context, req *query.Request) (*dns.Msg, error) {
		m := new(dns.Msg)
		m.SetReply(req.Msg)
		q := req.Msg.Question[0]
		for _, s := range upstreamRecords[strings.ToLower(q.Name)] {
			rr, err := dns.NewRR(s)
			if err != nil {
				t.Fatal(err)
			}
			if rr.Header().Rrtype == q.Qtype || rr.Header().Rrtype == dns.TypeCNAME {
				m.Answer = append(m.Answer, rr)
			}
		}
		req.Info.Upstream = "test"
		return m, nil
	})
}

type fixture struct {
	snap   *blocklist.Snapshot
	geo    *geo.DB
	answer *policy.Answer
	chain  query.Handler
}

func newFixture(t *testing.T, withGeo bool) *fixture {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "l.txt"), []byte(answerList), 0o644); err != nil {
		t.Fatal(err)
	}
	st := blocklist.NewStore(blocklist.Options{Dirs: []string{dir}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if _, err := st.Reload(context.Background(), "test"); err != nil {
		t.Fatal(err)
	}
	f := &fixture{snap: st.Current()}
	blocker := &policy.Blocker{Default: blocklist.ActionNXDomain, TTL: 60}
	f.answer = &policy.Answer{Block: blocker, Next: staticUpstream(t), Home: "CN"}
	if withGeo {
		gdir := t.TempDir()
		var err error
		f.geo, err = geo.Open(geo.Options{
			CountryPath: geotest.CountryFile(t, gdir, "c.mmdb", []geotest.Country{
				{Prefix: "192.0.2.0/24", ISO: "KY"},
				{Prefix: "198.51.100.0/24", ISO: "CN"},
				{Prefix: "203.0.113.0/24", ISO: "US"},
				{Prefix: "2001:db8::/32", ISO: "SG"},
			}, geotest.Options{}),
			ASNPath: geotest.ASNFile(t, gdir, "a.mmdb", []geotest.ASN{
				{Prefix: "203.0.113.0/25", Number: 64500, Org: "Bad Host"},
				{Prefix: "198.51.100.0/24", Number: 64501, Org: "Home ISP"},
			}, geotest.Options{}),
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
		if err != nil {
			t.Fatal(err)
		}
		f.answer.Geo = f.geo
	}
	f.chain = &policy.Question{Block: blocker, CountryKnown: f.answer.CountryKnown, Next: f.answer}
	return f
}

// serve runs a query through the chain.
func (f *fixture) serve(t *testing.T, name string, qtype uint16) (*dns.Msg, *query.Request) {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.SetEdns0(1232, false)
	req := query.NewRequest(m, netip.MustParseAddrPort("127.0.0.1:5000"), "udp", f.snap)
	resp, err := f.chain.ServeDNS(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return resp, req
}

func edeText(m *dns.Msg) string {
	if opt := m.IsEdns0(); opt != nil {
		for _, o := range opt.Option {
			if e, ok := o.(*dns.EDNS0_EDE); ok {
				return e.ExtraText
			}
		}
	}
	return ""
}

type answerCase struct {
	name    string
	qtype   uint16
	blocked bool
	reason  string // EDE text when blocked; the logged reason for monitor-only
	trigger string
}

var geoCases = []answerCase{
	{"ip.test", dns.TypeA, true, "blocked by l.txt:2 (ExIP); 192.0.2.5 (KY)", "ip"},
	{"ip-exempt.test", dns.TypeA, false, "", ""},
	{"ip6.test", dns.TypeAAAA, true, "blocked by l.txt:4 (ExIP); 2001:db8:bad::1 (SG)", "ip"},
	{"ip6-mapped.test", dns.TypeAAAA, true, "blocked by l.txt:2 (ExIP); 192.0.2.9 (KY)", "ip"},
	{"asn.test", dns.TypeA, true, "blocked by l.txt:6 (ExAS); 203.0.113.5 (US, AS64500 Bad Host)", "asn"},
	{"asn-other.test", dns.TypeA, false, "", ""},
	{"mixed.test", dns.TypeA, true, "blocked by l.txt:2 (ExIP); 192.0.2.7 (KY)", "ip"},
	{"home.test", dns.TypeA, false, "", ""},
	{"mirror.example", dns.TypeA, false, "", ""},
	{"www.mirror.example", dns.TypeA, true, "blocked by l.txt:9 (Mirror); 203.0.113.200 (US)", "overseas"},
	{"v6.mirror.example", dns.TypeAAAA, true, "blocked by l.txt:9 (Mirror); 2001:db8::1 (SG)", "overseas"},
	{"dark.mirror.example", dns.TypeA, true, "blocked by l.txt:9 (Mirror); 10.0.0.1", "overseas"},
	{"mirror.example", dns.TypeMX, false, "", ""},
	{"via.test", dns.TypeA, false, "", ""},
	{"via-abroad.test", dns.TypeA, true, "blocked by l.txt:9 (Mirror); 203.0.113.201 (US)", "overseas"},
	{"cloaked.test", dns.TypeA, true, "blocked by l.txt:12 (Cloak); CNAME www.cloak-target.example", "cname"},
	{"monitor.test", dns.TypeA, false, "blocked by l.txt:15 (Monitor); 198.51.100.77 (CN, AS64501 Home ISP)", "ip"},
	{"safe.example", dns.TypeA, false, "", ""},
}

// Without databases: overseas rules block by name (fail closed) and AS
// rules cannot match.
var noGeoCases = []answerCase{
	{"ip.test", dns.TypeA, true, "blocked by l.txt:2 (ExIP); 192.0.2.5", "ip"},
	{"asn.test", dns.TypeA, false, "", ""},
	{"mirror.example", dns.TypeA, true, "blocked by l.txt:9 (Mirror); overseas scope, no country database", "qname"},
	{"mirror.example", dns.TypeMX, true, "blocked by l.txt:9 (Mirror); overseas scope, no country database", "qname"},
	{"via.test", dns.TypeA, true, "blocked by l.txt:9 (Mirror); CNAME cdn.mirror.example; overseas scope, no country database", "cname"},
	{"home.test", dns.TypeA, false, "", ""},
}

func TestAnswerPolicy(t *testing.T) {
	for _, withGeo := range []bool{true, false} {
		f := newFixture(t, withGeo)
		cases := geoCases
		if !withGeo {
			cases = noGeoCases
		}
		for _, tc := range cases {
			resp, req := f.serve(t, tc.name, tc.qtype)
			blocked := resp.Rcode == dns.RcodeNameError
			if blocked != tc.blocked {
				t.Errorf("geo=%v %s %s: blocked=%v want %v (%v)", withGeo, tc.name, dns.TypeToString[tc.qtype], blocked, tc.blocked, resp)
				continue
			}
			d := req.Info.Decision
			got, trig := "", ""
			if d != nil {
				got, trig = d.Reason(), d.Trigger.String()
			}
			if got != tc.reason || trig != tc.trigger {
				t.Errorf("geo=%v %s: decision %q (%s), want %q (%s)", withGeo, tc.name, got, trig, tc.reason, tc.trigger)
			}
			if blocked && edeText(resp) != tc.reason {
				t.Errorf("geo=%v %s: EDE %q want %q", withGeo, tc.name, edeText(resp), tc.reason)
			}
			// Explain agrees with what the chain did.
			var upstream *dns.Msg
			if d == nil || d.Trigger != query.TriggerQName {
				upstream, _ = staticUpstream(t).ServeDNS(context.Background(), req)
			}
			ex := f.answer.Explain(f.snap, tc.name, upstream)
			wantVerdict := map[bool]string{true: "blocked", false: "passed"}[blocked]
			if d != nil && !d.Enforced {
				wantVerdict = "logged"
			}
			if tc.name == "safe.example" {
				wantVerdict = "allowed"
			}
			if ex.Verdict != wantVerdict || (d != nil && ex.Reason != d.Reason()) {
				t.Errorf("geo=%v %s: explain verdict %q reason %q, want %q %q\n%s", withGeo, tc.name, ex.Verdict, ex.Reason, wantVerdict, got, ex)
			}
		}
	}
}

func TestExplain(t *testing.T) {
	f := newFixture(t, true)
	ctx := context.Background()

	ex, err := f.answer.ExplainQuery(ctx, f.snap, "Mixed.Test.", dns.TypeA)
	if err != nil {
		t.Fatal(err)
	}
	if ex.Verdict != "blocked" || ex.Upstream != "test" || ex.Rcode != "NOERROR" || len(ex.Records) != 2 || ex.Name != "mixed.test" || ex.Qtype != "A" {
		t.Fatalf("mixed: %+v", ex)
	}
	home, abroad := ex.Records[0], ex.Records[1]
	if home.Data != "198.51.100.1" || home.Country != "CN" || home.ASN != 64501 || home.ASOrg != "Home ISP" || *home.Foreign || home.Blocked || len(home.Matches) != 0 {
		t.Errorf("home record: %+v", home)
	}
	if abroad.Data != "192.0.2.7" || abroad.Country != "KY" || !*abroad.Foreign || !abroad.Blocked || len(abroad.Matches) != 1 {
		t.Fatalf("abroad record: %+v", abroad)
	}
	if r := abroad.Matches[0]; r.Trigger != "ip" || r.Text != "192.0.2.0/24" || r.Where() != "l.txt:2" || r.Platform != "ExIP" || r.Action != "nxdomain" || !r.Fires {
		t.Errorf("abroad rule: %+v", r)
	}

	// The exception and the block it overrides are both shown.
	ex, _ = f.answer.ExplainQuery(ctx, f.snap, "ip-exempt.test", dns.TypeA)
	if ex.Verdict != "passed" || len(ex.Records[0].Matches) != 2 || ex.Records[0].Blocked ||
		ex.Records[0].Matches[0].Fires || !ex.Records[0].Matches[1].Exception || ex.Records[0].Matches[1].Text != "@@192.0.2.128/25" {
		t.Errorf("exempt: %s", ex)
	}

	// Overseas: the rule on the name, and a CNAME chain into it.
	ex, _ = f.answer.ExplainQuery(ctx, f.snap, "via-abroad.test", dns.TypeA)
	if ex.Verdict != "blocked" || ex.Overseas == nil || ex.Overseas.Text != "mirror.example" || ex.Overseas.Scope != "overseas" || len(ex.Records) != 2 {
		t.Fatalf("via-abroad: %s", ex)
	}
	if c := ex.Records[0]; c.Type != "CNAME" || c.Data != "cdn.mirror.example" || len(c.Matches) != 1 || c.Matches[0].Trigger != "cname" || c.Matches[0].Fires {
		t.Errorf("CNAME record: %+v", c)
	}
	if a := ex.Records[1]; !a.Blocked || a.Matches[0].Trigger != "overseas" {
		t.Errorf("overseas record: %+v", a)
	}
	ex, _ = f.answer.ExplainQuery(ctx, f.snap, "mirror.example", dns.TypeA)
	if ex.Verdict != "passed" || ex.Question == nil || ex.Question.Fires || ex.Overseas == nil || !strings.Contains(ex.String(), "fires only on a foreign answer") {
		t.Errorf("home mirror: %s", ex)
	}

	// A name blocked by its own rule is not resolved.
	ex, _ = f.answer.ExplainQuery(ctx, f.snap, "www.cloak-target.example", dns.TypeA)
	if ex.Verdict != "blocked" || ex.Resolved || ex.Question == nil || !ex.Question.Fires || ex.Reason != "blocked by l.txt:12 (Cloak)" {
		t.Errorf("blocked name: %s", ex)
	}
	// An exception on the name: allowed, answer shown but not policed.
	ex, _ = f.answer.ExplainQuery(ctx, f.snap, "safe.example", dns.TypeA)
	if ex.Verdict != "allowed" || !ex.Exempt || ex.Reason != "allowed by l.txt:18 (Safe)" || len(ex.Records) != 1 || !ex.Records[0].Blocked {
		t.Errorf("exempt name: %s", ex)
	}
	if _, err := f.answer.ExplainQuery(ctx, f.snap, "bad name", dns.TypeA); err == nil {
		t.Error("invalid name accepted")
	}

	// The text and JSON forms carry the facts the issue asks for.
	ex, _ = f.answer.ExplainQuery(ctx, f.snap, "asn.test", dns.TypeA)
	text := ex.String()
	for _, want := range []string{"asn.test A: blocked (blocked by l.txt:6 (ExAS); 203.0.113.5 (US, AS64500 Bad Host))",
		"asn.test A 203.0.113.5 country US AS64500 Bad Host (foreign)", "asn rule: AS64500 at l.txt:6 (ExAS), action nxdomain, fires"} {
		if !strings.Contains(text, want) {
			t.Errorf("text lacks %q:\n%s", want, text)
		}
	}
	js, err := json.Marshal(ex)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"verdict":"blocked"`, `"country":"US"`, `"asn":64500`, `"as_org":"Bad Host"`, `"trigger":"asn"`, `"file":"l.txt","line":6`, `"platform":"ExAS"`} {
		if !strings.Contains(string(js), want) {
			t.Errorf("JSON lacks %s: %s", want, js)
		}
	}
}
