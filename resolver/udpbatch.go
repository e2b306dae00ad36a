package resolver

import (
	"errors"
	"net"
	"time"

	"github.com/sinkhole-dns/sinkhole/internal/mmsg"
)

// DefaultUDPBatch is how many datagrams one system call reads or writes on
// a UDP socket by default (ServerConfig.UDPBatch).
const DefaultUDPBatch = 32

// udpSlot is the size of one batch slot: a query longer than this (no real
// query is: a query carries one question and a few options) is dropped.
const udpSlot = slowPathBuf

// serveUDPSocket runs the read loop of one UDP socket: batched where the
// platform has recvmmsg/sendmmsg and the batch is over one, else one
// datagram per system call.
func (s *Server) serveUDPSocket(c *net.UDPConn) {
	if s.cfg.UDPBatch > 1 && mmsg.Supported {
		m, err := mmsg.New(c, s.cfg.UDPBatch, udpSlot)
		if err == nil {
			s.udpBatchLoop(c, m)
			return
		}
		s.log.Warn("udp: batched I/O unavailable, reading one datagram per call", "err", err)
	}
	s.udpLoop(c)
}

// udpBatchLoop reads up to a batch of datagrams per system call, answers
// those the fast path can (answerFast: admission, the stages' offers,
// response rate limiting) into the write batch, hands the rest to
// goroutines for the chain (they write their own answers, so a slow
// upstream never holds the batch up), and sends the batch's answers with
// one system call before reading again. Read returns as soon as one
// datagram is there, so a lone query is answered at once.
func (s *Server) udpBatchLoop(c *net.UDPConn, m *mmsg.Conn) {
	defer s.loops.Done()
	w := newWireScratch()
	for {
		n, err := m.Read()
		w.now = time.Now()
		if err != nil {
			if s.closing.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Debug("udp read", "err", err)
			continue
		}
		for i := 0; i < n; i++ {
			pkt, from, truncated, ok := m.Packet(i)
			if !ok || len(pkt) < 12 {
				continue // no sender we can answer, or not even a header: drop
			}
			if truncated {
				s.log.Debug("udp: query longer than a batch slot dropped", "client", from.String(), "slot", udpSlot)
				continue
			}
			out, done := s.answerFast(w, pkt, from)
			if !done {
				s.chainUDP(c, pkt, from)
				continue
			}
			if out != nil {
				if err := m.Queue(i, out); err != nil {
					s.log.Debug("udp write", "err", err)
				}
			}
		}
		if err := m.Flush(); err != nil {
			s.log.Debug("udp write", "err", err)
		}
	}
}
