package resolver_test

import (
	"context"
	"encoding/binary"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/blocklist"
	"github.com/sinkhole-dns/sinkhole/internal/dnstest"
	"github.com/sinkhole-dns/sinkhole/resolver"
	"github.com/sinkhole-dns/sinkhole/resolver/cache"
	"github.com/sinkhole-dns/sinkhole/resolver/chaos"
	"github.com/sinkhole-dns/sinkhole/resolver/policy"
	"github.com/sinkhole-dns/sinkhole/resolver/query"
	"github.com/sinkhole-dns/sinkhole/resolver/upstream"
)

// hop is the whole chain (CHAOS, cache with serve-stale, question and
// answer policy, upstream) served on loopback, over a scripted upstream
// whose answers carry its own OPT (UDP size 4096, NSID), AA and AD set and
// RA clear: what sinkhole must never relay.
type hop struct {
	srv   *resolver.Server
	up    *dnstest.Server
	dir   string
	store *blocklist.Store
	now   atomic.Int64 // the cache's clock, unix nanoseconds
}

func startHop(t *testing.T, list string) *hop {
	t.Helper()
	h := &hop{dir: t.TempDir()}
	h.now.Store(time.Now().UnixNano())
	quiet := slog.New(slog.DiscardHandler)
	h.setList(t, list)
	h.store = blocklist.NewStore(blocklist.Options{Dirs: []string{h.dir}, Logger: quiet})
	h.reload(t)
	up, err := dnstest.Start(dnstest.Options{Records: []string{
		"www.hop.test. 300 IN A 192.0.2.1",
		"bad.hop.test. 300 IN A 203.0.113.9",
		"hop.test. 300 IN SOA ns.hop.test. h.hop.test. 1 60 60 60 60",
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(up.Close)
	up.SetScript("*", func(req, m *dns.Msg) *dns.Msg {
		m.Authoritative, m.RecursionAvailable, m.AuthenticatedData = true, false, true
		m.Extra = append(m.Extra, &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT, Class: 4096},
			Option: []dns.EDNS0{&dns.EDNS0_NSID{Code: dns.EDNS0NSID, Nsid: "7570"}}})
		return m
	})
	h.up = up
	pool, err := upstream.New(upstream.Config{Addrs: []string{up.Addr}, Timeout: 300 * time.Millisecond, Logger: quiet, FailThreshold: 100})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	block := &policy.Blocker{Default: blocklist.ActionNXDomain, TTL: 300}
	answer := &policy.Answer{Block: block}
	question := &policy.Question{Block: block, CountryKnown: answer.CountryKnown}
	c := cache.New(cache.Config{Snapshot: h.store.Current, Logger: quiet, ServeStale: time.Hour,
		Now: func() time.Time { return time.Unix(0, h.now.Load()) }, Decider: &policy.Decider{Question: question, Answer: answer}})
	chain, err := query.Chain(&chaos.Stage{Identity: "hop-1", Version: "sinkhole test"}, c, question, answer, pool)
	if err != nil {
		t.Fatal(err)
	}
	cfg := resolver.ServerConfig{Listen: []string{"127.0.0.1:0"}, Handler: chain, Snapshot: h.store.Current, Logger: quiet,
		UDPSockets: 1, QueryTimeout: 2 * time.Second}
	if h.srv, err = resolver.NewServer(cfg); err != nil {
		t.Fatal(err)
	}
	if err := h.srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.srv.Shutdown(context.Background()) })
	return h
}

func (h *hop) setList(t *testing.T, list string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(h.dir, "l.txt"), []byte(list), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (h *hop) reload(t *testing.T) {
	t.Helper()
	if rep, err := h.store.Reload(context.Background(), "test"); err != nil || rep.Failed() {
		t.Fatalf("reload: %v", err)
	}
}

// ask sends q over proto and returns the answer.
func (h *hop) ask(t *testing.T, proto string, q *dns.Msg) *dns.Msg {
	t.Helper()
	r, _, err := client(proto, "", 3*time.Second).Exchange(q, h.srv.Addrs()[0])
	if err != nil {
		t.Fatalf("%s %s: %v", q.Question[0].Name, proto, err)
	}
	return r
}

// clientQuery is a query with the given EDNS (-1: none; else the buffer
// size), DO and AD bits.
func clientQuery(name string, qtype uint16, bufsize int, do, ad bool) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.AuthenticatedData = ad
	if bufsize >= 0 {
		m.SetEdns0(uint16(bufsize), do)
	}
	return m
}

