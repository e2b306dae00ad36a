package upstream

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// doh is a DNS over HTTPS upstream (RFC 8484): POSTs of
// application/dns-message with message ID 0 over HTTP/2, whose
// connections are kept open and multiplex concurrent queries. A host name
// is resolved with the bootstrap resolvers (plain DNS), and its addresses
// kept for their TTL.
type doh struct {
	url       string
	host      string
	port      string
	bootstrap []string
	client    *http.Client
	tr        *http.Transport
	timeout   time.Duration
	back      backoff

	mu      sync.Mutex
	addrs   []string  // resolved IPs of host
	expires time.Time // when addrs must be resolved again
	dialed  string
}

// maxResponse bounds a DoH answer's body.
const maxResponse = 65535

func newDoH(e encryptedAddr, tc *tls.Config, bootstrap []string, timeout time.Duration) *doh {
	d := &doh{host: e.host, port: strconv.Itoa(int(e.port)), bootstrap: bootstrap, timeout: timeout}
	d.url = "https://" + net.JoinHostPort(e.host, d.port) + e.path
	if e.port == 443 {
		d.url = "https://" + bracket(e.host) + e.path
	}
	tc.NextProtos = []string{"h2", "http/1.1"}
	d.tr = &http.Transport{
		TLSClientConfig:     tc,
		ForceAttemptHTTP2:   true,
		DialContext:         d.dial,
		TLSHandshakeTimeout: timeout,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     90 * time.Second,
	}
	d.client = &http.Client{Transport: d.tr}
	if !e.needsBootstrap() {
		d.addrs, d.expires = []string{e.host}, time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	return d
}

func bracket(h string) string {
	if ip := net.ParseIP(h); ip != nil && ip.To4() == nil {
		return "[" + h + "]"
	}
	return h
}

func (d *doh) Proto() string { return "https" }

func (d *doh) Dialed() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.dialed
}

// dial connects to the upstream's address, resolving its name first.
func (d *doh) dial(ctx context.Context, network, _ string) (net.Conn, error) {
	if err := d.back.ready(); err != nil {
		return nil, err
	}
	addrs, err := d.resolve(ctx)
	if err != nil {
		d.back.failed()
		return nil, err
	}
	var last error
	for _, a := range addrs {
		hp := net.JoinHostPort(a, d.port)
		c, err := (&net.Dialer{Timeout: d.timeout}).DialContext(ctx, network, hp)
		if err == nil {
			d.back.ok()
			d.mu.Lock()
			d.dialed = hp
			d.mu.Unlock()
			return c, nil
		}
		last = err
	}
	d.back.failed()
	return nil, last
}

// resolve returns the host's addresses, asking the bootstrap resolvers
// (A and AAAA) when those known have expired.
func (d *doh) resolve(ctx context.Context) ([]string, error) {
	d.mu.Lock()
	if time.Now().Before(d.expires) {
		a := d.addrs
		d.mu.Unlock()
		return a, nil
	}
	d.mu.Unlock()
	var addrs []string
	ttl := uint32(3600)
	var errs []error
	for _, t := range []uint16{dns.TypeA, dns.TypeAAAA} {
		for _, b := range d.bootstrap {
			q := new(dns.Msg)
			q.SetQuestion(dns.Fqdn(d.host), t)
			c := &dns.Client{Timeout: d.timeout}
			r, _, err := c.ExchangeContext(ctx, q, b)
			if err != nil {
				errs = append(errs, fmt.Errorf("bootstrap %s: %w", b, err))
				continue
			}
			for _, rr := range r.Answer {
				switch v := rr.(type) {
				case *dns.A:
					addrs = append(addrs, v.A.String())
				case *dns.AAAA:
					addrs = append(addrs, v.AAAA.String())
				default:
					continue
				}
				ttl = min(ttl, rr.Header().Ttl)
			}
			break
		}
	}
	if len(addrs) == 0 {
		errs = append(errs, fmt.Errorf("bootstrap: no address for %s", d.host))
		return nil, errors.Join(errs...)
	}
	rand.Shuffle(len(addrs), func(i, j int) { addrs[i], addrs[j] = addrs[j], addrs[i] })
	d.mu.Lock()
	d.addrs, d.expires = addrs, time.Now().Add(time.Duration(max(ttl, 30))*time.Second)
	d.mu.Unlock()
	return addrs, nil
}

// Exchange POSTs q (ID 0, RFC 8484 section 4.1) and reads the answer.
func (d *doh) Exchange(ctx context.Context, q *dns.Msg) (*dns.Msg, error) {
	sent := withID(padQuery(q), 0)
	out, err := sent.Pack()
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.url, bytes.NewReader(out))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/dns-message")
	req.Header.Set("Accept", "application/dns-message")
	resp, err := d.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return nil, ctxErr(ctx, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %s", resp.Status)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "application/dns-message" {
		return nil, fmt.Errorf("%w: content type %q", ErrMismatch, resp.Header.Get("Content-Type"))
	}
	if len(body) > maxResponse {
		return nil, fmt.Errorf("%w: answer over 64 KiB", ErrMismatch)
	}
	r := new(dns.Msg)
	if err := r.Unpack(body); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMismatch, err)
	}
	if err := validate(sent, r); err != nil {
		return nil, err
	}
	r.Id = q.Id
	return r, nil
}

func (d *doh) Close() { d.tr.CloseIdleConnections() }
