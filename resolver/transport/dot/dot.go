// Package dot serves DNS over TLS (RFC 7858): it accepts TCP connections,
// runs the TLS handshake (ALPN "dot", RFC 7858 section 3.2 allows none) and
// hands each connection to the DNS server's stream path, which frames,
// pipelines, times out and caps it exactly as plain TCP.
package dot

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Streams is the DNS server's stream path (resolver.Server.ServeConn).
type Streams interface {
	ServeConn(conn net.Conn, proto string)
}

// Proto is the transport's label in metrics and logs.
const Proto = "dot"

// Config configures a Listener.
type Config struct {
	Addr string
	// TLS is the server's TLS configuration (certificate via
	// GetCertificate); NextProtos is set to "dot" on a copy.
	TLS     *tls.Config
	Server  Streams
	Timeout time.Duration // handshake timeout (default 10s)
	// MaxHandshakes caps the handshakes running at once (default 256);
	// connections over it are closed at once.
	MaxHandshakes int
	Logger        *slog.Logger
}

// Listener is a running DoT listener.
type Listener struct {
	cfg      Config
	tls      *tls.Config
	ln       net.Listener
	sem      chan struct{}
	failures atomic.Uint64
	closing  atomic.Bool
	wg       sync.WaitGroup
}

// Listen binds cfg.Addr and starts accepting.
func Listen(cfg Config) (*Listener, error) {
	if cfg.TLS == nil || cfg.Server == nil {
		return nil, errors.New("dot: a TLS configuration and a server are needed")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.MaxHandshakes <= 0 {
		cfg.MaxHandshakes = 256
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen dot %s: %w", cfg.Addr, err)
	}
	tc := cfg.TLS.Clone()
	tc.NextProtos = []string{"dot"}
	l := &Listener{cfg: cfg, tls: tc, ln: ln, sem: make(chan struct{}, cfg.MaxHandshakes)}
	l.wg.Add(1)
	go l.accept()
	cfg.Logger.Info("dns over tls listening", "addr", l.Addr())
	return l, nil
}

// Addr is the bound address.
func (l *Listener) Addr() string { return l.ln.Addr().String() }

// HandshakeFailures counts TLS handshakes that failed or timed out.
func (l *Listener) HandshakeFailures() uint64 { return l.failures.Load() }

func (l *Listener) accept() {
	defer l.wg.Done()
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if l.closing.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			l.cfg.Logger.Warn("dot accept", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		select {
		case l.sem <- struct{}{}:
		default:
			c.Close() // too many handshakes at once
			l.failures.Add(1)
			continue
		}
		go l.handshake(c)
	}
}

// handshake completes the TLS handshake within the timeout, then gives the
// connection to the server.
func (l *Listener) handshake(c net.Conn) {
	tc := tls.Server(c, l.tls)
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.Timeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	<-l.sem
	if err != nil {
		l.failures.Add(1)
		l.cfg.Logger.Debug("dot handshake failed", "client", c.RemoteAddr().String(), "err", err)
		c.Close()
		return
	}
	l.cfg.Server.ServeConn(tc, Proto)
}

// Close stops accepting; connections already handed to the server end
// with the server's Shutdown.
func (l *Listener) Close() error {
	l.closing.Store(true)
	err := l.ln.Close()
	l.wg.Wait()
	return err
}
