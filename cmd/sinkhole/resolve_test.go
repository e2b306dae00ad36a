package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/internal/dnstest"
)

const exchangeList = `# test list
# platform: Binance
binance.com
bnbstatic.com   # CDN
# platform: Wild
*.wild.test
=exact.test
@@safe.binance.com
`

func bigRecords(name string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s 300 IN A 198.18.%d.%d", name, i/250, i%250+1)
	}
	return out
}

func testUpstream(t *testing.T) *dnstest.Server {
	recs := []string{
		"www.allowed.test. 300 IN A 192.0.2.10",
		"www.allowed.test. 300 IN AAAA 2001:db8::10",
		"cloaked.allowed.test. 300 IN CNAME edge.bnbstatic.com.",
		"edge.bnbstatic.com. 300 IN A 192.0.2.66",
		"safe.binance.com. 300 IN A 192.0.2.20",
		"wild.test. 300 IN A 192.0.2.30",
		"www.exact.test. 300 IN A 192.0.2.31",
	}
	return startUpstream(t, append(recs, bigRecords("big.allowed.test.", 60)...)...)
}

func TestResolveAllowedBlockedAndExceptions(t *testing.T) {
	up := testUpstream(t)
	ts := startSinkhole(t, writeLists(t, map[string]string{"foreign-exchanges.txt": exchangeList}), "--upstream", up.Addr)
	for _, proto := range []string{"udp", "tcp"} {
		t.Run(proto, func(t *testing.T) {
			r := ts.query(t, proto, "www.allowed.test", dns.TypeA)
			if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || !strings.HasSuffix(answerStrings(r)[0], "A 192.0.2.10") {
				t.Fatalf("allowed name: %v", r)
			}
			if !r.RecursionAvailable {
				t.Error("RA not set")
			}
			for _, name := range []string{"binance.com", "www.binance.com", "a.b.binance.com", "WWW.Binance.COM"} {
				r := ts.query(t, proto, name, dns.TypeA)
				if r.Rcode != dns.RcodeNameError || len(r.Answer) != 0 {
					t.Fatalf("%s: rcode %s, answers %v", name, dns.RcodeToString[r.Rcode], r.Answer)
				}
				e := ede(r)
				if e == nil || e.InfoCode != dns.ExtendedErrorCodeCensored || e.ExtraText != "blocked by foreign-exchanges.txt:3 (Binance)" {
					t.Fatalf("%s: EDE %v", name, e)
				}
				if len(r.Ns) != 1 || r.Ns[0].Header().Rrtype != dns.TypeSOA || !strings.EqualFold(r.Ns[0].Header().Name, "binance.com.") || r.Ns[0].Header().Ttl != 300 {
					t.Fatalf("%s: authority %v", name, r.Ns)
				}
				if !strings.EqualFold(r.Question[0].Name, dns.Fqdn(name)) {
					t.Fatalf("question not echoed: %v", r.Question)
				}
			}
			// Exception passes; wildcard covers only subdomains; exact only the name.
			if r := ts.query(t, proto, "safe.binance.com", dns.TypeA); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
				t.Fatalf("exception: %v", r)
			}
			if r := ts.query(t, proto, "wild.test", dns.TypeA); r.Rcode != dns.RcodeSuccess {
				t.Fatalf("wildcard parent: %v", r)
			}
			if r := ts.query(t, proto, "x.wild.test", dns.TypeA); r.Rcode != dns.RcodeNameError || ede(r).ExtraText != "blocked by foreign-exchanges.txt:6 (Wild)" {
				t.Fatalf("wildcard child: %v", r)
			}
			if r := ts.query(t, proto, "exact.test", dns.TypeA); r.Rcode != dns.RcodeNameError {
				t.Fatalf("exact: %v", r)
			}
			if r := ts.query(t, proto, "www.exact.test", dns.TypeA); r.Rcode != dns.RcodeSuccess {
				t.Fatalf("exact child: %v", r)
			}
			// CNAME cloaking: the allowed name points into a listed domain.
			r = ts.query(t, proto, "cloaked.allowed.test", dns.TypeA)
			if r.Rcode != dns.RcodeNameError || ede(r) == nil || ede(r).ExtraText != "blocked by foreign-exchanges.txt:4 (Binance); CNAME edge.bnbstatic.com" {
				t.Fatalf("CNAME cloaking: %v", r)
			}
		})
	}
}

