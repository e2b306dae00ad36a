package upstream_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/internal/dnstest"
	"github.com/sinkhole-dns/sinkhole/resolver/query"
	"github.com/sinkhole-dns/sinkhole/resolver/upstream"
)

var quiet = slog.New(slog.DiscardHandler)

func start(t *testing.T, records ...string) *dnstest.Server {
	t.Helper()
	s, err := dnstest.Start(dnstest.Options{Records: records})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func newPool(t *testing.T, cfg upstream.Config) *upstream.Pool {
	t.Helper()
	cfg.Logger = quiet
	p, err := upstream.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func newQuery(name string) *dns.Msg {
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), dns.TypeA)
	q.SetEdns0(1232, false)
	return q
}

func exchange(t *testing.T, p *upstream.Pool, name string) (*dns.Msg, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	q := newQuery(name)
	r, up, err := p.Exchange(ctx, q)
	if err == nil && (r.Id != q.Id || r.Question[0].Name != q.Question[0].Name) {
		t.Fatalf("answer %v does not match query %v", r, q)
	}
	return r, up, err
}

func firstA(r *dns.Msg) string {
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok {
			return a.A.String()
		}
	}
	return ""
}

func TestMismatchedAnswersNeverTrusted(t *testing.T) {
	good := start(t, "x.test. 60 IN A 192.0.2.2")
	for _, f := range []struct {
		name  string
		fault dnstest.Fault
	}{
		{"wrong ID", dnstest.FaultWrongID},
		{"wrong question", dnstest.FaultWrongQ},
		{"garbage", dnstest.FaultGarbage},
		{"short", dnstest.FaultShort},
	} {
		t.Run(f.name, func(t *testing.T) {
			bad := start(t, "x.test. 60 IN A 192.0.2.1")
			bad.SetFault("*", f.fault)
			p := newPool(t, upstream.Config{Addrs: []string{bad.Addr, good.Addr}, Timeout: 300 * time.Millisecond})
			r, up, err := exchange(t, p, "x.test")
			if err != nil || up != good.Addr || firstA(r) != "192.0.2.2" {
				t.Fatalf("answer %v from %s, err %v; want 192.0.2.2 from the good upstream", r, up, err)
			}
			// The query is sent again half-way through the try, in case the
			// real answer was lost among the bad ones: its answer is dropped
			// too (when it comes back in time on a busy machine).
			if h := p.Health()[0]; h.Mismatched == 0 || h.Mismatched > 2 || !strings.Contains(h.LastError, "dropped") {
				t.Fatalf("bad upstream health %+v", h)
			}
		})
	}
}

// spoofer answers each query with three bogus packets and then the real
// answer, as an off-path attacker racing the real upstream would.
func spoofer(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			q := new(dns.Msg)
			if q.Unpack(buf[:n]) != nil {
				continue
			}
			real := new(dns.Msg)
			real.SetReply(q)
			rr, _ := dns.NewRR(q.Question[0].Name + " 60 IN A 192.0.2.2")
			real.Answer = []dns.RR{rr}
			poison := real.Copy()
			poison.Answer[0].(*dns.A).A = net.IPv4(203, 0, 113, 66)
			wrongID := poison.Copy()
			wrongID.Id++
			wrongQ := poison.Copy()
			wrongQ.Question[0].Name = "other.test."
			for _, m := range []*dns.Msg{wrongID, wrongQ} {
				out, _ := m.Pack()
				pc.WriteTo(out, from)
			}
			pc.WriteTo([]byte("\x00\x01garbage"), from)
			out, _ := real.Pack()
			pc.WriteTo(out, from)
		}
	}()
	return pc.LocalAddr().String()
}

func TestSpoofedAnswersDoNotCutTheExchangeShort(t *testing.T) {
	addr := spoofer(t)
	p := newPool(t, upstream.Config{Addrs: []string{addr}, Timeout: 2 * time.Second})
	for i := 0; i < 3; i++ {
		r, _, err := exchange(t, p, "www.example.test")
		if err != nil || firstA(r) != "192.0.2.2" {
			t.Fatalf("answer %v, err %v; want the real answer 192.0.2.2", r, err)
		}
	}
	if h := p.Health()[0]; h.Mismatched != 9 || h.Failures != 0 || !h.Healthy {
		t.Fatalf("health %+v; want 9 mismatched, no failures", h)
	}
}

func TestUnhealthyThenProbedBack(t *testing.T) {
	good := start(t, "x.test. 60 IN A 192.0.2.2")
	bad := start(t, "x.test. 60 IN A 192.0.2.1")
	bad.SetFault("*", dnstest.FaultSilent)
	p := newPool(t, upstream.Config{Addrs: []string{bad.Addr, good.Addr}, Timeout: 200 * time.Millisecond,
		FailThreshold: 2, ProbeInterval: 50 * time.Millisecond})
	for i := 0; i < 2; i++ {
		if r, up, err := exchange(t, p, "x.test"); err != nil || up != good.Addr || firstA(r) != "192.0.2.2" {
			t.Fatalf("failover %d: %v %s %v", i, r, up, err)
		}
	}
	if p.Health()[0].Healthy {
		t.Fatal("bad upstream still healthy after 2 failures")
	}
	// Unhealthy: tried after the good one, so queries no longer reach it.
	seen := bad.QueriesFor("x.test")
	for i := 0; i < 5; i++ {
		if _, up, err := exchange(t, p, "x.test"); err != nil || up != good.Addr {
			t.Fatalf("while unhealthy: %s %v", up, err)
		}
	}
	if n := bad.QueriesFor("x.test"); n != seen {
		t.Fatalf("unhealthy upstream got %d more queries", n-seen)
	}
	// It is probed meanwhile ("." NS); once it answers it is healthy again.
	bad.SetFault("*", dnstest.FaultNone)
	deadline := time.Now().Add(10 * time.Second)
	for !p.Health()[0].Healthy && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	h := p.Health()[0]
	if !h.Healthy || h.Probes == 0 || bad.QueriesFor(".") == 0 {
		t.Fatalf("not probed back: %+v, %d probes seen", h, bad.QueriesFor("."))
	}
	if r, up, err := exchange(t, p, "x.test"); err != nil || up != bad.Addr || firstA(r) != "192.0.2.1" {
		t.Fatalf("after recovery: %v %s %v", r, up, err)
	}
}

func TestAllUpstreamsDown(t *testing.T) {
	bad := start(t)
	bad.SetFault("*", dnstest.FaultGarbage)
	silent, err := dnstest.StartSilent()
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	p := newPool(t, upstream.Config{Addrs: []string{bad.Addr, silent.Addr}, Timeout: 200 * time.Millisecond})
	_, _, err = exchange(t, p, "x.test")
	var ede *query.EDEError
	if !errors.As(err, &ede) || ede.Code != dns.ExtendedErrorCodeNoReachableAuthority || !strings.Contains(err.Error(), "answers: not a response") {
		t.Fatalf("error %v", err)
	}
}

func TestCloseStopsProbes(t *testing.T) {
	silent, err := dnstest.StartSilent()
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	p, err := upstream.New(upstream.Config{Addrs: []string{silent.Addr}, Logger: quiet, Timeout: 5 * time.Second, FailThreshold: 1, ProbeInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	p.Exchange(ctx, newQuery("x.test"))
	cancel()
	time.Sleep(50 * time.Millisecond) // a probe is waiting for its 5s timeout
	done := make(chan struct{})
	go func() { p.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not stop the probe")
	}
}
