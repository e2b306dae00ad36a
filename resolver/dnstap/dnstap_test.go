package dnstap

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"google.golang.org/protobuf/proto"

	"github.com/sinkhole-dns/sinkhole/internal/dnstest"
	"github.com/sinkhole-dns/sinkhole/resolver/dnstap/dnstappb"
)

var (
	client = netip.MustParseAddrPort("192.0.2.10:40000")
	server = netip.MustParseAddrPort("192.0.2.53:53")
)

func packed(t testing.TB, name string, rcode int, response bool) []byte {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeA)
	m.Id = 4242
	if response {
		m.Response = true
		m.Rcode = rcode
	}
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sample(t testing.TB, i int) *Message {
	qt := time.Unix(1700000000, 123456789).Add(time.Duration(i) * time.Millisecond)
	return &Message{
		Type: ClientResponse, Protocol: UDP, Query: client, Response: server,
		QueryTime: qt, ResponseTime: qt.Add(time.Millisecond),
		QueryMessage:    packed(t, "binance.com", 0, false),
		ResponseMessage: packed(t, "binance.com", dns.RcodeNameError, true),
		Policy: &Policy{Type: "blocklist", Rule: []byte("foreign-exchanges.txt:12 (Binance)"),
			Action: ActionNXDomain, Match: MatchQName, Value: wireName("binance.com")},
	}
}

func wireName(s string) []byte {
	b := make([]byte, 256)
	n, _ := dns.PackDomainName(dns.Fqdn(s), b, 0, nil, false)
	return b[:n]
}

// The encoder's bytes decode with bindings generated from dnstap.proto,
// field by field, Policy included.
func TestAppendDecodes(t *testing.T) {
	v6 := netip.MustParseAddrPort("[2001:db8::1]:5300")
	for _, tc := range []struct {
		name string
		m    Message
	}{
		{"client response with policy", *sample(t, 0)},
		{"ipv6 forwarder query over tcp", Message{Type: ForwarderQuery, Protocol: TCP, Query: v6,
			Response: netip.MustParseAddrPort("[2001:db8::53]:53"), QueryTime: time.Unix(5, 7),
			QueryMessage: packed(t, "example.org", 0, false)}},
		{"doh3 with a 300-byte response (multi-byte lengths)", Message{Type: ClientResponse, Protocol: DOH, HTTP: HTTP3,
			Query: client, ResponseMessage: bytes.Repeat([]byte{7}, 300),
			Policy: &Policy{Type: "blocklist", Rule: bytes.Repeat([]byte("r"), 200), Action: ActionPass,
				Match: MatchResponseIP, Value: []byte{203, 0, 113, 7}}}},
		{"mapped v4 client with a v6 responder", Message{Type: ClientQuery, Protocol: UDP,
			Query: netip.MustParseAddrPort("[::ffff:192.0.2.1]:1"), Response: v6}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := Append(nil, "resolver-1", "sinkhole 1.0", &tc.m)
			var d dnstappb.Dnstap
			if err := proto.Unmarshal(b, &d); err != nil {
				t.Fatal(err)
			}
			if string(d.Identity) != "resolver-1" || string(d.Version) != "sinkhole 1.0" || d.GetType() != dnstappb.Dnstap_MESSAGE {
				t.Fatalf("header: %v", &d)
			}
			m := d.Message
			if int32(m.GetType()) != int32(tc.m.Type) || int32(m.GetSocketProtocol()) != int32(tc.m.Protocol) ||
				(m.HttpProtocol == nil) != (tc.m.HTTP == 0) || tc.m.HTTP != 0 && int32(m.GetHttpProtocol()) != int32(tc.m.HTTP) {
				t.Errorf("type/protocol: %v", m)
			}
			checkAddr := func(what string, got []byte, port uint32, want netip.AddrPort) {
				if !want.IsValid() {
					if got != nil {
						t.Errorf("%s: %x, want none", what, got)
					}
					return
				}
				a, _ := netip.AddrFromSlice(got)
				if a.Unmap() != want.Addr().Unmap() || port != uint32(want.Port()) {
					t.Errorf("%s: %v port %d, want %v", what, a, port, want)
				}
			}
			checkAddr("query address", m.QueryAddress, m.GetQueryPort(), tc.m.Query)
			checkAddr("response address", m.ResponseAddress, m.GetResponsePort(), tc.m.Response)
			wantFamily := dnstappb.SocketFamily_INET
			if tc.m.Query.Addr().Is6() && !tc.m.Query.Addr().Is4In6() || tc.m.Query.Addr().Is4In6() && tc.m.Response.Addr().Is6() {
				wantFamily = dnstappb.SocketFamily_INET6
			}
			if m.GetSocketFamily() != wantFamily || len(m.QueryAddress) != map[dnstappb.SocketFamily]int{1: 4, 2: 16}[wantFamily] {
				t.Errorf("family %v with a %d-byte address, want %v", m.GetSocketFamily(), len(m.QueryAddress), wantFamily)
			}
			if !tc.m.QueryTime.IsZero() && (m.GetQueryTimeSec() != uint64(tc.m.QueryTime.Unix()) || m.GetQueryTimeNsec() != uint32(tc.m.QueryTime.Nanosecond())) {
				t.Errorf("query time %d.%d", m.GetQueryTimeSec(), m.GetQueryTimeNsec())
			}
			if tc.m.QueryTime.IsZero() != (m.QueryTimeSec == nil) || tc.m.ResponseTime.IsZero() != (m.ResponseTimeSec == nil) {
				t.Errorf("times written when unset or missing when set: %v", m)
			}
			if !bytes.Equal(m.QueryMessage, tc.m.QueryMessage) || !bytes.Equal(m.ResponseMessage, tc.m.ResponseMessage) {
				t.Errorf("messages differ")
			}
			if p := tc.m.Policy; p != nil {
				g := m.Policy
				if g.GetType() != p.Type || !bytes.Equal(g.Rule, p.Rule) || int32(g.GetAction()) != int32(p.Action) ||
					int32(g.GetMatch()) != int32(p.Match) || !bytes.Equal(g.Value, p.Value) {
					t.Errorf("policy %v, want %+v", g, p)
				}
			} else if m.Policy != nil {
				t.Errorf("policy %v, want none", m.Policy)
			}
		})
	}
}

