package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/urfave/cli/v2"

	"github.com/sinkhole-dns/sinkhole/internal/admin"
	"github.com/sinkhole-dns/sinkhole/internal/dnstest"
)

// exchangeFrom asks addr over proto from the loopback source address src
// (127.0.0.2 and so on act as other clients).
func exchangeFrom(proto, src, addr string, m *dns.Msg, timeout time.Duration) (*dns.Msg, error) {
	c := &dns.Client{Net: proto, Timeout: timeout}
	ip := net.ParseIP(src)
	if proto == "tcp" {
		c.Dialer = &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: timeout}
	} else {
		c.Dialer = &net.Dialer{LocalAddr: &net.UDPAddr{IP: ip}, Timeout: timeout}
	}
	r, _, err := c.Exchange(m, addr)
	return r, err
}

func newQuery(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.SetEdns0(1232, false)
	return m
}

// floodResult counts what came back from a flood.
type floodResult struct {
	sent, answered, truncated int
	elapsed                   time.Duration // from the first query to the last answer read
}

// flood sends n queries for name from src over one UDP socket in bursts
// of 50 with pause between them, reading answers until none has come for
// a second after the last query.
func flood(t *testing.T, src, addr, name string, n int, pause time.Duration) floodResult {
	t.Helper()
	raddr, _ := net.ResolveUDPAddr("udp", addr)
	conn, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP(src)}, raddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetReadBuffer(1 << 20)
	res := floodResult{sent: n}
	var mu sync.Mutex
	done := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(done)
		buf := make([]byte, 65535)
		for {
			conn.SetReadDeadline(time.Now().Add(time.Second + pause))
			k, err := conn.Read(buf)
			if err != nil {
				return
			}
			m := new(dns.Msg)
			if m.Unpack(buf[:k]) != nil {
				continue
			}
			mu.Lock()
			if m.Truncated {
				res.truncated++
			} else {
				res.answered++
			}
			res.elapsed = time.Since(start)
			mu.Unlock()
		}
	}()
	for i := 0; i < n; i++ {
		m := newQuery(name, dns.TypeA)
		m.Id = uint16(i + 1)
		out, _ := m.Pack()
		if _, err := conn.Write(out); err != nil {
			t.Error(err)
			break
		}
		if i%50 == 49 {
			time.Sleep(pause)
		}
	}
	<-done
	mu.Lock()
	defer mu.Unlock()
	return res
}

