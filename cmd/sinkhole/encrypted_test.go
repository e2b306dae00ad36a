package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/sinkhole-dns/sinkhole/internal/tlscert/certtest"
)

// tlsName is the name the test certificates are issued for (with 127.0.0.1).
const tlsName = "dns.sinkhole.test"

// encServer is a sinkhole with every encrypted listener on loopback.
type encServer struct {
	*testServer
	ca                   *certtest.CA
	caFile               string
	certDir              string
	dot, https, h3, quic string
}

// startEncrypted starts sinkhole with a DoT, DoH, HTTP/3 and DoQ listener
// and a certificate from a CA made for the test.
func startEncrypted(t *testing.T, lists string, args ...string) *encServer {
	t.Helper()
	ca := certtest.NewCA(t, "sinkhole test CA")
	dir := t.TempDir()
	cert, key := ca.Issue(t, time.Time{}, tlsName, "127.0.0.1").Write(t, dir)
	es := &encServer{ca: ca, caFile: ca.WriteCA(t, dir), certDir: dir}
	args = append([]string{"--listen-tls", "127.0.0.1:0", "--listen-https", "127.0.0.1:0", "--listen-h3", "127.0.0.1:0",
		"--listen-quic", "127.0.0.1:0", "--tls-cert", cert, "--tls-key", key, "--reload-debounce", "20ms"}, args...)
	es.testServer = startSinkhole(t, lists, args...)
	for _, l := range es.in.Status().Encrypted {
		switch l.Proto {
		case "dot":
			es.dot = l.Addr
		case "doh":
			es.https = l.Addr
		case "doh3":
			es.h3 = l.Addr
		case "doq":
			es.quic = l.Addr
		}
	}
	if es.dot == "" || es.https == "" || es.h3 == "" || es.quic == "" {
		t.Fatalf("listeners: %+v", es.in.Status().Encrypted)
	}
	return es
}

func (es *encServer) tlsConfig(alpn ...string) *tls.Config {
	return &tls.Config{RootCAs: es.ca.Pool(), ServerName: tlsName, NextProtos: alpn}
}

// encTransports are the encrypted ways to ask, each a real client.
var encTransports = []string{"dot", "doh-post", "doh-get", "doh3", "doq"}

// ask sends m over one encrypted transport.
func (es *encServer) ask(transport string, m *dns.Msg) (*dns.Msg, *http.Response, error) {
	return es.askPath(transport, "/dns-query", m, nil)
}

// askPath is ask with the DoH path and headers.
func (es *encServer) askPath(transport, path string, m *dns.Msg, hdr http.Header) (*dns.Msg, *http.Response, error) {
	id := m.Id
	if transport != "dot" {
		m.Id = 0 // RFC 8484 section 4.1, RFC 9250 section 4.2.1
	}
	pkt, err := m.Pack()
	m.Id = id
	if err != nil {
		return nil, nil, err
	}
	wire, resp, err := es.askWire(transport, path, pkt, hdr)
	if err != nil {
		return nil, resp, err
	}
	r := new(dns.Msg)
	if err := r.Unpack(wire); err != nil {
		return nil, resp, err
	}
	if transport != "dot" && r.Id != 0 {
		return nil, resp, fmt.Errorf("answer ID %d to a query with ID 0", r.Id)
	}
	r.Id = id
	return r, resp, nil
}

