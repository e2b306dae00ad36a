// Package doq serves DNS over dedicated QUIC connections (RFC 9250): ALPN
// "doq", one bidirectional stream per query carrying one 2-octet
// length-prefixed message (ID 0) each way. Each query goes to the DNS
// server's message path (resolver.Server.HandlePacket).
package doq

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
)

// Packets is the DNS server's message path (resolver.Server.HandlePacket).
type Packets interface {
	HandlePacket(ctx context.Context, pkt []byte, client netip.AddrPort, proto string, maxSize int) ([]byte, bool)
}

// Proto is the transport's label in metrics and logs.
const Proto = "doq"

// ALPN is the DoQ application protocol (RFC 9250 section 4.1.1).
const ALPN = "doq"

// DoQ error codes (RFC 9250 section 4.3), for connections and streams.
const (
	NoError          = 0x0
	InternalError    = 0x1
	ProtocolError    = 0x2
	RequestCancelled = 0x3
	ExcessiveLoad    = 0x4
	UnspecifiedError = 0x5
)

// Config configures a Listener.
type Config struct {
	Addr   string
	TLS    *tls.Config // NextProtos is set to "doq" on a copy
	Server Packets
	// IdleTimeout closes a connection without traffic for this long
	// (default 10s); a query's stream must be read within it too.
	IdleTimeout time.Duration
	// MaxConns caps the connections open at once (default 1024); more are
	// closed with DOQ_EXCESSIVE_LOAD.
	MaxConns int
	// MaxStreams caps the queries one connection has open at once
	// (default 100; QUIC flow control makes the client wait).
	MaxStreams int
	Logger     *slog.Logger
}

// Listener is a running DoQ listener.
type Listener struct {
	cfg      Config
	pc       net.PacketConn
	ln       *quic.Listener
	conns    atomic.Int64
	accepted atomic.Uint64 // connections whose handshake completed
	rejected atomic.Uint64
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

// Listen binds cfg.Addr (UDP) and starts accepting.
func Listen(cfg Config) (*Listener, error) {
	if cfg.TLS == nil || cfg.Server == nil {
		return nil, errors.New("doq: a TLS configuration and a server are needed")
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 10 * time.Second
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 1024
	}
	if cfg.MaxStreams <= 0 {
		cfg.MaxStreams = 100
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	pc, err := net.ListenPacket("udp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen doq %s: %w", cfg.Addr, err)
	}
	tc := cfg.TLS.Clone()
	tc.NextProtos = []string{ALPN}
	ln, err := quic.Listen(pc, tc, &quic.Config{
		MaxIdleTimeout:       cfg.IdleTimeout,
		HandshakeIdleTimeout: cfg.IdleTimeout,
		MaxIncomingStreams:   int64(cfg.MaxStreams),
		// DoQ uses no unidirectional streams (RFC 9250 section 4.2).
		MaxIncomingUniStreams: -1,
	})
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("listen doq %s: %w", cfg.Addr, err)
	}
	l := &Listener{cfg: cfg, pc: pc, ln: ln}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	l.wg.Add(1)
	go l.accept()
	cfg.Logger.Info("dns over quic listening", "addr", l.Addr())
	return l, nil
}

// Addr is the bound address.
func (l *Listener) Addr() string { return l.pc.LocalAddr().String() }

// Accepted counts the connections whose handshake completed.
func (l *Listener) Accepted() uint64 { return l.accepted.Load() }

// Rejected counts connections closed for being over MaxConns.
func (l *Listener) Rejected() uint64 { return l.rejected.Load() }

func (l *Listener) accept() {
	defer l.wg.Done()
	for {
		c, err := l.ln.Accept(l.ctx)
		if err != nil {
			return // closed
		}
		l.accepted.Add(1)
		if l.conns.Add(1) > int64(l.cfg.MaxConns) {
			l.conns.Add(-1)
			l.rejected.Add(1)
			c.CloseWithError(ExcessiveLoad, "too many connections")
			continue
		}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			defer l.conns.Add(-1)
			l.serveConn(c)
		}()
	}
}

// serveConn answers every stream of one connection.
func (l *Listener) serveConn(c *quic.Conn) {
	peer := addrPort(c.RemoteAddr())
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		st, err := c.AcceptStream(l.ctx)
		if err != nil {
			if l.ctx.Err() != nil {
				c.CloseWithError(NoError, "")
			}
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.serveStream(c, st, peer)
		}()
	}
}

// serveStream answers the one query of a stream.
func (l *Listener) serveStream(c *quic.Conn, st *quic.Stream, peer netip.AddrPort) {
	st.SetDeadline(time.Now().Add(l.cfg.IdleTimeout))
	var lb [2]byte
	if _, err := io.ReadFull(st, lb[:]); err != nil {
		st.CancelRead(RequestCancelled)
		st.CancelWrite(RequestCancelled)
		return
	}
	n := int(binary.BigEndian.Uint16(lb[:]))
	pkt := make([]byte, n)
	if _, err := io.ReadFull(st, pkt); err != nil {
		st.CancelRead(RequestCancelled)
		st.CancelWrite(RequestCancelled)
		return
	}
	// RFC 9250 section 4.2.1: the message ID must be 0. The query is
	// answered without waiting for the client's FIN.
	if n < 12 || binary.BigEndian.Uint16(pkt) != 0 {
		c.CloseWithError(ProtocolError, "message ID must be 0")
		return
	}
	ctx, cancel := context.WithCancel(l.ctx)
	defer cancel()
	resp, send := l.cfg.Server.HandlePacket(ctx, pkt, peer, Proto, 65535)
	if !send {
		st.CancelWrite(RequestCancelled)
		return
	}
	frame := make([]byte, 2+len(resp))
	binary.BigEndian.PutUint16(frame, uint16(len(resp)))
	copy(frame[2:], resp)
	if _, err := st.Write(frame); err != nil {
		st.CancelWrite(InternalError)
		return
	}
	st.Close() // FIN: the answer is complete
}

func addrPort(a net.Addr) netip.AddrPort {
	if u, ok := a.(*net.UDPAddr); ok {
		ap := u.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// Close closes every connection (DOQ_NO_ERROR) and the socket, waiting
// for queries in progress to be answered or cancelled.
func (l *Listener) Close() error {
	l.cancel()
	err := l.ln.Close()
	l.wg.Wait()
	l.pc.Close()
	return err
}
