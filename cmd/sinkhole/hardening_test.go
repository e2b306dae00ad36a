package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/urfave/cli/v2"

	"github.com/sinkhole-dns/sinkhole/internal/admin"
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
	if n := up.QueriesFor("www.allowed.test"); n != 2 {
		t.Fatalf("upstream saw %d queries, want 2 (refused clients' queries never leave)", n)
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
