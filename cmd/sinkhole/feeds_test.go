package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// startSinkholeOn is startSinkhole with a chosen listen address.
func startSinkholeOn(t *testing.T, listen, lists string, args ...string) *testServer {
	t.Helper()
	return startSinkholeWith(t, listen, io.Discard, lists, args...)
}

// handedOut holds every address freeAddr returned in this test binary.
// The kernel may hand a port that was just closed to the next bind to
// port 0, and sinkhole's UDP sockets use SO_REUSEPORT, so two servers
// given the same port would share it without an error (one of them
// then never sees its queries or NOTIFYs). freeAddr therefore never
// returns an address twice.
var handedOut = struct {
	sync.Mutex
	addrs map[string]bool
}{addrs: map[string]bool{}}

// freeAddr returns a loopback address whose port is free for UDP and TCP
// and was not returned before in this test binary.
func freeAddr(t *testing.T) string {
	t.Helper()
	for try := 0; try < 50; try++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		u, err := net.ListenPacket("udp", addr)
		l.Close()
		if err != nil {
			continue
		}
		u.Close()
		handedOut.Lock()
		seen := handedOut.addrs[addr]
		handedOut.addrs[addr] = true
		handedOut.Unlock()
		if !seen {
			return addr
		}
	}
	t.Fatal("no free port")
	return ""
}

// TestFreeAddrNeverRepeats: addresses found one after another (each port
// closed before the next is found) are all distinct.
func TestFreeAddrNeverRepeats(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 300; i++ {
		a := freeAddr(t)
		if seen[a] {
			t.Fatalf("freeAddr returned %s twice (call %d)", a, i)
		}
		seen[a] = true
	}
}

// censored reports whether the server blocks name (EDE 16 on the answer).
func censored(addr, name string) bool {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeA)
	m.SetEdns0(1232, false)
	c := &dns.Client{Net: "udp", Timeout: time.Second}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		return false
	}
	e := ede(r)
	return e != nil && e.InfoCode == dns.ExtendedErrorCodeCensored
}

// waitUntil polls cond every 5ms until it holds or d passes.
func waitUntil(t *testing.T, what string, d time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

func TestFeedFlagErrors(t *testing.T) {
	lists := writeLists(t, map[string]string{"x.txt": "a.com\n"})
	dir := t.TempDir()
	badKey := filepath.Join(dir, "bad.key")
	os.WriteFile(badKey, []byte(`key "k" { algorithm hmac-md5; secret "c2VjcmV0"; };`), 0o644)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--rpz-feed", "reg"}, `sinkhole: --rpz-feed "reg": want NAME=ZONE@PRIMARY[:PORT]`},
		{[]string{"--rpz-feed", "reg=rpz.test@primary.example"}, `sinkhole: --rpz-feed "reg=rpz.test@primary.example": primary "primary.example": want an IP address`},
		{[]string{"--rpz-feed", "reg=bad zone@127.0.0.1"}, `zone "bad zone" is not a domain name`},
		{[]string{"--rpz-feed", "../x=rpz.test@127.0.0.1"}, `sinkhole: --rpz-feed "../x": NAME must be letters, digits`},
		{[]string{"--rpz-feed", "a=rpz.test@127.0.0.1", "--rpz-feed", "b=RPZ.test@127.0.0.2"}, `sinkhole: --rpz-feed b: zone rpz.test is already fed by a`},
		{[]string{"--rpz-feed", "a=rpz.test@127.0.0.1", "--list-url", "a=http://x/l.txt"}, `sinkhole: --list-url a: the name is already used by --rpz-feed`},
		{[]string{"--rpz-tsig", "nope=/x"}, `sinkhole: --rpz-tsig nope=/x: no --rpz-feed named nope`},
		{[]string{"--rpz-feed", "a=rpz.test@127.0.0.1", "--rpz-tsig", "a=" + badKey}, `unsupported algorithm "hmac-md5"`},
		{[]string{"--rpz-feed", "a=rpz.test@127.0.0.1", "--rpz-tsig", "a=/nonexistent.key"}, `sinkhole: --rpz-tsig a: stat /nonexistent.key`},
		{[]string{"--rpz-export", "bad zone"}, `sinkhole: --rpz-export "bad zone": want a zone name`},
		{[]string{"--rpz-export", "rpz.test", "--rpz-allow-transfer", "10.0.0.0/33"}, `sinkhole: --rpz-allow-transfer "10.0.0.0/33": want a CIDR prefix`},
		{[]string{"--rpz-export", "rpz.test", "--rpz-notify", "host:53"}, `sinkhole: --rpz-notify "host:53": want IP or IP:port`},
		{[]string{"--rpz-notify", "127.0.0.1"}, `sinkhole: --rpz-allow-transfer and --rpz-notify need --rpz-export`},
		{[]string{"--rpz-export-zonemd=false"}, `sinkhole: --rpz-export-zonemd=false needs --rpz-export`},
		{[]string{"--list-url", "reg=ftp://x/l.txt"}, `sinkhole: --list-url reg: "ftp://x/l.txt" is not an http or https URL`},
		{[]string{"--list-url", "reg"}, `sinkhole: --list-url "reg": want NAME=URL`},
		{[]string{"--list-url-interval", "10ms"}, `sinkhole: --list-url-interval 10ms: want between 100ms and 24h`},
		{[]string{"--rpz-export", "rpz.test", "--state-dir", lists}, `must not be the --lists directory`},
	}
	for _, tt := range tests {
		var stderr syncBuffer
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		code := run(ctx, append([]string{"sinkhole", "serve", "--lists", lists, "--upstream", "127.0.0.1:1"}, tt.args...), io.Discard, &stderr)
		cancel()
		out := stderr.String()
		if code != exitUsage || !strings.Contains(out, tt.want) || strings.Count(out, "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tt.args, code, out, tt.want)
		}
	}
}