func TestAppendAllocs(t *testing.T) {
	m := sample(t, 0)
	buf := make([]byte, 0, 1024)
	if n := testing.AllocsPerRun(100, func() { buf = Append(buf[:0], "id", "v", m) }); n != 0 {
		t.Errorf("Append allocates %v times per message", n)
	}
}

func TestTransport(t *testing.T) {
	for name, want := range map[string][2]int32{"udp": {1, 0}, "tcp": {2, 0}, "dot": {3, 0}, "doh": {4, 0}, "doh2": {4, 2}, "doh3": {4, 3}, "doq": {7, 0}} {
		p, h, ok := Transport(name)
		if !ok || int32(p) != want[0] || int32(h) != want[1] {
			t.Errorf("Transport(%q) = %d, %d, %v; want %v", name, p, h, ok, want)
		}
	}
	if _, _, ok := Transport("carrier-pigeon"); ok {
		t.Error("unknown transport accepted")
	}
}

func TestParseTarget(t *testing.T) {
	for _, tc := range []struct{ in, network, addr, err string }{
		{"unix:/run/dnstap.sock", "unix", "/run/dnstap.sock", ""},
		{"tcp:127.0.0.1:6000", "tcp", "127.0.0.1:6000", ""},
		{"tcp:[::1]:6000", "tcp", "[::1]:6000", ""},
		{"file:/var/log/sinkhole.dnstap", "file", "/var/log/sinkhole.dnstap", ""},
		{"tcp:127.0.0.1", "", "", "missing port"},
		{"udp:127.0.0.1:6000", "", "", "unknown kind"},
		{"/run/dnstap.sock", "", "", "want unix:PATH"},
		{"file:", "", "", "want unix:PATH"},
	} {
		n, a, err := ParseTarget(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseTarget(%q) error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || n != tc.network || a != tc.addr {
			t.Errorf("ParseTarget(%q) = %q, %q, %v", tc.in, n, a, err)
		}
	}
}

func closeWriter(t *testing.T, w *Writer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, n int) string {
	path := filepath.Join(t.TempDir(), "sinkhole.dnstap")
	w, err := New(Config{Target: "file:" + path, Identity: "resolver-1", Version: "sinkhole test"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		m := sample(t, i)
		if i%2 == 0 {
			m.Type, m.ResponseMessage, m.ResponseTime, m.Policy = ClientQuery, nil, time.Time{}, nil
		}
		if !w.Write(m) {
			t.Fatalf("record %d dropped", i)
		}
	}
	closeWriter(t, w)
	if w.Sent() != uint64(n) || w.Dropped() != 0 {
		t.Fatalf("sent %d dropped %d, want %d and 0", w.Sent(), w.Dropped(), n)
	}
	return path
}

// golang-dnstap's reader reads the file (a unidirectional Frame Stream).
func TestFileReadByDnstapTool(t *testing.T) {
	tool := dnstest.NeedTool(t, "dnstap", "golang-github-dnstap-golang-dnstap-cli")
	path := writeFile(t, 10)
	out, err := exec.Command(tool, "-r", path, "-y").CombinedOutput()
	if err != nil {
		t.Fatalf("dnstap -r: %v\n%s", err, out)
	}
	s := string(out)
	for want, n := range map[string]int{
		"type: MESSAGE": 10, `identity: "resolver-1"`: 10, `version: "sinkhole test"`: 10,
		"type: CLIENT_QUERY": 5, "type: CLIENT_RESPONSE": 5, "socket_family: INET": 10, "socket_protocol: UDP": 10,
		"query_address: 192.0.2.10": 10, "query_port: 40000": 10, "response_address: 192.0.2.53": 10,
		"status: NXDOMAIN": 5, "binance.com.": 15, "query_time: !!timestamp 2023-11-14 22:13:20.123456789": 1,
	} {
		if got := strings.Count(s, want); got != n {
			t.Errorf("%q %d times, want %d", want, got, n)
		}
	}
	if t.Failed() {
		t.Logf("output:\n%s", s)
	}
}

// BIND's reader reads the same file.
func TestFileReadByBINDDnstapRead(t *testing.T) {
	tool := dnstest.NeedTool(t, "dnstap-read", "bind9-utils")
	path := writeFile(t, 4)
	out, err := exec.Command(tool, "-y", path).CombinedOutput()
	if err != nil {
		t.Fatalf("dnstap-read: %v\n%s", err, out)
	}
	s := string(out)
	for want, n := range map[string]int{
		"type: MESSAGE": 4, "identity: resolver-1": 4, "type: CLIENT_QUERY": 2, "type: CLIENT_RESPONSE": 2,
		`query_address: "192.0.2.10"`: 4, "socket_protocol: UDP": 4, "status: NXDOMAIN": 4, // header and text
	} {
		if got := strings.Count(s, want); got != n {
			t.Errorf("%q %d times, want %d", want, got, n)
		}
	}
	if t.Failed() {
		t.Logf("output:\n%s", s)
	}
}

// collector is a dnstap command reading from a socket, YAML on its stdout.
type collector struct {
	cmd *exec.Cmd
	out *lockedBuffer
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func startCollector(t *testing.T, tool string, args ...string) *collector {
	t.Helper()
	c := &collector{cmd: exec.Command(tool, append(args, "-y")...), out: &lockedBuffer{}}
	c.cmd.Stdout, c.cmd.Stderr = c.out, c.out
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.kill() })
	return c
}

func (c *collector) kill() {
	if c.cmd.ProcessState == nil {
		c.cmd.Process.Kill()
		c.cmd.Wait()
	}
}

// messages counts the records the collector printed.
func (c *collector) messages() int { return strings.Count(c.out.String(), "type: MESSAGE") }

func waitFor(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// freeTCPAddr probes a free loopback port for a collector to listen on.
func freeTCPAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// A socket collector: the bidirectional handshake with golang-dnstap's
// reader; killed, records are dropped (counted) without Write blocking;
// restarted, the Writer reconnects and records flow again.
func TestSocketCollectorRestart(t *testing.T) {
	tool := dnstest.NeedTool(t, "dnstap", "golang-github-dnstap-golang-dnstap-cli")
	for _, kind := range []string{"unix", "tcp"} {
		t.Run(kind, func(t *testing.T) {
			var target string
			var listen []string
			if kind == "unix" {
				sock := filepath.Join(t.TempDir(), "dnstap.sock")
				target, listen = "unix:"+sock, []string{"-u", sock}
			} else {
				addr := freeTCPAddr(t)
				target, listen = "tcp:"+addr, []string{"-l", addr}
			}
			c := startCollector(t, tool, listen...)
			w, err := New(Config{Target: target, Identity: "resolver-1", Queue: 256})
			if err != nil {
				t.Fatal(err)
			}
			defer closeWriter(t, w)
			waitFor(t, "the first connection", 10*time.Second, w.Connected)
			for i := range 50 {
				w.Write(sample(t, i))
			}
			waitFor(t, "50 records at the collector", 10*time.Second, func() bool { return c.messages() == 50 })

			c.kill()
			waitFor(t, "the writer to notice", 10*time.Second, func() bool { return !w.Connected() })
			// The collector is away: Write returns at once; over the queue's
			// 256 records, drops are counted.
			start := time.Now()
			for i := range 1000 {
				w.Write(sample(t, i))
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("1000 writes with the collector away took %v", d)
			}
			if w.Dropped() < 1000-256 {
				t.Errorf("dropped %d, want at least %d", w.Dropped(), 1000-256)
			}
			if kind == "unix" {
				os.Remove(listen[1]) // the killed reader leaves its socket file
			}
			c2 := startCollector(t, tool, listen...)
			waitFor(t, "the reconnection", 15*time.Second, w.Connected)
			w.Write(sample(t, 0))
			waitFor(t, "records after the restart", 10*time.Second, func() bool { return c2.messages() > 0 })
			if w.Reconnects() != 1 {
				t.Errorf("reconnects %d, want 1", w.Reconnects())
			}
			// Every record is accounted for: written to a socket, or dropped.
			closeWriter(t, w)
			if total := w.Sent() + w.Dropped(); total != 50+1000+1 {
				t.Errorf("sent %d + dropped %d = %d, want %d", w.Sent(), w.Dropped(), total, 1051)
			}
		})
	}
}

// BenchmarkWrite is the query path's cost of one record: encoding into a
// pooled buffer and queueing it (a goroutine drains the queue to a file).
func BenchmarkWrite(b *testing.B) {
	w, err := New(Config{Target: "file:" + filepath.Join(b.TempDir(), "b.dnstap"), Identity: "resolver-1", Version: "sinkhole bench", Queue: 1 << 16})
	if err != nil {
		b.Fatal(err)
	}
	m := sample(b, 0)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		w.Write(m)
	}
	b.StopTimer()
	w.Close(context.Background())
	b.ReportMetric(float64(w.Dropped())/float64(b.N), "dropped/op")
}

// Closing with no collector ever reached counts what was queued as dropped
// and returns at once.
func TestCloseWithoutCollector(t *testing.T) {
	w, err := New(Config{Target: "unix:" + filepath.Join(t.TempDir(), "absent.sock"), Queue: 8})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		w.Write(sample(t, i))
	}
	start := time.Now()
	closeWriter(t, w)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %v", d)
	}
	if w.Sent() != 0 || w.Dropped() != 20 {
		t.Errorf("sent %d dropped %d, want 0 and 20", w.Sent(), w.Dropped())
	}
}