// statusOf reads the admin API's status.
func statusOf(t *testing.T, ts *testServer) admin.Status {
	t.Helper()
	resp, err := http.Get("http://" + ts.in.admin.Addr() + "/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st admin.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

func TestACLRefusesOutsideClients(t *testing.T) {
	up := testUpstream(t)
	lists := writeLists(t, map[string]string{"x.txt": exchangeList})
	ts := startSinkhole(t, lists, "--upstream", up.Addr, "--allow", "127.0.0.1/32", "--allow", "::1")
	for _, proto := range []string{"udp", "tcp"} {
		q := newQuery("www.allowed.test", dns.TypeA)
		r, err := exchangeFrom(proto, "127.0.0.2", ts.addr, q, 5*time.Second)
		if err != nil || r.Rcode != dns.RcodeRefused || r.Id != q.Id || len(r.Answer) != 0 || r.Question[0].Name != "www.allowed.test." {
			t.Fatalf("%s from 127.0.0.2: %v %v", proto, r, err)
		}
		// Blocked names are refused too: the ACL comes before the policy.
		if r, err := exchangeFrom(proto, "127.0.0.2", ts.addr, newQuery("binance.com", dns.TypeA), 5*time.Second); err != nil || r.Rcode != dns.RcodeRefused {
			t.Fatalf("%s blocked name from 127.0.0.2: %v %v", proto, r, err)
		}
		r, err = exchangeFrom(proto, "127.0.0.1", ts.addr, newQuery("www.allowed.test", dns.TypeA), 5*time.Second)
		if err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
			t.Fatalf("%s from 127.0.0.1: %v %v", proto, r, err)
		}
	}
	// The admitted client's second query is a cache hit.
	if n := up.QueriesFor("www.allowed.test"); n != 1 {
		t.Fatalf("upstream saw %d queries, want 1 (refused clients' queries never leave)", n)
	}
	st := statusOf(t, ts)
	if st.Counters.ACLRefused != 4 || st.Counters.Queries != 2 {
		t.Fatalf("counters: %+v", st.Counters)
	}

	// --refuse-action drop: nothing at all goes back.
	ts2 := startSinkhole(t, lists, "--upstream", up.Addr, "--allow", "127.0.0.1/32", "--refuse-action", "drop")
	for _, proto := range []string{"udp", "tcp"} {
		if r, err := exchangeFrom(proto, "127.0.0.2", ts2.addr, newQuery("www.allowed.test", dns.TypeA), 500*time.Millisecond); err == nil {
			t.Fatalf("%s: dropped client got %v", proto, r)
		}
	}
	if r, err := exchangeFrom("udp", "127.0.0.1", ts2.addr, newQuery("www.allowed.test", dns.TypeA), 5*time.Second); err != nil || len(r.Answer) != 1 {
		t.Fatalf("allowed client under drop: %v %v", r, err)
	}
	if c := statusOf(t, ts2).Counters; c.ACLDropped != 2 || c.ACLRefused != 0 {
		t.Fatalf("drop counters: %+v", c)
	}
}

func TestRateLimitFloodFromOneClient(t *testing.T) {
	up := testUpstream(t)
	ts := startSinkhole(t, writeLists(t, map[string]string{"x.txt": exchangeList}), "--upstream", up.Addr,
		"--client-qps", "20", "--client-burst", "20")
	var wg sync.WaitGroup
	var res floodResult
	wg.Add(1)
	go func() {
		defer wg.Done()
		res = flood(t, "127.0.0.2", ts.addr, "www.allowed.test", 2000, 30*time.Millisecond) // about 1.2s
	}()
	// Another client is answered at normal speed during the flood.
	var slowest time.Duration
	for i := 0; i < 10; i++ {
		start := time.Now()
		r, err := exchangeFrom("udp", "127.0.0.1", ts.addr, newQuery("www.allowed.test", dns.TypeA), 5*time.Second)
		if err != nil || len(r.Answer) != 1 {
			t.Fatalf("other client, query %d: %v %v", i, r, err)
		}
		slowest = max(slowest, time.Since(start))
		time.Sleep(50 * time.Millisecond)
	}
	wg.Wait()
	// The burst, plus 20/s for as long as the flood lasted, plus slack.
	limit := 20 + int(20*res.elapsed.Seconds()) + 10
	if res.answered == 0 || res.answered > limit {
		t.Fatalf("flood: %d of %d answered in %s, want 1..%d", res.answered, res.sent, res.elapsed, limit)
	}
	if slowest > 2*time.Second {
		t.Fatalf("other client's slowest answer took %s", slowest)
	}
	// Queries the kernel dropped from a full socket buffer are not
	// counted; every one the server read and did not answer is.
	c := statusOf(t, ts).Counters
	if c.RateLimited == 0 || c.RateLimited > uint64(res.sent-res.answered) {
		t.Fatalf("rate_limited %d, flood of %d with %d answered", c.RateLimited, res.sent, res.answered)
	}
	if n := up.QueriesFor("www.allowed.test"); n > int64(limit+10) {
		t.Fatalf("upstream saw %d queries", n)
	}
	t.Logf("flood: %d of %d answered in %s; other client's slowest answer %s; rate_limited %d", res.answered, res.sent, res.elapsed, slowest, c.RateLimited)
}

func TestRRLSlip(t *testing.T) {
	up := testUpstream(t)
	ts := startSinkhole(t, writeLists(t, map[string]string{"x.txt": exchangeList}), "--upstream", up.Addr,
		"--rrl-rate", "10", "--rrl-slip", "2")
	res := flood(t, "127.0.0.2", ts.addr, "www.allowed.test", 300, 10*time.Millisecond)
	limit := 10 + int(10*res.elapsed.Seconds()) + 10
	if res.answered == 0 || res.answered > limit || res.truncated == 0 {
		t.Fatalf("identical responses: %d answered, %d truncated of %d in %s; want 1..%d answered and some truncated",
			res.answered, res.truncated, res.sent, res.elapsed, limit)
	}
	// About every second limited response slips.
	limited := res.sent - res.answered
	if res.truncated < limited/4 || res.truncated > limited*3/4 {
		t.Fatalf("%d of %d limited responses slipped, want about half", res.truncated, limited)
	}
	// The client retries over TCP, which is never limited.
	if r, err := exchangeFrom("tcp", "127.0.0.2", ts.addr, newQuery("www.allowed.test", dns.TypeA), 5*time.Second); err != nil || len(r.Answer) != 1 {
		t.Fatalf("TCP retry: %v %v", r, err)
	}
	// Another network (127.0.1.0/24) and another name are not limited.
	if r, err := exchangeFrom("udp", "127.0.1.1", ts.addr, newQuery("www.allowed.test", dns.TypeA), 5*time.Second); err != nil || len(r.Answer) != 1 || r.Truncated {
		t.Fatalf("other network: %v %v", r, err)
	}
	if r, err := exchangeFrom("udp", "127.0.0.2", ts.addr, newQuery("wild.test", dns.TypeA), 5*time.Second); err != nil || len(r.Answer) != 1 || r.Truncated {
		t.Fatalf("other name: %v %v", r, err)
	}
	c := statusOf(t, ts).Counters
	if c.RRLSlipped != uint64(res.truncated) || c.RRLDropped == 0 {
		t.Fatalf("counters %+v; flood saw %d truncated", c, res.truncated)
	}
}

func TestOpenResolverGuard(t *testing.T) {
	lists := writeLists(t, map[string]string{"x.txt": "a.com\n"})
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--listen", "0.0.0.0:53", "--allow", "0.0.0.0/1", "--allow", "128.0.0.0/1"},
			"public IPv4 addresses (more than a /8) and 0.0.0.0:53 is a public address: that is an open resolver; list your clients' prefixes, or give --allow 0.0.0.0/0 to run one deliberately"},
		{[]string{"--listen", "[::]:53", "--allow", "2000::/3"}, "give --allow ::/0 to run one deliberately"},
		{[]string{"--listen", "192.0.2.53:53", "--allow", "10.0.0.0/0"}, `sinkhole: --allow "10.0.0.0/0" has bits set past /0 (did you mean 0.0.0.0/0?)`},
		{[]string{"--allow", "0.0.0.0"}, `sinkhole: --allow "0.0.0.0" is no client address (0.0.0.0/0 admits every client of its family)`},
		{[]string{"--allow", "nonsense"}, `sinkhole: --allow "nonsense": want an address or a prefix`},
		{[]string{"--refuse-action", "ignore"}, `sinkhole: --refuse-action "ignore": want refused or drop`},
		{[]string{"--client-qps", "-1"}, `sinkhole: --client-qps -1: want between 0 and 1000000`},
		{[]string{"--rrl-slip", "11"}, `sinkhole: --rrl-slip 11: want between 0 and 10`},
		{[]string{"--tcp-max-conns", "0"}, `sinkhole: --tcp-max-conns 0: want between 1 and 1000000`},
		{[]string{"--tcp-idle-timeout", "1ms"}, `sinkhole: --tcp-idle-timeout 1ms: want between 100ms and 10m0s`},
		{[]string{"--upstream-fail-threshold", "0"}, `sinkhole: --upstream-fail-threshold 0: want between 1 and 1000`},
		{[]string{"--upstream-probe-interval", "2h"}, `sinkhole: --upstream-probe-interval 2h0m0s: want between 10ms and 1h0m0s`},
	}
	for _, tt := range tests {
		var stderr syncBuffer
		code := run(t.Context(), append([]string{"sinkhole", "serve", "--lists", lists, "--upstream", "192.0.2.1"}, tt.args...), io.Discard, &stderr)
		out := stderr.String()
		if code != exitUsage || !strings.HasPrefix(out, tt.want) && !strings.Contains(out, tt.want) || strings.Count(out, "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tt.args, code, out, tt.want)
		}
	}
	// Accepted: the same lists with the explicit /0, on loopback, or a
	// public address with the default ACL. These are checked by the
	// validation alone (nothing binds a public address in tests).
	for _, args := range [][]string{
		{"--listen", "0.0.0.0:53", "--allow", "0.0.0.0/0"},
		{"--listen", "127.0.0.1:53", "--allow", "0.0.0.0/1", "--allow", "128.0.0.0/1"},
		{"--listen", "0.0.0.0:53"},
		{"--listen", "203.0.113.53:53", "--allow", "203.0.113.0/24", "--allow", "2001:db8::/32"},
	} {
		if err := validateServeArgs(t, append([]string{"--lists", lists, "--upstream", "192.0.2.1"}, args...)); err != nil {
			t.Errorf("%v: %v", args, err)
		}
	}
	// The environment goes through the same rule.
	t.Setenv("SINKHOLE_ALLOW", "0.0.0.0/1,128.0.0.0/1")
	if err := validateServeArgs(t, []string{"--lists", lists, "--upstream", "192.0.2.1", "--listen", "[::]:53"}); err == nil || !strings.Contains(err.Error(), "open resolver") {
		t.Errorf("SINKHOLE_ALLOW: %v", err)
	}
	t.Setenv("SINKHOLE_ALLOW", "0.0.0.0/0,10.0.0.0/8")
	if err := validateServeArgs(t, []string{"--lists", lists, "--upstream", "192.0.2.1", "--listen", "[::]:53"}); err != nil {
		t.Errorf("SINKHOLE_ALLOW with 0.0.0.0/0: %v", err)
	}
}