// checkOwnOPT fails unless r carries sinkhole's own OPT for q's client: none
// without EDNS; else UDP size 1232, version 0, q's DO, no upstream option,
// and EDE ede when ede is not 0xFFFF.
func checkOwnOPT(t *testing.T, what string, q, r *dns.Msg, ede uint16) {
	t.Helper()
	opts := 0
	for _, rr := range r.Extra {
		if _, ok := rr.(*dns.OPT); ok {
			opts++
		}
	}
	qopt, ropt := q.IsEdns0(), r.IsEdns0()
	if qopt == nil {
		if opts != 0 {
			t.Fatalf("%s: a client without EDNS got an OPT record: %v", what, r)
		}
		return
	}
	if opts != 1 || ropt.UDPSize() != resolver.ServerUDPSizeForTest || ropt.Version() != 0 || ropt.Do() != qopt.Do() {
		t.Fatalf("%s: OPT not sinkhole's own (want one, size %d, DO %v):\n%v", what, resolver.ServerUDPSizeForTest, qopt.Do(), r)
	}
	var got []uint16
	for _, o := range ropt.Option {
		switch v := o.(type) {
		case *dns.EDNS0_EDE:
			got = append(got, v.InfoCode)
		default:
			t.Fatalf("%s: upstream option relayed: %v", what, o)
		}
	}
	if ede == 0xFFFF && len(got) != 0 || ede != 0xFFFF && (len(got) != 1 || got[0] != ede) {
		t.Fatalf("%s: EDE %v, want %d:\n%v", what, got, ede, r)
	}
}

// TestEDNSPerHop: every answer to an EDNS client carries sinkhole's own OPT
// (fresh, cached, re-decided after a reload, stale, blocked, synthesized);
// clients without EDNS get none; the upstream's OPT is never relayed
// (RFC 6891 6.2.1, 7).
func TestEDNSPerHop(t *testing.T) {
	h := startHop(t, "blocked.hop.test\n")
	const none = 0xFFFF
	for _, proto := range []string{"udp", "tcp"} {
		for _, v := range []struct {
			bufsize int
			do      bool
		}{{-1, false}, {512, false}, {4096, false}, {1232, true}} {
			name := "www.hop.test"
			q := clientQuery(name, dns.TypeA, v.bufsize, v.do, false)
			what := proto + " " + name
			checkOwnOPT(t, what+" fresh or cached", q, h.ask(t, proto, q), none)
			checkOwnOPT(t, what+" cached", q, h.ask(t, proto, q), none)
			b := clientQuery("www.blocked.hop.test", dns.TypeA, v.bufsize, v.do, false)
			checkOwnOPT(t, proto+" blocked (fast path)", b, h.ask(t, proto, b), dns.ExtendedErrorCodeCensored)
			b = clientQuery("www.blocked.hop.test", dns.TypeANY, v.bufsize, v.do, false)
			checkOwnOPT(t, proto+" blocked (full path)", b, h.ask(t, proto, b), dns.ExtendedErrorCodeCensored)
			c := clientQuery("id.server", dns.TypeTXT, v.bufsize, v.do, false)
			c.Question[0].Qclass = dns.ClassCHAOS
			checkOwnOPT(t, proto+" synthesized (CHAOS)", c, h.ask(t, proto, c), none)
		}
	}
	// Re-decided after a reload, from the answer the cache holds.
	queries := h.up.Queries()
	h.setList(t, "blocked.hop.test\nother.test\n")
	h.reload(t)
	for _, bufsize := range []int{-1, 1232} {
		q := clientQuery("www.hop.test", dns.TypeA, bufsize, bufsize > 0, false)
		checkOwnOPT(t, "re-decided after a reload", q, h.ask(t, "udp", q), none)
	}
	if n := h.up.Queries(); n != queries {
		t.Fatalf("re-deciding asked upstream %d times", n-queries)
	}
	// Stale (EDE 3), for the same generation and after another reload.
	h.up.SetFault("*", dnstest.FaultSilent)
	h.now.Add(int64(time.Hour / 2))
	for i, gen := range []string{"same generation", "after a reload"} {
		if i == 1 {
			h.setList(t, "blocked.hop.test\n")
			h.reload(t)
		}
		for _, bufsize := range []int{-1, 1232} {
			q := clientQuery("www.hop.test", dns.TypeA, bufsize, false, false)
			r := h.ask(t, "udp", q)
			if len(r.Answer) != 1 || r.Answer[0].Header().Ttl != cache.StaleTTL {
				t.Fatalf("stale %s: %v", gen, r)
			}
			ede := uint16(dns.ExtendedErrorCodeStaleAnswer)
			if bufsize < 0 {
				ede = none
			}
			checkOwnOPT(t, "stale "+gen, q, r, ede)
		}
	}
}

