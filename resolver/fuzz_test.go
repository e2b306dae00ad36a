package resolver_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/blocklist"
	"github.com/sinkhole-dns/sinkhole/resolver"
	"github.com/sinkhole-dns/sinkhole/resolver/policy"
	"github.com/sinkhole-dns/sinkhole/resolver/query"
	"github.com/sinkhole-dns/sinkhole/resolver/ratelimit"
)

// fuzzList is the list the fuzzed chain enforces.
const fuzzList = `# platform: Binance
binance.com
*.bnbstatic.com
=exact.test
@@safe.binance.com
203.0.113.0/24
# action: sinkhole
sink.test
# action: log
monitor.test
`

// fakeUpstream ends the chain: it answers by the first label of the name,
// so that inputs reach every branch of the answer policy.
func fakeUpstream(_ context.Context, req *query.Request) (*dns.Msg, error) {
	q := req.Msg.Question[0]
	m := query.Reply(req.Msg, dns.RcodeSuccess)
	add := func(s string) {
		if rr, err := dns.NewRR(s); err == nil {
			m.Answer = append(m.Answer, rr)
		}
	}
	owner := q.Name
	label, _, _ := strings.Cut(req.Name, ".")
	switch {
	case strings.HasPrefix(label, "cname"):
		add(owner + " 60 IN CNAME edge.bnbstatic.com.")
		add("edge.bnbstatic.com. 60 IN A 192.0.2.66")
	case strings.HasPrefix(label, "dname"):
		add(owner + " 60 IN DNAME binance.com.")
	case strings.HasPrefix(label, "ip"):
		add(owner + " 60 IN A 203.0.113.7")
	case strings.HasPrefix(label, "big"):
		for i := 0; i < 120; i++ {
			add(owner + " 60 IN A 198.18.0." + strconv.Itoa(i))
		}
	case strings.HasPrefix(label, "err"):
		return nil, errors.New("upstream failed")
	case strings.HasPrefix(label, "nil"):
		return nil, nil
	case q.Qtype == dns.TypeAAAA:
		add(owner + " 60 IN AAAA 2001:db8::1")
	case q.Qtype == dns.TypeA:
		add(owner + " 60 IN A 192.0.2.1")
	default:
		m.Rcode = dns.RcodeNameError
	}
	return m, nil
}

