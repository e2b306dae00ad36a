package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sinkhole-dns/sinkhole/blocklist"
	"github.com/sinkhole-dns/sinkhole/geo"
	"github.com/sinkhole-dns/sinkhole/internal/scrape"
	"github.com/sinkhole-dns/sinkhole/resolver/policy"
	"github.com/sinkhole-dns/sinkhole/resolver/query"
	"github.com/sinkhole-dns/sinkhole/resolver/upstream"
)

// loadStore loads files through a real store whose reloads m observes.
func loadStore(t testing.TB, m *Metrics, files map[string]string) (*blocklist.Store, string) {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	st := blocklist.NewStore(blocklist.Options{Dirs: []string{dir}, Logger: slog.New(slog.DiscardHandler)})
	if m != nil {
		st.OnReload(m.ObserveReload)
	}
	if _, err := st.Reload(context.Background(), "test"); err != nil {
		t.Fatal(err)
	}
	return st, dir
}

func get(t *testing.T, m *Metrics) *scrape.Metrics {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("GET /metrics: %d %s", rec.Code, rec.Body)
	}
	s, err := scrape.Parse(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// query builds a request decided by the real question policy's matcher.
func newQuery(snap *blocklist.Snapshot, block *policy.Blocker, name string, qtype uint16, proto string) *query.Request {
	msg := new(dns.Msg)
	msg.SetQuestion(dns.Fqdn(name), qtype)
	req := query.NewRequest(msg, netip.MustParseAddrPort("192.0.2.1:1234"), proto, snap)
	if m := snap.MatchName(req.Name); m.Blocked() {
		req.Info.Decision = block.Decide(snap, m.Rule, query.TriggerQName, req.Name)
	}
	return req
}

const lists = `# platform: Binance
binance.com
# platform: OKX
# action: log
okx.com
`

func TestQueriesAndBlocks(t *testing.T) {
	m := New(Options{Version: "1.2.3"})
	st, _ := loadStore(t, m, map[string]string{"ex.txt": lists, "plain.txt": "plain.test\n"})
	snap := st.Current()
	block := &policy.Blocker{Default: blocklist.ActionNXDomain}
	observe := func(name string, qtype uint16, proto string, rcode int, edit func(*query.Request)) {
		req := newQuery(snap, block, name, qtype, proto)
		if edit != nil {
			edit(req)
		}
		req.Info.Rcode = rcode // as the server sets it before observers run
		m.Observe(req, query.Reply(req.Msg, rcode))
	}
	observe("www.binance.com", dns.TypeA, "udp", dns.RcodeNameError, nil)
	observe("binance.com", dns.TypeA, "udp", dns.RcodeNameError, nil)
	observe("binance.com", dns.TypeAAAA, "tcp", dns.RcodeNameError, nil)
	observe("okx.com", dns.TypeA, "udp", dns.RcodeSuccess, nil) // monitored: answered
	observe("a.plain.test", dns.TypeTXT, "udp", dns.RcodeNameError, nil)
	observe("example.com", dns.TypeA, "udp", dns.RcodeSuccess, nil)
	observe("example.com", dns.TypeA, "udp", dns.RcodeSuccess, func(r *query.Request) { r.Info.Cached = true })
	observe("example.com", 65280, "udp", dns.RcodeServerFailure, nil)
	observe("example.com", dns.TypeMX, "tcp", dns.RcodeRefused, nil)
	observe("example.com", dns.TypeA, "dot", dns.RcodeSuccess, func(r *query.Request) { r.Info.Dropped = true })
	observe("example.com", dns.TypeA, "gopher", dns.RcodeSuccess, func(r *query.Request) { r.Info.Dropped = true })

	s := get(t, m)
	want := map[string]float64{
		scrape.Key("sinkhole_queries_total", "type", "A", "proto", "udp", "result", "blocked"):      2,
		scrape.Key("sinkhole_queries_total", "type", "AAAA", "proto", "tcp", "result", "blocked"):   1,
		scrape.Key("sinkhole_queries_total", "type", "A", "proto", "udp", "result", "answered"):     2,
		scrape.Key("sinkhole_queries_total", "type", "TXT", "proto", "udp", "result", "blocked"):    1,
		scrape.Key("sinkhole_queries_total", "type", "A", "proto", "udp", "result", "cached"):       1,
		scrape.Key("sinkhole_queries_total", "type", "other", "proto", "udp", "result", "servfail"): 1,
		scrape.Key("sinkhole_queries_total", "type", "MX", "proto", "tcp", "result", "refused"):     1,
		scrape.Key("sinkhole_queries_total", "type", "A", "proto", "dot", "result", "dropped"):      1,
		scrape.Key("sinkhole_queries_total", "type", "A", "proto", "other", "result", "dropped"):    1,
		scrape.Key("sinkhole_blocks_total", "platform", "Binance", "file", "ex.txt"):                3,
		scrape.Key("sinkhole_blocks_total", "platform", "(none)", "file", "plain.txt"):              1,
		scrape.Key("sinkhole_monitored_blocks_total", "platform", "OKX", "file", "ex.txt"):          1,
		scrape.Key("sinkhole_build_info", "version", "1.2.3", "goversion", runtime.Version()):       1,
		scrape.Key("sinkhole_list_generation"):                                                      1,
		scrape.Key("sinkhole_list_rules", "file", "ex.txt"):                                         2,
		scrape.Key("sinkhole_list_rules", "file", "plain.txt"):                                      1,
		scrape.Key("sinkhole_list_file_errors", "file", "ex.txt"):                                   0,
		scrape.Key("sinkhole_list_reloads_total", "result", "success"):                              1,
		scrape.Key("sinkhole_list_reloads_total", "result", "file_errors"):                          0,
		scrape.Key("sinkhole_list_last_reload_success"):                                             1,
	}
	for k, v := range want {
		if got, ok := s.Values[k]; !ok || got != v {
			t.Errorf("%s = %v (present %v), want %v", k, got, ok, v)
		}
	}
	var queries float64
	for k, v := range s.Values {
		if strings.HasPrefix(k, "sinkhole_queries_total{") {
			queries += v
		}
	}
	if queries != 11 {
		t.Errorf("%v queries counted, want 11", queries)
	}
	if ts := s.Value("sinkhole_list_last_reload_timestamp_seconds"); time.Since(time.Unix(int64(ts), 0)) > time.Minute {
		t.Errorf("last reload timestamp %v", ts)
	}
	// The Go and process collectors are there too.
	for _, f := range []string{"go_goroutines", "process_cpu_seconds_total"} {
		if _, ok := s.Families[f]; !ok {
			t.Errorf("no %s", f)
		}
	}
}

func TestReloadResults(t *testing.T) {
	m := New(Options{})
	st, dir := loadStore(t, m, map[string]string{"a.txt": "a.test\n"})
	os.WriteFile(filepath.Join(dir, "b.txt"), []byte("b.test\nnot a rule\n"), 0o644)
	st.Reload(context.Background(), "test")
	s := get(t, m)
	if s.Value("sinkhole_list_reloads_total", "result", "file_errors") != 1 || s.Value("sinkhole_list_last_reload_success") != 0 ||
		s.Value("sinkhole_list_file_errors", "file", "b.txt") != 1 || s.Value("sinkhole_list_rules", "file", "a.txt") != 1 {
		t.Fatalf("after a broken file: %v", s.Values)
	}
	// A directory that cannot be read: nothing reloads, the listener is
	// told all the same.
	os.RemoveAll(dir)
	if _, err := st.Reload(context.Background(), "test"); err == nil {
		t.Fatal("reload of a removed directory succeeded")
	}
	s = get(t, m)
	if s.Value("sinkhole_list_reloads_total", "result", "failure") != 1 || s.Value("sinkhole_list_last_reload_success") != 0 ||
		s.Value("sinkhole_list_generation") != 1 {
		t.Fatalf("after a failed reload: %v", s.Values)
	}
}

// Platform labels are capped; the rest count as "other".
func TestPlatformLabelsAreBounded(t *testing.T) {
	m := New(Options{})
	var b strings.Builder
	const n = MaxPlatformLabels + 50
	for i := range n {
		fmt.Fprintf(&b, "# platform: P%d\np%d.test\n", i, i)
	}
	st, _ := loadStore(t, m, map[string]string{"many.txt": b.String()})
	snap := st.Current()
	block := &policy.Blocker{}
	for i := range n {
		for range 2 {
			m.Observe(newQuery(snap, block, fmt.Sprintf("p%d.test", i), dns.TypeA, "udp"), nil)
		}
	}
	s := get(t, m)
	series := 0
	for k := range s.Values {
		if strings.HasPrefix(k, "sinkhole_blocks_total{") {
			series++
		}
	}
	if series != MaxPlatformLabels+1 {
		t.Errorf("%d block series, want %d", series, MaxPlatformLabels+1)
	}
	if v := s.Value("sinkhole_blocks_total", "platform", OtherLabel, "file", "many.txt"); v != 100 {
		t.Errorf("other: %v, want 100", v)
	}
	if v := s.Value("sinkhole_blocks_total", "platform", "P7", "file", "many.txt"); v != 2 {
		t.Errorf("P7: %v", v)
	}
}

func TestUpstreamMetrics(t *testing.T) {
	m := New(Options{Upstreams: []string{"192.0.2.53:53", "192.0.2.54:53"}})
	m.ObserveUpstream("192.0.2.53:53", 3*time.Millisecond, nil)
	m.ObserveUpstream("192.0.2.53:53", 2*time.Second, context.DeadlineExceeded)
	m.ObserveUpstream("192.0.2.53:53", time.Millisecond, fmt.Errorf("validate: %w", upstream.ErrMismatch))
	m.ObserveUpstream("192.0.2.55:53", time.Millisecond, errors.New("connection refused"))
	s := get(t, m)
	for k, v := range map[string]float64{
		scrape.Key("sinkhole_upstream_requests_total", "upstream", "192.0.2.53:53", "transport", "dns"):                                 3,
		scrape.Key("sinkhole_upstream_requests_total", "upstream", "192.0.2.54:53", "transport", "dns"):                                 0,
		scrape.Key("sinkhole_upstream_requests_total", "upstream", "192.0.2.55:53", "transport", "dns"):                                 1,
		scrape.Key("sinkhole_upstream_errors_total", "upstream", "192.0.2.53:53", "transport", "dns", "kind", "timeout"):                1,
		scrape.Key("sinkhole_upstream_errors_total", "upstream", "192.0.2.53:53", "transport", "dns", "kind", "mismatch"):               1,
		scrape.Key("sinkhole_upstream_errors_total", "upstream", "192.0.2.53:53", "transport", "dns", "kind", "network"):                0,
		scrape.Key("sinkhole_upstream_errors_total", "upstream", "192.0.2.55:53", "transport", "dns", "kind", "network"):                1,
		scrape.Key("sinkhole_upstream_request_duration_seconds_count", "upstream", "192.0.2.53:53", "transport", "dns"):                 3,
		scrape.Key("sinkhole_upstream_request_duration_seconds_bucket", "upstream", "192.0.2.53:53", "transport", "dns", "le", "0.005"): 2,
	} {
		if got, ok := s.Values[k]; !ok || got != v {
			t.Errorf("%s = %v (present %v), want %v", k, got, ok, v)
		}
	}
}

func TestCacheGeoAndLogs(t *testing.T) {
	m := New(Options{})
	s := get(t, m)
	if v, ok := s.Get("sinkhole_cache_hits_total"); !ok || v != 0 {
		t.Errorf("cache hits before a cache: %v %v", v, ok)
	}
	if v, ok := s.Get("sinkhole_geo_lookups_total", "db", "country", "result", "found"); !ok || v != 0 {
		t.Errorf("geo before lookups: %v %v", v, ok)
	}
	m.SetCache(func() CacheStats {
		return CacheStats{Hits: 7, Misses: 3, Evictions: 2, Prefetches: 1, Stale: 4, Entries: 99}
	})
	m.GeoLookup(GeoCountry, GeoFound)
	m.GeoLookup(GeoCountry, GeoFound)
	m.GeoLookup(GeoASN, GeoNotFound)
	m.GeoLookup("city", "weird")
	var lines, dropped uint64 = 5, 2
	m.AddLog("audit", func() uint64 { return lines }, func() uint64 { return dropped })
	s = get(t, m)
	for k, v := range map[string]float64{
		"sinkhole_cache_hits_total": 7, "sinkhole_cache_misses_total": 3, "sinkhole_cache_evictions_total": 2,
		"sinkhole_cache_prefetches_total": 1, "sinkhole_cache_stale_answers_total": 4, "sinkhole_cache_entries": 99,
		scrape.Key("sinkhole_geo_lookups_total", "db", "country", "result", "found"): 2,
		scrape.Key("sinkhole_geo_lookups_total", "db", "asn", "result", "not_found"): 1,
		scrape.Key("sinkhole_geo_lookups_total", "db", "other", "result", "other"):   1,
		scrape.Key("sinkhole_geo_lookups_total", "db", "asn", "result", "error"):     0,
		scrape.Key("sinkhole_log_lines_total", "log", "audit"):                       5,
		scrape.Key("sinkhole_log_dropped_total", "log", "audit"):                     2,
	} {
		if got, ok := s.Values[k]; !ok || got != v {
			t.Errorf("%s = %v (present %v), want %v", k, got, ok, v)
		}
	}
}

// The metric names and help follow Prometheus conventions (promlint).
func TestLint(t *testing.T) {
	m := New(Options{Upstreams: []string{"192.0.2.53:53"}})
	st, _ := loadStore(t, m, map[string]string{"ex.txt": lists})
	m.Observe(newQuery(st.Current(), &policy.Blocker{}, "binance.com", dns.TypeA, "udp"), nil)
	m.AddLog("audit", func() uint64 { return 0 }, func() uint64 { return 0 })
	problems, err := testutil.GatherAndLint(m.Registry())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "sinkhole_") {
			t.Errorf("%s: %s", p.Metric, p.Text)
		}
	}
}

