package main

// Encrypted DNS: the DoT, DoH (HTTP/1.1, HTTP/2, HTTP/3) and DoQ listeners
// and their certificate. Each listener is a thin adapter over the DNS
// server's stream path (ServeConn) or message path (HandlePacket).

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/sinkhole-dns/sinkhole/internal/admin"
	"github.com/sinkhole-dns/sinkhole/internal/tlscert"
	"github.com/sinkhole-dns/sinkhole/resolver/bypass"
	"github.com/sinkhole-dns/sinkhole/resolver/metrics"
	"github.com/sinkhole-dns/sinkhole/resolver/transport/doh"
	"github.com/sinkhole-dns/sinkhole/resolver/transport/doq"
	"github.com/sinkhole-dns/sinkhole/resolver/transport/dot"
	"github.com/sinkhole-dns/sinkhole/resolver/upstream"
)

func encryptedFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "listen-tls", Usage: "serve DNS over TLS (RFC 7858) on `ADDR` (repeatable; port 853 is the standard)"},
		&cli.StringSliceFlag{Name: "listen-https", Usage: "serve DNS over HTTPS (RFC 8484, HTTP/1.1 and HTTP/2) at /dns-query on `ADDR` (repeatable)"},
		&cli.StringSliceFlag{Name: "listen-h3", Usage: "serve DNS over HTTPS over HTTP/3 (QUIC) on UDP `ADDR` (repeatable)"},
		&cli.StringSliceFlag{Name: "listen-quic", Usage: "serve DNS over QUIC (RFC 9250) on UDP `ADDR` (repeatable; port 853 is the standard)"},
		&cli.PathFlag{Name: "tls-cert", Usage: "PEM certificate (chain after the leaf) of the encrypted listeners; reloaded when it changes"},
		&cli.PathFlag{Name: "tls-key", Usage: "PEM private key of --tls-cert"},
		&cli.StringSliceFlag{Name: "trusted-proxy", Usage: "take the DoH client's address from X-Forwarded-For/Forwarded when the peer is in `CIDR` (repeatable)"},
		&cli.StringSliceFlag{Name: "upstream-bootstrap", Usage: "plain DNS resolver `IP[:PORT]` that resolves the host names of https:// upstreams (repeatable)"},
		&cli.PathFlag{Name: "upstream-ca", Usage: "PEM `FILE` of CA certificates trusted for encrypted upstreams, besides the system pool"},
		&cli.StringSliceFlag{Name: "upstream-spki-pin", Usage: "authenticate encrypted upstreams by key: `PIN` is the base64 SHA-256 of the SPKI (repeatable; replaces CA and name checks)"},
		&cli.BoolFlag{Name: "block-doh-canary", Value: true, Usage: "answer Firefox's DoH canary use-application-dns.net with NXDOMAIN (Firefox then keeps this resolver)"},
		&cli.BoolFlag{Name: "block-private-relay", Value: true, Usage: "answer mask.icloud.com and mask-h2.icloud.com with NXDOMAIN (iCloud Private Relay off on this network)"},
	}
}

// bypassStage is the chain stage answering the bypass signal names (nil
// when both are turned off); its counts go to the metrics.
func (in *instance) bypassStage() *bypass.Stage {
	s := &bypass.Stage{Canary: in.cfg.enc.canary, PrivateRelay: in.cfg.enc.privateRelay, TTL: uint32(in.cfg.blockTTL / time.Second)}
	if !s.Enabled() {
		return nil
	}
	in.obs.metrics.SetBypass(s.Answered)
	return s
}

// encryptedConfig is the validated configuration of the encrypted
// listeners.
type encryptedConfig struct {
	dot, https, h3, quic []string
	certFile, keyFile    string
	trustedProxies       []netip.Prefix
	canary, privateRelay bool // --block-doh-canary, --block-private-relay
	// upstreamTLS authenticates and reaches the tls://, https:// and
	// quic:// upstreams.
	upstreamTLS upstream.TLSOptions
}

func (e *encryptedConfig) any() bool {
	return len(e.dot)+len(e.https)+len(e.h3)+len(e.quic) > 0
}

// addrs returns every encrypted listen address (for the open-resolver rule).
func (e *encryptedConfig) addrs() []string {
	return append(append(append(append([]string(nil), e.dot...), e.https...), e.h3...), e.quic...)
}

