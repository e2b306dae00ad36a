package ratelimit

import (
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// clock is a manual clock for deterministic tests.
type clock struct{ t atomic.Int64 }

func (c *clock) now() int64              { return c.t.Load() }
func (c *clock) advance(d time.Duration) { c.t.Add(int64(d)) }

func newClock() *clock { c := &clock{}; c.t.Store(1e9); return c }

func allowed(c *Clients, addr string, n int) int {
	a := netip.MustParseAddr(addr)
	got := 0
	for i := 0; i < n; i++ {
		if c.Allow(a) {
			got++
		}
	}
	return got
}

func TestClientsBurstAndRate(t *testing.T) {
	clk := newClock()
	c := NewClients(ClientsConfig{QPS: 10, Burst: 5, Now: clk.now})
	if got := allowed(c, "192.0.2.1", 20); got != 5 {
		t.Fatalf("burst: %d allowed, want 5", got)
	}
	// Another client is unaffected.
	if got := allowed(c, "192.0.2.2", 5); got != 5 {
		t.Fatalf("other client: %d allowed, want 5", got)
	}
	clk.advance(300 * time.Millisecond) // 3 tokens back
	if got := allowed(c, "192.0.2.1", 10); got != 3 {
		t.Fatalf("after 300ms: %d allowed, want 3", got)
	}
	clk.advance(10 * time.Second) // full again, never more than the burst
	if got := allowed(c, "192.0.2.1", 10); got != 5 {
		t.Fatalf("after idle: %d allowed, want 5", got)
	}
	// Sustained: one query per 100ms is always allowed.
	for i := 0; i < 50; i++ {
		clk.advance(100 * time.Millisecond)
		if got := allowed(c, "192.0.2.3", 1); got != 1 {
			t.Fatalf("sustained query %d limited", i)
		}
	}
}

func TestClientsAggregation(t *testing.T) {
	clk := newClock()
	c := NewClients(ClientsConfig{QPS: 1, Burst: 4, Now: clk.now})
	// IPv6: one /56 shares a bucket.
	if got := allowed(c, "2001:db8:0:1::1", 2) + allowed(c, "2001:db8:0:ff::2", 4); got != 4 {
		t.Fatalf("same /56: %d allowed, want 4", got)
	}
	if got := allowed(c, "2001:db8:0:100::1", 4); got != 4 {
		t.Fatalf("next /56: %d allowed, want 4", got)
	}
	// IPv4: per address; a v4-mapped address is the same client.
	if got := allowed(c, "198.51.100.7", 2) + allowed(c, "::ffff:198.51.100.7", 4); got != 4 {
		t.Fatalf("v4 and v4-mapped: %d allowed, want 4", got)
	}
	if got := allowed(c, "198.51.100.8", 4); got != 4 {
		t.Fatalf("neighbour address: %d allowed, want 4", got)
	}
	if NewClients(ClientsConfig{}) != nil || !(*Clients)(nil).Allow(netip.MustParseAddr("192.0.2.1")) {
		t.Fatal("QPS 0 must mean no limit")
	}
}

func TestNetworkOf(t *testing.T) {
	tests := []struct {
		addr         string
		bits4, bits6 int
		want         string
	}{
		{"192.0.2.77", 24, 56, "192.0.2.0"},
		{"192.0.2.77", 32, 56, "192.0.2.77"},
		{"::ffff:192.0.2.77", 24, 56, "192.0.2.0"},
		{"2001:db8:aaaa:bbcc:1:2:3:4", 24, 56, "2001:db8:aaaa:bb00::"},
		{"2001:db8:aaaa:bbcc:1:2:3:4", 24, 64, "2001:db8:aaaa:bbcc::"},
		{"2001:db8:aaaa:bbcc:1:2:3:4", 24, 80, "2001:db8:aaaa:bbcc:1::"},
		{"2001:db8:aaaa:bbcc:1ff:2:3:4", 24, 72, "2001:db8:aaaa:bbcc:100::"},
		{"2001:db8:aaaa:bbcc:1:2:3:4", 24, 128, "2001:db8:aaaa:bbcc:1:2:3:4"},
		{"2001:db8:aaaa:bbcc:1:2:3:4", 24, 0, "::"},
	}
	for _, tt := range tests {
		k := networkOf(netip.MustParseAddr(tt.addr), tt.bits4, tt.bits6)
		want := netip.MustParseAddr(tt.want)
		if want.Is4() {
			want = netip.AddrFrom16(want.As16())
		}
		if w := networkOf(want, 32, 128); k != w {
			t.Errorf("networkOf(%s, %d, %d) = %x, want %s", tt.addr, tt.bits4, tt.bits6, k, tt.want)
		}
	}
}

func TestTableBoundedMemory(t *testing.T) {
	clk := newClock()
	const maxEntries = 64 * 32
	c := NewClients(ClientsConfig{QPS: 1, Burst: 10, MaxEntries: maxEntries, Now: clk.now})
	// A flood of distinct sources, each active (bucket not full).
	for i := 0; i < 20*maxEntries; i++ {
		c.Allow(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
	}
	if n := c.Tracked(); n > maxEntries {
		t.Fatalf("%d entries tracked, cap %d", n, maxEntries)
	}
	if c.Evicted() == 0 {
		t.Fatal("nothing evicted")
	}
	// Idle entries go first: a client limited now stays limited while the
	// table fills with idle ones.
	clk.advance(time.Hour)
	hot := netip.MustParseAddr("192.0.2.1")
	for i := 0; i < 10; i++ {
		c.Allow(hot)
	}
	if c.Allow(hot) {
		t.Fatal("burst not enforced")
	}
	for i := 0; i < 2*maxEntries; i++ {
		c.Allow(netip.AddrFrom4([4]byte{11, byte(i >> 16), byte(i >> 8), byte(i)}))
		if i%(maxEntries/4) == 0 {
			clk.advance(time.Minute) // the newcomers go idle
		}
	}
	if n := c.Tracked(); n > maxEntries {
		t.Fatalf("%d entries tracked, cap %d", n, maxEntries)
	}
}

func TestClientsConcurrent(t *testing.T) {
	c := NewClients(ClientsConfig{QPS: 1, Burst: 100})
	var wg sync.WaitGroup
	var ok atomic.Int64
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := netip.MustParseAddr("192.0.2.1")
			for i := 0; i < 1000; i++ {
				if c.Allow(a) {
					ok.Add(1)
				}
				c.Allow(netip.AddrFrom4([4]byte{198, 18, byte(g), byte(i)}))
			}
		}()
	}
	wg.Wait()
	// 100 of burst, plus at most a few refilled during the test.
	if n := ok.Load(); n < 100 || n > 110 {
		t.Fatalf("%d of 8000 concurrent queries allowed, want about 100", n)
	}
}

