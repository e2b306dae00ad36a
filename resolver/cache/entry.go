package cache

import (
	"encoding/binary"
	"errors"
	"sync/atomic"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/resolver/query"
)

// StaleTTL is the TTL of answers served stale (RFC 8767 section 4).
const StaleTTL = 30

// entry is one cached answer in wire form, ready to be patched and sent.
type entry struct {
	key  string
	name string // canonical query name, for observers
	// wire is the response packed without its OPT record, with ID 0. Its
	// record TTLs are the clamped TTLs at store time.
	wire    []byte
	ttlOffs []uint16 // offsets in wire of every record's TTL field
	qlen    int      // length of the question section (name, type, class)
	opts    []byte   // EDNS options (EDE...) for the OPT record, packed
	// raw is the upstream's answer packed the same way, when it differs
	// from wire (the answer was replaced by a block); nil for blocks decided
	// on the name alone. It lets a new list generation re-decide the entry
	// without asking upstream.
	raw        []byte
	rawSame    bool  // raw is wire (the answer was served as the upstream gave it)
	rawExpires int64 // when the held upstream answer's smallest TTL runs out

	stored  int64  // unix nanoseconds
	ttl     uint32 // seconds the entry is fresh
	expires int64  // stored + ttl
	gen     uint64 // list generation the decision was made under
	info    query.Info

	slot        int // index in its shard's clock ring
	visited     atomic.Bool
	hits        atomic.Uint32
	prefetching atomic.Bool
}

// upstreamWire returns the upstream's answer the entry holds, if any.
func (e *entry) upstreamWire() []byte {
	if e.rawSame {
		return e.wire
	}
	return e.raw
}

var errUncacheable = errors.New("uncacheable")

// packForCache packs m without its OPT record and with ID 0, and returns
// the offsets of every record's TTL and the OPT options.
func packForCache(m *dns.Msg) (wire []byte, ttlOffs []uint16, opts []byte, err error) {
	c := *m // shallow: the records are shared, never modified
	c.Id = 0
	c.Compress = true
	c.Extra = nil
	for _, rr := range m.Extra {
		switch v := rr.(type) {
		case *dns.OPT:
			if opts, err = optionBytes(v); err != nil {
				return nil, nil, nil, err
			}
		case *dns.TSIG, *dns.SIG:
			return nil, nil, nil, errUncacheable
		default:
			c.Extra = append(c.Extra, rr)
		}
	}
	wire, err = c.Pack()
	if err != nil {
		return nil, nil, nil, err
	}
	ttlOffs, err = ttlOffsets(wire)
	return wire, ttlOffs, opts, err
}

// questionLen returns the length of the (single) question section of wire.
func questionLen(wire []byte) int {
	off, err := skipName(wire, 12)
	if err != nil {
		return 0
	}
	return off + 4 - 12
}

// optionBytes returns the packed options (the RDATA) of an OPT record.
func optionBytes(opt *dns.OPT) ([]byte, error) {
	if len(opt.Option) == 0 {
		return nil, nil
	}
	o := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}, Option: opt.Option}
	w, err := (&dns.Msg{Extra: []dns.RR{o}}).Pack()
	if err != nil || len(w) < 12+11 {
		return nil, errUncacheable
	}
	return append([]byte(nil), w[12+11:]...), nil
}

// ttlOffsets walks a packed message and returns where each record's TTL is.
func ttlOffsets(wire []byte) ([]uint16, error) {
	if len(wire) < 12 || len(wire) > 0xFFFF {
		return nil, errUncacheable
	}
	qd := int(binary.BigEndian.Uint16(wire[4:]))
	rrs := int(binary.BigEndian.Uint16(wire[6:])) + int(binary.BigEndian.Uint16(wire[8:])) + int(binary.BigEndian.Uint16(wire[10:]))
	off := 12
	for i := 0; i < qd; i++ {
		var err error
		if off, err = skipName(wire, off); err != nil {
			return nil, err
		}
		off += 4
	}
	offs := make([]uint16, 0, rrs)
	for i := 0; i < rrs; i++ {
		var err error
		if off, err = skipName(wire, off); err != nil {
			return nil, err
		}
		if off+10 > len(wire) {
			return nil, errUncacheable
		}
		offs = append(offs, uint16(off+4))
		off += 10 + int(binary.BigEndian.Uint16(wire[off+8:]))
	}
	if off != len(wire) {
		return nil, errUncacheable
	}
	return offs, nil
}

