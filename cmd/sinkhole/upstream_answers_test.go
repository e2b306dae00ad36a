package main

// Upstream answers through the whole server: records that do not belong to
// the question never reach a client (fresh, cached, re-decided after a
// reload), bad answers fail over, and an upstream that rejects EDNS is
// asked without it.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/internal/dnstest"
)

// inject adds victim.test A 6.6.6.6 to every section of the answers to name.
func inject(t *testing.T, up *dnstest.Server, name string) {
	t.Helper()
	victim, err := dns.NewRR("victim.test. 60 IN A 6.6.6.6")
	if err != nil {
		t.Fatal(err)
	}
	up.SetScript(name, func(req, m *dns.Msg) *dns.Msg {
		m.Answer = append(m.Answer, dns.Copy(victim))
		m.Ns = append(m.Ns, dns.Copy(victim))
		m.Extra = append(m.Extra, dns.Copy(victim))
		return m
	})
}

func mentions(m *dns.Msg, name string) bool {
	for _, sec := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			if strings.EqualFold(rr.Header().Name, name) || strings.Contains(rr.String(), "6.6.6.6") {
				return true
			}
		}
	}
	return false
}

func TestInjectedRecordsReachNoClient(t *testing.T) {
	up := startUpstream(t, "inj1.test. 60 IN A 192.0.2.1", "inj2.test. 60 IN MX 10 mail.inj2.test.",
		"mail.inj2.test. 60 IN A 192.0.2.25")
	inject(t, up, "inj1.test")
	// The MX target's address is additional data that belongs to the answer.
	up.SetScript("inj2.test", func(req, m *dns.Msg) *dns.Msg {
		glue, _ := dns.NewRR("mail.inj2.test. 60 IN A 192.0.2.25")
		victim, _ := dns.NewRR("victim.test. 60 IN A 6.6.6.6")
		m.Extra = append(m.Extra, glue, victim)
		return m
	})
	lists := writeLists(t, map[string]string{"a.txt": "blocked.test\n"})
	ts := startSinkhole(t, lists, "--upstream", up.Addr)
	check := func(when string) {
		t.Helper()
		for _, proto := range []string{"udp", "tcp"} {
			r := ts.query(t, proto, "inj1.test", dns.TypeA)
			if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || mentions(r, "victim.test.") {
				t.Fatalf("%s, %s: %v", when, proto, r)
			}
			r = ts.query(t, proto, "inj2.test", dns.TypeMX)
			if len(r.Answer) != 1 || mentions(r, "victim.test.") || !strings.Contains(r.String(), "192.0.2.25") {
				t.Fatalf("%s, %s: MX answer %v, want its target's address and no victim", when, proto, r)
			}
		}
		// Nothing about victim.test was cached: asking for it goes upstream,
		// which has no such name.
		if r := ts.query(t, "udp", "victim.test", dns.TypeA); r.Rcode != dns.RcodeNameError || len(r.Answer) > 0 {
			t.Fatalf("%s: victim.test answered %v", when, r)
		}
	}
	check("fresh")
	check("cached")
	// A list change: cached entries are decided again from the upstream
	// answers the cache holds.
	if err := os.WriteFile(filepath.Join(lists, "a.txt"), []byte("blocked.test\nother.test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.in.store.Reload(context.Background(), "test"); err != nil {
		t.Fatal(err)
	}
	check("after a reload")
	if n := up.QueriesFor("inj1.test"); n != 1 {
		t.Fatalf("inj1.test asked upstream %d times, want once (then cached)", n)
	}
	m := ts.metrics(t)
	for sec, want := range map[string]float64{"answer": 1, "authority": 1, "additional": 2} {
		if got := m.Value("sinkhole_upstream_scrubbed_records_total", "upstream", up.Addr, "section", sec); got != want {
			t.Errorf("scrubbed %s: %v, want %v", sec, got, want)
		}
	}
	if st := statusOf(t, ts); st.Upstreams[0].Scrubbed != 4 {
		t.Errorf("status: %+v", st.Upstreams[0])
	}
}

func TestBadAnswersFailOverThroughServer(t *testing.T) {
	refused := startUpstream(t)
	refused.SetFault("*", dnstest.FaultRefused)
	servfail := startUpstream(t)
	servfail.SetFault("*", dnstest.FaultServFail)
	good := startUpstream(t, "x.test. 60 IN A 192.0.2.2")
	ts := startSinkhole(t, writeLists(t, nil), "--upstream", refused.Addr, "--upstream", servfail.Addr, "--upstream", good.Addr)
	if r := ts.query(t, "udp", "x.test", dns.TypeA); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Fatalf("want the third upstream's answer: %v", r)
	}
	// Every upstream answers an error: the client gets the last one.
	all := startSinkhole(t, writeLists(t, nil), "--upstream", servfail.Addr, "--upstream", refused.Addr)
	if r := all.query(t, "udp", "y.test", dns.TypeA); r.Rcode != dns.RcodeRefused {
		t.Fatalf("want REFUSED (the last upstream's answer): %v", r)
	}
	st := statusOf(t, ts)
	if st.Upstreams[0].BadAnswers != 1 || st.Upstreams[1].BadAnswers != 1 || !st.Upstreams[0].Healthy {
		t.Fatalf("status %+v", st.Upstreams)
	}
	m := ts.metrics(t)
	if v := m.Value("sinkhole_upstream_bad_answers_total", "upstream", refused.Addr); v != 1 {
		t.Fatalf("bad answers metric %v", v)
	}
}

