package query

import (
	"encoding/binary"
	"errors"

	"github.com/miekg/dns"
)

// WireQuery is a query read straight from its packet, without building a
// dns.Msg: enough to look it up in the cache and answer it. It holds no
// allocations of its own; Key and Question alias buffers of the caller.
type WireQuery struct {
	ID      uint16
	RD, CD  bool
	AD      bool // the client asked for the AD bit (RFC 6840 5.7)
	Qtype   uint16
	Qclass  uint16
	HasEDNS bool
	DO      bool
	UDPSize int // the client's UDP payload limit (512 without EDNS)
	// Limit is the largest answer the transport takes: UDPSize over UDP,
	// the stream's or message's limit otherwise (set by the server).
	Limit    int
	Question []byte // the question section as sent (client's case), for echoing
	// Options is the OPT record's RDATA as sent (the EDNS options), nil
	// without EDNS; it aliases the packet.
	Options []byte
	// Key is the cache key: the lower-cased wire name, type, class and a
	// flags byte (DO, CD, AD): clients that differ in them are given
	// different answers, so they never share an entry.
	Key []byte
}

// errNotSimple means the packet is valid DNS perhaps, but not a plain query
// the fast path handles; the full parser takes it.
var errNotSimple = errors.New("not a simple query")

// Key flag bits.
const (
	keyDO = 1 << 0
	keyCD = 1 << 1
	keyAD = 1 << 2
)

// ParseWireQuery reads a plain query (QR=0, opcode QUERY, one question, no
// answer or authority records, at most an OPT record) from pkt, building
// the cache key in keyBuf. Anything else returns an error and is left to the
// full parser.
func ParseWireQuery(pkt []byte, keyBuf []byte, q *WireQuery) error {
	if len(pkt) < 12+5 {
		return errNotSimple
	}
	flags := binary.BigEndian.Uint16(pkt[2:])
	if flags&0x8000 != 0 || (flags>>11)&0xF != 0 || flags&0x0200 != 0 { // QR, opcode, TC
		return errNotSimple
	}
	if binary.BigEndian.Uint16(pkt[4:]) != 1 || binary.BigEndian.Uint16(pkt[6:]) != 0 || binary.BigEndian.Uint16(pkt[8:]) != 0 {
		return errNotSimple
	}
	arcount := binary.BigEndian.Uint16(pkt[10:])
	if arcount > 1 {
		return errNotSimple
	}
	q.ID = binary.BigEndian.Uint16(pkt)
	q.RD = flags&0x0100 != 0
	q.CD = flags&0x0010 != 0
	q.AD = flags&0x0020 != 0
	key := keyBuf[:0]
	off := 12
	for {
		if off >= len(pkt) {
			return errNotSimple
		}
		l := int(pkt[off])
		if l&0xC0 != 0 { // compression pointer or extended label in a question
			return errNotSimple
		}
		if off+1+l > len(pkt) || len(key)+1+l > 255 {
			return errNotSimple
		}
		key = append(key, byte(l))
		for _, c := range pkt[off+1 : off+1+l] {
			if c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
			}
			key = append(key, c)
		}
		off += 1 + l
		if l == 0 {
			break
		}
	}
	if off+4 > len(pkt) {
		return errNotSimple
	}
	q.Qtype = binary.BigEndian.Uint16(pkt[off:])
	q.Qclass = binary.BigEndian.Uint16(pkt[off+2:])
	off += 4
	q.Question = pkt[12:off]
	q.HasEDNS, q.DO, q.UDPSize, q.Options = false, false, dns.MinMsgSize, nil
	if arcount == 1 {
		// OPT: root name, type 41, class = UDP size, TTL = ext-rcode,
		// version, flags; then the options, which are ignored.
		if off+11 > len(pkt) || pkt[off] != 0 || binary.BigEndian.Uint16(pkt[off+1:]) != dns.TypeOPT {
			return errNotSimple
		}
		size := int(binary.BigEndian.Uint16(pkt[off+3:]))
		if pkt[off+6] != 0 { // EDNS version: BADVERS is the full parser's job
			return errNotSimple
		}
		q.DO = pkt[off+7]&0x80 != 0
		rdlen := int(binary.BigEndian.Uint16(pkt[off+9:]))
		if off+11+rdlen <= len(pkt) {
			q.Options = pkt[off+11 : off+11+rdlen]
		}
		off += 11 + rdlen
		q.HasEDNS, q.UDPSize = true, max(size, dns.MinMsgSize)
	}
	if off != len(pkt) {
		return errNotSimple
	}
	switch q.Qtype {
	case dns.TypeAXFR, dns.TypeIXFR, dns.TypeOPT, dns.TypeANY, dns.TypeTSIG, dns.TypeNone:
		return errNotSimple // transfers, ANY, and what the full path answers FORMERR
	}
	q.Key = appendKeyFlags(key, q.Qtype, q.Qclass, q.DO, q.CD, q.AD)
	return nil
}