// fuzzServer builds a server with the real policy chain over a fake
// upstream, and hooks that admit, refuse, drop, slip or suppress by the
// client port. It is not started: AnswerPacket needs no socket.
func fuzzServer(tb testing.TB, dir string, panics *atomic.Uint64) *resolver.Server {
	if err := os.WriteFile(filepath.Join(dir, "list.txt"), []byte(fuzzList), 0o644); err != nil {
		tb.Fatal(err)
	}
	quiet := slog.New(slog.DiscardHandler)
	store := blocklist.NewStore(blocklist.Options{Dirs: []string{dir}, Logger: quiet})
	if rep, err := store.Reload(context.Background(), "test"); err != nil || rep.Failed() {
		tb.Fatalf("list: %v %v", err, rep.Errors())
	}
	blocker := &policy.Blocker{Default: blocklist.ActionNXDomain, SinkholeV4: netip.MustParseAddr("0.0.0.0"), SinkholeV6: netip.MustParseAddr("::"), TTL: 300}
	answer := &policy.Answer{Block: blocker, Next: query.HandlerFunc(fakeUpstream)}
	chain := &policy.Question{Block: blocker, Next: answer}
	rrl := ratelimit.NewRRL(ratelimit.RRLConfig{Rate: 1e9})
	s, err := resolver.NewServer(resolver.ServerConfig{
		Listen:   []string{"127.0.0.1:0"},
		Handler:  chain,
		Snapshot: store.Current,
		Logger:   quiet,
		Panics:   panics,
		Admit: func(c netip.AddrPort, _ string) resolver.Admission {
			switch c.Port() % 7 {
			case 1:
				return resolver.Refuse
			case 2:
				return resolver.Drop
			}
			return resolver.Admit
		},
		LimitResponse: func(c netip.AddrPort, resp []byte) resolver.Limit {
			rrl.Check(c.Addr(), resp) // parses the packed answer
			switch c.Port() % 5 {
			case 1:
				return resolver.Slip
			case 2:
				return resolver.Suppress
			}
			return resolver.Send
		},
	})
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// checkAnswer holds the invariants of any answer to pkt: none, or a
// response that parses, carries the query's ID, and fits the transport.
func checkAnswer(t *testing.T, pkt, out []byte, tcp bool) {
	t.Helper()
	if out == nil {
		return
	}
	r := new(dns.Msg)
	if err := r.Unpack(out); err != nil {
		t.Fatalf("answer does not parse: %v\nquery %x\nanswer %x", err, pkt, out)
	}
	if !r.Response {
		t.Fatalf("answer without QR: %v", r)
	}
	if len(pkt) >= 2 && r.Id != binary.BigEndian.Uint16(pkt) {
		t.Fatalf("answer ID %d, query ID %d", r.Id, binary.BigEndian.Uint16(pkt))
	}
	limit := dns.MaxMsgSize
	if !tcp {
		limit = dns.MinMsgSize
		q := new(dns.Msg)
		if q.Unpack(pkt) == nil {
			limit = query.ClientUDPSize(q)
		}
	}
	if len(out) > limit {
		t.Fatalf("%d-byte answer over the %d-byte limit", len(out), limit)
	}
}

// FuzzServerAnswer sends raw bytes through the server's whole query path:
// admission, parsing, the policy chain, response rate limiting,
// truncation and packing. The server must answer or stay silent, never
// panic (not even inside the chain, where a panic would be recovered).
func FuzzServerAnswer(f *testing.F) {
	for _, m := range seedQueries() {
		out, _ := m.Pack()
		f.Add(out, uint16(40000), false)
		f.Add(out, uint16(40003), true)
	}
	f.Add([]byte("\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01"), uint16(53), false) // pointer loop
	f.Add([]byte{0, 1}, uint16(1), false)
	var panics atomic.Uint64
	s := fuzzServer(f, f.TempDir(), &panics)
	f.Fuzz(func(t *testing.T, pkt []byte, port uint16, tcp bool) {
		from := netip.AddrPortFrom(netip.MustParseAddr("192.0.2.10"), port)
		proto := "udp"
		if tcp {
			proto = "tcp"
		}
		out := s.AnswerPacket(pkt, from, proto)
		if n := panics.Swap(0); n != 0 {
			t.Fatalf("%d panics recovered in the chain for %x", n, pkt)
		}
		checkAnswer(t, pkt, out, tcp)
	})
}

// seedQueries are well-formed queries that reach the interesting paths.
func seedQueries() []*dns.Msg {
	var out []*dns.Msg
	q := func(name string, qtype uint16, edns bool) *dns.Msg {
		m := new(dns.Msg)
		m.SetQuestion(name, qtype)
		if edns {
			m.SetEdns0(1232, true)
		}
		out = append(out, m)
		return m
	}
	q("www.example.test.", dns.TypeA, true)
	q("www.binance.com.", dns.TypeAAAA, true)
	q("WWW.Binance.COM.", dns.TypeA, false)
	q("safe.binance.com.", dns.TypeA, true)
	q("cname.example.test.", dns.TypeA, true)
	q("dname.example.test.", dns.TypeA, false)
	q("ip.example.test.", dns.TypeA, true)
	q("big.example.test.", dns.TypeA, false)
	q("big.example.test.", dns.TypeA, true)
	q("err.example.test.", dns.TypeA, true)
	q("nil.example.test.", dns.TypeMX, true)
	q("sink.test.", dns.TypeAAAA, true)
	q("monitor.test.", dns.TypeA, true)
	q("x.exact.test.", dns.TypeTXT, true)
	q(".", dns.TypeNS, true)
	q(`a\.b\000c.example.`, dns.TypeA, true)
	m := q("ede.example.test.", dns.TypeA, true)
	m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_EDE{InfoCode: 16, ExtraText: "client sent EDE"}, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"})
	m = q("v1.example.test.", dns.TypeA, true)
	m.IsEdns0().SetVersion(1)
	m = q("notify.example.test.", dns.TypeSOA, false)
	m.Opcode = dns.OpcodeNotify
	m = q("response.example.test.", dns.TypeA, false)
	m.Response = true
	m = q("two.example.test.", dns.TypeA, false)
	m.Question = append(m.Question, dns.Question{Name: "other.test.", Qtype: dns.TypeA, Qclass: dns.ClassINET})
	m = q("zero.example.test.", dns.TypeA, false)
	m.Question = nil
	m = q("chaos.example.test.", dns.TypeTXT, false)
	m.Question[0].Qclass = dns.ClassCHAOS
	return out
}

// corpusPackets reads the []byte arguments of a committed fuzz corpus.
func corpusPackets(t *testing.T, dir string) [][]byte {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, e := range ents {
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "[]byte("); ok {
				b, err := strconv.Unquote(strings.TrimSuffix(v, ")"))
				if err != nil {
					t.Fatalf("%s: %v", e.Name(), err)
				}
				out = append(out, []byte(b))
			}
		}
		f.Close()
	}
	return out
}