// askWire sends one packed query and returns the packed answer.
func (es *encServer) askWire(transport, path string, pkt []byte, hdr http.Header) ([]byte, *http.Response, error) {
	switch transport {
	case "dot":
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 8 * time.Second}, "tcp", es.dot, es.tlsConfig("dot"))
		if err != nil {
			return nil, nil, err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(8 * time.Second))
		b, err := framedExchange(c, pkt)
		return b, nil, err
	case "doq":
		ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
		defer cancel()
		c, err := quic.DialAddr(ctx, es.quic, es.tlsConfig("doq"), nil)
		if err != nil {
			return nil, nil, err
		}
		defer c.CloseWithError(0, "")
		st, err := c.OpenStreamSync(ctx)
		if err != nil {
			return nil, nil, err
		}
		st.SetDeadline(time.Now().Add(8 * time.Second))
		b, err := framedExchange(st, pkt)
		return b, nil, err
	}
	var rt http.RoundTripper
	var req *http.Request
	switch transport {
	case "doh-post":
		rt = &http.Transport{TLSClientConfig: es.tlsConfig(), ForceAttemptHTTP2: true}
		req, _ = http.NewRequest("POST", "https://"+es.https+path, bytes.NewReader(pkt))
		req.Header.Set("Content-Type", "application/dns-message")
	case "doh-get":
		rt = &http.Transport{TLSClientConfig: es.tlsConfig("http/1.1")}
		req, _ = http.NewRequest("GET", "https://"+es.https+path+"?dns="+base64.RawURLEncoding.EncodeToString(pkt), nil)
	case "doh3":
		rt = &http3.Transport{TLSClientConfig: es.tlsConfig()}
		req, _ = http.NewRequest("POST", "https://"+es.h3+path, bytes.NewReader(pkt))
		req.Header.Set("Content-Type", "application/dns-message")
	default:
		return nil, nil, fmt.Errorf("no transport %s", transport)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	cl := &http.Client{Transport: rt, Timeout: 8 * time.Second}
	defer cl.CloseIdleConnections()
	resp, err := cl.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, resp, err
	}
	if resp.StatusCode != 200 {
		return nil, resp, fmt.Errorf("HTTP %s: %s", resp.Status, body)
	}
	return body, resp, nil
}

// framedExchange writes one length-prefixed message (RFC 7766, RFC 9250)
// and reads one back.
func framedExchange(c io.ReadWriter, pkt []byte) ([]byte, error) {
	if _, err := c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(pkt))), pkt...)); err != nil {
		return nil, err
	}
	if cl, ok := c.(interface{ Close() error }); ok {
		if _, isStream := c.(*quic.Stream); isStream {
			cl.Close() // DoQ: FIN after the query
		}
	}
	var lb [2]byte
	if _, err := io.ReadFull(c, lb[:]); err != nil {
		return nil, err
	}
	b := make([]byte, binary.BigEndian.Uint16(lb[:]))
	_, err := io.ReadFull(c, b)
	return b, err
}

// doqExchange asks one query on its own stream of an open DoQ connection.
func doqExchange(ctx context.Context, c *quic.Conn, m *dns.Msg) (*dns.Msg, error) {
	id := m.Id
	m.Id = 0
	pkt, err := m.Pack()
	m.Id = id
	if err != nil {
		return nil, err
	}
	st, err := c.OpenStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	st.SetDeadline(time.Now().Add(8 * time.Second))
	b, err := framedExchange(st, pkt)
	if err != nil {
		return nil, err
	}
	r := new(dns.Msg)
	if err := r.Unpack(b); err != nil {
		return nil, err
	}
	if r.Id != 0 {
		return nil, fmt.Errorf("DoQ answer ID %d, want 0", r.Id)
	}
	r.Id = id
	return r, nil
}

const encLists = "# platform: Example Exchange\nblocked.example\n"

var encRecords = []string{"allowed.example. 300 IN A 192.0.2.10", "short.example. 42 IN A 192.0.2.11", "short.example. 60 IN A 192.0.2.12"}

// Every encrypted transport answers through the one query path: allowed
// names as the upstream answers them, listed names with the block answer
// and EDE 16, queries counted under the transport's proto label.
func TestEncryptedTransportsAnswer(t *testing.T) {
	up := startUpstream(t, encRecords...)
	es := startEncrypted(t, writeLists(t, map[string]string{"list.txt": encLists}), "--upstream", up.Addr)
	for _, tr := range encTransports {
		t.Run(tr, func(t *testing.T) {
			r, _, err := es.ask(tr, newQuery("allowed.example", dns.TypeA))
			if err != nil {
				t.Fatal(err)
			}
			if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || !strings.Contains(r.Answer[0].String(), "192.0.2.10") {
				t.Fatalf("allowed.example: %v", r)
			}
			r, _, err = es.ask(tr, newQuery("www.blocked.example", dns.TypeA))
			if err != nil {
				t.Fatal(err)
			}
			if e := ede(r); r.Rcode != dns.RcodeNameError || e == nil || e.InfoCode != dns.ExtendedErrorCodeCensored ||
				!strings.Contains(e.ExtraText, "list.txt:2 (Example Exchange)") {
				t.Fatalf("www.blocked.example: %v", r)
			}
		})
	}
	m := es.metrics(t)
	for _, proto := range []string{"dot", "doh", "doh3", "doq"} {
		if v := m.Value("sinkhole_queries_total", "type", "A", "proto", proto, "result", "blocked"); v < 1 {
			t.Errorf("blocked queries over %s counted %v", proto, v)
		}
	}
	if v := m.Value("sinkhole_tls_certificate_expiry_timestamp_seconds"); time.Unix(int64(v), 0).Before(time.Now()) {
		t.Errorf("certificate expiry metric %v", v)
	}
}

