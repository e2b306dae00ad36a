package resolver_test

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/blocklist"
	"github.com/sinkhole-dns/sinkhole/resolver"
	"github.com/sinkhole-dns/sinkhole/resolver/query"
)

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func slogTo(w *syncBuffer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

// answerA answers every query with one A record.
func answerA(_ context.Context, req *query.Request) (*dns.Msg, error) {
	m := query.Reply(req.Msg, dns.RcodeSuccess)
	rr, _ := dns.NewRR(req.Msg.Question[0].Name + " 60 IN A 192.0.2.1")
	m.Answer = append(m.Answer, rr)
	return m, nil
}

// startServer runs a Server on loopback with cfg's handler and hooks.
func startServer(t *testing.T, cfg resolver.ServerConfig) *resolver.Server {
	t.Helper()
	cfg.Listen = []string{"127.0.0.1:0"}
	cfg.Snapshot = blocklist.Empty
	if cfg.UDPSockets == 0 {
		cfg.UDPSockets = 2
	}
	if cfg.Handler == nil {
		cfg.Handler = query.HandlerFunc(answerA)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s, err := resolver.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	return s
}

// client returns a DNS client bound to source address src ("" for any).
func client(proto, src string, timeout time.Duration) *dns.Client {
	c := &dns.Client{Net: proto, Timeout: timeout}
	if src != "" {
		ip := net.ParseIP(src)
		if proto == "tcp" {
			c.Dialer = &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: timeout}
		} else {
			c.Dialer = &net.Dialer{LocalAddr: &net.UDPAddr{IP: ip}, Timeout: timeout}
		}
	}
	return c
}

func question(name string) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeA)
	m.SetEdns0(1232, false)
	return m
}

func TestHandlerPanicAnswersServFail(t *testing.T) {
	var panics atomic.Uint64
	logs := &syncBuffer{}
	h := query.HandlerFunc(func(ctx context.Context, req *query.Request) (*dns.Msg, error) {
		if strings.HasPrefix(req.Name, "panic") {
			var m map[string]int
			m["boom"]++ // nil map write
		}
		return answerA(ctx, req)
	})
	s := startServer(t, resolver.ServerConfig{Handler: h, Panics: &panics, Logger: slogTo(logs)})
	addr := s.Addrs()[0]
	for _, proto := range []string{"udp", "tcp", "udp"} {
		r, _, err := client(proto, "", 5*time.Second).Exchange(question("panic.test"), addr)
		if err != nil {
			t.Fatalf("%s: %v", proto, err)
		}
		if r.Rcode != dns.RcodeServerFailure || len(r.Question) != 1 || r.Question[0].Name != "panic.test." {
			t.Fatalf("%s: panic answered %v", proto, r)
		}
		e := r.IsEdns0()
		if e == nil || len(e.Option) != 1 || e.Option[0].(*dns.EDNS0_EDE).ExtraText != "internal error" {
			t.Fatalf("%s: EDE %v", proto, e)
		}
	}
	if panics.Load() != 3 {
		t.Fatalf("%d panics counted, want 3", panics.Load())
	}
	// Logged once a second at most, with the query; the stack only once.
	log := logs.String()
	if n := strings.Count(log, "query handler panic"); n < 1 || n > 2 || !strings.Contains(log, "name=panic.test") ||
		strings.Count(log, "stack=") != 1 {
		t.Fatalf("panic log:\n%s", log)
	}
	// The server still serves.
	r, _, err := client("udp", "", 5*time.Second).Exchange(question("fine.test"), addr)
	if err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Fatalf("after panics: %v %v", r, err)
	}
}

func TestAdmitHook(t *testing.T) {
	var served atomic.Int64
	h := query.HandlerFunc(func(ctx context.Context, req *query.Request) (*dns.Msg, error) {
		served.Add(1)
		return answerA(ctx, req)
	})
	admit := func(c netip.AddrPort, proto string) resolver.Admission {
		switch c.Addr().String() {
		case "127.0.0.2":
			return resolver.Refuse
		case "127.0.0.3":
			return resolver.Drop
		}
		return resolver.Admit
	}
	s := startServer(t, resolver.ServerConfig{Handler: h, Admit: admit})
	addr := s.Addrs()[0]
	for _, proto := range []string{"udp", "tcp"} {
		q := question("www.example.test")
		r, _, err := client(proto, "127.0.0.2", 5*time.Second).Exchange(q, addr)
		if err != nil || r.Rcode != dns.RcodeRefused || r.Id != q.Id || len(r.Answer) != 0 || r.Question[0].Name != "www.example.test." {
			t.Fatalf("%s refused client: %v %v", proto, r, err)
		}
		if _, _, err := client(proto, "127.0.0.3", 300*time.Millisecond).Exchange(question("www.example.test"), addr); err == nil {
			t.Fatalf("%s dropped client got an answer", proto)
		}
		if r, _, err := client(proto, "127.0.0.1", 5*time.Second).Exchange(question("www.example.test"), addr); err != nil || len(r.Answer) != 1 {
			t.Fatalf("%s admitted client: %v %v", proto, r, err)
		}
	}
	if served.Load() != 2 {
		t.Fatalf("chain ran %d times, want 2 (admitted queries only)", served.Load())
	}
}