func BenchmarkObserve(b *testing.B) {
	m := New(Options{})
	st, _ := loadStore(b, m, map[string]string{"ex.txt": lists})
	snap := st.Current()
	block := &policy.Blocker{}
	allowed := newQuery(snap, block, "www.example.com", dns.TypeA, "udp")
	blocked := newQuery(snap, block, "www.binance.com", dns.TypeA, "udp")
	resp := query.Reply(allowed.Msg, dns.RcodeSuccess)
	b.Run("allowed", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m.Observe(allowed, resp)
		}
	})
	b.Run("blocked", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m.Observe(blocked, resp)
		}
	})
	b.Run("upstream", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m.ObserveUpstream("192.0.2.53:53", time.Millisecond, nil)
		}
	})
}

// staticGeo knows one address, with a country database and no ASN one.
type staticGeo struct{}

func (staticGeo) Lookup(ip netip.Addr) geo.Info {
	if ip == netip.MustParseAddr("203.0.113.7") {
		return geo.Info{Country: "KY"}
	}
	return geo.Info{}
}
func (staticGeo) HasCountry() bool { return true }
func (staticGeo) HasASN() bool     { return false }

func TestCountGeo(t *testing.T) {
	m := New(Options{})
	if m.CountGeo(nil) != nil {
		t.Fatal("CountGeo(nil) is not nil")
	}
	g := m.CountGeo(staticGeo{})
	if !g.HasCountry() || g.HasASN() {
		t.Fatal("wrapper changes the databases")
	}
	if g.Lookup(netip.MustParseAddr("203.0.113.7")).Country != "KY" || g.Lookup(netip.MustParseAddr("192.0.2.1")).Country != "" {
		t.Fatal("wrapper changes the answers")
	}
	g.Lookup(netip.MustParseAddr("192.0.2.2"))
	s := get(t, m)
	if s.Value("sinkhole_geo_lookups_total", "db", "country", "result", "found") != 1 ||
		s.Value("sinkhole_geo_lookups_total", "db", "country", "result", "not_found") != 2 ||
		s.Value("sinkhole_geo_lookups_total", "db", "asn", "result", "not_found") != 0 {
		t.Errorf("geo lookups: %v", s.Values)
	}
}

