package rpz

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/blocklist"
)

const exportList = `# platform: X
binance.com
*.wild.test
=exact.test
@@safe.binance.com
# action: nodata
quiet.test
# action: sinkhole
hole.test
# action: refused
refused.test
# action: log
monitor.test
# action: default
# scope: overseas
far.test
# scope: any
198.51.100.0/24
@@198.51.100.128/25
198.51.100.200
AS64500
@@example.org
bad.example.org
kids.test
@@*.kids.test
`

const exportZone = `$TTL 60
@ SOA ns. admin. 1 60 60 600 60
garden.test A 192.0.2.80
*.redirect.test CNAME *.walled.garden.
32.7.113.0.203.rpz-ip CNAME rpz-drop.
`

func exportBuild() BuildOptions {
	return BuildOptions{SinkholeV4: netip.MustParseAddr("192.0.2.1"), SinkholeV6: netip.MustParseAddr("2001:db8::1"), TTL: 300}
}

func TestExportAXFR(t *testing.T) {
	p := startPrimary(t, "", map[string]string{"a.txt": exportList, "b.rpz": exportZone}, ExportConfig{Build: exportBuild()})
	got, err := xfr(t, p.addr, axfrMsg("rpz.test"))
	if err != nil {
		t.Fatal(err)
	}
	checkZonemd(t, "rpz.test.", got[:len(got)-1])
	got = dropZonemd(t, got)
	serial := p.export.Serial()
	soa := "rpz.test. 300 IN SOA sinkhole.invalid. hostmaster.sinkhole.invalid. " + strconv.FormatUint(uint64(serial), 10) + " 60 10 604800 300"
	if len(got) < 3 || got[0] != soa || got[len(got)-1] != soa || got[1] != "rpz.test. 300 IN NS sinkhole.invalid." {
		t.Fatalf("AXFR framing wrong:\n%s", strings.Join(got, "\n"))
	}
	want := []string{
		"*.binance.com.rpz.test. 300 IN CNAME .",
		"*.hole.test.rpz.test. 300 IN A 192.0.2.1",
		"*.hole.test.rpz.test. 300 IN AAAA 2001:db8::1",
		"*.kids.test.rpz.test. 300 IN CNAME rpz-passthru.",
		"*.quiet.test.rpz.test. 300 IN CNAME *.",
		"*.redirect.test.rpz.test. 60 IN CNAME *.walled.garden.",
		"*.refused.test.rpz.test. 300 IN CNAME .",
		"*.safe.binance.com.rpz.test. 300 IN CNAME rpz-passthru.",
		"*.example.org.rpz.test. 300 IN CNAME rpz-passthru.",
		"*.wild.test.rpz.test. 300 IN CNAME .",
		"24.0.100.51.198.rpz-ip.rpz.test. 300 IN CNAME .",
		"25.128.100.51.198.rpz-ip.rpz.test. 300 IN CNAME rpz-passthru.",
		"32.7.113.0.203.rpz-ip.rpz.test. 300 IN CNAME rpz-drop.",
		"binance.com.rpz.test. 300 IN CNAME .",
		"example.org.rpz.test. 300 IN CNAME rpz-passthru.",
		"exact.test.rpz.test. 300 IN CNAME .",
		"garden.test.rpz.test. 60 IN A 192.0.2.80",
		"hole.test.rpz.test. 300 IN A 192.0.2.1",
		"hole.test.rpz.test. 300 IN AAAA 2001:db8::1",
		"kids.test.rpz.test. 300 IN CNAME .",
		"quiet.test.rpz.test. 300 IN CNAME *.",
		"refused.test.rpz.test. 300 IN CNAME .",
		"safe.binance.com.rpz.test. 300 IN CNAME rpz-passthru.",
	}
	body := slices.Clone(got[2 : len(got)-1])
	slices.Sort(body)
	slices.Sort(want)
	if strings.Join(body, "\n") != strings.Join(want, "\n") {
		t.Fatalf("AXFR records:\n%s\nwant\n%s", strings.Join(body, "\n"), strings.Join(want, "\n"))
	}
	if sk := p.export.Status().Skipped; sk != (Skipped{Monitor: 1, Overseas: 1, ASN: 1}) {
		t.Fatalf("skipped %+v", sk)
	}
}

