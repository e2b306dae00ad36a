package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// unboundAuthZone runs Unbound with two auth-zones pulled by AXFR with
// zonemd-check: yes and zonemd-reject-absence: yes: the zone sinkhole
// exports, and a control zone from a primary whose ZONEMD is wrong.
func unboundAuthZone(t *testing.T, bin, dir, addr, good, bad string) *daemon {
	host, port := hostPortOf(t, addr)
	conf := fmt.Sprintf(unboundServer+`	access-control: 127.0.0.0/8 allow
	verbosity: 2
	local-zone: "test." nodefault
%[4]sremote-control:
	control-enable: no
`, dir, host, port, authZone(dir, "rpz.test", good)+authZone(dir, "bad.test", bad))
	p := filepath.Join(dir, "unbound.conf")
	if err := os.WriteFile(p, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return startDaemon(t, bin, "-d", "-c", p)
}

// authZone is an Unbound auth-zone pulled from primary that must carry a
// matching ZONEMD.
func authZone(dir, zone, primary string) string {
	return fmt.Sprintf(`auth-zone:
	name: %s
	primary: %s
	zonefile: "%s/%s.zone"
	for-downstream: yes
	for-upstream: no
	fallback-enabled: no
	zonemd-check: yes
	zonemd-reject-absence: yes
`, zone, strings.Replace(primary, ":", "@", 1), dir, zone)
}

// badZonemdPrimary serves bad.test (UDP SOA, TCP AXFR) with a ZONEMD that
// does not match.
func badZonemdPrimary(t *testing.T) string {
	t.Helper()
	var rrs []dns.RR
	for _, s := range []string{
		"bad.test. 60 IN SOA ns.bad.test. admin.bad.test. 3 60 60 600 60",
		"bad.test. 60 IN NS ns.bad.test.",
		"bad.test. 60 IN ZONEMD 3 1 1 " + strings.Repeat("ab", 48),
		"x.bad.test. 60 IN A 192.0.2.1",
	} {
		rr, err := dns.NewRR(s)
		if err != nil {
			t.Fatal(err)
		}
		rrs = append(rrs, rr)
	}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, m *dns.Msg) {
		if len(m.Question) == 1 && (m.Question[0].Qtype == dns.TypeAXFR || m.Question[0].Qtype == dns.TypeIXFR) {
			ch := make(chan *dns.Envelope, 1)
			ch <- &dns.Envelope{RR: append(append([]dns.RR{}, rrs...), rrs[0])}
			close(ch)
			new(dns.Transfer).Out(w, m, ch)
			w.Close()
			return
		}
		r := new(dns.Msg)
		r.SetReply(m)
		r.Authoritative = true
		r.Answer = []dns.RR{rrs[0]}
		w.WriteMsg(r)
	})
	addr := freeAddr(t)
	for _, net := range []string{"udp", "tcp"} {
		srv := &dns.Server{Addr: addr, Net: net, Handler: h}
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go srv.ListenAndServe()
		select {
		case <-started:
		case <-time.After(5 * time.Second):
			t.Fatal("bad primary did not start")
		}
		t.Cleanup(func() { srv.Shutdown() })
	}
	return addr
}

// TestExportZonemdInterop checks the exported zone's ZONEMD with two
// independent verifiers: ldns-verify-zone on the AXFR, and Unbound, which
// pulls the export as an auth-zone with zonemd-check and serves it only
// when the digest matches (a control zone with a wrong ZONEMD is refused).
// With the default schemes (SIMPLE and MERKLE3) both verify SIMPLE and
// pass over MERKLE3 (scheme 240, unknown to them); with MERKLE3 alone
// they have nothing they can check: see TestExportZonemdInteropMerkle3Only.
func TestExportZonemdInterop(t *testing.T) {
	for _, arg := range []string{"", "--rpz-export-zonemd=simple"} {
		name := "default"
		if arg != "" {
			name = strings.TrimPrefix(arg, "--rpz-export-zonemd=")
		}
		t.Run(name, func(t *testing.T) {
			mds := 2
			if arg != "" {
				mds = 1
			}
			testZonemdInterop(t, arg, mds)
		})
	}
}