// TestHeaderBitsPerHop: AA clear and RA set on forwarded answers; AD only
// when the upstream set it and the client asked (AD or DO), and never
// carried from one client to another by the cache (RFC 6840 5.7-5.8).
func TestHeaderBitsPerHop(t *testing.T) {
	h := startHop(t, "blocked.hop.test\n")
	cases := []struct {
		bufsize int
		do, ad  bool
		wantAD  bool
	}{
		{-1, false, false, false}, // asked first: must not make AD clients lose AD
		{-1, false, true, true},
		{1232, true, false, true},
		{1232, false, false, false},
		{-1, false, true, true}, // cached now
		{-1, false, false, false},
	}
	for i, c := range cases {
		for _, proto := range []string{"udp", "tcp"} {
			q := clientQuery("www.hop.test", dns.TypeA, c.bufsize, c.do, c.ad)
			q.RecursionDesired = i%2 == 0
			r := h.ask(t, proto, q)
			if r.Authoritative || !r.RecursionAvailable || r.AuthenticatedData != c.wantAD || r.RecursionDesired != q.RecursionDesired {
				t.Fatalf("case %d %s (AD %v DO %v RD %v): AA %v RA %v AD %v RD %v, want AA false RA true AD %v",
					i, proto, c.ad, c.do, q.RecursionDesired, r.Authoritative, r.RecursionAvailable, r.AuthenticatedData, r.RecursionDesired, c.wantAD)
			}
		}
	}
	// Error replies copy RD and set nothing else.
	for _, rd := range []bool{false, true} {
		q := clientQuery("www.hop.test", dns.TypeA, 1232, true, true)
		q.Opcode = dns.OpcodeStatus
		q.RecursionDesired, q.CheckingDisabled = rd, true
		r := h.ask(t, "udp", q)
		if r.Rcode != dns.RcodeNotImplemented || r.RecursionDesired != rd || r.RecursionAvailable || r.CheckingDisabled || r.AuthenticatedData || r.Authoritative {
			t.Fatalf("NOTIMP (RD %v): %v", rd, r)
		}
	}
}

// TestCHAOS: CHAOS queries are answered here and never forwarded.
func TestCHAOS(t *testing.T) {
	h := startHop(t, "")
	for _, c := range []struct {
		name  string
		rcode int
		text  string
	}{
		{"id.server", dns.RcodeSuccess, "hop-1"},
		{"hostname.bind", dns.RcodeSuccess, "hop-1"},
		{"version.bind", dns.RcodeSuccess, "sinkhole test"},
		{"authors.bind", dns.RcodeRefused, ""},
		{"www.hop.test", dns.RcodeRefused, ""},
	} {
		q := clientQuery(c.name, dns.TypeTXT, 1232, false, false)
		q.Question[0].Qclass = dns.ClassCHAOS
		r := h.ask(t, "udp", q)
		if r.Rcode != c.rcode {
			t.Fatalf("%s CH TXT: %s, want %s", c.name, dns.RcodeToString[r.Rcode], dns.RcodeToString[c.rcode])
		}
		if c.text != "" {
			txt, ok := r.Answer[0].(*dns.TXT)
			if len(r.Answer) != 1 || !ok || txt.Txt[0] != c.text || txt.Hdr.Class != dns.ClassCHAOS {
				t.Fatalf("%s CH TXT: %v", c.name, r)
			}
		}
	}
	if n := h.up.Queries(); n != 0 {
		t.Fatalf("CHAOS queries reached the upstream %d times", n)
	}
	// Without texts every CHAOS query is refused.
	st := &chaos.Stage{}
	st.Link(query.HandlerFunc(func(context.Context, *query.Request) (*dns.Msg, error) { t.Fatal("forwarded"); return nil, nil }))
	q := clientQuery("version.bind", dns.TypeTXT, -1, false, false)
	q.Question[0].Qclass = dns.ClassCHAOS
	if r, _ := st.ServeDNS(context.Background(), query.NewRequest(q, h.srv.AddrPort(), "udp", h.store.Current())); r.Rcode != dns.RcodeRefused {
		t.Fatalf("default CHAOS answer %s", dns.RcodeToString[r.Rcode])
	}
}

// craft builds a query packet by hand: header counts as given, the
// question, then the raw records.
func craft(id uint16, qname string, qtype uint16, counts [3]uint16, records ...[]byte) []byte {
	pkt := make([]byte, 12, 512)
	binary.BigEndian.PutUint16(pkt, id)
	pkt[2] = 0x01 // RD
	binary.BigEndian.PutUint16(pkt[4:], 1)
	binary.BigEndian.PutUint16(pkt[6:], counts[0])
	binary.BigEndian.PutUint16(pkt[8:], counts[1])
	binary.BigEndian.PutUint16(pkt[10:], counts[2])
	name := make([]byte, 256)
	n, _ := dns.PackDomainName(qname, name, 0, nil, false)
	pkt = append(pkt, name[:n]...)
	pkt = binary.BigEndian.AppendUint16(pkt, qtype)
	pkt = binary.BigEndian.AppendUint16(pkt, dns.ClassINET)
	for _, r := range records {
		pkt = append(pkt, r...)
	}
	return pkt
}

