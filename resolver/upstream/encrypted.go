package upstream

// Encrypted upstreams: DNS over TLS (tls://), HTTPS (https://) and QUIC
// (quic://). Each is an exchanger the pool calls instead of its UDP/TCP
// exchange; failover, health, probes and metrics are the pool's, the same
// as for plain upstreams.

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// exchanger sends one query over an encrypted transport and returns the
// answer that matches it (its ID is q's).
type exchanger interface {
	Exchange(ctx context.Context, q *dns.Msg) (*dns.Msg, error)
	// Proto names the transport ("tls", "https", "quic"), for dnstap.
	Proto() string
	// Dialed is the address (IP:port) connected to, for dnstap.
	Dialed() string
	Close()
}

// TLSOptions configures how encrypted upstreams are authenticated and
// reached.
type TLSOptions struct {
	// RootCAs verify the upstreams' certificates; nil: the system pool
	// (which honours SSL_CERT_FILE and SSL_CERT_DIR).
	RootCAs *x509.CertPool
	// CAFile, when set, is a PEM file of CA certificates trusted besides
	// the system pool (read by New; RootCAs is then ignored).
	CAFile string
	// Pins, when set, authenticate an upstream by its key instead: the
	// certificate chain it presents must hold a public key whose SHA-256
	// SPKI hash (RFC 7469) is one of them; CA and name are then not
	// checked (RFC 7858 section 4.2, the SPKI pinning profile).
	Pins [][sha256.Size]byte
	// Bootstrap are plain DNS resolvers (IP:port) that resolve the host
	// names of https:// upstreams.
	Bootstrap []string
}

// LoadCA returns the system pool plus the certificates of the PEM file.
func LoadCA(path string) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate in it", path)
	}
	return pool, nil
}

// ParsePin reads a base64 SHA-256 SPKI hash (as "openssl x509 -pubkey |
// openssl pkey -pubin -outform der | openssl dgst -sha256 -binary |
// base64" prints it), with an optional "sha256/" prefix.
func ParsePin(s string) ([sha256.Size]byte, error) {
	var pin [sha256.Size]byte
	b, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(strings.TrimSpace(s), "sha256/"))
	if err != nil || len(b) != sha256.Size {
		return pin, fmt.Errorf("SPKI pin %q: want the base64 of a SHA-256 hash (44 characters)", s)
	}
	copy(pin[:], b)
	return pin, nil
}

// encryptedAddr is a parsed tls://, https:// or quic:// upstream.
type encryptedAddr struct {
	scheme string // tls, https, quic
	host   string // IP, or for https a name
	port   uint16
	name   string // the name the certificate must hold (RFC 8310)
	path   string // https only
}

// String is the canonical form: tls://IP:PORT#NAME, quic://IP:PORT#NAME,
// https://HOST:PORT/PATH.
func (e encryptedAddr) String() string {
	hp := net.JoinHostPort(e.host, strconv.Itoa(int(e.port)))
	if e.scheme == "https" {
		return "https://" + hp + e.path
	}
	s := e.scheme + "://" + hp
	if e.name != "" {
		s += "#" + e.name
	}
	return s
}

// isEncrypted reports whether an upstream address names an encrypted
// transport.
func isEncrypted(a string) bool {
	return strings.HasPrefix(a, "tls://") || strings.HasPrefix(a, "https://") || strings.HasPrefix(a, "quic://")
}

// parseEncrypted reads "tls://IP[:853][#NAME]", "quic://IP[:853][#NAME]"
// or "https://HOST[:443][/PATH]" (path default /dns-query).
func parseEncrypted(a string) (encryptedAddr, error) {
	var e encryptedAddr
	scheme, rest, _ := strings.Cut(a, "://")
	e.scheme = scheme
	switch scheme {
	case "tls", "quic":
		hostport, name, _ := strings.Cut(rest, "#")
		e.name = name
		ip, err := netip.ParseAddr(strings.Trim(hostport, "[]"))
		if err == nil && ip.Zone() == "" {
			e.host, e.port = ip.String(), 853
		} else {
			ap, err := netip.ParseAddrPort(hostport)
			if err != nil || ap.Port() == 0 || ap.Addr().Zone() != "" {
				return e, fmt.Errorf("upstream %q: want %s://IP[:PORT][#NAME] (an address: a name would need DNS to find the DNS server)", a, scheme)
			}
			e.host, e.port = ap.Addr().String(), ap.Port()
		}
		if e.name != "" && !validName(e.name) {
			return e, fmt.Errorf("upstream %q: %q is not a host name", a, e.name)
		}
		if e.name == "" {
			e.name = e.host // the certificate must then hold the IP address
		}
	case "https":
		u, err := url.Parse(a)
		if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			return e, fmt.Errorf("upstream %q: want https://HOST[:PORT]/PATH", a)
		}
		e.host, e.port, e.path = u.Hostname(), 443, u.EscapedPath()
		if p := u.Port(); p != "" {
			n, err := strconv.ParseUint(p, 10, 16)
			if err != nil || n == 0 {
				return e, fmt.Errorf("upstream %q: bad port", a)
			}
			e.port = uint16(n)
		}
		if e.path == "" || e.path == "/" {
			e.path = "/dns-query"
		}
		if ip, err := netip.ParseAddr(e.host); err == nil {
			e.host = ip.String()
		} else if !validName(e.host) {
			return e, fmt.Errorf("upstream %q: %q is neither an address nor a host name", a, e.host)
		}
		e.name = e.host
	default:
		return e, fmt.Errorf("upstream %q: unknown scheme %q (want tls, https or quic)", a, scheme)
	}
	return e, nil
}