// The exported zone, read back by sinkhole's own RPZ parser, blocks and
// allows exactly what the lists do.
func TestExportRoundTrip(t *testing.T) {
	p := startPrimary(t, "", map[string]string{"a.txt": exportList, "b.rpz": exportZone}, ExportConfig{Build: exportBuild()})
	got, err := xfr(t, p.addr, axfrMsg("rpz.test"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writeFile(t, dir, "rpz.test.rpz", strings.Join(got[:len(got)-1], "\n")+"\n")
	st := blocklist.NewStore(blocklist.Options{Dirs: []string{dir}, Logger: quietLogger()})
	if rep, err := st.Reload(t.Context(), "test"); err != nil || rep.Failed() {
		t.Fatalf("reload: %v %v", err, rep.Errors())
	}
	orig, back := p.store.Current(), st.Current()
	for _, name := range []string{
		"binance.com", "www.binance.com", "safe.binance.com", "x.safe.binance.com", "wild.test", "a.wild.test",
		"exact.test", "www.exact.test", "quiet.test", "a.quiet.test", "hole.test", "monitor.test", "far.test",
		"example.org", "bad.example.org", "x.bad.example.org", "kids.test", "a.kids.test", "garden.test", "other.test",
	} {
		o, b := orig.MatchName(name), back.MatchName(name)
		ob := o.Blocked() && orig.Section(o.Rule).Action.Enforced() && orig.Section(o.Rule).Scope == blocklist.ScopeAny
		if ob != b.Blocked() {
			t.Errorf("%s: lists block=%v, exported zone block=%v", name, ob, b.Blocked())
		}
	}
	for _, ip := range []string{"198.51.100.1", "198.51.100.129", "198.51.100.200", "203.0.113.7", "192.0.2.1"} {
		a := netip.MustParseAddr(ip)
		if o, b := orig.MatchIP(a), back.MatchIP(a); o.Blocked() != b.Blocked() {
			t.Errorf("%s: lists block=%v, exported zone block=%v", ip, o.Blocked(), b.Blocked())
		}
	}
}

func TestExportIXFR(t *testing.T) {
	p := startPrimary(t, "", map[string]string{"a.txt": "one.test\n=exact.test\n"}, ExportConfig{})
	s1 := p.export.Serial()
	p.reload(t)
	if p.export.Serial() != s1 {
		t.Fatal("a reload with no change bumped the serial")
	}
	writeFile(t, p.dir, "a.txt", "one.test\n=new.test\n")
	p.reload(t)
	s2 := p.export.Serial()
	if !serialLess(s1, s2) {
		t.Fatalf("serial did not rise: %d -> %d", s1, s2)
	}
	soa := func(s uint32) string {
		return "rpz.test. 300 IN SOA sinkhole.invalid. hostmaster.sinkhole.invalid. " + strconv.FormatUint(uint64(s), 10) + " 60 10 604800 300"
	}
	got, err := xfr(t, p.addr, ixfrMsg("rpz.test", s1))
	if err != nil {
		t.Fatal(err)
	}
	got = dropZonemd(t, got)
	want := []string{soa(s2), soa(s1), "exact.test.rpz.test. 300 IN CNAME .", soa(s2), "new.test.rpz.test. 300 IN CNAME .", soa(s2)}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("IXFR:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Two more versions: differences chain from the first serial.
	writeFile(t, p.dir, "a.txt", "one.test\n=new.test\n=third.test\n")
	p.reload(t)
	s3 := p.export.Serial()
	got, err = xfr(t, p.addr, ixfrMsg("rpz.test", s1))
	if err != nil {
		t.Fatal(err)
	}
	got = dropZonemd(t, got)
	want = []string{soa(s3), soa(s1), "exact.test.rpz.test. 300 IN CNAME .", soa(s2), "new.test.rpz.test. 300 IN CNAME .",
		soa(s2), soa(s3), "third.test.rpz.test. 300 IN CNAME .", soa(s3)}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("IXFR over two versions:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Up to date: the SOA alone.
	if got, err := xfr(t, p.addr, ixfrMsg("rpz.test", s3)); err != nil || len(got) != 1 || got[0] != soa(s3) {
		t.Fatalf("IXFR up to date: %v %v", got, err)
	}
	// Too old (unknown) serial: the full zone in AXFR form.
	got, err = xfr(t, p.addr, ixfrMsg("rpz.test", s1-1000))
	if err != nil {
		t.Fatal(err)
	}
	checkZonemd(t, "rpz.test.", got[:len(got)-1])
	got = dropZonemd(t, got)
	if len(got) != 7 || got[0] != soa(s3) || got[1] != "rpz.test. 300 IN NS sinkhole.invalid." || got[6] != soa(s3) {
		t.Fatalf("IXFR fallback to full:\n%s", strings.Join(got, "\n"))
	}
	if st := p.export.Status(); st.IXFRFrom != s1 || st.Serial != s3 || st.Records != 4 {
		t.Fatalf("status %+v", st)
	}
}

func TestExportQueriesAndRefusals(t *testing.T) {
	p := startPrimary(t, "", map[string]string{"a.txt": "binance.com\n"}, ExportConfig{})
	c := &dns.Client{Net: "udp", Timeout: 3 * time.Second}
	ask := func(name string, qtype uint16) *dns.Msg {
		m := new(dns.Msg)
		m.SetQuestion(name, qtype)
		r, _, err := c.Exchange(m, p.addr)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	r := ask("rpz.test.", dns.TypeSOA)
	if !r.Authoritative || len(r.Answer) != 1 || r.Answer[0].(*dns.SOA).Serial != p.export.Serial() {
		t.Fatalf("SOA query: %v", r)
	}
	r = ask("binance.com.rpz.test.", dns.TypeA)
	if len(r.Answer) != 1 || r.Answer[0].(*dns.CNAME).Target != "." {
		t.Fatalf("policy record query: %v", r)
	}
	if r := ask("nothing.rpz.test.", dns.TypeA); r.Rcode != dns.RcodeNameError || len(r.Ns) != 1 {
		t.Fatalf("missing name: %v", r)
	}
	// AXFR over UDP is refused.
	if r := ask("rpz.test.", dns.TypeAXFR); r.Rcode != dns.RcodeRefused {
		t.Fatalf("UDP AXFR: %v", r)
	}
	// Another zone is not ours.
	if _, err := xfr(t, p.addr, axfrMsg("other.test")); err == nil || !strings.Contains(err.Error(), "9") {
		t.Fatalf("AXFR of another zone: %v", err)
	}
	// NOTIFY to a server with no feeds: NOTIMP.
	m := new(dns.Msg)
	m.SetNotify("rpz.test.")
	if r, _, err := c.Exchange(m, p.addr); err != nil || r.Rcode != dns.RcodeNotImplemented {
		t.Fatalf("NOTIFY: %v %v", r, err)
	}

	// A client outside --rpz-allow-transfer gets REFUSED for transfers and
	// for queries in the zone.
	closed := startPrimary(t, "", map[string]string{"a.txt": "binance.com\n"}, ExportConfig{AllowTransfer: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	if _, err := xfr(t, closed.addr, axfrMsg("rpz.test")); err == nil || !strings.Contains(err.Error(), "5") {
		t.Fatalf("AXFR outside the ACL: %v", err)
	}
	m = new(dns.Msg)
	m.SetQuestion("rpz.test.", dns.TypeSOA)
	if r, _, err := c.Exchange(m, closed.addr); err != nil || r.Rcode != dns.RcodeRefused {
		t.Fatalf("SOA outside the ACL: %v %v", r, err)
	}
}

func TestExportNotifyAndSerialFile(t *testing.T) {
	var mu sync.Mutex
	var serials []uint32
	srv := &dns.Server{Addr: "127.0.0.1:0", Net: "udp", Handler: dns.HandlerFunc(func(w dns.ResponseWriter, m *dns.Msg) {
		if m.Opcode == dns.OpcodeNotify && len(m.Answer) == 1 {
			mu.Lock()
			serials = append(serials, m.Answer[0].(*dns.SOA).Serial)
			mu.Unlock()
		}
		r := new(dns.Msg)
		r.SetReply(m)
		w.WriteMsg(r)
	})}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go srv.ListenAndServe()
	<-started
	defer srv.Shutdown()
	target := srv.PacketConn.LocalAddr().String()

	serialFile := filepath.Join(t.TempDir(), "export.serial")
	// A serial far ahead of the clock (as after many reloads) must keep rising.
	ahead := uint32(time.Now().Unix()) + 100000
	if err := os.WriteFile(serialFile, []byte(strconv.FormatUint(uint64(ahead), 10)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startPrimary(t, "", map[string]string{"a.txt": "one.test\n"}, ExportConfig{Notify: []string{target}, SerialFile: serialFile})
	if s := p.export.Serial(); s != ahead+1 {
		t.Fatalf("serial %d, want %d (saved serial + 1)", s, ahead+1)
	}
	writeFile(t, p.dir, "a.txt", "two.test\n")
	p.reload(t)
	waitFor(t, "NOTIFY with the new serial", 5*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.Contains(serials, ahead+2)
	})
	b, _ := os.ReadFile(serialFile)
	if strings.TrimSpace(string(b)) != strconv.FormatUint(uint64(ahead+2), 10) {
		t.Fatalf("serial file holds %q", b)
	}
}

// dropZonemd checks that the transfer carries the ZONEMD of every version
// it holds (once in AXFR form; after each difference's two SOAs in IXFR
// form), each after an SOA (or the NS) of its serial, and returns the
// transfer without them.
func dropZonemd(t *testing.T, got []string) []string {
	t.Helper()
	var out []string
	soas, mds, lastSerial := 0, 0, ""
	for i, line := range got {
		f := strings.Fields(line)
		switch {
		case len(f) > 6 && f[3] == "SOA":
			soas++
			lastSerial = f[6]
		case len(f) > 7 && f[3] == "ZONEMD":
			mds++
			if f[4] != lastSerial || (f[5] != "1" && f[5] != "240") || f[6] != "1" || len(f[7]) != 96 {
				t.Fatalf("ZONEMD out of place or malformed at %d:\n%s", i, strings.Join(got, "\n"))
			}
			continue
		}
		out = append(out, line)
	}
	want := max(soas-2, 0)
	if len(got) > 1 && strings.Contains(got[1], " NS ") {
		want = 1 // AXFR form
	}
	want *= len(DefaultExportZonemd) // one per scheme
	if mds != want {
		t.Fatalf("%d ZONEMD records, want %d:\n%s", mds, want, strings.Join(got, "\n"))
	}
	return out
}

// checkZonemd verifies a whole zone given as record lines.
func checkZonemd(t *testing.T, apex string, lines []string) {
	t.Helper()
	var rrs []dns.RR
	for _, l := range lines {
		rr, err := dns.NewRR(l)
		if err != nil {
			t.Fatal(err)
		}
		rrs = append(rrs, rr)
	}
	// Each ZONEMD on its own (VerifyZonemd takes one that matches).
	var mds []dns.RR
	rest := slices.DeleteFunc(slices.Clone(rrs), func(rr dns.RR) bool {
		if rr.Header().Rrtype == dns.TypeZONEMD {
			mds = append(mds, rr)
			return true
		}
		return false
	})
	if len(mds) == 0 {
		t.Fatal("exported zone: no ZONEMD")
	}
	for _, md := range mds {
		if err := VerifyZonemd(apex, append(slices.Clone(rest), md)); err != nil {
			t.Fatalf("exported zone, %s: %v", md, err)
		}
	}
}

// rfc4034Compare compares two records in RFC 4034 canonical order (section
// 6.1 for the owners, 6.3 for the records of an owner: type, then the
// RDATA in canonical wire form), written apart from the export's own keys.
func rfc4034Compare(t *testing.T, a, b dns.RR) int {
	t.Helper()
	la, lb := dns.SplitDomainName(strings.ToLower(a.Header().Name)), dns.SplitDomainName(strings.ToLower(b.Header().Name))
	for i, j := len(la)-1, len(lb)-1; i >= 0 || j >= 0; i, j = i-1, j-1 {
		switch {
		case i < 0:
			return -1
		case j < 0:
			return 1
		}
		if c := strings.Compare(la[i], lb[j]); c != 0 {
			return c
		}
	}
	if c := int(a.Header().Rrtype) - int(b.Header().Rrtype); c != 0 {
		return c
	}
	rdata := func(rr dns.RR) []byte {
		buf := make([]byte, 4096)
		n, err := dns.PackRR(lowerNames(dns.Copy(rr)), buf, 0, nil, false)
		if err != nil {
			t.Fatal(err)
		}
		_, off, err := dns.UnpackDomainName(buf[:n], 0)
		if err != nil {
			t.Fatal(err)
		}
		return buf[off+10 : n]
	}
	return bytes.Compare(rdata(a), rdata(b))
}

// TestExportAXFRCanonicalOrder: an AXFR (over the wire, read with
// miekg/dns) starts and ends with the SOA, and every record between is in
// RFC 4034 canonical order (the SOA itself apart): apex NS, TXT, ZONEMD,
// then the owners with wildcards, exceptions, address rules and several
// records per owner. A secondary can read it without sorting.
func TestExportAXFRCanonicalOrder(t *testing.T) {
	uniform := "# platform: Exchanges\n# authority: Ministry of Finance\n# order: 2026/17\n# contact: https://appeal.example\n" +
		"# action: sinkhole\nhole.test\n*.wild.test\nZ-upper.test\n" + "# action: nxdomain\nb.a.test\na.test\na-b.test\n@@ok.a.test\n198.51.100.7\n@@198.51.100.0/30\n"
	for name, files := range map[string]map[string]string{
		"mixed":   {"a.txt": exportList, "b.rpz": exportZone},
		"uniform": {"a.txt": uniform},
	} {
		t.Run(name, func(t *testing.T) {
			p := startPrimary(t, "", files, ExportConfig{Build: exportBuild()})
			tr := &dns.Transfer{DialTimeout: 5 * time.Second, ReadTimeout: 5 * time.Second}
			ch, err := tr.In(axfrMsg("rpz.test"), p.addr)
			if err != nil {
				t.Fatal(err)
			}
			var rrs []dns.RR
			for env := range ch {
				if env.Error != nil {
					t.Fatal(env.Error)
				}
				rrs = append(rrs, env.RR...)
			}
			if len(rrs) < 4 || rrs[0].Header().Rrtype != dns.TypeSOA || rrs[len(rrs)-1].Header().Rrtype != dns.TypeSOA {
				t.Fatalf("AXFR does not start and end with the SOA: %v", rrs)
			}
			body := rrs[1 : len(rrs)-1]
			types := map[uint16]bool{}
			for i, rr := range body {
				types[rr.Header().Rrtype] = true
				if i > 0 && rfc4034Compare(t, body[i-1], rr) >= 0 {
					t.Fatalf("record %d is not in canonical order after the one before:\n%s\n%s", i+1, body[i-1], rr)
				}
			}
			want := []uint16{dns.TypeNS, dns.TypeZONEMD, dns.TypeCNAME, dns.TypeA}
			if name == "uniform" {
				want = append(want, dns.TypeTXT, dns.TypeAAAA)
			}
			for _, ty := range want {
				if !types[ty] {
					t.Fatalf("no %s record in the AXFR: the order check misses it", dns.TypeToString[ty])
				}
			}
			checkZonemd(t, "rpz.test.", func() (out []string) {
				for _, rr := range rrs[:len(rrs)-1] {
					out = append(out, rr.String())
				}
				return
			}())
		})
	}
}
