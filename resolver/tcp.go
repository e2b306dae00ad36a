package resolver

import (
	"bufio"
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

// streamReadBuf is the read buffer of one stream connection: pipelined
// queries that arrive together are read with one system call.
const streamReadBuf = 4096

// serveStream reads length-prefixed queries until the client goes idle.
// Queries the fast path answers (admission, the stages' offers) are
// answered in the reading goroutine and their answers gathered, then
// written with one system call when no more queries are buffered;
// queries that take the chain are answered concurrently (RFC 7766
// 6.2.1.1), each written as soon as it is ready.
func (s *Server) serveStream(conn net.Conn, proto string) {
	from := addrPortOf(conn.RemoteAddr())
	st := &stream{s: s, conn: conn}
	inflight := make(chan struct{}, s.cfg.TCPMaxInflight)
	br := bufio.NewReaderSize(conn, streamReadBuf)
	w := s.tcpScratch.Get().(*wireScratch)
	defer s.tcpScratch.Put(w)
	var body []byte // the current query, reused while answers are fast
	var lenBuf [2]byte
	var cw sync.WaitGroup
	defer cw.Wait()
	for !s.closing.Load() {
		if br.Buffered() == 0 {
			// About to wait for the client: send what is gathered first.
			if err := st.flush(); err != nil {
				conn.Close()
				return
			}
		}
		conn.SetReadDeadline(time.Now().Add(s.cfg.TCPIdleTimeout))
		if s.closing.Load() {
			return // Shutdown may have set its deadline before ours
		}
		if _, err := io.ReadFull(br, lenBuf[:]); err != nil {
			st.flush()
			return
		}
		n := int(binary.BigEndian.Uint16(lenBuf[:]))
		if n < 12 {
			st.flush()
			return
		}
		// The body must follow promptly; a trickling client is cut off.
		if br.Buffered() < n {
			conn.SetReadDeadline(time.Now().Add(s.cfg.TCPIdleTimeout))
		}
		if cap(body) < n {
			body = make([]byte, n)
		}
		pkt := body[:n]
		if _, err := io.ReadFull(br, pkt); err != nil {
			st.flush()
			return
		}
		if s.cfg.Transfer == nil || !isTransferQuery(pkt) {
			if out, _, done := s.fastStream(w, pkt, from, proto); done {
				if out != nil {
					st.gather(out)
				}
				continue
			}
		}
		// The chain (or a transfer) answers on its own goroutine: the
		// gathered fast answers go first, and pkt becomes that goroutine's.
		if err := st.flush(); err != nil {
			conn.Close()
			return
		}
		body = nil
		inflight <- struct{}{}
		s.wg.Add(1)
		cw.Add(1)
		go func() {
			defer func() { <-inflight; cw.Done(); s.wg.Done() }()
			if s.cfg.Transfer != nil && isTransferQuery(pkt) {
				s.serveTransfer(conn, &st.wmu, pkt, from)
				return
			}
			defer func() {
				if p := recover(); p != nil {
					s.panicked(p, "query panic; dropped", "client", from.String(), "proto", proto)
				}
			}()
			out := s.chainMessage(context.Background(), pkt, from, proto, dns.MaxMsgSize)
			if out == nil {
				return
			}
			if err := st.write(out); err != nil {
				conn.Close()
			}
		}()
	}
	st.flush()
}

// fastStream answers a stream query from admission and the fast path
// (fastMessage), recovering a panic as the chain's goroutines do.
func (s *Server) fastStream(w *wireScratch, pkt []byte, from netip.AddrPort, proto string) (out []byte, scratch, done bool) {
	defer func() {
		if p := recover(); p != nil {
			s.panicked(p, "query panic; dropped", "client", from.String(), "proto", proto)
			out, scratch, done = nil, false, true
		}
	}()
	return s.fastMessage(w, pkt, from, proto, dns.MaxMsgSize)
}

// stream is the writing side of one stream connection: answers the
// reader gathers (written together by flush) and answers the chain's
// goroutines write at once, one frame at a time under wmu.
type stream struct {
	s    *Server
	conn net.Conn
	wmu  sync.Mutex
	out  []byte // gathered frames, written by flush; only the reader touches it
}

// streamGather bounds the bytes of gathered answers before they are
// written anyway.
const streamGather = 16 << 10

// gather appends one framed answer to the pending output.
func (st *stream) gather(msg []byte) {
	st.out = appendFrame(st.out, msg)
	if len(st.out) >= streamGather {
		if err := st.flush(); err != nil {
			st.conn.Close()
		}
	}
}

// flush writes the gathered answers with one write.
func (st *stream) flush() error {
	if len(st.out) == 0 {
		return nil
	}
	st.wmu.Lock()
	defer st.wmu.Unlock()
	st.conn.SetWriteDeadline(time.Now().Add(st.s.cfg.TCPIdleTimeout))
	_, err := st.conn.Write(st.out)
	st.out = st.out[:0]
	return err
}

// write writes one framed answer at once (from a chain goroutine).
func (st *stream) write(msg []byte) error {
	return st.s.writeFrame(st.conn, &st.wmu, msg)
}

// appendFrame appends msg with its 2-byte length prefix (RFC 1035 4.2.2).
func appendFrame(dst, msg []byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(msg)))
	return append(dst, msg...)
}

// writeFrame writes one length-prefixed message under wmu.
func (s *Server) writeFrame(conn net.Conn, wmu *sync.Mutex, out []byte) error {
	frame := appendFrame(make([]byte, 0, 2+len(out)), out)
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