func validName(n string) bool {
	if len(n) == 0 || len(n) > 253 {
		return false
	}
	_, ok := dns.IsDomainName(n)
	return ok && !strings.ContainsAny(n, " /:@")
}

// needsBootstrap reports whether the upstream's host is a name.
func (e encryptedAddr) needsBootstrap() bool {
	_, err := netip.ParseAddr(e.host)
	return err != nil
}

// newExchanger builds the exchanger of an encrypted upstream.
func newExchanger(a string, o TLSOptions, timeout time.Duration) (exchanger, error) {
	e, err := parseEncrypted(a)
	if err != nil {
		return nil, err
	}
	if e.needsBootstrap() && len(o.Bootstrap) == 0 {
		return nil, fmt.Errorf("upstream %s: its host is a name: give --upstream-bootstrap to resolve it", a)
	}
	if o.CAFile != "" {
		if o.RootCAs, err = LoadCA(o.CAFile); err != nil {
			return nil, fmt.Errorf("upstream CA: %w", err)
		}
	}
	tc := clientTLS(e.name, o)
	switch e.scheme {
	case "tls":
		tc.NextProtos = []string{"dot"}
		return newDoT(e, tc, timeout), nil
	case "https":
		return newDoH(e, tc, o.Bootstrap, timeout), nil
	case "quic":
		tc.NextProtos = []string{"doq"}
		return newDoQ(e, tc, timeout), nil
	}
	return nil, errors.New("unreachable")
}

// clientTLS verifies the server as RFC 8310's strict profile wants: the
// certificate must chain to a trusted root and hold name (a host name or
// an IP address); or, with pins, hold a pinned key.
func clientTLS(name string, o TLSOptions) *tls.Config {
	tc := &tls.Config{ServerName: name, RootCAs: o.RootCAs, MinVersion: tls.VersionTLS12, ClientSessionCache: tls.NewLRUClientSessionCache(8)}
	if len(o.Pins) > 0 {
		pins := o.Pins
		tc.InsecureSkipVerify = true // replaced by the pin check below
		tc.VerifyConnection = func(cs tls.ConnectionState) error {
			for _, c := range cs.PeerCertificates {
				sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
				for _, p := range pins {
					if sum == p {
						return nil
					}
				}
			}
			return errors.New("no certificate of the chain has a pinned key (--upstream-spki-pin)")
		}
	}
	return tc
}

// backoff spaces out reconnections to an upstream that fails: after a
// failed dial the next one waits 100 ms, doubling to 2 s (below the probe
// interval, so a probe finds a recovered upstream at once).
type backoff struct {
	mu    sync.Mutex
	wait  time.Duration
	until time.Time
}

const (
	backoffMin = 100 * time.Millisecond
	backoffMax = 2 * time.Second
)

// ready reports an error while a reconnection must wait.
func (b *backoff) ready() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if d := time.Until(b.until); d > 0 {
		return fmt.Errorf("reconnecting in %s after a failed connection", d.Round(time.Millisecond))
	}
	return nil
}

func (b *backoff) failed() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.wait = min(max(2*b.wait, backoffMin), backoffMax)
	b.until = time.Now().Add(b.wait)
}

func (b *backoff) ok() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.wait, b.until = 0, time.Time{}
}

// queryPadding is the block length encrypted queries are padded to (RFC
// 8467 section 4.1: 128 for queries).
const queryPadding = 128

// padQuery returns a copy of q (with EDNS) carrying a Padding option that
// rounds its packed length up to a multiple of 128, or q itself.
func padQuery(q *dns.Msg) *dns.Msg {
	opt := q.IsEdns0()
	if opt == nil {
		return q
	}
	for _, o := range opt.Option {
		if o.Option() == dns.EDNS0PADDING {
			return q
		}
	}
	p := q.Copy()
	n := p.Len() + 4
	popt := p.IsEdns0()
	popt.Option = append(popt.Option, &dns.EDNS0_PADDING{Padding: make([]byte, (queryPadding-n%queryPadding)%queryPadding)})
	return p
}

// withID returns a copy of q's header and question with another ID (the
// message carries the same records).
func withID(q *dns.Msg, id uint16) *dns.Msg {
	c := *q
	c.Id = id
	return &c
}
