package doh

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// Config configures the DoH listeners.
type Config struct {
	HTTPS []string // HTTP/1.1 and HTTP/2 over TLS (TCP) addresses
	H3    []string // HTTP/3 (QUIC, UDP) addresses
	// TLS is the servers' TLS configuration (certificate via
	// GetCertificate); each listener sets its ALPN on a copy.
	TLS *tls.Config
	// H3TLS, when set, is the HTTP/3 listeners' configuration instead of
	// TLS (to count their handshakes apart).
	H3TLS   *tls.Config
	Handler HandlerConfig
	// IdleTimeout closes idle connections (default 10s); requests must
	// send their headers within it too.
	IdleTimeout time.Duration
	// MaxConns caps the HTTPS connections open at once (default 1024);
	// further connections are closed at once.
	MaxConns int
	Logger   *slog.Logger
}

// Server is the running DoH listeners.
type Server struct {
	cfg      Config
	https    []*http.Server
	httpsLn  []net.Listener
	h3       []*http3.Server
	h3Conns  []net.PacketConn
	failures atomic.Uint64
	h3Done   atomic.Uint64 // HTTP/3 connections whose handshake completed
	conns    atomic.Int64
	rejected atomic.Uint64
	wg       sync.WaitGroup
}

// Start binds every address and starts serving. On error nothing is left
// listening.
func Start(cfg Config) (_ *Server, err error) {
	if cfg.TLS == nil || cfg.Handler.Server == nil {
		return nil, errors.New("doh: a TLS configuration and a server are needed")
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 10 * time.Second
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 1024
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.Handler.Logger = cfg.Logger
	s := &Server{cfg: cfg}
	defer func() {
		if err != nil {
			s.Shutdown(context.Background())
		}
	}()
	for _, a := range cfg.H3 {
		pc, err := net.ListenPacket("udp", a)
		if err != nil {
			return nil, fmt.Errorf("listen doh3 %s: %w", a, err)
		}
		s.h3Conns = append(s.h3Conns, pc)
	}
	if len(s.h3Conns) > 0 && len(cfg.HTTPS) > 0 {
		// Advertise the first HTTP/3 listener to HTTP/2 clients (RFC 9114
		// section 3.1.1).
		port := s.h3Conns[0].LocalAddr().(*net.UDPAddr).Port
		cfg.Handler.AltSvc = `h3=":` + strconv.Itoa(port) + `"; ma=86400`
	}
	h := NewHandler(cfg.Handler)
	mux := http.NewServeMux()
	mux.Handle("/", h)
	for _, pc := range s.h3Conns {
		base := cfg.TLS
		if cfg.H3TLS != nil {
			base = cfg.H3TLS
		}
		tc := http3.ConfigureTLSConfig(base.Clone())
		srv := &http3.Server{
			Handler:     mux,
			TLSConfig:   tc,
			IdleTimeout: cfg.IdleTimeout,
			QUICConfig:  &quic.Config{MaxIdleTimeout: cfg.IdleTimeout, HandshakeIdleTimeout: cfg.IdleTimeout},
			Logger:      cfg.Logger,
			ConnContext: s.countHandshake,
		}
		s.h3 = append(s.h3, srv)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := srv.Serve(pc); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, quic.ErrServerClosed) {
				cfg.Logger.Error("doh3 listener stopped", "addr", pc.LocalAddr().String(), "err", err)
			}
		}()
		cfg.Logger.Info("dns over http/3 listening", "addr", pc.LocalAddr().String(), "path", Path)
	}
	for _, a := range cfg.HTTPS {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			return nil, fmt.Errorf("listen doh %s: %w", a, err)
		}
		tc := cfg.TLS.Clone()
		tc.NextProtos = []string{"h2", "http/1.1"}
		srv := &http.Server{
			Handler:           mux,
			TLSConfig:         tc,
			ReadHeaderTimeout: cfg.IdleTimeout,
			ReadTimeout:       cfg.IdleTimeout,
			WriteTimeout:      cfg.IdleTimeout,
			IdleTimeout:       cfg.IdleTimeout,
			MaxHeaderBytes:    16 << 10,
			ErrorLog:          log.New(&errorLog{s: s, log: cfg.Logger}, "", 0),
		}
		s.https = append(s.https, srv)
		s.httpsLn = append(s.httpsLn, ln)
		capped := &capListener{Listener: ln, s: s}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := srv.ServeTLS(capped, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
				cfg.Logger.Error("doh listener stopped", "addr", ln.Addr().String(), "err", err)
			}
		}()
		cfg.Logger.Info("dns over https listening", "addr", ln.Addr().String(), "path", Path, "alt_svc", cfg.Handler.AltSvc)
	}
	return s, nil
}

// Addrs returns the bound HTTPS and HTTP/3 addresses.
func (s *Server) Addrs() (https, h3 []string) {
	for _, l := range s.httpsLn {
		https = append(https, l.Addr().String())
	}
	for _, c := range s.h3Conns {
		h3 = append(h3, c.LocalAddr().String())
	}
	return https, h3
}

// HandshakeFailures counts failed TLS handshakes on the HTTPS listeners.
func (s *Server) HandshakeFailures() uint64 { return s.failures.Load() }

// countHandshake counts an HTTP/3 connection once its handshake completes
// (the http3 server hands connections over before, for 0-RTT).
func (s *Server) countHandshake(ctx context.Context, c *quic.Conn) context.Context {
	go func() {
		select {
		case <-c.HandshakeComplete():
			s.h3Done.Add(1)
		case <-c.Context().Done():
		}
	}()
	return ctx
}

// H3Accepted counts the HTTP/3 connections whose handshake completed.
func (s *Server) H3Accepted() uint64 { return s.h3Done.Load() }

// Rejected counts HTTPS connections closed at once for being over MaxConns.
func (s *Server) Rejected() uint64 { return s.rejected.Load() }

// Shutdown stops the listeners and lets requests in progress finish until
// ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	var errs []error
	for _, srv := range s.https {
		if err := srv.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	for _, srv := range s.h3 {
		if err := srv.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
		srv.Close()
	}
	for _, c := range s.h3Conns {
		c.Close()
	}
	s.wg.Wait()
	return errors.Join(errs...)
}

// errorLog takes net/http's error log: it counts TLS handshake failures
// and passes the rest to slog at debug level (they are the client's
// mistakes, not the server's).
type errorLog struct {
	s   *Server
	log *slog.Logger
}

func (e *errorLog) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte("TLS handshake error")) {
		e.s.failures.Add(1)
	}
	e.log.Debug("doh", "msg", string(bytes.TrimSpace(p)))
	return len(p), nil
}

// capListener closes connections over MaxConns at once.
type capListener struct {
	net.Listener
	s *Server
}

func (l *capListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.s.conns.Add(1) > int64(l.s.cfg.MaxConns) {
			l.s.conns.Add(-1)
			l.s.rejected.Add(1)
			c.Close()
			continue
		}
		return &countedConn{Conn: c, s: l.s}, nil
	}
}

type countedConn struct {
	net.Conn
	s    *Server
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.s.conns.Add(-1) })
	return c.Conn.Close()
}
