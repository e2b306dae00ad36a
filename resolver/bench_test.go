package resolver_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/blocklist"
	"github.com/sinkhole-dns/sinkhole/internal/dnstest"
	"github.com/sinkhole-dns/sinkhole/resolver"
	"github.com/sinkhole-dns/sinkhole/resolver/cache"
	"github.com/sinkhole-dns/sinkhole/resolver/chaos"
	"github.com/sinkhole-dns/sinkhole/resolver/guard"
	"github.com/sinkhole-dns/sinkhole/resolver/policy"
	"github.com/sinkhole-dns/sinkhole/resolver/query"
	"github.com/sinkhole-dns/sinkhole/resolver/ratelimit"
	"github.com/sinkhole-dns/sinkhole/resolver/upstream"
)

// benchServer builds the server the way serve does (guard hooks, cache,
// question and answer policy, upstream pool to a loopback upstream, the
// status counters as observer), not started: the benchmarks feed it
// packets without sockets.
func benchServer(b *testing.B, opts ...func(*resolver.ServerConfig)) *resolver.Server {
	b.Helper()
	dir := b.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "list.txt"), []byte("blocked.test\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	quiet := slog.New(slog.DiscardHandler)
	store := blocklist.NewStore(blocklist.Options{Dirs: []string{dir}, Logger: quiet})
	if rep, err := store.Reload(context.Background(), "bench"); err != nil || rep.Failed() {
		b.Fatalf("list: %v", err)
	}
	up, err := dnstest.Start(dnstest.Options{CatchAll: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(up.Close)
	pool, err := upstream.New(upstream.Config{Addrs: []string{up.Addr}, Timeout: 2 * time.Second, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	blocker := &policy.Blocker{Default: blocklist.ActionNXDomain, TTL: 300}
	answer := &policy.Answer{Block: blocker}
	question := &policy.Question{Block: blocker, CountryKnown: answer.CountryKnown}
	c := cache.New(cache.Config{Snapshot: store.Current, Logger: quiet, Decider: &policy.Decider{Question: question, Answer: answer}})
	chain, err := query.Chain(&chaos.Stage{}, c, question, answer, pool)
	if err != nil {
		b.Fatal(err)
	}
	g := guard.New(guard.Config{Clients: ratelimit.NewClients(ratelimit.ClientsConfig{}), RRL: ratelimit.NewRRL(ratelimit.RRLConfig{})})
	var stats resolver.Stats
	cfg := resolver.ServerConfig{
		Listen: []string{"127.0.0.1:0"}, Handler: chain, Snapshot: store.Current,
		Observe: stats.Observe, Logger: quiet,
	}
	g.Hooks(&cfg)
	for _, o := range opts {
		o(&cfg)
	}
	s, err := resolver.NewServer(cfg)
	if err != nil {
		b.Fatal(err)
	}
	return s
}

func benchQuery(b *testing.B, name string) []byte {
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	m.SetEdns0(1232, false)
	pkt, err := m.Pack()
	if err != nil {
		b.Fatal(err)
	}
	return pkt
}

// benchPath runs pkt through the server's whole UDP packet path b.N times
// and checks the answer's rcode.
func benchPath(b *testing.B, name string, rcode int) {
	s := benchServer(b)
	pkt := benchQuery(b, name)
	from := netip.MustParseAddrPort("127.0.0.1:40000")
	w := resolver.NewScratch()
	out := s.AnswerUDPInto(w, pkt, from) // a miss fills the cache
	var r dns.Msg
	if err := r.Unpack(s.AnswerUDPInto(w, pkt, from)); err != nil || r.Rcode != rcode {
		b.Fatalf("answer %v (rcode %d, want %d): %v", out, r.Rcode, rcode, err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if out := s.AnswerUDPInto(w, pkt, from); len(out) == 0 {
			b.Fatal("no answer")
		}
	}
}

// BenchmarkServerCacheHit is a cached answer: packet in, packet out,
// through admission, the fast path and the observers.
func BenchmarkServerCacheHit(b *testing.B) { benchPath(b, "www.example.test.", dns.RcodeSuccess) }

// BenchmarkServerBlocked is a name a list blocks outright.
func BenchmarkServerBlocked(b *testing.B) { benchPath(b, "www.blocked.test.", dns.RcodeNameError) }

// benchSocket sends pkt to a started server over one UDP socket in bursts
// of burst queries and reads the answers, b.N queries in all: the read
// loop's cost per query with system calls (batched with batch > 1), beside
// the client's own.
func benchSocket(b *testing.B, name string, batch, burst int) {
	s := benchServer(b, func(c *resolver.ServerConfig) { c.UDPSockets, c.UDPBatch = 1, batch })
	if err := s.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Shutdown(context.Background()) })
	conn, err := net.Dial("udp", s.Addrs()[0])
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	pkt := benchQuery(b, name)
	buf := make([]byte, 4096)
	conn.SetDeadline(time.Now().Add(time.Minute))
	conn.Write(pkt) // a miss fills the cache
	if _, err := conn.Read(buf); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; {
		k := min(burst, b.N-done)
		for i := 0; i < k; i++ {
			if _, err := conn.Write(pkt); err != nil {
				b.Fatal(err)
			}
		}
		for i := 0; i < k; i++ {
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := conn.Read(buf); err != nil {
				b.Fatalf("answer %d of a burst of %d: %v", i+1, k, err)
			}
		}
		done += k
	}
}

// BenchmarkUDPSocket compares the UDP read loop with and without
// recvmmsg/sendmmsg batching on cache hits and blocked names, with the
// client sending bursts of 16 queries.
func BenchmarkUDPSocket(b *testing.B) {
	for _, tc := range []struct {
		name, qname string
	}{{"cached", "www.example.test."}, {"blocked", "www.blocked.test."}} {
		for _, batch := range []int{1, resolver.DefaultUDPBatch} {
			b.Run(fmt.Sprintf("%s/batch=%d", tc.name, batch), func(b *testing.B) { benchSocket(b, tc.qname, batch, 16) })
		}
	}
}