func TestResolveEDNSAndTruncation(t *testing.T) {
	up := testUpstream(t)
	ts := startSinkhole(t, writeLists(t, map[string]string{"x.txt": exchangeList}), "--upstream", up.Addr)

	// No EDNS from the client: no OPT back, block still answered.
	m := new(dns.Msg)
	m.SetQuestion("binance.com.", dns.TypeA)
	r := ts.exchange(t, "udp", m)
	if r.IsEdns0() != nil || r.Rcode != dns.RcodeNameError {
		t.Fatalf("non-EDNS client got OPT or wrong rcode: %v", r)
	}
	// DO bit and buffer size go upstream and come back.
	m = new(dns.Msg)
	m.SetQuestion("www.allowed.test.", dns.TypeA)
	m.SetEdns0(4000, true)
	r = ts.exchange(t, "udp", m)
	if opt := r.IsEdns0(); opt == nil || !opt.Do() {
		t.Fatalf("DO bit lost: %v", r)
	}
	// 60 A records do not fit 512 bytes: TC over UDP, full answer over TCP.
	m = new(dns.Msg)
	m.SetQuestion("big.allowed.test.", dns.TypeA)
	r = ts.exchange(t, "udp", m)
	r.Compress = true // measure the size as sent
	if !r.Truncated || r.Len() > 512 {
		t.Fatalf("UDP answer not truncated to 512: TC=%v len=%d", r.Truncated, r.Len())
	}
	r = ts.exchange(t, "tcp", m)
	if r.Truncated || len(r.Answer) != 60 {
		t.Fatalf("TCP answer: TC=%v answers=%d", r.Truncated, len(r.Answer))
	}
	// A big EDNS buffer gets everything over UDP (the upstream was retried
	// over TCP when its UDP answer came back truncated).
	m.SetEdns0(4096, false)
	r = ts.exchange(t, "udp", m)
	if r.Truncated || len(r.Answer) != 60 {
		t.Fatalf("UDP 4096 answer: TC=%v answers=%d", r.Truncated, len(r.Answer))
	}
}

func TestResolveBlockActions(t *testing.T) {
	up := testUpstream(t)
	lists := writeLists(t, map[string]string{"x.txt": exchangeList})
	type want struct {
		qtype  uint16
		rcode  int
		answer string // suffix of the single answer, "" for none
		soa    bool
	}
	tests := []struct {
		args  []string
		wants []want
	}{
		{[]string{"--block-action", "nodata"}, []want{{dns.TypeA, dns.RcodeSuccess, "", true}}},
		{[]string{"--block-action", "refused"}, []want{{dns.TypeA, dns.RcodeRefused, "", false}}},
		{[]string{"--block-action", "sinkhole"}, []want{
			{dns.TypeA, dns.RcodeSuccess, "IN A 0.0.0.0", false},
			{dns.TypeAAAA, dns.RcodeSuccess, "IN AAAA ::", false},
			{dns.TypeMX, dns.RcodeSuccess, "", true},
		}},
		{[]string{"--block-action", "sinkhole", "--sinkhole-ipv4", "192.0.2.99", "--sinkhole-ipv6", "2001:db8::99", "--block-ttl", "60s"}, []want{
			{dns.TypeA, dns.RcodeSuccess, "60 IN A 192.0.2.99", false},
			{dns.TypeAAAA, dns.RcodeSuccess, "60 IN AAAA 2001:db8::99", false},
		}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			ts := startSinkhole(t, lists, append([]string{"--upstream", up.Addr}, tt.args...)...)
			for _, w := range tt.wants {
				r := ts.query(t, "udp", "www.binance.com", w.qtype)
				if r.Rcode != w.rcode {
					t.Fatalf("%s: rcode %s want %s", dns.TypeToString[w.qtype], dns.RcodeToString[r.Rcode], dns.RcodeToString[w.rcode])
				}
				got := ""
				if len(r.Answer) == 1 {
					got = answerStrings(r)[0]
				} else if len(r.Answer) > 1 {
					t.Fatalf("answers %v", r.Answer)
				}
				if !strings.HasSuffix(got, w.answer) || (w.answer == "" && got != "") {
					t.Fatalf("%s: answer %q want suffix %q", dns.TypeToString[w.qtype], got, w.answer)
				}
				if (len(r.Ns) == 1) != w.soa {
					t.Fatalf("%s: authority %v", dns.TypeToString[w.qtype], r.Ns)
				}
				if e := ede(r); e == nil || e.InfoCode != dns.ExtendedErrorCodeCensored {
					t.Fatalf("no EDE 16: %v", r)
				}
			}
		})
	}
}

