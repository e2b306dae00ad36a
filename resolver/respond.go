package resolver

import (
	"fmt"
	"net/netip"
	"runtime/debug"
	"time"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/resolver/query"
)

// pack packs resp to at most size bytes, truncating it (TC) when it is
// larger: the one place answers built by the chain become bytes. nil when
// it cannot be packed.
func (s *Server) pack(resp *dns.Msg, size int) []byte {
	resp.Compress = true
	if resp.Len() > size {
		resp.Truncate(size)
	}
	out, err := resp.Pack()
	if err != nil || len(out) > max(size, dns.MinMsgSize) {
		s.log.Warn("pack response", "err", err, "bytes", len(out), "limit", size)
		return nil
	}
	return out
}

// limitUDP applies response rate limiting to a packed UDP answer: it
// returns out, nil to send nothing, or a slipped (truncated) answer.
func (s *Server) limitUDP(out []byte, from netip.AddrPort) []byte {
	if s.cfg.LimitResponse == nil || out == nil {
		return out
	}
	switch s.cfg.LimitResponse(from, out) {
	case Suppress:
		return nil
	case Slip:
		return slipped(out)
	}
	return out
}

// refused answers a query from a client the ACL does not admit: REFUSED
// with the question, or nothing when the packet is not a query.
func refused(pkt []byte) (*dns.Msg, *dns.Msg) {
	m := new(dns.Msg)
	if err := m.Unpack(pkt); err != nil || m.Response || len(m.Question) > 1 {
		return nil, nil
	}
	return m, query.ErrorReply(m, dns.RcodeRefused)
}

// slipped is what response rate limiting sends instead of a packed answer
// now and then: its header with TC set and its question, no records, so
// that a real client retries over TCP while a spoofed victim receives
// little. It works on the wire, for answers that were never unpacked.
func slipped(out []byte) []byte {
	if len(out) < 12 {
		return nil
	}
	end := 12
	if out[4] != 0 || out[5] != 0 {
		end = questionEnd(out)
	}
	r := make([]byte, end)
	copy(r, out[:end])
	r[2] |= 0x02 // TC
	if end == 12 {
		r[4], r[5] = 0, 0
	} else {
		r[4], r[5] = 0, 1
	}
	for i := 6; i < 12; i++ {
		r[i] = 0 // no answer, authority or additional records
	}
	return r
}

// questionEnd returns the offset just past the first question of a packed
// message, or 12 (the header only) when it cannot be read: the question
// name of a message sinkhole packed is never compressed.
func questionEnd(m []byte) int {
	off := 12
	for off < len(m) {
		c := int(m[off])
		switch {
		case c == 0:
			if off+5 <= len(m) {
				return off + 5
			}
			return 12
		case c&0xc0 != 0:
			return 12
		}
		off += 1 + c
	}
	return 12
}

// panicked is the one handler of a recovered panic p (the caller recovers
// it and decides what happens to the query): it is counted and logged at
// most once a second, so that a packet that triggers one cannot flood the
// log; the count of panics not logged goes with the next line, and the
// stack with the first.
func (s *Server) panicked(p any, msg string, args ...any) {
	if s.cfg.Panics != nil {
		s.cfg.Panics.Add(1)
	}
	now := time.Now().UnixNano()
	last := s.panicLast.Load()
	if last != 0 && now-last < int64(time.Second) || !s.panicLast.CompareAndSwap(last, now) {
		s.panicQuiet.Add(1)
		return
	}
	args = append(args, "panic", fmt.Sprint(p), "not_logged", s.panicQuiet.Swap(0))
	if !s.panicStack.Swap(true) {
		args = append(args, "stack", string(debug.Stack()))
	}
	s.log.Error(msg, args...)
}