// appendKeyFlags ends a cache key: type, class and the flags byte.
func appendKeyFlags(key []byte, qtype, qclass uint16, do, cd, ad bool) []byte {
	var fl byte
	if do {
		fl |= keyDO
	}
	if cd {
		fl |= keyCD
	}
	if ad {
		fl |= keyAD
	}
	return append(key, byte(qtype>>8), byte(qtype), byte(qclass>>8), byte(qclass), fl)
}

// KeyFlags reads the DO, CD and AD bits back from a cache key.
func KeyFlags(key []byte) (do, cd, ad bool) {
	if len(key) == 0 {
		return false, false, false
	}
	fl := key[len(key)-1]
	return fl&keyDO != 0, fl&keyCD != 0, fl&keyAD != 0
}

// DottedName writes q's name in the canonical dotted form the matchers use
// into dst's array (which must hold 255 bytes; dst's length is ignored). It
// declines names with bytes a list entry cannot hold (such names go the
// full path, which spells them as miekg/dns does).
func (q *WireQuery) DottedName(dst []byte) ([]byte, bool) {
	key, buf := q.Key, dst[:cap(dst)]
	n := 0
	for i := 0; i < len(key); {
		l := int(key[i])
		if l == 0 {
			return buf[:n], true
		}
		if n > 0 {
			if n >= len(buf) {
				return nil, false
			}
			buf[n] = '.'
			n++
		}
		if i+1+l > len(key) || n+l > len(buf) {
			return nil, false
		}
		for _, c := range key[i+1 : i+1+l] {
			if !nameByte[c] {
				return nil, false
			}
			buf[n] = c
			n++
		}
		i += 1 + l
	}
	return nil, false
}

// nameByte holds the bytes a list entry can hold (in a lower-cased name).
var nameByte = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	t['-'], t['_'] = true, true
	return t
}()

// WireName returns the question name of a cache key in wire form (lower
// case), without type, class and flags.
func WireName(key []byte) []byte {
	if len(key) < 5 {
		return nil
	}
	return key[:len(key)-5]
}

// CacheKey builds the cache key of a parsed query into buf: the same bytes
// ParseWireQuery produces for it.
func CacheKey(buf []byte, m *dns.Msg) ([]byte, error) {
	q := m.Question[0]
	buf = buf[:cap(buf)]
	if len(buf) < 256+5 {
		buf = make([]byte, 256+5)
	}
	n, err := dns.PackDomainName(dns.Fqdn(q.Name), buf, 0, nil, false)
	if err != nil {
		return nil, err
	}
	key := buf[:n]
	for i := 0; i < len(key); {
		l := int(key[i])
		for j := i + 1; j <= i+l && j < len(key); j++ {
			if c := key[j]; c >= 'A' && c <= 'Z' {
				key[j] = c + 'a' - 'A'
			}
		}
		i += 1 + l
		if l == 0 {
			break
		}
	}
	opt := m.IsEdns0()
	return appendKeyFlags(key, q.Qtype, q.Qclass, opt != nil && opt.Do(), m.CheckingDisabled, m.AuthenticatedData), nil
}