func TestResolveFailover(t *testing.T) {
	up := testUpstream(t)
	dead, err := dnstest.StartSilent()
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	lists := writeLists(t, map[string]string{"x.txt": exchangeList})
	ts := startSinkhole(t, lists, "--upstream", dead.Addr, "--upstream", up.Addr, "--upstream-timeout", "300ms")
	start := time.Now()
	r := ts.query(t, "udp", "www.allowed.test", dns.TypeA)
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Fatalf("failover answer: %v", r)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Fatalf("failover took %s", el)
	}
	// Every upstream dead: SERVFAIL with EDE 22 (timeouts).
	ts2 := startSinkhole(t, lists, "--upstream", dead.Addr, "--upstream-timeout", "200ms")
	r = ts2.query(t, "udp", "www.allowed.test", dns.TypeA)
	if r.Rcode != dns.RcodeServerFailure || ede(r) == nil || ede(r).InfoCode != dns.ExtendedErrorCodeNoReachableAuthority {
		t.Fatalf("all dead: %v", r)
	}
	// Upstream that never answers one name: that name times out, others work.
	up.SetFault("hang.allowed.test", dnstest.FaultSilent)
	ts3 := startSinkhole(t, lists, "--upstream", up.Addr, "--upstream-timeout", "200ms")
	if r := ts3.query(t, "udp", "hang.allowed.test", dns.TypeA); r.Rcode != dns.RcodeServerFailure {
		t.Fatalf("hanging name: %v", r)
	}
	if r := ts3.query(t, "tcp", "www.allowed.test", dns.TypeA); r.Rcode != dns.RcodeSuccess {
		t.Fatalf("other name after a hang: %v", r)
	}
}

func TestResolveNetworkErrorEDE(t *testing.T) {
	// A closed TCP/UDP port on loopback answers with ICMP port unreachable.
	dead, err := dnstest.StartSilent()
	if err != nil {
		t.Fatal(err)
	}
	addr := dead.Addr
	dead.Close()
	ts := startSinkhole(t, writeLists(t, map[string]string{"x.txt": exchangeList}), "--upstream", addr, "--upstream-timeout", "500ms")
	r := ts.query(t, "udp", "www.allowed.test", dns.TypeA)
	if r.Rcode != dns.RcodeServerFailure || ede(r) == nil || ede(r).InfoCode != dns.ExtendedErrorCodeNetworkError {
		t.Fatalf("refused upstream: %v", r)
	}
}

func TestResolveBadListFile(t *testing.T) {
	up := testUpstream(t)
	lists := writeLists(t, map[string]string{
		"good.txt": "binance.com\n",
		"bad.txt":  "# platform: X\nokx.com\nthis is not an entry\nhttps://bybit.com/\n",
	})
	ts := startSinkhole(t, lists, "--upstream", up.Addr)
	if r := ts.query(t, "udp", "binance.com", dns.TypeA); r.Rcode != dns.RcodeNameError {
		t.Fatalf("good file not enforced: %v", r)
	}
	// The broken file is not loaded at all (a half-loaded regulator file
	// could silently unblock a platform).
	if r := ts.query(t, "udp", "okx.com", dns.TypeA); r.Rcode == dns.RcodeNameError && ede(r) != nil {
		t.Fatalf("broken file partly loaded: %v", r)
	}
	log := ts.stderr.String()
	for _, want := range []string{`bad.txt:3: unexpected text after entry`, `bad.txt:4: looks like a URL`} {
		if !strings.Contains(log, want) {
			t.Fatalf("log lacks %q:\n%s", want, log)
		}
	}
}