func TestAllowDoesNotAllocate(t *testing.T) {
	c := NewClients(ClientsConfig{QPS: 1e9, Burst: 1e9})
	a := netip.MustParseAddr("2001:db8::1")
	c.Allow(a)
	if n := testing.AllocsPerRun(1000, func() { c.Allow(a) }); n != 0 {
		t.Fatalf("%v allocations per known client", n)
	}
}

// msg packs a response, compressed as the server sends it.
func msg(name string, qtype uint16, rcode int, answer, soa string) []byte {
	m := new(dns.Msg)
	m.Compress = true
	m.SetQuestion(name, qtype)
	m.Response = true
	m.Rcode = rcode
	if answer != "" {
		rr, _ := dns.NewRR(answer)
		m.Answer = append(m.Answer, rr)
	}
	if soa != "" {
		rr, _ := dns.NewRR(soa + " 60 IN SOA ns. h. 1 1 1 1 1")
		m.Ns = append(m.Ns, rr)
	}
	out, err := m.Pack()
	if err != nil {
		panic(err)
	}
	return out
}

func verdicts(r *RRL, client string, m []byte, n int) string {
	a := netip.MustParseAddr(client)
	out := make([]byte, n)
	for i := range out {
		out[i] = "sdS"[r.Check(a, m)]
	}
	return string(out)
}

func TestRRL(t *testing.T) {
	clk := newClock()
	r := NewRRL(RRLConfig{Rate: 3, Slip: 2, Now: clk.now})
	a := msg("www.example.com.", dns.TypeA, dns.RcodeSuccess, "www.example.com. 60 IN A 192.0.2.1", "")
	// 3 sent, then every second limited response slips.
	if got := verdicts(r, "192.0.2.1", a, 9); got != "sssdSdSdS" {
		t.Fatalf("verdicts %s", got)
	}
	// Same /24: same entry. Another /24, name or type: another entry.
	if got := verdicts(r, "192.0.2.200", a, 1); got != "d" {
		t.Fatalf("same /24: %s", got)
	}
	if got := verdicts(r, "192.0.3.1", a, 1); got != "s" {
		t.Fatalf("other /24: %s", got)
	}
	if got := verdicts(r, "192.0.2.1", msg("WWW.Example.COM.", dns.TypeA, 0, "www.example.com. 60 IN A 192.0.2.1", ""), 1); got != "S" && got != "d" {
		t.Fatalf("case differs but same name: %s", got)
	}
	aaaa := msg("www.example.com.", dns.TypeAAAA, dns.RcodeSuccess, "www.example.com. 60 IN AAAA 2001:db8::1", "")
	if got := verdicts(r, "192.0.2.1", aaaa, 1); got != "s" {
		t.Fatalf("other type: %s", got)
	}
	// NXDOMAIN for random subdomains shares the zone's entry.
	var got string
	for i := 0; i < 6; i++ {
		got += verdicts(r, "192.0.2.1", msg(fmt.Sprintf("r%d.example.net.", i), dns.TypeA, dns.RcodeNameError, "", "example.net."), 1)
	}
	if got != "sssdSd" {
		t.Fatalf("random subdomains: %s", got)
	}
	// Errors share one entry per network whatever the name.
	got = ""
	for i := 0; i < 4; i++ {
		got += verdicts(r, "192.0.2.1", msg(fmt.Sprintf("e%d.example.org.", i), dns.TypeA, dns.RcodeServerFailure, "", ""), 1)
	}
	if got != "sssd" {
		t.Fatalf("errors: %s", got)
	}
	// The rate refills.
	clk.advance(time.Second)
	if got := verdicts(r, "192.0.2.1", a, 4); got != "sssd" && got != "sssS" {
		t.Fatalf("after a second: %s", got)
	}
}

