package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"google.golang.org/protobuf/proto"

	"github.com/sinkhole-dns/sinkhole/internal/dnstest"
	"github.com/sinkhole-dns/sinkhole/resolver/dnstap/dnstappb"
)

// readDnstapFile decodes a Frame Streams file of dnstap records with the
// bindings generated from dnstap.proto.
func readDnstapFile(t *testing.T, path string) []*dnstappb.Dnstap {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := bufio.NewReader(f)
	var out []*dnstappb.Dnstap
	var starts, stops int
	for {
		var n uint32
		if err := binary.Read(r, binary.BigEndian, &n); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatal(err)
		}
		if n == 0 { // control frame
			var l, typ uint32
			binary.Read(r, binary.BigEndian, &l)
			binary.Read(r, binary.BigEndian, &typ)
			io.CopyN(io.Discard, r, int64(l-4))
			switch typ {
			case 2:
				starts++
			case 3:
				stops++
			}
			continue
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(r, b); err != nil {
			t.Fatal(err)
		}
		d := new(dnstappb.Dnstap)
		if err := proto.Unmarshal(b, d); err != nil {
			t.Fatal(err)
		}
		out = append(out, d)
	}
	if starts != 1 || stops != 1 {
		t.Errorf("%d START and %d STOP frames, want 1 each", starts, stops)
	}
	return out
}

func wireOf(name string) []byte {
	b := make([]byte, 256)
	n, _ := dns.PackDomainName(dns.Fqdn(name), b, 0, nil, false)
	return b[:n]
}

// The known traffic of the observability tests, with --dnstap to a file
// and --dnstap-upstream: every query and answer, the upstream exchanges,
// the Policy of each blocked or monitored answer, read back by the
// generated bindings, golang-dnstap's reader and BIND's dnstap-read.
func TestDnstapFileRecordsKnownTraffic(t *testing.T) {
	up := obsUpstream(t)
	path := filepath.Join(t.TempDir(), "sinkhole.dnstap")
	ts := startSinkhole(t, writeLists(t, obsLists), "--upstream", up.Addr,
		"--dnstap", "file:"+path, "--dnstap-upstream", "--dnstap-identity", "resolver-1")
	sent := obsTraffic(t, ts)
	m := ts.metrics(t)
	ts.stop() // closes the stream
	recs := readDnstapFile(t, path)
	if int(m.Value("sinkhole_dnstap_sent_total")) > len(recs) || m.Value("sinkhole_dnstap_dropped_total") != 0 {
		t.Errorf("metrics: sent %v dropped %v; %d records in the file", m.Value("sinkhole_dnstap_sent_total"), m.Value("sinkhole_dnstap_dropped_total"), len(recs))
	}
	count := map[dnstappb.Message_Type]int{}
	type policy struct {
		name, rule, action, match, value string
	}
	var policies []policy
	for _, r := range recs {
		if string(r.Identity) != "resolver-1" || string(r.Version) != "sinkhole dev" {
			t.Fatalf("identity %q version %q", r.Identity, r.Version)
		}
		msg := r.Message
		count[msg.GetType()]++
		switch msg.GetType() {
		case dnstappb.Message_CLIENT_QUERY, dnstappb.Message_CLIENT_RESPONSE:
			if msg.GetSocketFamily() != dnstappb.SocketFamily_INET || len(msg.QueryAddress) != 4 || msg.QueryPort == nil {
				t.Errorf("client address: %v", msg)
			}
		case dnstappb.Message_FORWARDER_QUERY:
			if msg.GetSocketProtocol() != dnstappb.SocketProtocol_UDP || netip.AddrPortFrom(netip.AddrFrom4([4]byte(msg.ResponseAddress)), uint16(msg.GetResponsePort())).String() != up.Addr {
				t.Errorf("forwarder query: %v", msg)
			}
		}
		wire := msg.QueryMessage
		if msg.GetType() == dnstappb.Message_CLIENT_RESPONSE || msg.GetType() == dnstappb.Message_FORWARDER_RESPONSE {
			wire = msg.ResponseMessage
		}
		var dm dns.Msg
		if err := dm.Unpack(wire); err != nil {
			t.Fatalf("%v: message does not parse: %v", msg.GetType(), err)
		}
		if p := msg.Policy; p != nil {
			if msg.GetType() != dnstappb.Message_CLIENT_RESPONSE {
				t.Errorf("policy on %v", msg.GetType())
			}
			v := string(p.Value)
			if p.GetMatch() == dnstappb.Policy_RESPONSE_IP {
				if !bytes.Equal(p.Value, []byte{203, 0, 113, 5}) {
					t.Errorf("policy value %v, want 203.0.113.5", p.Value)
				}
				v = "203.0.113.5"
			}
			policies = append(policies, policy{dm.Question[0].Name, string(p.Rule), p.GetAction().String(), p.GetMatch().String(), v})
		}
	}
	if count[dnstappb.Message_CLIENT_QUERY] != len(sent) || count[dnstappb.Message_CLIENT_RESPONSE] != len(sent) {
		t.Errorf("%d CLIENT_QUERY and %d CLIENT_RESPONSE, want %d each", count[dnstappb.Message_CLIENT_QUERY], count[dnstappb.Message_CLIENT_RESPONSE], len(sent))
	}
	// 6 upstream tries (see TestMetricsAfterKnownTraffic); the one answering
	// another question times out: no FORWARDER_RESPONSE.
	if count[dnstappb.Message_FORWARDER_QUERY] != 6 || count[dnstappb.Message_FORWARDER_RESPONSE] != 5 {
		t.Errorf("%d FORWARDER_QUERY and %d FORWARDER_RESPONSE, want 6 and 5", count[dnstappb.Message_FORWARDER_QUERY], count[dnstappb.Message_FORWARDER_RESPONSE])
	}
	binance := "foreign-exchanges.txt:2 (Binance)"
	want := []policy{
		{"www.binance.com.", binance, "NXDOMAIN", "QNAME", string(wireOf("www.binance.com"))},
		{"www.binance.com.", binance, "NXDOMAIN", "QNAME", string(wireOf("www.binance.com"))},
		{"binance.com.", binance, "NXDOMAIN", "QNAME", string(wireOf("binance.com"))},
		{"cdn.allowed.test.", "foreign-exchanges.txt:4 (Bad IPs)", "NXDOMAIN", "RESPONSE_IP", "203.0.113.5"},
		{"www.pilot.test.", "pilot.txt:4 (Pilot)", "PASS", "QNAME", string(wireOf("www.pilot.test"))},
	}
	if len(policies) != len(want) {
		t.Fatalf("policies %+v\nwant %+v", policies, want)
	}
	for i := range want {
		if policies[i] != want[i] {
			t.Errorf("policy %d: %+v, want %+v", i, policies[i], want[i])
		}
	}

	// The real readers.
	tool := dnstest.NeedTool(t, "dnstap", "golang-github-dnstap-golang-dnstap-cli")
	out, err := exec.Command(tool, "-r", path, "-y").CombinedOutput()
	if err != nil {
		t.Fatalf("dnstap -r: %v\n%s", err, out)
	}
	for k, n := range map[string]int{"type: CLIENT_QUERY": len(sent), "type: CLIENT_RESPONSE": len(sent), "type: FORWARDER_QUERY": 6,
		"type: FORWARDER_RESPONSE": 5, "socket_protocol: TCP": 4, `identity: "resolver-1"`: len(recs)} {
		if got := strings.Count(string(out), k); got != n {
			t.Errorf("dnstap -r -y: %q %d times, want %d", k, got, n)
		}
	}
	tool = dnstest.NeedTool(t, "dnstap-read", "bind9-utils")
	out, err = exec.Command(tool, "-y", path).CombinedOutput()
	if err != nil {
		t.Fatalf("dnstap-read: %v\n%s", err, out)
	}
	for k, n := range map[string]int{"type: CLIENT_QUERY": len(sent), "type: CLIENT_RESPONSE": len(sent), "type: FORWARDER_QUERY": 6,
		"type: FORWARDER_RESPONSE": 5, "socket_protocol: TCP": 4} {
		if got := strings.Count(string(out), k); got != n {
			t.Errorf("dnstap-read -y: %q %d times, want %d", k, got, n)
		}
	}
}

