package guard

import (
	"net/netip"
	"testing"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/resolver"
	"github.com/sinkhole-dns/sinkhole/resolver/acl"
	"github.com/sinkhole-dns/sinkhole/resolver/ratelimit"
)

func ap(s string) netip.AddrPort { return netip.AddrPortFrom(netip.MustParseAddr(s), 40000) }

func TestAdmit(t *testing.T) {
	allow := acl.MustParse("192.0.2.0/24")
	g := New(Config{Allow: allow, Clients: ratelimit.NewClients(ratelimit.ClientsConfig{QPS: 0.001, Burst: 2})})
	want := []resolver.Admission{resolver.Admit, resolver.Admit, resolver.Drop}
	for i, w := range want {
		if got := g.Admit(ap("192.0.2.1"), "udp"); got != w {
			t.Fatalf("inside query %d: %v, want %v", i, got, w)
		}
	}
	// Outside: REFUSED while within the rate, then dropped.
	want = []resolver.Admission{resolver.Refuse, resolver.Refuse, resolver.Drop}
	for i, w := range want {
		if got := g.Admit(ap("198.51.100.1"), "tcp"); got != w {
			t.Fatalf("outside query %d: %v, want %v", i, got, w)
		}
	}
	if g.ACLRefused.Load() != 2 || g.RateLimited.Load() != 2 || g.ACLDropped.Load() != 0 {
		t.Fatalf("counters: refused %d limited %d dropped %d", g.ACLRefused.Load(), g.RateLimited.Load(), g.ACLDropped.Load())
	}

	// Drop action: outsiders never reach the rate table.
	lim := ratelimit.NewClients(ratelimit.ClientsConfig{QPS: 1})
	g = New(Config{Allow: allow, Drop: true, Clients: lim})
	for i := 0; i < 5; i++ {
		if got := g.Admit(ap("198.51.100.1"), "udp"); got != resolver.Drop {
			t.Fatalf("drop action: %v", got)
		}
	}
	if g.ACLDropped.Load() != 5 || lim.Tracked() != 0 {
		t.Fatalf("dropped %d, tracked %d", g.ACLDropped.Load(), lim.Tracked())
	}

	var cfg resolver.ServerConfig
	New(Config{}).Hooks(&cfg)
	if cfg.Admit != nil || cfg.LimitResponse != nil {
		t.Fatal("hooks installed with nothing to do")
	}
}

func TestLimitResponse(t *testing.T) {
	g := New(Config{RRL: ratelimit.NewRRL(ratelimit.RRLConfig{Rate: 1, Slip: 2})})
	m := new(dns.Msg)
	m.SetQuestion("x.test.", dns.TypeA)
	m.Response = true
	m.Rcode = dns.RcodeNameError
	out, _ := m.Pack()
	var got []resolver.Limit
	for i := 0; i < 5; i++ {
		got = append(got, g.LimitResponse(ap("2001:db8::1"), out))
	}
	if got[0] != resolver.Send || g.RRLSlipped.Load()+g.RRLDropped.Load() != 4 || g.RRLSlipped.Load() != 2 {
		t.Fatalf("verdicts %v, slipped %d, dropped %d", got, g.RRLSlipped.Load(), g.RRLDropped.Load())
	}
}
