package upstream_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/internal/tlscert/certtest"
	"github.com/sinkhole-dns/sinkhole/resolver/transport/doq"
	"github.com/sinkhole-dns/sinkhole/resolver/upstream"
)

const upName = "dns.upstream.test"

// answerer answers every A query with 192.0.2.53 and counts queries, the
// connections they came on, and queries that carried padding.
type answerer struct {
	queries, padded atomic.Int64
	mu              sync.Mutex
	conns           map[string]bool
}

func (a *answerer) answer(pkt []byte, from string) []byte {
	q := new(dns.Msg)
	if q.Unpack(pkt) != nil {
		return nil
	}
	a.queries.Add(1)
	a.mu.Lock()
	if a.conns == nil {
		a.conns = map[string]bool{}
	}
	a.conns[from] = true
	a.mu.Unlock()
	if opt := q.IsEdns0(); opt != nil {
		for _, o := range opt.Option {
			if o.Option() == dns.EDNS0PADDING && len(pkt)%128 == 0 {
				a.padded.Add(1)
			}
		}
	}
	r := new(dns.Msg)
	r.SetReply(q)
	rr, _ := dns.NewRR(q.Question[0].Name + " 60 IN A 192.0.2.53")
	r.Answer = []dns.RR{rr}
	out, _ := r.Pack()
	return out
}

func (a *answerer) connections() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.conns)
}

// HandlePacket makes the answerer a DoQ server's message path.
func (a *answerer) HandlePacket(_ context.Context, pkt []byte, client netip.AddrPort, _ string, _ int) ([]byte, bool) {
	out := a.answer(pkt, "quic")
	return out, out != nil
}

func serverTLS(t *testing.T, ca *certtest.CA, names ...string) *tls.Config {
	c := ca.Issue(t, time.Time{}, names...).TLS(t)
	return &tls.Config{Certificates: []tls.Certificate{c}}
}