// A client outside --allow is refused on every transport.
func TestEncryptedRefusesOutsideAllow(t *testing.T) {
	up := startUpstream(t, encRecords...)
	es := startEncrypted(t, writeLists(t, map[string]string{"list.txt": encLists}), "--upstream", up.Addr, "--allow", "10.0.0.0/8")
	for _, tr := range encTransports {
		r, _, err := es.ask(tr, newQuery("allowed.example", dns.TypeA))
		if err != nil {
			t.Fatalf("%s: %v", tr, err)
		}
		if r.Rcode != dns.RcodeRefused || len(r.Answer) != 0 {
			t.Errorf("%s: client outside --allow got %v", tr, r)
		}
	}
	if n := up.Queries(); n != 0 {
		t.Errorf("refused clients' queries reached the upstream %d times", n)
	}
}

// The certificate is reloaded while serving: a new pair is picked up by
// the next handshake; a broken one keeps the last good pair serving, with
// the error in status.
func TestEncryptedCertificateReload(t *testing.T) {
	up := startUpstream(t, encRecords...)
	es := startEncrypted(t, writeLists(t, map[string]string{"list.txt": encLists}), "--upstream", up.Addr)
	served := func() *tls.ConnectionState {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", es.dot, es.tlsConfig("dot"))
		if err != nil {
			t.Fatalf("handshake: %v", err)
		}
		defer c.Close()
		st := c.ConnectionState()
		return &st
	}
	first := served().PeerCertificates[0]
	if st := statusOf(t, es.testServer); st.TLS == nil || st.TLS.NotAfter.IsZero() || !strings.Contains(strings.Join(st.TLS.Names, ","), tlsName) {
		t.Fatalf("status TLS: %+v", st.TLS)
	}
	var text strings.Builder
	st := statusOf(t, es.testServer)
	printStatus(&text, &st)
	for _, want := range []string{"encrypted: dot " + es.dot + ", doh " + es.https + ", doh3 " + es.h3 + ", doq " + es.quic,
		"certificate: " + tlsName + " 127.0.0.1, issuer CN=sinkhole test CA"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("sinkhole status has no %q:\n%s", want, text.String())
		}
	}

	next := es.ca.Issue(t, time.Now().Add(48*time.Hour), tlsName, "127.0.0.1", "dns2.sinkhole.test")
	next.Write(t, es.certDir)
	waitUntil(t, "the new certificate", 10*time.Second, func() bool {
		return served().PeerCertificates[0].SerialNumber.Cmp(next.Leaf.SerialNumber) == 0
	})
	if st := statusOf(t, es.testServer); !st.TLS.NotAfter.Equal(next.Leaf.NotAfter) || !strings.Contains(strings.Join(st.TLS.Names, ","), "dns2.sinkhole.test") {
		t.Errorf("status after reload: %+v", st.TLS)
	}
	if first.SerialNumber.Cmp(next.Leaf.SerialNumber) == 0 {
		t.Fatal("the test issued the same serial twice")
	}

	// A certificate that does not match the key: refused, the last good
	// pair serves on.
	other := es.ca.Issue(t, time.Time{}, tlsName)
	certtest.WriteFile(t, filepath.Join(es.certDir, "cert.pem"), other.CertPEM)
	waitUntil(t, "the broken pair reported", 10*time.Second, func() bool {
		return statusOf(t, es.testServer).TLS.LastError != ""
	})
	if got := served().PeerCertificates[0]; got.SerialNumber.Cmp(next.Leaf.SerialNumber) != 0 {
		t.Errorf("after a broken pair the server presents serial %v, want the last good %v", got.SerialNumber, next.Leaf.SerialNumber)
	}
	st = statusOf(t, es.testServer)
	if !strings.Contains(st.TLS.LastError, "cert.pem") || !strings.Contains(strings.Join(st.Warnings, "\n"), "last good pair serves") {
		t.Errorf("status after a broken pair: %+v, warnings %q", st.TLS, st.Warnings)
	}
	if r, _, err := es.ask("doq", newQuery("allowed.example", dns.TypeA)); err != nil || r.Rcode != dns.RcodeSuccess {
		t.Errorf("DoQ after a broken pair: %v %v", r, err)
	}
}