// listHTTP serves a list with an ETag and counts its answers by status.
type listHTTP struct {
	mu     sync.Mutex
	body   string
	etag   string
	fail   bool
	counts map[int]int
}

func (l *listHTTP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	l.mu.Lock()
	defer l.mu.Unlock()
	code := http.StatusOK
	switch {
	case l.fail:
		code = http.StatusInternalServerError
		http.Error(w, "broken", code)
	case r.Header.Get("If-None-Match") == l.etag:
		code = http.StatusNotModified
		w.WriteHeader(code)
	default:
		w.Header().Set("ETag", l.etag)
		io.WriteString(w, l.body)
	}
	l.counts[code]++
}

func (l *listHTTP) count(code int) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.counts[code]
}

func TestListURL(t *testing.T) {
	lh := &listHTTP{body: "binance.com\n", etag: `"1"`, counts: map[int]int{}}
	hs := httptest.NewServer(lh)
	defer hs.Close()
	up := testUpstream(t)
	state := t.TempDir()
	ts := startSinkhole(t, writeLists(t, map[string]string{"local.txt": "local.test\n"}), "--upstream", up.Addr,
		"--list-url", "regulator="+hs.URL+"/list.txt", "--list-url-interval", "100ms", "--state-dir", state)
	waitUntil(t, "the list URL to block binance.com", 5*time.Second, func() bool { return censored(ts.addr, "www.binance.com") })
	if r := ts.query(t, "udp", "binance.com", dns.TypeA); ede(r).ExtraText != "blocked by "+filepath.Base(state)+"/regulator.txt:1" {
		t.Fatalf("reason: %v", ede(r))
	}
	// 304s cause no reload.
	gen := ts.in.store.Current().Generation
	waitUntil(t, "three 304 answers", 5*time.Second, func() bool { return lh.count(http.StatusNotModified) >= 3 })
	if g := ts.in.store.Current().Generation; g != gen {
		t.Fatalf("304 answers reloaded the lists: generation %d -> %d", gen, g)
	}
	// A 500 keeps the last good list.
	lh.mu.Lock()
	lh.fail = true
	lh.mu.Unlock()
	waitUntil(t, "two 500 answers", 5*time.Second, func() bool { return lh.count(http.StatusInternalServerError) >= 2 })
	if !censored(ts.addr, "binance.com") || ts.in.store.Current().Generation != gen {
		t.Fatal("a 500 lost the last good list or reloaded")
	}
	st := ts.in.feeds.Status().URLs[0]
	if st.LastResult != "failed" || st.LastHTTPStatus != 500 || !strings.Contains(st.LastError, "500") {
		t.Fatalf("status after a 500: %+v", st)
	}
	// A new version is picked up at the next interval.
	lh.mu.Lock()
	lh.fail, lh.body, lh.etag = false, "binance.com\nokx.com\n", `"2"`
	lh.mu.Unlock()
	waitUntil(t, "the new version", 5*time.Second, func() bool { return censored(ts.addr, "okx.com") })
	if !censored(ts.addr, "local.test") {
		t.Fatal("the local list was lost")
	}
	// A restart serves the cached copy before the first fetch completes,
	// even with the server down.
	ts.stop()
	hs.Close()
	ts2 := startSinkhole(t, writeLists(t, map[string]string{"local.txt": "local.test\n"}), "--upstream", up.Addr,
		"--list-url", "regulator="+hs.URL+"/list.txt", "--state-dir", state)
	if !censored(ts2.addr, "okx.com") {
		t.Fatal("cached copy not served after a restart")
	}
}

