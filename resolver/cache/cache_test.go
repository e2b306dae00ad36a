package cache

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/blocklist"
	"github.com/sinkhole-dns/sinkhole/internal/dnstest"
	"github.com/sinkhole-dns/sinkhole/resolver/policy"
	"github.com/sinkhole-dns/sinkhole/resolver/query"
	"github.com/sinkhole-dns/sinkhole/resolver/upstream"
)

// clock is a test clock the cache reads.
type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }
func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

// rig is a cache in front of the real policy stages and upstream pool,
// against a real loopback DNS server.
type rig struct {
	up    *dnstest.Server
	store *blocklist.Store
	lists string
	cache *Cache
	clock *clock
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// rigTimeout is the per-try upstream timeout of test rigs: generous, so a
// slow, busy machine does not fail a try that tests expect to succeed.
const rigTimeout = 2 * time.Second

func newRig(t *testing.T, cfg Config, opts dnstest.Options) *rig {
	return newRigTimeout(t, cfg, opts, rigTimeout)
}

func newRigTimeout(t *testing.T, cfg Config, opts dnstest.Options, timeout time.Duration) *rig {
	t.Helper()
	up, err := dnstest.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(up.Close)
	r := &rig{up: up, lists: t.TempDir(), clock: newClock()}
	r.store = blocklist.NewStore(blocklist.Options{Dirs: []string{r.lists}, Logger: quiet()})
	r.reload(t)
	pool, err := upstream.New(upstream.Config{Addrs: []string{up.Addr}, Timeout: timeout, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	block := &policy.Blocker{Default: blocklist.ActionNXDomain, TTL: 300}
	answer := &policy.Answer{Block: block, Next: pool}
	question := &policy.Question{Block: block, Next: answer}
	cfg.Next = question
	if cfg.Decider == nil {
		cfg.Decider = &policy.Decider{Question: question, Answer: answer}
	}
	cfg.Snapshot = r.store.Current
	cfg.Now = r.clock.now
	cfg.Logger = quiet()
	r.cache = New(cfg)
	return r
}

func (r *rig) reload(t *testing.T) {
	t.Helper()
	if _, err := r.store.Reload(context.Background(), "test"); err != nil {
		t.Fatal(err)
	}
}

func (r *rig) setList(t *testing.T, body string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(r.lists, "l.txt"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	r.reload(t)
}

// ask sends one query through the cache's full path.
func (r *rig) ask(t *testing.T, name string, qtype uint16) (*dns.Msg, *query.Request) {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.SetEdns0(1232, false)
	req := query.NewRequest(m, netip.MustParseAddrPort("127.0.0.1:5000"), "udp", r.store.Current())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := r.cache.ServeDNS(ctx, req)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if resp.Id != m.Id {
		t.Fatalf("ID %d, want %d", resp.Id, m.Id)
	}
	return resp, req
}

func ttlOf(t *testing.T, m *dns.Msg) uint32 {
	t.Helper()
	if len(m.Answer) > 0 {
		return m.Answer[0].Header().Ttl
	}
	if len(m.Ns) > 0 {
		return m.Ns[0].Header().Ttl
	}
	t.Fatalf("no records: %v", m)
	return 0
}

func TestTTLCountdownAndExpiry(t *testing.T) {
	r := newRig(t, Config{}, dnstest.Options{Records: []string{"a.test. 300 IN A 192.0.2.1"}})
	m, req := r.ask(t, "a.test", dns.TypeA)
	if ttlOf(t, m) != 300 || req.Info.Cached || r.up.Queries() != 1 {
		t.Fatalf("first answer: ttl %d cached %v queries %d", ttlOf(t, m), req.Info.Cached, r.up.Queries())
	}
	r.clock.advance(100 * time.Second)
	m, req = r.ask(t, "A.TEST", dns.TypeA) // case-insensitive key
	if ttlOf(t, m) != 200 || !req.Info.Cached || r.up.Queries() != 1 {
		t.Fatalf("after 100s: ttl %d cached %v queries %d", ttlOf(t, m), req.Info.Cached, r.up.Queries())
	}
	if m.Question[0].Name != "A.TEST." {
		t.Fatalf("question not echoed in the client's case: %s", m.Question[0].Name)
	}
	r.clock.advance(200 * time.Second)
	if _, req = r.ask(t, "a.test", dns.TypeA); req.Info.Cached || r.up.Queries() != 2 {
		t.Fatalf("expired entry served: cached %v queries %d", req.Info.Cached, r.up.Queries())
	}
	// DO differs: a separate entry.
	m2 := new(dns.Msg)
	m2.SetQuestion("a.test.", dns.TypeA)
	m2.SetEdns0(1232, true)
	req2 := query.NewRequest(m2, netip.AddrPort{}, "udp", r.store.Current())
	if _, err := r.cache.ServeDNS(context.Background(), req2); err != nil || req2.Info.Cached {
		t.Fatalf("DO query hit the non-DO entry")
	}
}

func TestNegativeCachingFromSOA(t *testing.T) {
	// dnstest's SOA: TTL 60, MINIMUM 30: negative answers live 30 s.
	r := newRig(t, Config{}, dnstest.Options{Records: []string{"nodata.test. 300 IN A 192.0.2.1"}})
	for _, tc := range []struct {
		name  string
		qtype uint16
		rcode int
	}{{"nx.test", dns.TypeA, dns.RcodeNameError}, {"nodata.test", dns.TypeMX, dns.RcodeSuccess}} {
		before := r.up.Queries()
		m, _ := r.ask(t, tc.name, tc.qtype)
		if m.Rcode != tc.rcode || ttlOf(t, m) != 30 {
			t.Fatalf("%s: rcode %d ttl %d", tc.name, m.Rcode, ttlOf(t, m))
		}
		r.clock.advance(29 * time.Second)
		if m, req := r.ask(t, tc.name, tc.qtype); !req.Info.Cached || ttlOf(t, m) != 1 || m.Rcode != tc.rcode {
			t.Fatalf("%s at 29s: cached %v ttl %d", tc.name, req.Info.Cached, ttlOf(t, m))
		}
		r.clock.advance(2 * time.Second)
		if _, req := r.ask(t, tc.name, tc.qtype); req.Info.Cached || r.up.Queries() != before+2 {
			t.Fatalf("%s at 31s still cached", tc.name)
		}
	}
	// Without an SOA a negative answer is not cached (RFC 2308).
	r2 := newRig(t, Config{}, dnstest.Options{NoSOA: true})
	r2.ask(t, "nx.test", dns.TypeA)
	if _, req := r2.ask(t, "nx.test", dns.TypeA); req.Info.Cached || r2.up.Queries() != 2 {
		t.Fatal("negative answer without SOA was cached")
	}
}

func TestTTLClamps(t *testing.T) {
	r := newRig(t, Config{MinTTL: 60 * time.Second, MaxTTL: 100 * time.Second},
		dnstest.Options{Records: []string{"short.test. 5 IN A 192.0.2.1", "long.test. 3600 IN A 192.0.2.2"}})
	if m, _ := r.ask(t, "short.test", dns.TypeA); ttlOf(t, m) != 60 {
		t.Fatalf("min clamp: %d", ttlOf(t, m))
	}
	if m, _ := r.ask(t, "long.test", dns.TypeA); ttlOf(t, m) != 100 {
		t.Fatalf("max clamp: %d", ttlOf(t, m))
	}
	r.clock.advance(59 * time.Second)
	if _, req := r.ask(t, "short.test", dns.TypeA); !req.Info.Cached {
		t.Fatal("short TTL entry not kept for the minimum")
	}
	r.clock.advance(42 * time.Second)
	if _, req := r.ask(t, "long.test", dns.TypeA); req.Info.Cached {
		t.Fatal("long TTL entry kept past the maximum")
	}
}

func TestEvictionKeepsHotEntries(t *testing.T) {
	recs := []string{"hot.test. 3600 IN A 192.0.2.1"}
	r := newRig(t, Config{Size: 256}, dnstest.Options{CatchAll: true, Records: recs})
	r.ask(t, "hot.test", dns.TypeA)
	for i := 0; i < 2000; i++ {
		r.ask(t, fmt.Sprintf("cold%d.test", i), dns.TypeA)
		if _, req := r.ask(t, "hot.test", dns.TypeA); !req.Info.Cached {
			t.Fatalf("hot entry evicted after %d cold inserts", i)
		}
	}
	if n := r.cache.Len(); n > 256+numShards {
		t.Fatalf("cache holds %d entries, size 256", n)
	}
	if ev := r.cache.Stats().Evictions.Load(); ev < 1000 {
		t.Fatalf("only %d evictions", ev)
	}
	if q := r.up.QueriesFor("hot.test"); q != 1 {
		t.Fatalf("hot name asked upstream %d times", q)
	}
}

func TestCoalescing(t *testing.T) {
	r := newRig(t, Config{}, dnstest.Options{Records: []string{"slow.test. 300 IN A 192.0.2.1"}})
	r.up.Delay = 300 * time.Millisecond
	r.up.SetFault("slow.test", dnstest.FaultSlow)
	var wg sync.WaitGroup
	var answered atomic.Int32
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := new(dns.Msg)
			m.SetQuestion("slow.test.", dns.TypeA)
			req := query.NewRequest(m, netip.AddrPort{}, "udp", r.store.Current())
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			resp, err := r.cache.ServeDNS(ctx, req)
			if err == nil && resp.Rcode == dns.RcodeSuccess && len(resp.Answer) == 1 && resp.Id == m.Id {
				answered.Add(1)
			}
		}()
	}
	wg.Wait()
	if answered.Load() != 20 {
		t.Fatalf("%d of 20 answered", answered.Load())
	}
	if q := r.up.QueriesFor("slow.test"); q != 1 {
		t.Fatalf("20 concurrent misses made %d upstream queries", q)
	}
	if r.cache.Stats().Coalesced.Load() == 0 {
		t.Fatal("no coalesced misses counted")
	}
}

func TestServeStale(t *testing.T) {
	r := newRigTimeout(t, Config{ServeStale: time.Hour}, dnstest.Options{Records: []string{"a.test. 60 IN A 192.0.2.1"}}, 300*time.Millisecond)
	r.ask(t, "a.test", dns.TypeA)
	r.clock.advance(2 * time.Minute)
	r.up.SetFault("*", dnstest.FaultSilent) // every upstream gone
	m, req := r.ask(t, "a.test", dns.TypeA)
	if m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 || ttlOf(t, m) != StaleTTL || !req.Info.Stale {
		t.Fatalf("stale answer: %v", m)
	}
	var ede *dns.EDNS0_EDE
	for _, o := range m.IsEdns0().Option {
		ede, _ = o.(*dns.EDNS0_EDE)
	}
	if ede == nil || ede.InfoCode != dns.ExtendedErrorCodeStaleAnswer {
		t.Fatalf("no EDE 3: %v", m)
	}
	// Past the stale window: nothing to serve.
	r.clock.advance(2 * time.Hour)
	m2 := new(dns.Msg)
	m2.SetQuestion("a.test.", dns.TypeA)
	req2 := query.NewRequest(m2, netip.AddrPort{}, "udp", r.store.Current())
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if resp, err := r.cache.ServeDNS(ctx, req2); err == nil && resp.Rcode == dns.RcodeSuccess {
		t.Fatal("answer served beyond the stale window")
	}
	// Without --serve-stale an expired entry is never served.
	r3 := newRigTimeout(t, Config{}, dnstest.Options{Records: []string{"a.test. 60 IN A 192.0.2.1"}}, 300*time.Millisecond)
	r3.ask(t, "a.test", dns.TypeA)
	r3.clock.advance(2 * time.Minute)
	r3.up.SetFault("*", dnstest.FaultSilent)
	ctx3, cancel3 := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel3()
	m3 := new(dns.Msg)
	m3.SetQuestion("a.test.", dns.TypeA)
	if resp, err := r3.cache.ServeDNS(ctx3, query.NewRequest(m3, netip.AddrPort{}, "udp", r3.store.Current())); err == nil && resp.Rcode == dns.RcodeSuccess {
		t.Fatal("stale answer served with serve-stale off")
	}
}

func TestInvalidationOnReload(t *testing.T) {
	r := newRig(t, Config{}, dnstest.Options{Records: []string{
		"x.test. 300 IN A 192.0.2.1",
		"y.test. 300 IN A 203.0.113.9",
	}})
	r.setList(t, "other.test\n")
	if m, _ := r.ask(t, "x.test", dns.TypeA); m.Rcode != dns.RcodeSuccess {
		t.Fatal("x.test not answered")
	}
	r.ask(t, "y.test", dns.TypeA)
	// The list now blocks x.test by name and y.test's address.
	r.setList(t, "# platform: P\nx.test\n203.0.113.0/24\n")
	m, req := r.ask(t, "x.test", dns.TypeA)
	if m.Rcode != dns.RcodeNameError || req.Info.Decision == nil {
		t.Fatalf("cached answer served after the list blocked it: %v", m)
	}
	m, req = r.ask(t, "y.test", dns.TypeA)
	if m.Rcode != dns.RcodeNameError || req.Info.Decision == nil || req.Info.Decision.Trigger != query.TriggerIP {
		t.Fatalf("cached answer with a now-listed address served: %v", m)
	}
	// Re-deciding used the answers the cache held: no new upstream queries.
	if q := r.up.Queries(); q != 2 {
		t.Fatalf("re-deciding asked upstream: %d queries", q)
	}
	// The new decisions are cached under the new generation.
	if _, req = r.ask(t, "y.test", dns.TypeA); !req.Info.Cached || req.Info.Decision == nil {
		t.Fatal("re-decided block not cached")
	}
	// Unblock again: y.test's held answer is served from the cache's copy;
	// x.test (blocked by name, no upstream answer held) is asked again.
	r.setList(t, "other.test\n")
	if m, _ = r.ask(t, "y.test", dns.TypeA); m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 {
		t.Fatalf("unblocked y.test: %v", m)
	}
	if m, _ = r.ask(t, "x.test", dns.TypeA); m.Rcode != dns.RcodeSuccess {
		t.Fatalf("unblocked x.test: %v", m)
	}
	if q := r.up.Queries(); q != 2 {
		t.Fatalf("queries %d, want 2: both answers held since the first fetch are still fresh", q)
	}
}

func TestPrefetch(t *testing.T) {
	r := newRig(t, Config{Prefetch: true}, dnstest.Options{Records: []string{"p.test. 100 IN A 192.0.2.1"}})
	r.ask(t, "p.test", dns.TypeA)
	r.clock.advance(50 * time.Second)
	r.ask(t, "p.test", dns.TypeA) // popular: hit once
	r.clock.advance(45 * time.Second)
	r.ask(t, "p.test", dns.TypeA) // last tenth of its TTL: refresh in the background
	deadline := time.Now().Add(5 * time.Second)
	for r.up.QueriesFor("p.test") < 2 {
		if time.Now().After(deadline) {
			t.Fatal("no prefetch")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The refreshed entry is fresh again.
	deadline = time.Now().Add(5 * time.Second)
	for {
		r.clock.advance(0)
		m, req := r.ask(t, "p.test", dns.TypeA)
		if req.Info.Cached && ttlOf(t, m) == 100 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("prefetched entry not stored: ttl %d", ttlOf(t, m))
		}
		time.Sleep(5 * time.Millisecond)
	}
	if r.cache.Stats().Prefetches.Load() != 1 {
		t.Fatalf("prefetches %d", r.cache.Stats().Prefetches.Load())
	}
}

func TestAnswerWire(t *testing.T) {
	r := newRig(t, Config{}, dnstest.Options{Records: []string{"w.test. 300 IN A 192.0.2.1"}})
	r.ask(t, "w.test", dns.TypeA)
	r.clock.advance(10 * time.Second)
	for _, edns := range []bool{false, true} {
		q := new(dns.Msg)
		q.SetQuestion("W.Test.", dns.TypeA)
		q.Id = 4242
		if edns {
			q.SetEdns0(1232, false)
		}
		pkt, _ := q.Pack()
		var wq query.WireQuery
		if err := query.ParseWireQuery(pkt, make([]byte, 0, 262), &wq); err != nil {
			t.Fatal(err)
		}
		wq.Limit = wq.UDPSize
		o := &query.Offered{Snapshot: r.store.Current(), Out: make([]byte, 65535)}
		if v := r.cache.Offer(&wq, o); v != query.Answered || o.Name != "w.test" || o.Info.Rcode != dns.RcodeSuccess || !o.Cached {
			t.Fatalf("wire miss (edns %v): %v", edns, v)
		}
		m := new(dns.Msg)
		if err := m.Unpack(o.Out[:o.N]); err != nil {
			t.Fatal(err)
		}
		if m.Id != 4242 || m.Question[0].Name != "W.Test." || ttlOf(t, m) != 290 || (m.IsEdns0() != nil) != edns {
			t.Fatalf("wire answer: %v", m)
		}
	}
	// A different generation passes the query on.
	q := new(dns.Msg)
	q.SetQuestion("w.test.", dns.TypeA)
	pkt, _ := q.Pack()
	var wq query.WireQuery
	query.ParseWireQuery(pkt, make([]byte, 0, 262), &wq)
	wq.Limit = 512
	other := *r.store.Current()
	other.Generation = 99
	if v := r.cache.Offer(&wq, &query.Offered{Snapshot: &other, Out: make([]byte, 65535)}); v != query.Pass {
		t.Fatalf("entry under another generation: %v, want Pass", v)
	}
}

// TestOfferReadTime: with the real clock (Config.Now nil), the hit path
// decides freshness and the TTL by the read's time (Offered.Now, one clock
// read per UDP batch); a test clock (Config.Now set) always wins.
func TestOfferReadTime(t *testing.T) {
	r := newRig(t, Config{}, dnstest.Options{Records: []string{"w.test. 300 IN A 192.0.2.1"}})
	r.ask(t, "w.test", dns.TypeA) // stored at the rig clock's time
	stored := r.clock.now()
	q := new(dns.Msg)
	q.SetQuestion("w.test.", dns.TypeA)
	pkt, _ := q.Pack()
	var wq query.WireQuery
	if err := query.ParseWireQuery(pkt, make([]byte, 0, 262), &wq); err != nil {
		t.Fatal(err)
	}
	wq.Limit = wq.UDPSize
	for _, c := range []struct {
		name     string
		realTime bool          // Config.Now nil, as in sinkhole serve
		readAt   time.Duration // Offered.Now after the store (-1: zero, not set)
		want     query.Verdict
		ttl      uint32
	}{
		{"read time, fresh", true, 10 * time.Second, query.Answered, 290},
		{"read time, expired", true, 301 * time.Second, query.Pass, 0},
		{"no read time: the clock", true, -1, query.Answered, 300},
		{"test clock wins over the read time", false, 301 * time.Second, query.Answered, 300},
	} {
		t.Run(c.name, func(t *testing.T) {
			saved := r.cache.cfg.Now
			defer func() { r.cache.cfg.Now = saved }()
			if c.realTime {
				r.cache.cfg.Now = nil // the fallback (c.now) is still the rig's clock
			}
			o := &query.Offered{Snapshot: r.store.Current(), Out: make([]byte, 65535)}
			if c.readAt >= 0 {
				o.Now = stored.Add(c.readAt)
			}
			v := r.cache.Offer(&wq, o)
			if v != c.want {
				t.Fatalf("verdict %v, want %v", v, c.want)
			}
			if v != query.Answered {
				return
			}
			m := new(dns.Msg)
			if err := m.Unpack(o.Out[:o.N]); err != nil {
				t.Fatal(err)
			}
			if got := ttlOf(t, m); got != c.ttl {
				t.Fatalf("ttl %d, want %d", got, c.ttl)
			}
		})
	}
}

func TestEpochChangeRedecides(t *testing.T) {
	var epoch atomic.Uint64
	r := newRig(t, Config{Epoch: epoch.Load}, dnstest.Options{Records: []string{"e.test. 300 IN A 192.0.2.1"}})
	r.ask(t, "e.test", dns.TypeA)
	if _, req := r.ask(t, "e.test", dns.TypeA); !req.Info.Cached {
		t.Fatal("not cached")
	}
	epoch.Add(1) // e.g. a GeoIP database was replaced
	if _, req := r.ask(t, "e.test", dns.TypeA); req.Info.Cached || req.Info.Upstream != "cache" {
		t.Fatalf("entry of an old epoch served as is (cached %v, upstream %q)", req.Info.Cached, req.Info.Upstream)
	}
	if r.up.Queries() != 1 {
		t.Fatalf("re-deciding asked upstream: %d", r.up.Queries())
	}
}