// DoH's HTTP side (RFC 8484): status codes, media type, freshness from the
// answer's TTLs or the negative TTL, the client name in the logs, and the
// client address from a trusted proxy only.
func TestDoHHTTP(t *testing.T) {
	up := startUpstream(t, encRecords...)
	qlog := filepath.Join(t.TempDir(), "queries.log")
	es := startEncrypted(t, writeLists(t, map[string]string{"list.txt": encLists}), "--upstream", up.Addr,
		"--query-log", qlog, "--trusted-proxy", "127.0.0.0/8", "--block-ttl", "120s")
	base := "https://" + es.https
	cl := &http.Client{Transport: &http.Transport{TLSClientConfig: es.tlsConfig(), ForceAttemptHTTP2: true}, Timeout: 8 * time.Second}
	defer cl.CloseIdleConnections()
	pkt, _ := newQuery("allowed.example", dns.TypeA).Pack()
	do := func(method, url, ctype string, body []byte) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, url, bytes.NewReader(body))
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	for _, c := range []struct {
		method, path, ctype string
		body                []byte
		want                int
	}{
		{"GET", "/dns-query?dns=" + base64.RawURLEncoding.EncodeToString(pkt), "", nil, 200},
		{"POST", "/dns-query", "application/dns-message", pkt, 200},
		{"GET", "/dns-query?dns=not*base64", "", nil, 400},
		{"GET", "/dns-query", "", nil, 400},
		{"POST", "/dns-query", "application/dns-message", []byte("short"), 400},
		{"POST", "/dns-query", "application/json", pkt, 415},
		{"PUT", "/dns-query", "application/dns-message", pkt, 405},
		{"GET", "/other", "", nil, 404},
		{"GET", "/dns-query/bad%20name?dns=" + base64.RawURLEncoding.EncodeToString(pkt), "", nil, 404},
	} {
		if resp := do(c.method, base+c.path, c.ctype, c.body); resp.StatusCode != c.want {
			t.Errorf("%s %s (%s): %d, want %d", c.method, c.path, c.ctype, resp.StatusCode, c.want)
		} else if c.want == 405 && resp.Header.Get("Allow") != "GET, POST" {
			t.Errorf("405 without Allow: %v", resp.Header)
		}
	}

	// Freshness: the smallest answer TTL; the negative TTL of a block's
	// SOA; Alt-Svc to the HTTP/3 listener.
	for _, c := range []struct {
		name, want string
	}{{"short.example", "max-age=42"}, {"www.blocked.example", "max-age=120"}} {
		_, resp, err := es.askPath("doh-post", "/dns-query", newQuery(c.name, dns.TypeA), nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := resp.Header.Get("Cache-Control"); got != c.want {
			t.Errorf("%s: Cache-Control %q, want %q", c.name, got, c.want)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/dns-message" || resp.Header.Get("Date") != "" {
			t.Errorf("Content-Type %q, Date %q (none wanted)", ct, resp.Header.Get("Date"))
		}
		_, port, _ := net.SplitHostPort(es.h3)
		if got := resp.Header.Get("Alt-Svc"); got != `h3=":`+port+`"; ma=86400` {
			t.Errorf("Alt-Svc %q", got)
		}
	}

	// A client name in the path goes to the query log; the trusted proxy's
	// X-Forwarded-For names the client.
	hdr := http.Header{"X-Forwarded-For": {"10.9.8.7, 127.0.0.2"}}
	if _, _, err := es.askPath("doh-post", "/dns-query/router-42", newQuery("allowed.example", dns.TypeAAAA), hdr); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the query log line", 5*time.Second, func() bool {
		b, _ := os.ReadFile(qlog)
		return bytes.Contains(b, []byte(`"client":"10.9.8.7:0","proto":"doh","client_name":"router-42","name":"allowed.example","type":"AAAA"`))
	})
}