// The block counters remember each section's counters by the section
// itself: a reload that moves a rule to another platform, and blocks
// alternating between the sections of two snapshots, count under the
// platform of the snapshot each block was decided under.
func TestBlockCountersFollowSections(t *testing.T) {
	m := New(Options{})
	st, dir := loadStore(t, m, map[string]string{"ex.txt": "# platform: A\nbinance.com\n"})
	old := st.Current()
	if err := os.WriteFile(filepath.Join(dir, "ex.txt"), []byte("# platform: B\nbinance.com\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Reload(context.Background(), "test"); err != nil {
		t.Fatal(err)
	}
	cur := st.Current()
	if cur == old {
		t.Fatal("the reload kept the old snapshot")
	}
	block := &policy.Blocker{}
	for i := range 5 {
		m.Observe(newQuery(old, block, "www.binance.com", dns.TypeA, "udp"), nil)
		for range i + 1 {
			m.Observe(newQuery(cur, block, "binance.com", dns.TypeA, "udp"), nil)
		}
	}
	s := get(t, m)
	for platform, want := range map[string]float64{"A": 5, "B": 15} {
		if got := s.Value(scrape.Key("sinkhole_blocks_total", "platform", platform, "file", "ex.txt")); got != want {
			t.Errorf("blocks of platform %s: %v, want %v", platform, got, want)
		}
	}
}