func TestResolveWithDig(t *testing.T) {
	dig, err := exec.LookPath("dig")
	if err != nil {
		t.Skip("dig not installed")
	}
	up := testUpstream(t)
	ts := startSinkhole(t, writeLists(t, map[string]string{"foreign-exchanges.txt": exchangeList}), "--upstream", up.Addr)
	host, port, _ := strings.Cut(ts.addr, ":")
	for _, tcp := range []string{"+notcp", "+tcp"} {
		out, err := exec.Command(dig, "@"+host, "-p", port, tcp, "+time=5", "+tries=1", "www.binance.com").CombinedOutput()
		if err != nil {
			t.Fatalf("dig: %v\n%s", err, out)
		}
		s := string(out)
		if !strings.Contains(s, "status: NXDOMAIN") || !strings.Contains(s, "EDE: 16 (Censored): (blocked by foreign-exchanges.txt:3 (Binance))") {
			t.Fatalf("dig output:\n%s", s)
		}
		out, _ = exec.Command(dig, "@"+host, "-p", port, tcp, "+time=5", "+tries=1", "+short", "www.allowed.test").CombinedOutput()
		if strings.TrimSpace(string(out)) != "192.0.2.10" {
			t.Fatalf("dig allowed: %s", out)
		}
	}
}

func TestServeFlagErrors(t *testing.T) {
	lists := writeLists(t, map[string]string{"x.txt": "a.com\n"})
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--bogus"}, "sinkhole: unknown flag --bogus"},
		{[]string{"--block-action", "drop"}, `sinkhole: --block-action "drop": want nxdomain, nodata, refused or sinkhole`},
		{[]string{"--sinkhole-ipv4", "::1"}, `sinkhole: --sinkhole-ipv4 "::1": want an IPv4 address`},
		{[]string{"--sinkhole-ipv6", "1.2.3.4"}, `sinkhole: --sinkhole-ipv6 "1.2.3.4": want an IPv6 address`},
		{[]string{"--block-ttl", "soon"}, `sinkhole: --block-ttl "soon": not a duration; use a unit, e.g. 300s or 5m`},
		{[]string{"--upstream", "1.2.3.4:x:y:z:"}, "sinkhole: --upstream"},
		{[]string{"--listen", "nohostport"}, `sinkhole: --listen "nohostport": want host:port`},
		{[]string{"--log-level", "loud"}, `sinkhole: --log-level "loud"`},
		{[]string{"--upstream", "127.0.0.1:5353", "--listen", "127.0.0.1:5353"}, "sinkhole: --upstream 127.0.0.1:5353 is this server's own --listen address (a forwarding loop)"},
		{[]string{"extra-arg"}, `sinkhole: serve takes no arguments, got "extra-arg"`},
	}
	for _, tt := range tests {
		var stderr syncBuffer
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		code := run(ctx, append([]string{"sinkhole", "serve", "--lists", lists, "--upstream", "127.0.0.1:1"}, tt.args...), io_discard{}, &stderr)
		cancel()
		out := stderr.String()
		if code != exitUsage || !strings.HasPrefix(out, tt.want) || strings.Count(out, "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tt.args, code, out, tt.want)
		}
	}
	// A missing lists directory is a bad option (exit 2) naming it.
	var stderr syncBuffer
	code := run(t.Context(), []string{"sinkhole", "serve", "--listen", "127.0.0.1:0", "--lists", "/nonexistent/lists", "--upstream", "127.0.0.1:1"}, io_discard{}, &stderr)
	if code != exitUsage || !strings.Contains(stderr.String(), "/nonexistent/lists") {
		t.Errorf("missing lists: exit %d, %q", code, stderr.String())
	}
}

type io_discard struct{}

func (io_discard) Write(p []byte) (int, error) { return len(p), nil }

func TestMain(m *testing.M) {
	os.Exit(m.Run())
}
