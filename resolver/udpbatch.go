package resolver

import (
	"errors"
	"net"
	"time"
	"unsafe"

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
		if w.listAnswers > 0 {
			s.prefetchBatch(w, m, n)
		}
		w.listAnswers = 0
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

// prefetchBatch has the list snapshot read into the CPU's caches what
// matching the question names of the batch's n datagrams will read
// (blocklist.Snapshot.Prefetch), so that their cache misses overlap
// before the first is answered. The read loop calls it when the batch
// before had answers decided by the lists (a batch of cache hits never
// reads the lists).
func (s *Server) prefetchBatch(w *wireScratch, m *mmsg.Conn, n int) {
	names := w.names[:0]
	used := 0
	for i := 0; i < n && len(names) < len(w.names); i++ {
		pkt, _, _, ok := m.Packet(i)
		if !ok {
			continue
		}
		k, ok := questionName(pkt, w.nameBuf[used:])
		if !ok {
			continue
		}
		names = append(names, unsafe.String(&w.nameBuf[used], k))
		used += k
	}
	if len(names) > 0 {
		w.touch += s.cfg.Snapshot().Prefetch(names)
	}
}

// questionName writes the question name of query pkt into dst in the
// canonical dotted form the lists match (ASCII lower case, no trailing
// dot) and returns its length; ok is false for a packet without a plain
// question name of at least one label that fits dst. It only serves
// prefetching: the query is parsed for real when it is answered.
func questionName(pkt, dst []byte) (n int, ok bool) {
	off := 12
	for off < len(pkt) {
		l := int(pkt[off])
		if l == 0 {
			return n, n > 0
		}
		if l&0xC0 != 0 || off+1+l > len(pkt) || n+1+l > len(dst) {
			return 0, false
		}
		if n > 0 {
			dst[n] = '.'
			n++
		}
		for _, c := range pkt[off+1 : off+1+l] {
			if c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
			}
			dst[n] = c
			n++
		}
		off += 1 + l
	}
	return 0, false
}