// optRecord is a packed OPT record with the given owner (0: the root).
func optRecord(owner []byte) []byte {
	r := append([]byte(nil), owner...)
	r = binary.BigEndian.AppendUint16(r, dns.TypeOPT)
	r = binary.BigEndian.AppendUint16(r, 1232) // class: UDP size
	r = binary.BigEndian.AppendUint32(r, 0)
	return binary.BigEndian.AppendUint16(r, 0)
}

// aRecord is a packed A record owned by the root.
func aRecord() []byte {
	r := []byte{0}
	r = binary.BigEndian.AppendUint16(r, dns.TypeA)
	r = binary.BigEndian.AppendUint16(r, dns.ClassINET)
	r = binary.BigEndian.AppendUint32(r, 60)
	r = binary.BigEndian.AppendUint16(r, 4)
	return append(r, 192, 0, 2, 1)
}

// TestFormErr: malformed queries that miekg/dns parses are answered
// FORMERR from the packet, never forwarded, and counted (RFC 6891 6.1.1;
// what Unbound and BIND do).
func TestFormErr(t *testing.T) {
	h := startHop(t, "")
	root := []byte{0}
	named := []byte{3, 'x', 'y', 'z', 0}
	cases := []struct {
		name string
		pkt  []byte
		opt  bool // the FORMERR carries an OPT (the query's one OPT was sound)
	}{
		{"two OPT records", craft(1, "www.hop.test.", dns.TypeA, [3]uint16{0, 0, 2}, optRecord(root), optRecord(root)), false},
		{"OPT in the answer section", craft(2, "www.hop.test.", dns.TypeA, [3]uint16{1, 0, 0}, optRecord(root)), false},
		{"OPT in the authority section", craft(3, "www.hop.test.", dns.TypeA, [3]uint16{0, 1, 0}, optRecord(root)), false},
		{"OPT owned by another name", craft(4, "www.hop.test.", dns.TypeA, [3]uint16{0, 0, 1}, optRecord(named)), false},
		{"ARCOUNT larger than the records", craft(5, "www.hop.test.", dns.TypeA, [3]uint16{0, 0, 3}, optRecord(root)), false},
		{"ANCOUNT larger than the records", craft(6, "www.hop.test.", dns.TypeA, [3]uint16{2, 0, 0}, aRecord()), false},
		{"question of type 0", craft(7, "www.hop.test.", 0, [3]uint16{0, 0, 1}, optRecord(root)), true},
		{"question of type OPT", craft(8, "www.hop.test.", dns.TypeOPT, [3]uint16{0, 0, 0}), false},
		{"question of type TSIG", craft(9, "www.hop.test.", dns.TypeTSIG, [3]uint16{0, 0, 1}, optRecord(root)), true},
	}
	before := h.srv.Malformed()
	for i, c := range cases {
		for _, proto := range []string{"udp", "tcp"} {
			r := h.srv.AnswerPacket(c.pkt, h.srv.AddrPort(), proto)
			var m dns.Msg
			if err := m.Unpack(r); err != nil {
				t.Fatalf("%s over %s: answer %x does not parse: %v", c.name, proto, r, err)
			}
			if m.Rcode != dns.RcodeFormatError || m.Id != binary.BigEndian.Uint16(c.pkt) || !m.Response || !m.RecursionDesired ||
				m.RecursionAvailable || m.AuthenticatedData || m.Authoritative || (m.IsEdns0() != nil) != c.opt {
				t.Fatalf("%s over %s: %v", c.name, proto, &m)
			}
			if len(m.Question) != 1 || m.Question[0].Name != "www.hop.test." {
				t.Fatalf("%s over %s: question not echoed: %v", c.name, proto, &m)
			}
		}
		if got := h.srv.Malformed() - before; got != uint64(2*(i+1)) {
			t.Fatalf("%s: %d malformed counted, want %d", c.name, got, 2*(i+1))
		}
	}
	if n := h.up.Queries(); n != 0 {
		t.Fatalf("malformed queries reached the upstream %d times", n)
	}
	// A sound query with one OPT is still answered.
	q := clientQuery("www.hop.test", dns.TypeA, 1232, false, false)
	if r := h.ask(t, "udp", q); r.Rcode != dns.RcodeSuccess {
		t.Fatalf("sound query: %v", r)
	}
}