func TestEDNSFallbackThroughServer(t *testing.T) {
	old := startUpstream(t, "x.test. 60 IN A 192.0.2.2", "y.test. 60 IN A 192.0.2.3")
	old.SetFault("*", dnstest.FaultNoEDNS)
	ts := startSinkhole(t, writeLists(t, nil), "--upstream", old.Addr)
	for _, name := range []string{"x.test", "y.test"} {
		if r := ts.query(t, "udp", name, dns.TypeA); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
			t.Fatalf("%s: %v", name, r)
		}
	}
	if q := old.LastQuery("y.test"); q == nil || q.IsEdns0() != nil || old.QueriesFor("y.test") != 1 {
		t.Fatalf("y.test: %d queries, last %v; want one, without EDNS", old.QueriesFor("y.test"), q)
	}
	if st := statusOf(t, ts); !st.Upstreams[0].NoEDNS {
		t.Fatalf("status %+v", st.Upstreams[0])
	}
	if v := ts.metrics(t).Value("sinkhole_upstream_no_edns", "upstream", old.Addr); v != 1 {
		t.Fatalf("no_edns metric %v", v)
	}
}

// TestHeaderBitsFromScriptedUpstream: an upstream that sets AA, clears RA
// and sets AD (but for h7.test) on every answer, and adds an OPT of its own
// size and options; clients must see sinkhole's own header bits (RFC 1035
// 4.1.1, RFC 6840 5.7-5.8) and OPT (RFC 6891 6.2.1), fresh and cached.
func TestHeaderBitsFromScriptedUpstream(t *testing.T) {
	var recs []string
	for i := 0; i < 8; i++ {
		recs = append(recs, fmt.Sprintf("h%d.test. 60 IN A 192.0.2.%d", i, i+1))
	}
	up := startUpstream(t, recs...)
	up.SetScript("*", func(req, m *dns.Msg) *dns.Msg {
		m.Authoritative = true
		m.RecursionAvailable = false
		m.AuthenticatedData = !strings.HasPrefix(m.Question[0].Name, "h7.")
		if opt := m.IsEdns0(); opt != nil {
			opt.SetUDPSize(8192) // the upstream's own size: never to be relayed
			opt.Option = append(opt.Option, &dns.EDNS0_LOCAL{Code: 65001, Data: []byte{1}})
		}
		return m
	})
	ts := startSinkhole(t, writeLists(t, nil), "--upstream", up.Addr)
	ask := func(name string, ad, do, noEDNS bool) *dns.Msg {
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeA)
		m.AuthenticatedData = ad
		if !noEDNS {
			m.SetEdns0(1232, do)
		}
		return ts.exchange(t, "udp", m)
	}
	check := func(what string, r *dns.Msg, wantAD, noEDNS bool) {
		t.Helper()
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
			t.Errorf("%s: %v", what, r)
			return
		}
		var bad []string
		if r.Authoritative {
			bad = append(bad, "AA set (copied from the upstream)")
		}
		if !r.RecursionAvailable {
			bad = append(bad, "RA clear (copied from the upstream)")
		}
		if r.AuthenticatedData != wantAD {
			bad = append(bad, fmt.Sprintf("AD %v, want %v", r.AuthenticatedData, wantAD))
		}
		opt := r.IsEdns0()
		switch {
		case noEDNS && opt != nil:
			bad = append(bad, "OPT sent to a client without EDNS")
		case !noEDNS && opt == nil:
			bad = append(bad, "no OPT for an EDNS client")
		case opt != nil && (opt.UDPSize() != 1232 || len(opt.Option) != 0):
			bad = append(bad, fmt.Sprintf("the upstream's OPT relayed (udp %d, %d options)", opt.UDPSize(), len(opt.Option)))
		}
		for _, b := range bad {
			t.Errorf("%s: %s", what, b)
		}
	}
	// Fresh answers.
	check("plain client", ask("h0.test.", false, false, false), false, false)
	check("AD client", ask("h1.test.", true, false, false), true, false)
	check("DO client", ask("h2.test.", false, true, false), true, false)
	check("client without EDNS", ask("h3.test.", false, false, true), false, true)
	check("AD client, upstream without AD", ask("h7.test.", true, false, false), false, false)
	// The cache carries no AD between clients: an AD client first, then a
	// plain one; a plain client first, then an AD one.
	check("AD client (fills the cache)", ask("h4.test.", true, false, false), true, false)
	check("plain client after an AD client", ask("h4.test.", false, false, false), false, false)
	check("plain client (fills the cache)", ask("h5.test.", false, false, false), false, false)
	check("AD client after a plain client", ask("h5.test.", true, false, false), true, false)
	check("client without EDNS after an EDNS client", ask("h1.test.", false, false, true), false, true)
}