// TestRPZScaleOut runs one primary and ten secondaries on loopback: a list
// change at the primary is blocked by all ten (by IXFR), and a primary
// restart loses nothing. The time it takes is logged, not asserted: the
// propagation latency is measured by make bench-scale on a quiet machine
// (docs/benchmarks.md); the waits here are deadlines for a busy one.
func TestRPZScaleOut(t *testing.T) {
	const n = 10
	up := testUpstream(t)
	primaryAddr := freeAddr(t)
	feed := "regulator=rpz.test@" + primaryAddr
	var secs []*testServer
	var notify []string
	for i := 0; i < n; i++ {
		s := startSinkhole(t, writeLists(t, nil), "--upstream", up.Addr, "--rpz-feed", feed, "--state-dir", t.TempDir(), "--log-level", "debug")
		secs = append(secs, s)
		notify = append(notify, "--rpz-notify", s.addr)
	}
	lists := writeLists(t, map[string]string{"regulator.txt": "binance.com\n"})
	primaryState := t.TempDir()
	primaryArgs := append([]string{"--upstream", up.Addr, "--rpz-export", "rpz.test", "--reload-debounce", "10ms", "--state-dir", primaryState}, notify...)
	primary := startSinkholeOn(t, primaryAddr, lists, primaryArgs...)
	serial := func() uint32 { return primary.in.feeds.Exporter().Serial() }
	allAt := func(want uint32) func() bool {
		return func() bool {
			for _, s := range secs {
				if st := s.in.feeds.Status().Feeds[0]; st.Serial != want {
					return false
				}
			}
			return true
		}
	}
	waitUntil(t, "every secondary to load the zone", 30*time.Second, allAt(serial()))
	for i, s := range secs {
		if !censored(s.addr, "www.binance.com") {
			t.Fatalf("secondary %d does not block binance.com", i)
		}
	}

	// One edit at the primary reaches all ten.
	blockedByAll := func(name string) func() bool {
		return func() bool {
			for _, s := range secs {
				if !censored(s.addr, name) {
					return false
				}
			}
			return true
		}
	}
	before := serial()
	if err := os.WriteFile(filepath.Join(lists, "regulator.txt"), []byte("binance.com\nokx.com\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	took := waitUntil(t, "all ten secondaries to block okx.com", 30*time.Second, blockedByAll("okx.com"))
	t.Logf("propagation: a list edit at the primary was blocked by all %d secondaries in %s (serial %d -> %d)", n, took.Round(time.Millisecond), before, serial())
	// A secondary's status records the transfer once its reload returns,
	// which can be just after its new answers are in service.
	now := serial()
	waitUntil(t, "every secondary's status to show the new serial", 30*time.Second, func() bool {
		for _, s := range secs {
			if s.in.feeds.Status().Feeds[0].Serial != now {
				return false
			}
		}
		return true
	})
	for _, s := range secs {
		if st := s.in.feeds.Status().Feeds[0]; st.LastTransferType != "IXFR" {
			t.Errorf("secondary transferred by %s, want IXFR: %+v", st.LastTransferType, st)
		}
	}

	// The primary goes away: the secondaries keep blocking.
	last := serial()
	primary.stop()
	for i, s := range secs {
		if !censored(s.addr, "okx.com") || !censored(s.addr, "binance.com") {
			t.Fatalf("secondary %d lost the zone when the primary stopped", i)
		}
	}
	// It comes back with a higher serial (kept in its state directory) and
	// its start-up NOTIFY brings every secondary up to date; a later edit
	// still propagates.
	os.WriteFile(filepath.Join(lists, "regulator.txt"), []byte("binance.com\nokx.com\nbybit.com\n"), 0o644)
	primary = startSinkholeOn(t, primaryAddr, lists, primaryArgs...)
	if s := serial(); s <= last {
		t.Fatalf("serial after restart %d, before %d: must keep rising", s, last)
	}
	took = waitUntil(t, "all secondaries to follow the restarted primary", 30*time.Second, blockedByAll("bybit.com"))
	t.Logf("after the primary restart the secondaries caught up in %s", took.Round(time.Millisecond))
	waitUntil(t, "every secondary at the new serial", 30*time.Second, allAt(serial()))
	for i, s := range secs {
		if !censored(s.addr, "okx.com") || !censored(s.addr, "binance.com") {
			t.Fatalf("secondary %d lost rules across the primary restart", i)
		}
	}
	var fails atomic.Int32
	for _, s := range secs {
		if strings.Contains(s.stderr.String(), "level=ERROR") {
			fails.Add(1)
			t.Logf("secondary log:\n%s", s.stderr.String())
		}
	}
	if fails.Load() > 0 {
		t.Fatalf("%d secondaries logged errors", fails.Load())
	}
}

// Without --rpz-export, zone transfers are refused over TCP as over UDP:
// they are never forwarded upstream.
func TestTransferRefusedWithoutExport(t *testing.T) {
	up := testUpstream(t)
	ts := startSinkhole(t, writeLists(t, nil), "--upstream", up.Addr)
	for _, proto := range []string{"udp", "tcp"} {
		m := new(dns.Msg)
		m.SetAxfr("allowed.test.")
		if r := ts.exchange(t, proto, m); r.Rcode != dns.RcodeRefused {
			t.Errorf("%s AXFR: %v", proto, r)
		}
		m = new(dns.Msg)
		m.SetIxfr("allowed.test.", 1, "a.", "b.")
		if r := ts.exchange(t, proto, m); r.Rcode != dns.RcodeRefused {
			t.Errorf("%s IXFR: %v", proto, r)
		}
	}
	m := new(dns.Msg)
	m.SetNotify("allowed.test.")
	if r := ts.exchange(t, "udp", m); r.Rcode != dns.RcodeNotImplemented {
		t.Errorf("NOTIFY without feeds: %v", r)
	}
}