// TestFuzzCorpusOverSockets sends the committed fuzz corpus to a running
// server over UDP and TCP: it keeps serving and never panics.
func TestFuzzCorpusOverSockets(t *testing.T) {
	pkts := corpusPackets(t, "testdata/fuzz/FuzzServerAnswer")
	if len(pkts) < 10 {
		t.Fatalf("only %d corpus packets", len(pkts))
	}
	var panics atomic.Uint64
	s := startServer(t, resolver.ServerConfig{Handler: query.HandlerFunc(answerA), Panics: &panics})
	addr := s.Addrs()[0]
	uc, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	tc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	go io.Copy(io.Discard, tc)
	for _, p := range pkts {
		uc.Write(p)
		if len(p) <= 0xffff {
			tc.Write(append([]byte{byte(len(p) >> 8), byte(len(p))}, p...))
		}
	}
	// Still serving, over both transports, with nothing recovered.
	for _, proto := range []string{"udp", "tcp"} {
		r, _, err := client(proto, "", 5*time.Second).Exchange(question("after.test"), addr)
		if err != nil || len(r.Answer) != 1 {
			t.Fatalf("%s after the corpus: %v %v", proto, r, err)
		}
	}
	if n := panics.Load(); n != 0 {
		t.Fatalf("%d panics recovered", n)
	}
}

// TestFuzzServerAnswerSeeds runs the seed queries through the fuzzed path
// with fixed expectations, so the harness itself is known to work.
func TestFuzzServerAnswerSeeds(t *testing.T) {
	var panics atomic.Uint64
	s := fuzzServer(t, t.TempDir(), &panics)
	from := netip.AddrPortFrom(netip.MustParseAddr("192.0.2.10"), 40005) // admitted (40005 % 7 == 0), sent (% 5 == 0)
	rcode := func(name string, qtype uint16) int {
		m := new(dns.Msg)
		m.SetQuestion(name, qtype)
		m.SetEdns0(1232, false)
		pkt, _ := m.Pack()
		out := s.AnswerPacket(pkt, from, "udp")
		r := new(dns.Msg)
		if out == nil || r.Unpack(out) != nil {
			t.Fatalf("%s: no answer", name)
		}
		return r.Rcode
	}
	for name, want := range map[string]int{
		"www.example.test.": dns.RcodeSuccess, "www.binance.com.": dns.RcodeNameError, "cname.example.test.": dns.RcodeNameError,
		"ip.example.test.": dns.RcodeNameError, "err.example.test.": dns.RcodeServerFailure, "safe.binance.com.": dns.RcodeSuccess,
	} {
		if got := rcode(name, dns.TypeA); got != want {
			t.Errorf("%s: %s, want %s", name, dns.RcodeToString[got], dns.RcodeToString[want])
		}
	}
	if panics.Load() != 0 {
		t.Fatal("panics")
	}
}
