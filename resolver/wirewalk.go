package resolver

import "encoding/binary"

// Walking packed messages for the encrypted transports: padding (RFC 7830)
// and HTTP freshness (RFC 8484) need a few fields of a packed answer, not
// a dns.Msg.

// skipName returns the offset just past the (possibly compressed) name at
// off, or -1 when it runs off the message.
func skipName(m []byte, off int) int {
	for off < len(m) {
		c := int(m[off])
		switch {
		case c == 0:
			return off + 1
		case c&0xC0 == 0xC0:
			if off+2 > len(m) {
				return -1
			}
			return off + 2
		case c&0xC0 != 0:
			return -1
		}
		off += 1 + c
	}
	return -1
}

// lastOPT walks m's records and returns the offset of its OPT record's
// RDLENGTH field when that record is the last of the message and ends it
// (the only place padding can be appended without moving anything), or -1.
func lastOPT(m []byte) int {
	if len(m) < 12 {
		return -1
	}
	qd := int(binary.BigEndian.Uint16(m[4:]))
	rrs := int(binary.BigEndian.Uint16(m[6:])) + int(binary.BigEndian.Uint16(m[8:])) + int(binary.BigEndian.Uint16(m[10:]))
	off := 12
	for range qd {
		if off = skipName(m, off); off < 0 || off+4 > len(m) {
			return -1
		}
		off += 4
	}
	last := -1
	for i := range rrs {
		if off = skipName(m, off); off < 0 || off+10 > len(m) {
			return -1
		}
		rdlen := int(binary.BigEndian.Uint16(m[off+8:]))
		if i == rrs-1 && binary.BigEndian.Uint16(m[off:]) == 41 && m[off-1] == 0 {
			last = off + 8
		}
		off += 10 + rdlen
		if off > len(m) {
			return -1
		}
	}
	if off != len(m) {
		return -1
	}
	return last
}

// CacheLifetime returns how long an HTTP cache may keep a packed answer
// (RFC 8484 section 5.1): the smallest TTL of its answer section; for a
// negative answer (NXDOMAIN, or NOERROR without answers) the negative TTL of
// its SOA, the smaller of the SOA's TTL and MINIMUM (RFC 2308 section 5);
// 0 for errors, negative answers without SOA and messages it cannot read.
func CacheLifetime(m []byte) uint32 {
	if len(m) < 12 {
		return 0
	}
	rcode := m[3] & 0xF
	if rcode != 0 && rcode != 3 {
		return 0
	}
	qd := int(binary.BigEndian.Uint16(m[4:]))
	an := int(binary.BigEndian.Uint16(m[6:]))
	ns := int(binary.BigEndian.Uint16(m[8:]))
	off := 12
	for range qd {
		if off = skipName(m, off); off < 0 || off+4 > len(m) {
			return 0
		}
		off += 4
	}
	negative := rcode == 3 || an == 0
	best, found := uint32(0), false
	for i := range an + ns {
		if off = skipName(m, off); off < 0 || off+10 > len(m) {
			return 0
		}
		typ := binary.BigEndian.Uint16(m[off:])
		ttl := binary.BigEndian.Uint32(m[off+4:])
		rd := off + 10
		end := rd + int(binary.BigEndian.Uint16(m[off+8:]))
		if end > len(m) {
			return 0
		}
		switch {
		case i < an && !negative:
			if !found || ttl < best {
				best, found = ttl, true
			}
		case i >= an && negative && typ == 6: // SOA
			p := skipName(m, rd)
			if p >= 0 {
				p = skipName(m, p)
			}
			if p < 0 || p+20 > end {
				return 0
			}
			return min(ttl, binary.BigEndian.Uint32(m[p+16:]))
		}
		if i == an-1 && !negative {
			return best
		}
		off = end
	}
	return best
}