// X-Forwarded-For from a peer that is not a trusted proxy is ignored.
func TestDoHUntrustedForwardedFor(t *testing.T) {
	up := startUpstream(t, encRecords...)
	qlog := filepath.Join(t.TempDir(), "queries.log")
	es := startEncrypted(t, writeLists(t, map[string]string{"list.txt": encLists}), "--upstream", up.Addr, "--query-log", qlog,
		"--trusted-proxy", "192.0.2.0/24")
	hdr := http.Header{"X-Forwarded-For": {"198.51.100.7"}, "Forwarded": {"for=198.51.100.8"}}
	if _, _, err := es.askPath("doh-post", "/dns-query", newQuery("allowed.example", dns.TypeMX), hdr); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the query log line", 5*time.Second, func() bool {
		b, _ := os.ReadFile(qlog)
		return bytes.Contains(b, []byte(`"client":"127.0.0.1:`)) && bytes.Contains(b, []byte(`"type":"MX"`))
	})
	if b, _ := os.ReadFile(qlog); bytes.Contains(b, []byte("198.51.100")) {
		t.Errorf("an untrusted peer's forwarded address was used: %s", b)
	}
}

// Answers to clients that pad are padded to 468-byte blocks (RFC 8467)
// over every encrypted transport; answers to others, and over plain TCP,
// are not.
func TestEncryptedPadding(t *testing.T) {
	up := startUpstream(t, encRecords...)
	es := startEncrypted(t, writeLists(t, map[string]string{"list.txt": encLists}), "--upstream", up.Addr)
	padded := func(name string) *dns.Msg {
		m := newQuery(name, dns.TypeA)
		m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_PADDING{Padding: make([]byte, 100)})
		return m
	}
	for _, tr := range encTransports {
		for _, name := range []string{"allowed.example", "www.blocked.example", "allowed.example"} { // the second allowed one is a cache hit
			m := padded(name)
			m.Id = 0
			pkt, _ := m.Pack()
			wire, _, err := es.askWire(tr, "/dns-query", pkt, nil)
			if err != nil {
				t.Fatalf("%s: %v", tr, err)
			}
			if len(wire)%468 != 0 {
				t.Errorf("%s %s: padded answer of %d bytes", tr, name, len(wire))
			}
		}
		r, _, err := es.ask(tr, newQuery("allowed.example", dns.TypeA))
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range r.IsEdns0().Option {
			if o.Option() == dns.EDNS0PADDING {
				t.Errorf("%s: answer to a client that does not pad is padded", tr)
			}
		}
	}
	r := es.exchange(t, "tcp", padded("allowed.example"))
	for _, o := range r.IsEdns0().Option {
		if o.Option() == dns.EDNS0PADDING {
			t.Error("plain TCP answer padded")
		}
	}
}