func skipName(wire []byte, off int) (int, error) {
	for {
		if off >= len(wire) {
			return 0, errUncacheable
		}
		l := int(wire[off])
		switch {
		case l == 0:
			return off + 1, nil
		case l&0xC0 == 0xC0:
			return off + 2, nil
		case l&0xC0 != 0:
			return 0, errUncacheable
		}
		off += 1 + l
	}
}

// clampTTLs rewrites every record TTL in wire into [min, max] (negative
// answers: every TTL becomes neg) and returns the smallest.
func clampTTLs(wire []byte, offs []uint16, min, max uint32, neg int64) uint32 {
	lowest := uint32(0xFFFFFFFF)
	for _, o := range offs {
		t := binary.BigEndian.Uint32(wire[o:])
		switch {
		case neg >= 0:
			t = uint32(neg)
		case t > max:
			t = max
		case t < min:
			t = min
		}
		binary.BigEndian.PutUint32(wire[o:], t)
		lowest = uint32(minU(uint64(lowest), uint64(t)))
	}
	if len(offs) == 0 {
		return min
	}
	return lowest
}

func minU(a, b uint64) uint64 {
	if a < b {
		return a
	}
	return b
}

// render writes the answer to q into out (which must hold len(e.wire)+11+
// len(opts)+4+len(extra) bytes) and returns its length. now is unix nanos.
// stale serves it with StaleTTL and extraOpts (EDE Stale Answer).
func (e *entry) render(out []byte, q *query.WireQuery, now int64, stale bool) int {
	n := copy(out, e.wire)
	binary.BigEndian.PutUint16(out, q.ID)
	if q.RD {
		out[2] |= 0x01
	} else {
		out[2] &^= 0x01
	}
	if len(q.Question) == e.qlen {
		copy(out[12:], q.Question) // the client's spelling of the name
	}
	age := uint32(0)
	if d := now - e.stored; d > 0 {
		age = uint32(d / 1e9)
	}
	for _, o := range e.ttlOffs {
		t := uint32(StaleTTL)
		if !stale {
			t = binary.BigEndian.Uint32(e.wire[o:])
			if t > age {
				t -= age
			} else {
				t = 0
			}
		}
		binary.BigEndian.PutUint32(out[o:], t)
	}
	if !q.HasEDNS {
		return n
	}
	// OPT: root, type 41, class = our UDP size, TTL = 0/version 0/DO.
	var do byte
	if q.DO {
		do = 0x80
	}
	optLen := len(e.opts)
	if stale {
		optLen += 4 + 2
	}
	out[n] = 0
	binary.BigEndian.PutUint16(out[n+1:], dns.TypeOPT)
	binary.BigEndian.PutUint16(out[n+3:], query.ServerUDPSize)
	out[n+5], out[n+6], out[n+7], out[n+8] = 0, 0, do, 0
	binary.BigEndian.PutUint16(out[n+9:], uint16(optLen))
	n += 11
	n += copy(out[n:], e.opts)
	if stale {
		binary.BigEndian.PutUint16(out[n:], dns.EDNS0EDE)
		binary.BigEndian.PutUint16(out[n+2:], 2)
		binary.BigEndian.PutUint16(out[n+4:], dns.ExtendedErrorCodeStaleAnswer)
		n += 6
	}
	binary.BigEndian.PutUint16(out[10:], binary.BigEndian.Uint16(out[10:])+1)
	return n
}

// renderedSize bounds the bytes render writes.
func (e *entry) renderedSize() int { return len(e.wire) + 11 + len(e.opts) + 6 }