func TestRRLSlipSettings(t *testing.T) {
	a := msg("x.test.", dns.TypeA, 0, "x.test. 60 IN A 192.0.2.1", "")
	for slip, want := range map[int]string{0: "sdddd", 1: "sSSSS", 3: "sddSd"} {
		r := NewRRL(RRLConfig{Rate: 1, Slip: slip, Now: newClock().now})
		if got := verdicts(r, "2001:db8::1", a, 5); got != want {
			t.Errorf("slip %d: %s, want %s", slip, got, want)
		}
	}
	if NewRRL(RRLConfig{}) != nil || (*RRL)(nil).Check(netip.MustParseAddr("192.0.2.1"), a) != Send {
		t.Fatal("rate 0 must mean no limit")
	}
}

func BenchmarkClientsAllow(b *testing.B) {
	c := NewClients(ClientsConfig{QPS: 1e9, Burst: 1e9})
	addrs := make([]netip.Addr, 1024)
	for i := range addrs {
		addrs[i] = netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			c.Allow(addrs[i&1023])
			i++
		}
	})
}

func BenchmarkClientsAllowSerial(b *testing.B) {
	c := NewClients(ClientsConfig{QPS: 1e9, Burst: 1e9})
	a := netip.MustParseAddr("10.0.0.1")
	b.ReportAllocs()
	for b.Loop() {
		c.Allow(a)
	}
}

func TestResponseKey(t *testing.T) {
	a := responseKey(msg("WWW.Example.com.", dns.TypeA, 0, "www.example.com. 60 IN A 192.0.2.1", ""))
	b := responseKey(msg("www.example.COM.", dns.TypeA, 0, "www.example.com. 60 IN A 192.0.2.2", ""))
	if a != b || a.class != classAnswer || a.qtype != dns.TypeA {
		t.Fatalf("answers: %+v %+v", a, b)
	}
	// NXDOMAIN and NODATA: the SOA owner (compressed against the question).
	nx := responseKey(msg("a.b.example.net.", dns.TypeA, dns.RcodeNameError, "", "example.net."))
	zone := responseKey(msg("example.net.", dns.TypeMX, dns.RcodeNameError, "", "example.net."))
	if nx != zone || nx.class != classNXDomain {
		t.Fatalf("nxdomain: %+v %+v", nx, zone)
	}
	// The SOA comes after answer records (a CNAME into a NODATA).
	m := new(dns.Msg)
	m.SetQuestion("alias.example.org.", dns.TypeAAAA)
	m.Response = true
	cn, _ := dns.NewRR("alias.example.org. 60 IN CNAME target.example.com.")
	soa, _ := dns.NewRR("example.com. 60 IN SOA ns. h. 1 1 1 1 1")
	m.Ns = []dns.RR{soa}
	m.Answer = []dns.RR{cn}
	m.Rcode = dns.RcodeSuccess
	out, _ := m.Pack()
	if k := responseKey(out); k.class != classAnswer {
		t.Fatalf("CNAME answer: %+v", k)
	}
	m.Answer = nil
	out, _ = m.Pack()
	if k := responseKey(out); k.class != classNoData || k.name != responseKey(msg("x.example.com.", dns.TypeA, 0, "", "example.com.")).name {
		t.Fatalf("nodata keyed by %+v", k)
	}
	// Errors: by network only; short or broken packets never panic.
	if k := responseKey(msg("e.test.", dns.TypeA, dns.RcodeServerFailure, "", "")); k != (rrlKey{class: classError}) {
		t.Fatalf("servfail: %+v", k)
	}
	full := msg("a.b.example.net.", dns.TypeA, dns.RcodeNameError, "", "example.net.")
	for i := 0; i < len(full); i++ {
		responseKey(full[:i])
	}
	loop := []byte("\x12\x34\x81\x83\x00\x01\x00\x00\x00\x01\x00\x00\xc0\x0c\x00\x01\x00\x01\xc0\x0c\x00\x06\x00\x01")
	responseKey(loop)
}

func FuzzResponseKey(f *testing.F) {
	f.Add(msg("a.b.example.net.", dns.TypeA, dns.RcodeNameError, "", "example.net."))
	f.Add(msg("www.example.com.", dns.TypeA, 0, "www.example.com. 60 IN A 192.0.2.1", ""))
	f.Fuzz(func(t *testing.T, m []byte) {
		k := responseKey(m)
		// Whatever miekg/dns can read must be keyed by its question.
		var msg dns.Msg
		if msg.Unpack(m) != nil || len(msg.Question) == 0 || msg.Rcode != dns.RcodeSuccess || len(msg.Answer) == 0 {
			return
		}
		if k.class != classAnswer || k.qtype != msg.Question[0].Qtype {
			t.Fatalf("key %+v for %v", k, &msg)
		}
	})
}