func (e *encryptedConfig) from(c *cli.Context) error {
	lists := []struct {
		flag string
		dst  *[]string
	}{{"listen-tls", &e.dot}, {"listen-https", &e.https}, {"listen-h3", &e.h3}, {"listen-quic", &e.quic}}
	for _, l := range lists {
		for _, a := range c.StringSlice(l.flag) {
			if _, _, err := net.SplitHostPort(a); err != nil {
				return usagef("--%s %q: want host:port", l.flag, a)
			}
			*l.dst = append(*l.dst, a)
		}
	}
	e.canary, e.privateRelay = c.Bool("block-doh-canary"), c.Bool("block-private-relay")
	e.certFile, e.keyFile = c.Path("tls-cert"), c.Path("tls-key")
	switch {
	case e.any() && (e.certFile == "" || e.keyFile == ""):
		return usagef("--listen-tls, --listen-https, --listen-h3 and --listen-quic need --tls-cert and --tls-key")
	case (e.certFile == "") != (e.keyFile == ""):
		return usagef("--tls-cert and --tls-key go together")
	}
	for _, p := range c.StringSlice("trusted-proxy") {
		pf, err := netip.ParsePrefix(p)
		if err != nil {
			a, aerr := netip.ParseAddr(p)
			if aerr != nil {
				return usagef("--trusted-proxy %q: want a CIDR prefix or an address", p)
			}
			pf = netip.PrefixFrom(a, a.BitLen())
		}
		if pf.Masked() != pf {
			return usagef("--trusted-proxy %q: host bits set (did you mean %s?)", p, pf.Masked())
		}
		e.trustedProxies = append(e.trustedProxies, pf)
	}
	if len(e.trustedProxies) > 0 && len(e.https)+len(e.h3) == 0 {
		return usagef("--trusted-proxy applies to DoH only: give --listen-https or --listen-h3")
	}
	return e.upstreamsFrom(c)
}

// upstreamsFrom reads the encrypted upstreams' options.
func (e *encryptedConfig) upstreamsFrom(c *cli.Context) error {
	for _, b := range c.StringSlice("upstream-bootstrap") {
		n, err := upstream.NormalizeAddr(b)
		if err != nil || strings.Contains(n, "://") {
			return usagef("--upstream-bootstrap %q: want a plain DNS resolver's IP or IP:port", b)
		}
		e.upstreamTLS.Bootstrap = append(e.upstreamTLS.Bootstrap, n)
	}
	e.upstreamTLS.CAFile = c.Path("upstream-ca") // read at start
	for _, p := range c.StringSlice("upstream-spki-pin") {
		pin, err := upstream.ParsePin(p)
		if err != nil {
			return usagef("--upstream-spki-pin: %v", err)
		}
		e.upstreamTLS.Pins = append(e.upstreamTLS.Pins, pin)
	}
	return nil
}

// encrypted is the running encrypted listeners.
type encrypted struct {
	cert *tlscert.Store
	// h3 and quic count the handshakes of the QUIC listeners (DoH over
	// HTTP/3, DoQ), which report no failures themselves.
	h3, quic tlscert.Handshakes
	dot      []*dot.Listener
	doh      *doh.Server
	doq      []*doq.Listener
}

// startEncrypted loads the certificate and starts the encrypted listeners
// over the running DNS server. On error nothing is left listening.
func (in *instance) startEncrypted() (err error) {
	e := &in.cfg.enc
	if !e.any() {
		return nil
	}
	in.enc = &encrypted{}
	defer func() {
		if err != nil {
			in.stopEncrypted(context.Background())
			in.enc = nil
		}
	}()
	if in.enc.cert, err = tlscert.Load(tlscert.Options{CertFile: e.certFile, KeyFile: e.keyFile, Logger: in.log}); err != nil {
		return err
	}
	if err := in.enc.cert.Watch(in.cfg.debounce); err != nil {
		return err
	}
	tc := &tls.Config{GetCertificate: in.enc.cert.GetCertificate, MinVersion: tls.VersionTLS12}
	for _, a := range e.dot {
		l, err := dot.Listen(dot.Config{Addr: a, TLS: tc, Server: in.dns, Timeout: in.cfg.tcpIdle, Logger: in.log})
		if err != nil {
			return err
		}
		in.enc.dot = append(in.enc.dot, l)
	}
	if len(e.https)+len(e.h3) > 0 {
		in.enc.doh, err = doh.Start(doh.Config{HTTPS: e.https, H3: e.h3, TLS: tc, H3TLS: in.enc.h3.Config(tc), IdleTimeout: in.cfg.tcpIdle, MaxConns: in.cfg.tcpMaxConns,
			Handler: doh.HandlerConfig{Server: in.dns, TrustedProxies: e.trustedProxies}, Logger: in.log})
		if err != nil {
			return err
		}
	}
	for _, a := range e.quic {
		l, err := doq.Listen(doq.Config{Addr: a, TLS: in.enc.quic.Config(tc), Server: in.dns, IdleTimeout: in.cfg.tcpIdle, MaxConns: in.cfg.tcpMaxConns, Logger: in.log})
		if err != nil {
			return err
		}
		in.enc.doq = append(in.enc.doq, l)
	}
	in.obs.metrics.SetEncrypted(metrics.Encrypted{HandshakeFailures: in.handshakeFailures, CertExpiry: in.enc.cert.NotAfter})
	return nil
}

