package rpz

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// rfc8976Simple is RFC 8976 appendix A.1, "Simple ZONEMD Example".
const rfc8976Simple = `example.      86400  IN  SOA     ns1 admin 2018031900 1800 900 604800 86400
example.      86400  IN  NS      ns1
example.      86400  IN  NS      ns2
example.      86400  IN  ZONEMD  2018031900 1 1 c68090d90a7aed716bc459f9340e3d7c1370d4d24b7e2fc3a1ddc0b9a87153b9a9713b3c9ae5cc27777f98b8e730044c
ns1           3600   IN  A       203.0.113.63
ns2           3600   IN  AAAA    2001:db8::63
`

func parseZone(t *testing.T, origin, text string) []dns.RR {
	t.Helper()
	zp := dns.NewZoneParser(strings.NewReader(text), origin, "")
	var out []dns.RR
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		out = append(out, rr)
	}
	if err := zp.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestZonemdRFC8976Example(t *testing.T) {
	rrs := parseZone(t, "example.", rfc8976Simple)
	tests := []struct {
		name   string
		mutate func([]dns.RR) []dns.RR
		want   string // "" verifies; else an error substring
	}{
		{"as published", func(r []dns.RR) []dns.RR { return r }, ""},
		{"owner case does not matter", func(r []dns.RR) []dns.RR {
			cp := dns.Copy(r[4])
			cp.Header().Name = "NS1.Example."
			return append(append([]dns.RR{}, r[:4]...), cp, r[5])
		}, ""},
		{"duplicate record counts once", func(r []dns.RR) []dns.RR { return append(append([]dns.RR{}, r...), dns.Copy(r[5])) }, ""},
		{"record order does not matter", func(r []dns.RR) []dns.RR { return []dns.RR{r[5], r[3], r[1], r[4], r[0], r[2]} }, ""},
		{"a record changed", func(r []dns.RR) []dns.RR {
			cp := dns.Copy(r[4]).(*dns.A)
			cp.A = cp.A.To4()
			cp.A[3] = 64
			return append(append([]dns.RR{}, r[:4]...), cp, r[5])
		}, "ZONEMD mismatch"},
		{"a TTL changed", func(r []dns.RR) []dns.RR {
			cp := dns.Copy(r[5])
			cp.Header().Ttl = 3601
			return append(append([]dns.RR{}, r[:5]...), cp)
		}, "ZONEMD mismatch"},
		{"a record added", func(r []dns.RR) []dns.RR {
			rr, _ := dns.NewRR("ns3.example. 3600 IN A 203.0.113.64")
			return append(append([]dns.RR{}, r...), rr)
		}, "ZONEMD mismatch"},
		{"serial mismatch", func(r []dns.RR) []dns.RR {
			soa := dns.Copy(r[0]).(*dns.SOA)
			soa.Serial++
			return append([]dns.RR{soa}, r[1:]...)
		}, "is not the SOA serial"},
		{"no ZONEMD", func(r []dns.RR) []dns.RR { return append(append([]dns.RR{}, r[:3]...), r[4:]...) }, ErrNoZonemd.Error()},
		{"unknown hash only", func(r []dns.RR) []dns.RR {
			md := dns.Copy(r[3]).(*dns.ZONEMD)
			md.Hash = 240
			return append(append(append([]dns.RR{}, r[:3]...), md), r[4:]...)
		}, ErrNoZonemd.Error()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := VerifyZonemd("example.", tt.mutate(rrs))
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("err %v, want %q", err, tt.want)
			}
		})
	}
	md, err := NewZonemd("example.", 2018031900, 86400, append(append([]dns.RR{}, rrs[:3]...), rrs[4:]...))
	if err != nil || md.Digest != rrs[3].(*dns.ZONEMD).Digest {
		t.Fatalf("NewZonemd: %v %v", md, err)
	}
	if !errors.Is(VerifyZonemd("example.", rrs[:3]), ErrNoZonemd) {
		t.Fatal("ErrNoZonemd not matched by errors.Is")
	}
}