func testZonemdInterop(t *testing.T, arg string, wantMDs int) {
	up := startUpstream(t)
	lists := writeLists(t, map[string]string{"a.txt": "# platform: Binance\nbinance.com\n=Exact.test\n198.51.100.0/24\n# action: sinkhole\nhole.test\n"})
	addr := freeAddr(t) // Unbound's, told of every change by NOTIFY
	args := []string{"--upstream", up.Addr, "--rpz-export", "rpz.test", "--state-dir", t.TempDir(), "--reload-debounce", "10ms",
		"--rpz-notify", addr}
	if arg != "" {
		args = append(args, arg)
	}
	ts := startSinkhole(t, lists, args...)
	// ldns-verify-zone on the AXFR.
	if ldns, err := exec.LookPath("ldns-verify-zone"); err == nil {
		tr := &dns.Transfer{DialTimeout: 5 * time.Second, ReadTimeout: 5 * time.Second}
		m := new(dns.Msg)
		m.SetAxfr("rpz.test.")
		ch, err := tr.In(m, ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		n := 0
		for env := range ch {
			if env.Error != nil {
				t.Fatal(env.Error)
			}
			for _, rr := range env.RR {
				if n++; n > 1 && rr.Header().Rrtype == dns.TypeSOA {
					continue // the closing SOA
				}
				b.WriteString(rr.String() + "\n")
			}
		}
		if !strings.Contains(b.String(), "ZONEMD") {
			t.Fatalf("AXFR carries no ZONEMD:\n%s", b.String())
		}
		path := filepath.Join(t.TempDir(), "rpz.test.zone")
		os.WriteFile(path, []byte(b.String()), 0o644)
		if out, err := exec.Command(ldns, "-Z", path).CombinedOutput(); err != nil {
			t.Fatalf("ldns-verify-zone: %v\n%s\n%s", err, out, b.String())
		}
	} else if os.Getenv("CI") != "" {
		t.Fatal("ldns-verify-zone not installed (apt-get install ldnsutils)")
	}

	bin := lookBin(t, "unbound", "unbound")
	bad := badZonemdPrimary(t)
	d := unboundAuthZone(t, bin, t.TempDir(), addr, ts.addr, bad)
	ask := func(name string, qtype uint16) *dns.Msg {
		m := new(dns.Msg)
		m.SetQuestion(name, qtype)
		r, _, err := (&dns.Client{Timeout: time.Second}).Exchange(m, addr)
		if err != nil {
			return nil
		}
		return r
	}
	waitUntil(t, "Unbound to load the exported zone with a verified ZONEMD", 20*time.Second, func() bool {
		d.running(t)
		r := ask("binance.com.rpz.test.", dns.TypeCNAME)
		return r != nil && r.Rcode == dns.RcodeSuccess && len(r.Answer) == 1
	})
	if r := ask("rpz.test.", dns.TypeZONEMD); r == nil || len(r.Answer) != wantMDs || r.Answer[0].Header().Rrtype != dns.TypeZONEMD {
		t.Fatalf("Unbound does not serve the export's %d ZONEMD records: %v", wantMDs, r)
	}
	// A change travels with a new ZONEMD, and Unbound takes it too.
	os.WriteFile(filepath.Join(lists, "a.txt"), []byte("binance.com\nokx.com\n"), 0o644)
	waitUntil(t, "the new version at Unbound (NOTIFY, IXFR)", 20*time.Second, func() bool {
		r := ask("okx.com.rpz.test.", dns.TypeCNAME)
		return r != nil && r.Rcode == dns.RcodeSuccess && len(r.Answer) == 1
	})
	// The control: a wrong ZONEMD is not served.
	waitUntil(t, "Unbound to refuse the wrong ZONEMD", 10*time.Second, func() bool {
		return strings.Contains(d.out.String(), "bad.test") && strings.Contains(strings.ToLower(d.out.String()), "zonemd")
	})
	if r := ask("x.bad.test.", dns.TypeA); r != nil && r.Rcode == dns.RcodeSuccess && len(r.Answer) > 0 {
		t.Fatalf("Unbound served a zone with a wrong ZONEMD: %v", r)
	}
}

// TestExportZonemdInteropMerkle3Only records what the independent
// verifiers do with an export whose only ZONEMD is MERKLE3 (scheme 240,
// private use, unknown to them), as README says: Unbound 1.17 with
// zonemd-check and zonemd-reject-absence loads and serves the zone
// without a word (RFC 8976 section 4: a zone with no ZONEMD of a supported
// scheme cannot be verified, and Unbound takes it as it is), so it checks
// nothing; ldns-verify-zone -Z refuses the zone ("No ZONEMD matching the
// zone data was found").
func TestExportZonemdInteropMerkle3Only(t *testing.T) {
	up := startUpstream(t)
	lists := writeLists(t, map[string]string{"a.txt": "binance.com\n"})
	addr := freeAddr(t)
	ts := startSinkhole(t, lists, "--upstream", up.Addr, "--rpz-export", "rpz.test", "--state-dir", t.TempDir(), "--reload-debounce", "10ms",
		"--rpz-notify", addr, "--rpz-export-zonemd=merkle3")
	if ldns, err := exec.LookPath("ldns-verify-zone"); err == nil {
		tr := &dns.Transfer{DialTimeout: 5 * time.Second, ReadTimeout: 5 * time.Second}
		m := new(dns.Msg)
		m.SetAxfr("rpz.test.")
		ch, err := tr.In(m, ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		n := 0
		for env := range ch {
			if env.Error != nil {
				t.Fatal(env.Error)
			}
			for _, rr := range env.RR {
				if n++; n > 1 && rr.Header().Rrtype == dns.TypeSOA {
					continue // the closing SOA
				}
				if md, ok := rr.(*dns.ZONEMD); ok && md.Scheme != 240 {
					t.Fatalf("a ZONEMD of scheme %d with --rpz-export-zonemd=merkle3", md.Scheme)
				}
				b.WriteString(rr.String() + "\n")
			}
		}
		path := filepath.Join(t.TempDir(), "rpz.test.zone")
		os.WriteFile(path, []byte(b.String()), 0o644)
		out, err := exec.Command(ldns, "-Z", path).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "No ZONEMD matching the zone data") {
			t.Fatalf("ldns-verify-zone on a MERKLE3-only zone: %v\n%s", err, out)
		}
	} else if os.Getenv("CI") != "" {
		t.Fatal("ldns-verify-zone not installed (apt-get install ldnsutils)")
	}
	bin := lookBin(t, "unbound", "unbound")
	d := unboundAuthZone(t, bin, t.TempDir(), addr, ts.addr, badZonemdPrimary(t))
	waitUntil(t, "Unbound to serve the MERKLE3-only zone", 20*time.Second, func() bool {
		d.running(t)
		m := new(dns.Msg)
		m.SetQuestion("binance.com.rpz.test.", dns.TypeCNAME)
		r, _, err := (&dns.Client{Timeout: time.Second}).Exchange(m, addr)
		return err == nil && r.Rcode == dns.RcodeSuccess && len(r.Answer) == 1
	})
	if strings.Contains(d.out.String(), "rpz.test.: ZONEMD") {
		t.Fatalf("Unbound said something of the zone's ZONEMD:\n%s", d.out.String())
	}
}