// A collector killed and restarted while clients query: every query is
// answered; records are dropped (counted) while it is away, and flow again
// after the reconnection.
func TestDnstapCollectorRestartUnderLoad(t *testing.T) {
	tool := dnstest.NeedTool(t, "dnstap", "golang-github-dnstap-golang-dnstap-cli")
	up := obsUpstream(t)
	sock := filepath.Join(t.TempDir(), "dnstap.sock")
	collect := func() (*exec.Cmd, *syncBuffer) {
		out := &syncBuffer{}
		cmd := exec.Command(tool, "-u", sock, "-y")
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd, out
	}
	c1, out1 := collect()
	ts := startSinkhole(t, writeLists(t, obsLists), "--upstream", up.Addr, "--dnstap", "unix:"+sock, "--dnstap-queue", "512")
	waitUntil(t, "the collector connection", 10*time.Second, func() bool { return ts.metrics(t).Value("sinkhole_dnstap_connected") == 1 })

	var answered, failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &dns.Client{Net: "udp", Timeout: 3 * time.Second}
			names := []string{"www.allowed.test", "www.binance.com", "cdn.allowed.test"}
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				m := new(dns.Msg)
				m.SetQuestion(dns.Fqdn(names[(g+i)%len(names)]), dns.TypeA)
				if _, _, err := c.Exchange(m, ts.addr); err != nil {
					failed.Add(1)
					t.Logf("query: %v", err)
				} else {
					answered.Add(1)
				}
			}
		}()
	}
	waitUntil(t, "records at the first collector", 10*time.Second, func() bool { return strings.Count(out1.String(), "type: MESSAGE") > 100 })
	c1.Process.Kill()
	c1.Wait()
	os.Remove(sock)
	waitUntil(t, "records dropped while the collector is away", 10*time.Second, func() bool { return ts.metrics(t).Value("sinkhole_dnstap_dropped_total") > 0 })
	_, out2 := collect()
	waitUntil(t, "records at the restarted collector", 15*time.Second, func() bool { return strings.Count(out2.String(), "type: MESSAGE") > 100 })
	close(stop)
	wg.Wait()
	m := ts.metrics(t)
	t.Logf("%d queries answered; dnstap sent %v, dropped %v, reconnects %v", answered.Load(),
		m.Value("sinkhole_dnstap_sent_total"), m.Value("sinkhole_dnstap_dropped_total"), m.Value("sinkhole_dnstap_reconnects_total"))
	if failed.Load() != 0 {
		t.Errorf("%d of %d queries unanswered", failed.Load(), failed.Load()+answered.Load())
	}
	if m.Value("sinkhole_dnstap_reconnects_total") != 1 {
		t.Errorf("reconnects %v, want 1", m.Value("sinkhole_dnstap_reconnects_total"))
	}
}