// TestZonemdAgainstLdns computes the ZONEMD of an RPZ-like zone with mixed
// case, wildcards, local data and duplicates, and has ldns-verify-zone
// (an independent implementation) check it.
func TestZonemdAgainstLdns(t *testing.T) {
	bin, err := exec.LookPath("ldns-verify-zone")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("ldns-verify-zone is not installed (apt-get install ldnsutils)")
		}
		t.Skip("ldns-verify-zone not installed; CI installs ldnsutils")
	}
	zone := `$ORIGIN rpz.Example.
@ 300 IN SOA ns.sinkhole.invalid. Hostmaster.sinkhole.invalid. 7 60 10 604800 300
@ 300 IN NS ns.sinkhole.invalid.
Binance.com 300 IN CNAME .
*.binance.com 300 IN CNAME .
academy.binance.com 300 IN CNAME rpz-passthru.
garden.example 300 IN A 192.0.2.80
garden.example 300 IN A 192.0.2.80
garden.example 300 IN TXT "why" "here"
redirect.example 300 IN CNAME *.Walled.Garden.
32.7.113.0.203.rpz-ip 300 IN CNAME .
48.zz.1.db8.2001.rpz-ip 300 IN CNAME *.
a.b.c.d.e 300 IN MX 10 Mail.Example.
`
	rrs := parseZone(t, "rpz.example.", zone)
	md, err := NewZonemd("rpz.example.", 7, 300, rrs)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "rpz.zone")
	os.WriteFile(path, []byte(zone+md.String()+"\n"), 0o644)
	if out, err := exec.Command(bin, "-Z", path).CombinedOutput(); err != nil {
		t.Fatalf("ldns-verify-zone refused sinkhole's ZONEMD: %v\n%s", err, out)
	}
	// And it refuses a wrong one, so the check above is real.
	bad := *md
	bad.Digest = strings.Repeat("0", len(md.Digest))
	os.WriteFile(path, []byte(zone+bad.String()+"\n"), 0o644)
	if out, err := exec.Command(bin, "-Z", path).CombinedOutput(); err == nil {
		t.Fatalf("ldns-verify-zone accepted a wrong ZONEMD:\n%s", out)
	}
	if err := VerifyZonemd("rpz.example.", append(rrs, md)); err != nil {
		t.Fatal(err)
	}
}

// TestCanonicalOrder checks the sort keys against RFC 4034 section 6.1's
// example of canonical name order, and that a name's records come before
// its children's whatever their types.
func TestCanonicalOrder(t *testing.T) {
	names := []string{"example.", "a.example.", "yljkjljk.a.example.", "Z.a.example.", "zABC.a.EXAMPLE.", "z.example.", `\001.z.example.`, "*.z.example.", `\200.z.example.`}
	z := &canonicalizer{}
	var keys []string
	for _, n := range names {
		rr, err := dns.NewRR(n + " 60 IN TYPE65280 \\# 0")
		if err != nil {
			t.Fatal(err)
		}
		c, err := z.add(rr)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, string(z.arena[c.key[0]:c.key[1]]))
	}
	for i := 1; i < len(keys); i++ {
		if keys[i-1] >= keys[i] {
			t.Errorf("%s does not sort before %s", names[i-1], names[i])
		}
	}
	// A parent's high-numbered type still sorts before a child's A.
	p, _ := dns.NewRR("example. 60 IN TYPE65280 \\# 0")
	c, _ := dns.NewRR("a.example. 60 IN A 192.0.2.1")
	kp, _ := z.add(p)
	kc, _ := z.add(c)
	if string(z.arena[kp.key[0]:kp.key[1]]) >= string(z.arena[kc.key[0]:kc.key[1]]) {
		t.Error("parent record sorts after its child's")
	}
}