// startDoT serves DoT with miekg/dns (pipelining, as Unbound does).
func startDoT(t *testing.T, tc *tls.Config, a *answerer) string {
	ln, err := tls.Listen("tcp", "127.0.0.1:0", tc)
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{Listener: ln, Net: "tcp-tls", Handler: dns.HandlerFunc(func(w dns.ResponseWriter, m *dns.Msg) {
		pkt, _ := m.Pack()
		if out := a.answer(pkt, w.RemoteAddr().String()); out != nil {
			r := new(dns.Msg)
			r.Unpack(out)
			w.WriteMsg(r)
		}
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return ln.Addr().String()
}

func startDoH(t *testing.T, tc *tls.Config, a *answerer) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tc = tc.Clone()
	tc.NextProtos = []string{"h2"}
	srv := &http.Server{TLSConfig: tc, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.URL.Path != "/dns-query" || r.Method != "POST" || r.Header.Get("Content-Type") != "application/dns-message" || r.ProtoMajor != 2 {
			http.Error(w, "bad request "+r.Proto+" "+r.URL.Path, 400)
			return
		}
		out := a.answer(body, r.RemoteAddr)
		w.Header().Set("Content-Type", "application/dns-message")
		w.Write(out)
	})}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func startDoQ(t *testing.T, tc *tls.Config, a *answerer) string {
	l, err := doq.Listen(doq.Config{Addr: "127.0.0.1:0", TLS: tc, Server: a, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l.Addr()
}

// Each encrypted transport: the certificate is verified against the name,
// one connection is reused for many concurrent queries, queries are
// padded, and a wrong name or an untrusted CA fails the upstream (and the
// pool fails over).
func TestEncryptedUpstreams(t *testing.T) {
	ca := certtest.NewCA(t, "upstream CA")
	tc := serverTLS(t, ca, upName, "127.0.0.1")
	opts := upstream.TLSOptions{RootCAs: ca.Pool()}
	for _, c := range []struct {
		scheme string
		start  func(*testing.T, *tls.Config, *answerer) string
		addr   func(hostport string) string
	}{
		{"tls", startDoT, func(hp string) string { return "tls://" + hp + "#" + upName }},
		{"https", startDoH, func(hp string) string { return "https://" + hp + "/dns-query" }},
		{"quic", startDoQ, func(hp string) string { return "quic://" + hp + "#" + upName }},
	} {
		t.Run(c.scheme, func(t *testing.T) {
			a := &answerer{}
			hp := c.start(t, tc, a)
			addr := c.addr(hp)
			p := newPool(t, upstream.Config{Addrs: []string{addr}, Timeout: 3 * time.Second, TLS: opts})
			var wg sync.WaitGroup
			errs := make(chan error, 50)
			for i := range 50 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r, up, err := exchange(t, p, fmt.Sprintf("n%d.example", i))
					if err == nil && (firstA(r) != "192.0.2.53" || up != addr) {
						err = fmt.Errorf("answer %v from %s", r, up)
					}
					if err != nil {
						errs <- err
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			if n := a.connections(); c.scheme != "quic" && n > 4 {
				t.Errorf("50 queries took %d connections: not reused", n)
			}
			if a.padded.Load() != 50 {
				t.Errorf("%d of 50 queries padded to 128 bytes", a.padded.Load())
			}

			// A certificate for another name, or from another CA, is
			// refused (RFC 8310 strict profile); the pool fails over.
			good := start(t, "x.example. 60 IN A 192.0.2.9")
			other := certtest.NewCA(t, "other CA")
			for name, o := range map[string]upstream.TLSOptions{
				"wrong name": opts,
				"wrong CA":   {RootCAs: other.Pool()},
			} {
				bad := addr
				if name == "wrong name" {
					bad = strings.Replace(addr, upName, "other.test", 1)
					if c.scheme == "https" {
						continue // the https name is the URL's host
					}
				}
				p := newPool(t, upstream.Config{Addrs: []string{bad, good.Addr}, Timeout: 2 * time.Second, TLS: o})
				r, up, err := exchange(t, p, "x.example")
				if err != nil || up != good.Addr || firstA(r) != "192.0.2.9" {
					t.Errorf("%s: %v from %s (%v), want the failover's answer", name, r, up, err)
				}
				if h := p.Health()[0]; h.Failures == 0 || !strings.Contains(h.LastError, "certificate") {
					t.Errorf("%s: health %+v", name, h)
				}
			}

			// SPKI pinning instead of the CA.
			pinned := newPool(t, upstream.Config{Addrs: []string{addr}, Timeout: 2 * time.Second, TLS: upstream.TLSOptions{
				RootCAs: other.Pool(), Pins: [][32]byte{mustPin(t, tc)}}})
			if _, _, err := exchange(t, pinned, "pin.example"); err != nil {
				t.Errorf("pinned key: %v", err)
			}
			wrongPin := newPool(t, upstream.Config{Addrs: []string{addr}, Timeout: 2 * time.Second, TLS: upstream.TLSOptions{
				Pins: [][32]byte{{1, 2, 3}}}})
			if _, _, err := exchange(t, wrongPin, "pin.example"); err == nil {
				t.Error("a key that is not pinned was accepted")
			}
		})
	}
}

func mustPin(t *testing.T, tc *tls.Config) [32]byte {
	leaf := tc.Certificates[0].Leaf
	pin, err := upstream.ParsePin(certtest.Pair{Leaf: leaf}.SPKIPin())
	if err != nil {
		t.Fatal(err)
	}
	return pin
}

// An encrypted upstream whose connection the server closed (idle timeout,
// restart) is reconnected on the next query, without a failed answer.
func TestEncryptedUpstreamReconnects(t *testing.T) {
	ca := certtest.NewCA(t, "upstream CA")
	tc := serverTLS(t, ca, upName)
	a := &answerer{}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", tc)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var conns atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				// Answer one query, then close: every query after the first
				// on a connection finds it closed.
				defer c.Close()
				var lb [2]byte
				if _, err := io.ReadFull(c, lb[:]); err != nil {
					return
				}
				b := make([]byte, int(lb[0])<<8|int(lb[1]))
				io.ReadFull(c, b)
				out := a.answer(b, c.RemoteAddr().String())
				c.Write(append([]byte{byte(len(out) >> 8), byte(len(out))}, out...))
				time.Sleep(50 * time.Millisecond)
			}()
		}
	}()
	p := newPool(t, upstream.Config{Addrs: []string{"tls://" + ln.Addr().String() + "#" + upName}, Timeout: 2 * time.Second,
		TLS: upstream.TLSOptions{RootCAs: ca.Pool()}})
	for i := range 5 {
		if _, _, err := exchange(t, p, fmt.Sprintf("r%d.example", i)); err != nil {
			t.Fatalf("query %d: %v", i, err)
		}
		time.Sleep(100 * time.Millisecond) // the server has closed by now
	}
	if h := p.Health()[0]; h.Failures != 0 {
		t.Errorf("reconnections counted as failures: %+v", h)
	}
	if conns.Load() < 5 {
		t.Errorf("%d connections for 5 queries the server cut", conns.Load())
	}
}

func TestNormalizeEncryptedAddr(t *testing.T) {
	for _, c := range []struct{ in, want, err string }{
		{"tls://192.0.2.1", "tls://192.0.2.1:853#192.0.2.1", ""},
		{"tls://192.0.2.1:8853#dns.example", "tls://192.0.2.1:8853#dns.example", ""},
		{"tls://[2001:db8::1]#dns.example", "tls://[2001:db8::1]:853#dns.example", ""},
		{"quic://192.0.2.1#dns.example", "quic://192.0.2.1:853#dns.example", ""},
		{"https://dns.example/dns-query", "https://dns.example:443/dns-query", ""},
		{"https://dns.example", "https://dns.example:443/dns-query", ""},
		{"https://192.0.2.1:8443/q", "https://192.0.2.1:8443/q", ""},
		{"tls://dns.example", "", "want tls://IP"},
		{"tls://192.0.2.1#bad name", "", "not a host name"},
		{"https://user@dns.example/", "", "want https://HOST"},
		{"https://dns.example/dns-query?dns=x", "", "want https://HOST"},
		{"ftp://192.0.2.1", "", "want an IP address"},
		{"quic://192.0.2.1:0", "", "want quic://IP"},
	} {
		got, err := upstream.NormalizeAddr(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: %q, %v; want an error with %q", c.in, got, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%s: %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	if _, err := upstream.New(upstream.Config{Addrs: []string{"https://dns.example/dns-query"}}); err == nil || !strings.Contains(err.Error(), "--upstream-bootstrap") {
		t.Errorf("a named https upstream without bootstrap: %v", err)
	}
}

// An https:// upstream named by host is resolved with the bootstrap
// resolver and verified against the name.
func TestDoHUpstreamBootstrap(t *testing.T) {
	ca := certtest.NewCA(t, "upstream CA")
	a := &answerer{}
	hp := startDoH(t, serverTLS(t, ca, upName), a)
	_, port, _ := net.SplitHostPort(hp)
	boot := start(t, upName+". 300 IN A 127.0.0.1")
	addr := "https://" + upName + ":" + port + "/dns-query"
	p := newPool(t, upstream.Config{Addrs: []string{addr}, Timeout: 3 * time.Second,
		TLS: upstream.TLSOptions{RootCAs: ca.Pool(), Bootstrap: []string{boot.Addr}}})
	for i := range 3 {
		if r, _, err := exchange(t, p, fmt.Sprintf("b%d.example", i)); err != nil || firstA(r) != "192.0.2.53" {
			t.Fatalf("query %d: %v %v", i, r, err)
		}
	}
	if n := boot.QueriesFor(upName + "."); n == 0 || n > 2 {
		t.Errorf("bootstrap asked %d times for 3 queries, want A and AAAA once", n)
	}
}
