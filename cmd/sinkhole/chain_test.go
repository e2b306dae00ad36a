package main

import (
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestExportZoneConsistent: every type of query for names of the
// --rpz-export zone gets the zone's authoritative answer, over UDP and
// TCP, also when a list entry covers the zone (the export stage comes
// before the cache and the question policy, and its offer sends the zone's
// names down the full path).
func TestExportZoneConsistent(t *testing.T) {
	up := startUpstream(t, "www.example.test. 60 IN A 192.0.2.1")
	lists := writeLists(t, map[string]string{"l.txt": "rpz.test\nblocked.test\n"})
	ts := startSinkhole(t, lists, "--upstream", up.Addr, "--rpz-export", "rpz.test", "--state-dir", t.TempDir())
	for _, proto := range []string{"udp", "tcp"} {
		c := &dns.Client{Net: proto, Timeout: 3 * time.Second}
		for _, qtype := range []uint16{dns.TypeSOA, dns.TypeNS, dns.TypeANY, dns.TypeA, dns.TypeTXT} {
			for try := 0; try < 2; try++ { // the second could come from a cache
				q := new(dns.Msg)
				q.SetQuestion("rpz.test.", qtype)
				q.SetEdns0(1232, false)
				r, _, err := c.Exchange(q, ts.addr)
				if err != nil {
					t.Fatal(err)
				}
				if r.Rcode != dns.RcodeSuccess || !r.Authoritative || r.RecursionAvailable {
					t.Fatalf("%s %s (try %d): not the zone's authoritative answer:\n%v", proto, dns.TypeToString[qtype], try, r)
				}
				var soa bool
				for _, rr := range append(r.Answer, r.Ns...) {
					if s, ok := rr.(*dns.SOA); ok && s.Hdr.Name == "rpz.test." && s.Ns == "sinkhole.invalid." {
						soa = true
					}
				}
				if (qtype != dns.TypeNS) != soa {
					t.Fatalf("%s %s: SOA of the zone missing or misplaced:\n%v", proto, dns.TypeToString[qtype], r)
				}
			}
		}
		// A name of the zone (a policy record) is the zone's too.
		q := new(dns.Msg)
		q.SetQuestion("blocked.test.rpz.test.", dns.TypeCNAME)
		r, _, err := c.Exchange(q, ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		if r.Rcode != dns.RcodeSuccess || !r.Authoritative || len(r.Answer) != 1 {
			t.Fatalf("%s policy record: %v", proto, r)
		}
	}
	if up.Queries() != 0 {
		t.Fatalf("the zone's names reached the upstream %d times", up.Queries())
	}
}

// TestMalformedCounted: a malformed query is answered FORMERR and shows in
// status and in sinkhole_malformed_queries_total.
func TestMalformedCounted(t *testing.T) {
	up := startUpstream(t, "www.example.test. 60 IN A 192.0.2.1")
	ts := startSinkhole(t, writeLists(t, map[string]string{"l.txt": "blocked.test\n"}), "--upstream", up.Addr,
		"--identity", "resolver-7", "--version-string", "sinkhole-test")
	q := new(dns.Msg)
	q.SetQuestion("www.example.test.", dns.TypeA)
	q.SetEdns0(1232, false)
	q.Extra = append(q.Extra, q.Extra[0]) // two OPT records
	pkt, err := q.Pack()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("udp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(3 * time.Second))
	conn.Write(pkt)
	buf := make([]byte, 1500)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	var r dns.Msg
	if err := r.Unpack(buf[:n]); err != nil || r.Rcode != dns.RcodeFormatError {
		t.Fatalf("two OPT records: %v %v", &r, err)
	}
	if c := statusOf(t, ts).Counters; c.Malformed != 1 {
		t.Fatalf("status malformed %d, want 1", c.Malformed)
	}
	if v := ts.metrics(t).Value("sinkhole_malformed_queries_total"); v != 1 {
		t.Fatalf("sinkhole_malformed_queries_total %v, want 1", v)
	}
	if up.Queries() != 0 {
		t.Fatalf("the malformed query reached the upstream")
	}
	// CHAOS from the flags.
	for name, want := range map[string]string{"hostname.bind.": "resolver-7", "version.bind.": "sinkhole-test"} {
		q := new(dns.Msg)
		q.SetQuestion(name, dns.TypeTXT)
		q.Question[0].Qclass = dns.ClassCHAOS
		r, _, err := (&dns.Client{Timeout: 3 * time.Second}).Exchange(q, ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Answer) != 1 || r.Answer[0].(*dns.TXT).Txt[0] != want {
			t.Fatalf("%s CH TXT: %v", name, r)
		}
	}
}