// validateServeArgs parses and validates serve's flags without serving.
func validateServeArgs(t *testing.T, args []string) error {
	t.Helper()
	app := &cli.App{Name: "sinkhole", Writer: io.Discard, ErrWriter: io.Discard, ExitErrHandler: func(*cli.Context, error) {},
		Commands: []*cli.Command{{Name: "serve", Flags: serveFlags(), Action: func(c *cli.Context) error {
			_, err := serveConfigFrom(c)
			return err
		}}}}
	return app.Run(append([]string{"sinkhole", "serve"}, args...))
}

// upstreamHealth returns the admin status entry of one upstream.
func upstreamHealth(t *testing.T, ts *testServer, addr string) admin.Upstream {
	t.Helper()
	for _, u := range statusOf(t, ts).Upstreams {
		if u.Addr == addr {
			return u
		}
	}
	t.Fatalf("no upstream %s in status", addr)
	return admin.Upstream{}
}

func TestUpstreamFaultsFailoverAndProbe(t *testing.T) {
	good := startUpstream(t, "x.test. 60 IN A 192.0.2.2")
	lists := writeLists(t, map[string]string{"x.txt": exchangeList})
	faults := []struct {
		name  string
		fault dnstest.Fault
	}{
		{"down", dnstest.FaultNone}, // port closed: ICMP unreachable
		{"silent", dnstest.FaultSilent},
		{"slow", dnstest.FaultSlow},
		{"wrong ID", dnstest.FaultWrongID},
		{"wrong question", dnstest.FaultWrongQ},
		{"garbage", dnstest.FaultGarbage},
		{"short", dnstest.FaultShort},
	}
	for _, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			bad := startUpstream(t, "x.test. 60 IN A 192.0.2.1")
			bad.Delay = 2 * time.Second // FaultSlow: longer than the try timeout
			bad.SetFault("*", f.fault)
			badAddr := bad.Addr
			if f.name == "down" {
				bad.Close()
			}
			// No cache: every query goes to the upstreams.
			ts := startSinkhole(t, lists, "--upstream", badAddr, "--upstream", good.Addr, "--upstream-timeout", "400ms",
				"--upstream-fail-threshold", "2", "--upstream-probe-interval", "100ms", "--cache-size", "0")
			// Every answer is the good upstream's: the bad one's never
			// reaches the client (the exchange checks the ID).
			for i := 0; i < 4; i++ {
				r := ts.query(t, "udp", "x.test", dns.TypeA)
				if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || !strings.HasSuffix(answerStrings(r)[0], "A 192.0.2.2") || r.Question[0].Name != "x.test." {
					t.Fatalf("query %d: %v", i, r)
				}
			}
			h := upstreamHealth(t, ts, badAddr)
			if h.Healthy || h.Failures < 2 {
				t.Fatalf("bad upstream after 4 queries: %+v", h)
			}
			if mismatch := f.fault == dnstest.FaultWrongID || f.fault == dnstest.FaultWrongQ || f.fault == dnstest.FaultGarbage || f.fault == dnstest.FaultShort; mismatch && h.Mismatched == 0 {
				t.Fatalf("mismatched answers not counted: %+v", h)
			}
			// Unhealthy, it is tried last: queries no longer wait for it.
			before := upstreamHealth(t, ts, badAddr).Requests
			for i := 0; i < 3; i++ {
				ts.query(t, "tcp", "x.test", dns.TypeA)
			}
			if after := upstreamHealth(t, ts, badAddr).Requests; after != before {
				t.Fatalf("unhealthy upstream got %d more queries", after-before)
			}
			// Repaired, it is probed back and answers first again.
			if f.name == "down" {
				up, err := dnstest.Start(dnstest.Options{Addr: badAddr, Records: []string{"x.test. 60 IN A 192.0.2.1"}})
				if err != nil {
					t.Skipf("cannot rebind %s: %v", badAddr, err)
				}
				defer up.Close()
			} else {
				bad.SetFault("*", dnstest.FaultNone)
			}
			deadline := time.Now().Add(10 * time.Second)
			for !upstreamHealth(t, ts, badAddr).Healthy && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
			}
			if h := upstreamHealth(t, ts, badAddr); !h.Healthy || h.Probes == 0 {
				t.Fatalf("not probed back to health: %+v", h)
			}
			if r := ts.query(t, "udp", "x.test", dns.TypeA); !strings.HasSuffix(answerStrings(r)[0], "A 192.0.2.1") {
				t.Fatalf("repaired upstream not used: %v", r)
			}
		})
	}
}

