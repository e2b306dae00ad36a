package resolver

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// acceptLoop accepts TCP connections and serves each (ServeConn).
func (s *Server) acceptLoop(l *net.TCPListener) {
	defer s.loops.Done()
	for {
		conn, err := l.Accept()
		if err != nil {
			if s.closing.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn("tcp accept", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go s.ServeConn(conn, "tcp")
	}
}

// ServeConn serves DNS over one established stream connection (RFC 7766
// framing: 2-byte length prefix, pipelining, idle timeout, per-connection
// inflight cap, per-client and total conn caps as the TCP listener) until
// it closes. proto names the transport for ACL/metrics/logs ("tcp",
// "dot"). The caller has accepted the connection (e.g. a tls.Conn after
// handshake). ServeConn closes conn when it returns.
func (s *Server) ServeConn(conn net.Conn, proto string) {
	defer conn.Close()
	if !s.enter() {
		return
	}
	defer s.streams.Done()
	select {
	case s.tcpSem <- struct{}{}:
	default:
		// Over the connection cap: refuse at once rather than queue.
		s.tcpRejected.Add(1)
		return
	}
	defer func() { <-s.tcpSem }()
	client := addrPortOf(conn.RemoteAddr()).Addr().Unmap()
	if !s.claimClientConn(client) {
		s.tcpRejected.Add(1)
		return
	}
	defer s.releaseClientConn(client)
	s.conns.Store(conn, struct{}{})
	defer s.conns.Delete(conn)
	s.serveStream(conn, proto)
}

// claimClientConn counts a new connection from client, refusing it when the
// client already holds TCPMaxConnsPerClient.
func (s *Server) claimClientConn(client netip.Addr) bool {
	s.perClient.Lock()
	defer s.perClient.Unlock()
	if s.clientConns[client] >= s.cfg.TCPMaxConnsPerClient {
		return false
	}
	s.clientConns[client]++
	return true
}

func (s *Server) releaseClientConn(client netip.Addr) {
	s.perClient.Lock()
	defer s.perClient.Unlock()
	if s.clientConns[client] <= 1 {
		delete(s.clientConns, client)
		return
	}
	s.clientConns[client]--
}

// serveStream reads length-prefixed queries until the client goes idle,
// answering pipelined queries concurrently (RFC 7766 6.2.1.1).
func (s *Server) serveStream(conn net.Conn, proto string) {
	from := addrPortOf(conn.RemoteAddr())
	var wmu sync.Mutex
	inflight := make(chan struct{}, s.cfg.TCPMaxInflight)
	var lenBuf [2]byte
	var cw sync.WaitGroup
	defer cw.Wait()
	for !s.closing.Load() {
		conn.SetReadDeadline(time.Now().Add(s.cfg.TCPIdleTimeout))
		if s.closing.Load() {
			return // Shutdown may have set its deadline before ours
		}
		if _, err := io.ReadFull(conn, lenBuf[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint16(lenBuf[:]))
		if n < 12 {
			return
		}
		// The body must follow promptly; a trickling client is cut off.
		conn.SetReadDeadline(time.Now().Add(s.cfg.TCPIdleTimeout))
		pkt := make([]byte, n)
		if _, err := io.ReadFull(conn, pkt); err != nil {
			return
		}
		inflight <- struct{}{}
		s.wg.Add(1)
		cw.Add(1)
		go func() {
			defer func() { <-inflight; cw.Done(); s.wg.Done() }()
			if s.cfg.Transfer != nil && isTransferQuery(pkt) {
				s.serveTransfer(conn, &wmu, pkt, from)
				return
			}
			defer func() {
				if p := recover(); p != nil {
					s.panicked(p, "query panic; dropped", "client", from.String(), "proto", proto)
				}
			}()
			w := s.tcpScratch.Get().(*wireScratch)
			defer s.tcpScratch.Put(w)
			out, _ := s.answerMessage(context.Background(), w, pkt, from, proto, dns.MaxMsgSize)
			if out == nil {
				return
			}
			if err := s.writeFrame(conn, &wmu, out); err != nil {
				conn.Close()
			}
		}()
	}
}

// writeFrame writes one length-prefixed message (RFC 1035 4.2.2) under wmu.
func (s *Server) writeFrame(conn net.Conn, wmu *sync.Mutex, out []byte) error {
	frame := make([]byte, 2+len(out))
	binary.BigEndian.PutUint16(frame, uint16(len(out)))
	copy(frame[2:], out)
	wmu.Lock()
	defer wmu.Unlock()
	conn.SetWriteDeadline(time.Now().Add(s.cfg.TCPIdleTimeout))
	_, err := conn.Write(frame)
	return err
}

func addrPortOf(a net.Addr) netip.AddrPort {
	switch v := a.(type) {
	case *net.TCPAddr:
		return v.AddrPort()
	case *net.UDPAddr:
		return v.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}