func TestLimitResponseHook(t *testing.T) {
	var calls atomic.Int64
	limit := func(c netip.AddrPort, out []byte) resolver.Limit {
		calls.Add(1)
		var resp dns.Msg
		if err := resp.Unpack(out); err != nil {
			t.Errorf("hook sees an unparsable answer: %v", err)
			return resolver.Send
		}
		switch resp.Question[0].Name {
		case "slip.test.":
			return resolver.Slip
		case "drop.test.":
			return resolver.Suppress
		}
		return resolver.Send
	}
	s := startServer(t, resolver.ServerConfig{LimitResponse: limit})
	addr := s.Addrs()[0]
	q := question("slip.test")
	r, _, err := client("udp", "", 5*time.Second).Exchange(q, addr)
	if err != nil || !r.Truncated || r.Rcode != dns.RcodeSuccess || r.Id != q.Id || !r.Response || len(r.Answer)+len(r.Ns)+len(r.Extra) != 0 ||
		len(r.Question) != 1 || r.Question[0].Name != "slip.test." {
		t.Fatalf("slipped: %v %v", r, err)
	}
	if _, _, err := client("udp", "", 300*time.Millisecond).Exchange(question("drop.test"), addr); err == nil {
		t.Fatal("suppressed response arrived")
	}
	// TCP is never limited.
	if r, _, err := client("tcp", "", 5*time.Second).Exchange(question("drop.test"), addr); err != nil || len(r.Answer) != 1 {
		t.Fatalf("tcp: %v %v", r, err)
	}
	if calls.Load() != 2 {
		t.Fatalf("hook called %d times, want 2 (UDP only)", calls.Load())
	}
}

func TestShutdownAnswersInFlight(t *testing.T) {
	var arrived atomic.Int64
	release := make(chan struct{})
	h := query.HandlerFunc(func(ctx context.Context, req *query.Request) (*dns.Msg, error) {
		arrived.Add(1)
		<-release
		return answerA(ctx, req)
	})
	s := startServer(t, resolver.ServerConfig{Handler: h})
	addr := s.Addrs()[0]
	const n = 24
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		proto := "udp"
		if i%3 == 0 {
			proto = "tcp"
		}
		go func() {
			r, _, err := client(proto, "", 10*time.Second).Exchange(question("slow.test"), addr)
			if err == nil && len(r.Answer) != 1 {
				err = &net.AddrError{Err: "no answer record", Addr: proto}
			}
			errs <- err
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for arrived.Load() < n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if arrived.Load() != n {
		t.Fatalf("%d of %d queries arrived", arrived.Load(), n)
	}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- s.Shutdown(ctx)
	}()
	time.Sleep(200 * time.Millisecond) // shutdown is waiting for the handlers
	close(release)
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil {
			t.Errorf("in-flight query: %v", err)
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

func TestMaxInflightSheds(t *testing.T) {
	var arrived atomic.Int64
	release := make(chan struct{})
	h := query.HandlerFunc(func(ctx context.Context, req *query.Request) (*dns.Msg, error) {
		arrived.Add(1)
		<-release
		return answerA(ctx, req)
	})
	s := startServer(t, resolver.ServerConfig{Handler: h, MaxInflight: 3})
	addr := s.Addrs()[0]
	results := make(chan error, 6)
	ask := func(timeout time.Duration) {
		_, _, err := client("udp", "", timeout).Exchange(question("slow.test"), addr)
		results <- err
	}
	for i := 0; i < 3; i++ {
		go ask(10 * time.Second)
	}
	deadline := time.Now().Add(10 * time.Second)
	for arrived.Load() < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	// Three more while the chain is full: shed at once.
	for i := 0; i < 3; i++ {
		go ask(time.Second)
	}
	for s.Overloaded() < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if s.Overloaded() != 3 || arrived.Load() != 3 {
		t.Fatalf("overloaded %d, arrived %d", s.Overloaded(), arrived.Load())
	}
	close(release)
	answered := 0
	for i := 0; i < 6; i++ {
		if <-results == nil {
			answered++
		}
	}
	if answered != 3 {
		t.Fatalf("%d answered, want the 3 admitted", answered)
	}
}