// reloadCert rereads the TLS certificate (SIGHUP).
func (in *instance) reloadCert() {
	if in.enc != nil {
		in.enc.cert.Reload()
	}
}

// handshakeFailures counts failed TLS handshakes per transport.
func (in *instance) handshakeFailures() map[string]uint64 {
	out := map[string]uint64{}
	if len(in.enc.dot) > 0 {
		out[dot.Proto] = 0
	}
	for _, l := range in.enc.dot {
		out[dot.Proto] += l.HandshakeFailures()
	}
	if in.enc.doh != nil {
		https, h3 := in.enc.doh.Addrs()
		if len(https) > 0 {
			out[doh.Proto] = in.enc.doh.HandshakeFailures()
		}
		if len(h3) > 0 {
			out[doh.ProtoH3] = in.enc.h3.Failures(in.enc.doh.H3Accepted())
		}
	}
	if len(in.enc.doq) > 0 {
		var done uint64
		for _, l := range in.enc.doq {
			done += l.Accepted()
		}
		out[doq.Proto] = in.enc.quic.Failures(done)
	}
	return out
}

// stopEncrypted stops accepting on the encrypted listeners; DoH and DoQ
// finish the queries they are answering (bounded by ctx), DoT connections
// end with the DNS server's shutdown.
func (in *instance) stopEncrypted(ctx context.Context) {
	if in.enc == nil {
		return
	}
	var errs []error
	for _, l := range in.enc.dot {
		errs = append(errs, l.Close())
	}
	if in.enc.doh != nil {
		errs = append(errs, in.enc.doh.Shutdown(ctx))
	}
	for _, l := range in.enc.doq {
		errs = append(errs, l.Close())
	}
	if in.enc.cert != nil {
		in.enc.cert.Close()
	}
	if err := errors.Join(errs...); err != nil {
		in.log.Debug("stopping encrypted listeners", "err", err)
	}
}

// encryptedStatus fills the listeners and the certificate into st.
func (in *instance) encryptedStatus(st *admin.Status) {
	if in.enc == nil {
		return
	}
	for _, l := range in.enc.dot {
		st.Encrypted = append(st.Encrypted, admin.Listener{Proto: dot.Proto, Addr: l.Addr()})
	}
	if in.enc.doh != nil {
		https, h3 := in.enc.doh.Addrs()
		for _, a := range https {
			st.Encrypted = append(st.Encrypted, admin.Listener{Proto: doh.Proto, Addr: a})
		}
		for _, a := range h3 {
			st.Encrypted = append(st.Encrypted, admin.Listener{Proto: doh.ProtoH3, Addr: a})
		}
	}
	for _, l := range in.enc.doq {
		st.Encrypted = append(st.Encrypted, admin.Listener{Proto: doq.Proto, Addr: l.Addr()})
	}
	c := in.enc.cert.Status()
	st.TLS = &admin.TLSCert{CertFile: c.CertFile, KeyFile: c.KeyFile, Names: c.Names, Issuer: c.Issuer,
		NotBefore: c.NotBefore, NotAfter: c.NotAfter, LoadedAt: c.LoadedAt, LastError: c.LastError, LastErrorAt: c.LastErrorAt,
		HandshakeFailures: in.handshakeFailures()}
	if c.LastError != "" {
		st.Warnings = append(st.Warnings, "TLS certificate files do not load (the last good pair serves): "+c.LastError)
	}
	if left := time.Until(c.NotAfter); left < 14*24*time.Hour {
		st.Warnings = append(st.Warnings, "TLS certificate expires "+c.NotAfter.UTC().Format(time.RFC3339))
	}
}

// printEncrypted writes the encrypted listeners and their certificate
// (sinkhole status).
func printEncrypted(w io.Writer, st *admin.Status) {
	if len(st.Encrypted) == 0 {
		return
	}
	var ls []string
	for _, l := range st.Encrypted {
		ls = append(ls, l.Proto+" "+l.Addr)
	}
	fmt.Fprintf(w, "encrypted: %s\n", strings.Join(ls, ", "))
	if c := st.TLS; c != nil {
		fmt.Fprintf(w, "certificate: %s, issuer %s, expires %s, loaded %s\n", strings.Join(c.Names, " "), c.Issuer,
			c.NotAfter.UTC().Format(time.RFC3339), ago(c.LoadedAt))
		if c.LastError != "" {
			fmt.Fprintf(w, "certificate files do not load (%s): %s\n", ago(c.LastErrorAt), c.LastError)
		}
	}
}