func TestDnstapFlagErrors(t *testing.T) {
	lists := writeLists(t, map[string]string{"x.txt": "a.com\n"})
	dir := t.TempDir()
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--dnstap", "/run/dnstap.sock"}, exitUsage, `sinkhole: --dnstap: dnstap target "/run/dnstap.sock": want unix:PATH, tcp:HOST:PORT or file:PATH`},
		{[]string{"--dnstap", "udp:127.0.0.1:6000"}, exitUsage, `sinkhole: --dnstap: dnstap target "udp:127.0.0.1:6000": unknown kind "udp"`},
		{[]string{"--dnstap", "tcp:127.0.0.1"}, exitUsage, `sinkhole: --dnstap: dnstap target "tcp:127.0.0.1": address 127.0.0.1: missing port`},
		{[]string{"--dnstap-upstream"}, exitUsage, "sinkhole: --dnstap-upstream needs --dnstap"},
		{[]string{"--dnstap", "unix:/x", "--dnstap-queue", "0"}, exitUsage, "sinkhole: --dnstap-queue 0: want between 1 and"},
		{[]string{"--dnstap", "file:" + filepath.Join(dir, "missing", "t.dnstap")}, exitFailure,
			"sinkhole: dnstap: open " + filepath.Join(dir, "missing", "t.dnstap") + ": no such file or directory"},
	} {
		code, last, _ := serveError(t, append([]string{"--lists", lists, "--upstream", "127.0.0.1:1",
			"--audit-log", filepath.Join(dir, "audit.log")}, tt.args...))
		if code != tt.code || !strings.HasPrefix(last, tt.want) {
			t.Errorf("%v: exit %d, %q; want %d and %q", tt.args, code, last, tt.code, tt.want)
		}
	}
}

// Every transport gives its dnstap socket protocol (DOH with HTTP/3 for
// DNS over HTTP/3), and the block its Policy, whatever the transport.
func TestDnstapEncryptedTransports(t *testing.T) {
	up := startUpstream(t, encRecords...)
	path := filepath.Join(t.TempDir(), "enc.dnstap")
	es := startEncrypted(t, writeLists(t, map[string]string{"list.txt": encLists}), "--upstream", up.Addr, "--dnstap", "file:"+path)
	for _, tr := range encTransports {
		if _, _, err := es.ask(tr, newQuery("www.blocked.example", dns.TypeA)); err != nil {
			t.Fatalf("%s: %v", tr, err)
		}
	}
	es.stop()
	type seen struct {
		proto dnstappb.SocketProtocol
		http  string
	}
	got := map[seen]int{}
	for _, r := range readDnstapFile(t, path) {
		m := r.Message
		var dm dns.Msg
		if m.GetType() == dnstappb.Message_CLIENT_QUERY {
			if err := dm.Unpack(m.QueryMessage); err != nil || dm.Question[0].Name != "www.blocked.example." {
				t.Errorf("%v query message: %v %v", m.GetSocketProtocol(), err, dm.Question)
			}
			continue
		}
		if err := dm.Unpack(m.ResponseMessage); err != nil || dm.Rcode != dns.RcodeNameError {
			t.Errorf("%v response message: %v %v", m.GetSocketProtocol(), err, &dm)
		}
		if m.Policy == nil || string(m.Policy.Rule) != "list.txt:2 (Example Exchange)" || m.Policy.GetAction() != dnstappb.Policy_NXDOMAIN {
			t.Errorf("%v: policy %v", m.GetSocketProtocol(), m.Policy)
		}
		h := ""
		if m.HttpProtocol != nil {
			h = m.GetHttpProtocol().String()
		}
		got[seen{m.GetSocketProtocol(), h}]++
	}
	want := map[seen]int{{dnstappb.SocketProtocol_DOT, ""}: 1, {dnstappb.SocketProtocol_DOH, ""}: 2,
		{dnstappb.SocketProtocol_DOH, "HTTP3"}: 1, {dnstappb.SocketProtocol_DOQ, ""}: 1}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("responses by protocol %v, want %v", got, want)
	}
}