// DoQ's protocol rules (RFC 9250 section 4.2.1): a query with a message ID
// other than 0 closes the connection with DOQ_PROTOCOL_ERROR; ALPN doq only.
func TestDoQProtocolErrors(t *testing.T) {
	up := startUpstream(t, encRecords...)
	es := startEncrypted(t, writeLists(t, map[string]string{"list.txt": encLists}), "--upstream", up.Addr)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	c, err := quic.DialAddr(ctx, es.quic, es.tlsConfig("doq"), nil)
	if err != nil {
		t.Fatal(err)
	}
	m := newQuery("allowed.example", dns.TypeA)
	m.Id = 4242
	pkt, _ := m.Pack()
	st, _ := c.OpenStreamSync(ctx)
	st.SetDeadline(time.Now().Add(8 * time.Second))
	_, err = framedExchange(st, pkt)
	var ae *quic.ApplicationError
	if !errors.As(err, &ae) || ae.ErrorCode != 0x2 {
		t.Errorf("query with ID 4242: %v, want DOQ_PROTOCOL_ERROR", err)
	}
	if _, err := quic.DialAddr(ctx, es.quic, es.tlsConfig("h3"), nil); err == nil {
		t.Error("DoQ listener accepted ALPN h3")
	}
	// Many queries on one connection, one stream each.
	c2, err := quic.DialAddr(ctx, es.quic, es.tlsConfig("doq"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.CloseWithError(0, "")
	for i := range 20 {
		r, err := doqExchange(ctx, c2, newQuery(fmt.Sprintf("n%d.allowed.example", i), dns.TypeA))
		if err != nil || r.Rcode != dns.RcodeNameError {
			t.Fatalf("query %d on a reused connection: %v %v", i, r, err)
		}
	}
}

// Failed handshakes are counted per transport, QUIC ones too: a client
// that does not trust the certificate fails on every listener.
func TestEncryptedHandshakeFailuresCounted(t *testing.T) {
	up := startUpstream(t, encRecords...)
	es := startEncrypted(t, writeLists(t, map[string]string{"list.txt": encLists}), "--upstream", up.Addr)
	other := certtest.NewCA(t, "another CA")
	wrong := func(alpn ...string) *tls.Config {
		return &tls.Config{RootCAs: other.Pool(), ServerName: tlsName, NextProtos: alpn}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	if c, err := tls.Dial("tcp", es.dot, wrong("dot")); err == nil {
		c.Close()
		t.Error("DoT handshake with an untrusted certificate succeeded")
	}
	if c, err := tls.Dial("tcp", es.https, wrong("h2")); err == nil {
		c.Close()
		t.Error("DoH handshake with an untrusted certificate succeeded")
	}
	for _, c := range []struct{ addr, alpn string }{{es.h3, "h3"}, {es.quic, "doq"}} {
		if conn, err := quic.DialAddr(ctx, c.addr, wrong(c.alpn), nil); err == nil {
			conn.CloseWithError(0, "")
			t.Errorf("%s handshake with an untrusted certificate succeeded", c.alpn)
		}
	}
	// A good handshake on each QUIC listener is not counted.
	if _, _, err := es.ask("doq", newQuery("allowed.example", dns.TypeA)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := es.ask("doh3", newQuery("allowed.example", dns.TypeA)); err != nil {
		t.Fatal(err)
	}
	want := map[string]uint64{"dot": 1, "doh": 1, "doh3": 1, "doq": 1}
	var got map[string]uint64
	waitUntil(t, "every failed handshake counted", 10*time.Second, func() bool {
		got = statusOf(t, es.testServer).TLS.HandshakeFailures
		return maps.Equal(got, want)
	})
	m := es.metrics(t)
	for proto := range want {
		if v := m.Value("sinkhole_tls_handshake_failures_total", "proto", proto); v != 1 {
			t.Errorf("sinkhole_tls_handshake_failures_total{proto=%q} = %v", proto, v)
		}
	}
}

// Bad encrypted-DNS options are usage errors naming the flag.
func TestEncryptedOptionErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--listen-tls", "127.0.0.1:853"}, "need --tls-cert and --tls-key"},
		{[]string{"--listen-quic", "nonsense"}, "--listen-quic"},
		{[]string{"--tls-cert", "c.pem"}, "--tls-cert and --tls-key go together"},
		{[]string{"--trusted-proxy", "10.0.0.1/8", "--listen-https", "127.0.0.1:443", "--tls-cert", "c", "--tls-key", "k"}, "host bits set"},
		{[]string{"--trusted-proxy", "10.0.0.0/8"}, "applies to DoH only"},
		{[]string{"--upstream-spki-pin", "short"}, "--upstream-spki-pin"},
		{[]string{"--upstream-bootstrap", "tls://192.0.2.1"}, "--upstream-bootstrap"},
		{[]string{"--upstream", "tls://dns.example"}, "want tls://IP"},
		{[]string{"--listen-tls", "0.0.0.0:853", "--tls-cert", "c", "--tls-key", "k", "--allow", "0.0.0.0/1"}, "--allow"}, // open-resolver rule
	} {
		_, err := loadServeConfig(t, append([]string{"--upstream", "192.0.2.1"}, c.args...)...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want an error with %q", c.args, err, c.want)
		}
	}
	cfg, err := loadServeConfig(t, "--upstream", "tls://192.0.2.1#dns.example", "--upstream", "https://dns.example/dns-query",
		"--upstream-bootstrap", "192.0.2.53", "--listen-tls", "127.0.0.1:853", "--tls-cert", "c", "--tls-key", "k")
	if err != nil || strings.Join(cfg.upstreams, " ") != "tls://192.0.2.1:853#dns.example https://dns.example:443/dns-query" ||
		cfg.enc.upstreamTLS.Bootstrap[0] != "192.0.2.53:53" || !cfg.enc.canary || !cfg.enc.privateRelay {
		t.Errorf("good options: %v %+v", err, cfg)
	}
}