func TestAllUpstreamsGoneServFail(t *testing.T) {
	bad := startUpstream(t)
	bad.SetFault("*", dnstest.FaultGarbage)
	silent, err := dnstest.StartSilent()
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	ts := startSinkhole(t, writeLists(t, map[string]string{"x.txt": exchangeList}), "--upstream", bad.Addr, "--upstream", silent.Addr,
		"--upstream-timeout", "200ms", "--upstream-fail-threshold", "1")
	for i := 0; i < 3; i++ {
		r := ts.query(t, "udp", "www.allowed.test", dns.TypeA)
		if r.Rcode != dns.RcodeServerFailure || ede(r) == nil || ede(r).InfoCode != dns.ExtendedErrorCodeNoReachableAuthority {
			t.Fatalf("query %d: %v", i, r)
		}
	}
	// Blocked names are still answered: the policy needs no upstream.
	if r := ts.query(t, "udp", "binance.com", dns.TypeA); r.Rcode != dns.RcodeNameError {
		t.Fatalf("blocked name with upstreams gone: %v", r)
	}
}

// rawTCP opens a TCP connection from src.
func rawTCP(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// tcpAsk sends a query on an open connection and reads one answer.
func tcpAsk(c net.Conn, name string) (*dns.Msg, error) {
	co := &dns.Conn{Conn: c}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if err := co.WriteMsg(newQuery(name, dns.TypeA)); err != nil {
		return nil, err
	}
	return co.ReadMsg()
}

// closedByServer reports whether the server closes c within d.
func closedByServer(c net.Conn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	var b [1]byte
	_, err := c.Read(b[:])
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

func TestTCPConnectionCaps(t *testing.T) {
	up := testUpstream(t)
	ts := startSinkhole(t, writeLists(t, map[string]string{"x.txt": exchangeList}), "--upstream", up.Addr,
		"--tcp-max-conns", "4", "--tcp-max-conns-per-client", "2", "--tcp-idle-timeout", "1m")
	// Two connections from 127.0.0.2 are served; a third is closed.
	var held []net.Conn
	for i := 0; i < 2; i++ {
		c := rawTCP(t, "127.0.0.2", ts.addr)
		if r, err := tcpAsk(c, "www.allowed.test"); err != nil || len(r.Answer) != 1 {
			t.Fatalf("connection %d: %v %v", i, r, err)
		}
		held = append(held, c)
	}
	if !closedByServer(rawTCP(t, "127.0.0.2", ts.addr), 5*time.Second) {
		t.Fatal("third connection from one client not closed")
	}
	// Two more from 127.0.0.3 fill the server; a fifth, from anyone, is closed.
	for i := 0; i < 2; i++ {
		c := rawTCP(t, "127.0.0.3", ts.addr)
		if r, err := tcpAsk(c, "www.allowed.test"); err != nil || len(r.Answer) != 1 {
			t.Fatalf("connection %d from 127.0.0.3: %v %v", i, r, err)
		}
		held = append(held, c)
	}
	if !closedByServer(rawTCP(t, "127.0.0.4", ts.addr), 5*time.Second) {
		t.Fatal("connection over --tcp-max-conns not closed")
	}
	// UDP is unaffected; a freed slot is usable again.
	ts.query(t, "udp", "www.allowed.test", dns.TypeA)
	held[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c := rawTCP(t, "127.0.0.4", ts.addr)
		if r, err := tcpAsk(c, "www.allowed.test"); err == nil && len(r.Answer) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no connection accepted after one closed")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if c := statusOf(t, ts).Counters; c.TCPRejected < 2 {
		t.Fatalf("tcp_rejected %d", c.TCPRejected)
	}
}

func TestTCPIdleTimeoutAndPipelining(t *testing.T) {
	up := testUpstream(t)
	ts := startSinkhole(t, writeLists(t, map[string]string{"x.txt": exchangeList}), "--upstream", up.Addr, "--tcp-idle-timeout", "500ms")
	// Pipelined: ten queries in one write, ten answers, matched by ID.
	c := rawTCP(t, "127.0.0.1", ts.addr)
	var batch []byte
	want := map[uint16]string{}
	names := []string{"www.allowed.test", "binance.com", "wild.test", "safe.binance.com", "www.exact.test"}
	for i := 0; i < 10; i++ {
		m := newQuery(names[i%len(names)], dns.TypeA)
		m.Id = uint16(1000 + i)
		want[m.Id] = m.Question[0].Name
		out, _ := m.Pack()
		batch = append(batch, byte(len(out)>>8), byte(len(out)))
		batch = append(batch, out...)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(batch); err != nil {
		t.Fatal(err)
	}
	co := &dns.Conn{Conn: c}
	for i := 0; i < 10; i++ {
		r, err := co.ReadMsg()
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		if want[r.Id] != r.Question[0].Name {
			t.Fatalf("answer ID %d for %s", r.Id, r.Question[0].Name)
		}
		delete(want, r.Id)
	}
	// Idle: closed after the timeout (generous margin for a busy machine).
	start := time.Now()
	if !closedByServer(c, 10*time.Second) {
		t.Fatal("idle connection not closed")
	}
	if el := time.Since(start); el < 400*time.Millisecond {
		t.Fatalf("idle connection closed after %s, before the 500ms timeout", el)
	}
}

func TestSlowLorisDoesNotStarveOthers(t *testing.T) {
	up := testUpstream(t)
	ts := startSinkhole(t, writeLists(t, map[string]string{"x.txt": exchangeList}), "--upstream", up.Addr,
		"--tcp-max-conns", "8", "--tcp-max-conns-per-client", "4", "--tcp-idle-timeout", "1s")
	// 127.0.0.2 opens more connections than its share and trickles a
	// query into each, one byte per 300ms.
	m := newQuery("www.allowed.test", dns.TypeA)
	out, _ := m.Pack()
	frame := append([]byte{byte(len(out) >> 8), byte(len(out))}, out...)
	var wg sync.WaitGroup
	var cut sync.Map
	for i := 0; i < 8; i++ {
		c := rawTCP(t, "127.0.0.2", ts.addr)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, b := range frame {
				c.SetWriteDeadline(time.Now().Add(5 * time.Second))
				if _, err := c.Write([]byte{b}); err != nil {
					cut.Store(i, true)
					return
				}
				time.Sleep(300 * time.Millisecond)
				if closedByServer(c, time.Millisecond) {
					cut.Store(i, true)
					return
				}
			}
		}()
	}
	// Meanwhile other clients are served promptly over TCP and UDP.
	time.Sleep(500 * time.Millisecond)
	for i := 0; i < 5; i++ {
		for _, proto := range []string{"tcp", "udp"} {
			start := time.Now()
			r, err := exchangeFrom(proto, "127.0.0.1", ts.addr, newQuery("www.allowed.test", dns.TypeA), 5*time.Second)
			if err != nil || len(r.Answer) != 1 {
				t.Fatalf("%s query %d during slow-loris: %v %v", proto, i, r, err)
			}
			if el := time.Since(start); el > 2*time.Second {
				t.Fatalf("%s query %d took %s", proto, i, el)
			}
		}
	}
	wg.Wait()
	// Every trickling connection was cut: over the per-client cap at
	// once, the rest when the query did not arrive within the timeout.
	n := 0
	cut.Range(func(_, _ any) bool { n++; return true })
	if n != 8 {
		t.Fatalf("%d of 8 slow-loris connections cut", n)
	}
}

func TestSIGTERMAnswersInFlightQueries(t *testing.T) {
	// Every name answers, slowly; each query asks a name of its own so the
	// cache cannot merge them.
	up, err := dnstest.Start(dnstest.Options{CatchAll: true})
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	up.Delay = time.Second
	up.SetFault("*", dnstest.FaultSlow)
	lists := writeLists(t, map[string]string{"x.txt": "a.test\n"})
	p := startBinary(t, t.TempDir(), "--lists", lists, "--upstream", up.Addr, "--upstream-timeout", "5s")
	cmd, stderr, done, addr := p.cmd, p.stderr, p.done, p.dns
	deadline := time.Now().Add(10 * time.Second)
	// 40 queries wait on the slow upstream when SIGTERM arrives.
	const n = 40
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		proto := "udp"
		if i%4 == 0 {
			proto = "tcp"
		}
		name := fmt.Sprintf("q%d.slow.test", i)
		go func() {
			r, err := exchangeFrom(proto, "127.0.0.1", addr, newQuery(name, dns.TypeA), 15*time.Second)
			if err == nil && (r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1) {
				err = fmt.Errorf("%s answer %v", proto, r)
			}
			errs <- err
		}()
	}
	for up.Queries() < n && time.Now().Before(deadline.Add(10*time.Second)) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := up.Queries(); got != n {
		t.Fatalf("%d of %d queries in flight", got, n)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil {
			t.Errorf("in-flight query: %v", err)
		}
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
	if log := stderr.String(); !strings.Contains(log, "draining in-flight queries") || !strings.Contains(log, `"msg":"stopped"`) {
		t.Fatalf("shutdown not logged:\n%s", log)
	}
}

func TestAdminUnauthenticatedLearnsNothing(t *testing.T) {
	up := startUpstream(t)
	lists := writeLists(t, map[string]string{"x.txt": "a.test\n"})
	ts := startSinkhole(t, lists, "--upstream", up.Addr, "--admin-token-file", writeToken(t, "s3cret-token"))
	base := "http://" + ts.in.admin.Addr()
	var first string
	for _, rq := range []struct{ method, path, auth string }{
		{"GET", "/v1/status", ""},
		{"POST", "/v1/reload", "Bearer wrong"},
		{"GET", "/v1/query?name=" + lists, "Bearer "},
		{"GET", "/healthz", "Basic czNjcmV0LXRva2Vu"},
		{"GET", "/nope/" + lists, "bearer s3cret-token"},
		{"DELETE", "/metrics", "Bearer s3cret-token2"},
	} {
		req, _ := http.NewRequest(rq.method, base+rq.path, nil)
		if rq.auth != "" {
			req.Header.Set("Authorization", rq.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body := string(b)
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, `"error": "missing or wrong bearer token"`) {
			t.Fatalf("%s %s: %d %s", rq.method, rq.path, resp.StatusCode, body)
		}
		if first == "" {
			first = body
		}
		for _, secret := range []string{lists, "s3cret", up.Addr, version, "x.txt"} {
			if strings.Contains(body, secret) || strings.Contains(strings.Join(resp.Header.Values("WWW-Authenticate"), " "), secret) {
				t.Fatalf("%s %s: 401 reveals %q: %s", rq.method, rq.path, secret, body)
			}
		}
		if body != first {
			t.Fatalf("401 bodies differ: %q and %q", first, body)
		}
	}
	if ts.in.store.Reloads() != 1 {
		t.Fatalf("an unauthenticated reload went through (%d reloads)", ts.in.store.Reloads())
	}
}

// With every upstream gone, cached answers keep flowing, expired ones are
// served stale (RFC 8767: TTL 30, EDE 3), and only names never seen get
// SERVFAIL.
func TestUpstreamsGoneCachedAndStale(t *testing.T) {
	up := startUpstream(t, "fresh.test. 300 IN A 192.0.2.1", "short.test. 1 IN A 192.0.2.2")
	ts := startSinkhole(t, writeLists(t, map[string]string{"x.txt": exchangeList}), "--upstream", up.Addr,
		"--upstream-timeout", "300ms", "--serve-stale", "1h")
	for _, n := range []string{"fresh.test", "short.test"} {
		if r := ts.query(t, "udp", n, dns.TypeA); r.Rcode != dns.RcodeSuccess {
			t.Fatalf("%s: %v", n, r)
		}
	}
	up.SetFault("*", dnstest.FaultSilent) // every upstream gone
	time.Sleep(1500 * time.Millisecond)   // short.test's TTL runs out
	r := ts.query(t, "udp", "fresh.test", dns.TypeA)
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || r.Answer[0].Header().Ttl > 300 || r.Answer[0].Header().Ttl < 290 || ede(r) != nil {
		t.Fatalf("cached answer with upstreams gone: %v", r)
	}
	for _, proto := range []string{"udp", "tcp"} {
		r = ts.query(t, proto, "short.test", dns.TypeA)
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || r.Answer[0].Header().Ttl != 30 || ede(r) == nil || ede(r).InfoCode != dns.ExtendedErrorCodeStaleAnswer {
			t.Fatalf("%s: stale answer: %v", proto, r)
		}
	}
	r = ts.query(t, "udp", "never.test", dns.TypeA)
	if r.Rcode != dns.RcodeServerFailure || ede(r) == nil || ede(r).InfoCode != dns.ExtendedErrorCodeNoReachableAuthority {
		t.Fatalf("uncached name with upstreams gone: %v", r)
	}
}
