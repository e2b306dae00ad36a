package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/miekg/dns"
)

// The bypass signals: Firefox's canary and iCloud Private Relay's names are
// answered NXDOMAIN with a SOA and EDE 15, without asking the upstream
// (which here has records for them), over UDP, TCP and the encrypted
// transports; each can be turned off.
func TestBypassSignals(t *testing.T) {
	records := []string{"use-application-dns.net. 300 IN A 192.0.2.1", "mask.icloud.com. 300 IN A 192.0.2.2",
		"mask-h2.icloud.com. 300 IN AAAA 2001:db8::2", "www.icloud.com. 300 IN A 192.0.2.3"}
	up := startUpstream(t, records...)
	es := startEncrypted(t, writeLists(t, map[string]string{"list.txt": encLists}), "--upstream", up.Addr, "--block-ttl", "60s")
	check := func(via string, r *dns.Msg, name string) {
		t.Helper()
		e := ede(r)
		if r.Rcode != dns.RcodeNameError || len(r.Answer) != 0 || len(r.Ns) != 1 || r.Ns[0].Header().Rrtype != dns.TypeSOA ||
			r.Ns[0].Header().Ttl != 60 || e == nil || e.InfoCode != dns.ExtendedErrorCodeBlocked {
			t.Errorf("%s %s: %v", via, name, r)
		}
	}
	for _, name := range []string{"use-application-dns.net", "mask.icloud.com", "MASK-H2.icloud.com"} {
		for _, proto := range []string{"udp", "tcp"} {
			check(proto, es.query(t, proto, name, dns.TypeA), name)
		}
		for _, tr := range encTransports {
			r, _, err := es.ask(tr, newQuery(name, dns.TypeAAAA))
			if err != nil {
				t.Fatalf("%s: %v", tr, err)
			}
			check(tr, r, name)
		}
	}
	for _, n := range []string{"use-application-dns.net.", "mask.icloud.com.", "mask-h2.icloud.com."} {
		if q := up.QueriesFor(n); q != 0 {
			t.Errorf("%s reached the upstream %d times", n, q)
		}
	}
	// Only the names themselves: other icloud.com names resolve.
	if r := es.query(t, "udp", "www.icloud.com", dns.TypeA); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Errorf("www.icloud.com: %v", r)
	}
	m := es.metrics(t)
	if v := m.Value("sinkhole_bypass_signals_total", "signal", "doh_canary"); v != 7 {
		t.Errorf("canary answered %v times, want 7", v)
	}
	if v := m.Value("sinkhole_bypass_signals_total", "signal", "private_relay"); v != 14 {
		t.Errorf("private relay answered %v times, want 14", v)
	}

	off := startSinkhole(t, writeLists(t, map[string]string{"list.txt": encLists}), "--upstream", up.Addr,
		"--block-private-relay=false", "--block-doh-canary=false")
	if r := off.query(t, "udp", "mask.icloud.com", dns.TypeA); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Errorf("--block-private-relay=false: %v", r)
	}
	if r := off.query(t, "udp", "use-application-dns.net", dns.TypeA); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Errorf("--block-doh-canary=false: %v", r)
	}
}

// The optional list of public encrypted resolvers ships in lists/optional,
// which the server does not load (subdirectories of --lists are not read);
// copied into the lists directory it blocks their names.
func TestOptionalEncryptedDNSList(t *testing.T) {
	body, err := os.ReadFile("../../lists/optional/public-encrypted-dns.txt")
	if err != nil {
		t.Fatal(err)
	}
	up := startUpstream(t, "dns.google. 300 IN A 192.0.2.8", "cloudflare-dns.com. 300 IN A 192.0.2.9")
	dir := writeLists(t, map[string]string{"list.txt": encLists})
	if err := os.MkdirAll(filepath.Join(dir, "optional"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "optional", "public-encrypted-dns.txt"), body, 0o644); err != nil {
		t.Fatal(err)
	}
	ts := startSinkhole(t, dir, "--upstream", up.Addr)
	if r := ts.query(t, "udp", "dns.google", dns.TypeA); r.Rcode != dns.RcodeSuccess {
		t.Errorf("lists/optional was loaded: dns.google %v", r)
	}
	dir2 := writeLists(t, map[string]string{"list.txt": encLists, "public-encrypted-dns.txt": string(body)})
	ts2 := startSinkhole(t, dir2, "--upstream", up.Addr)
	for _, name := range []string{"dns.google", "chrome.cloudflare-dns.com", "dns.quad9.net", "dns.nextdns.io"} {
		if !censored(ts2.addr, name) {
			t.Errorf("copied in, the optional list does not block %s", name)
		}
	}
}
