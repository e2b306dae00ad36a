package rpz

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// A secondary's copy of its zone, kept compactly: every record in
// canonical form (RFC 4034 section 6.2: lower-case owner and RDATA names,
// no compression), its owner relative to the apex, packed into 1 MiB
// chunks that are only appended to; an open-addressing index by owner
// name; a bit per record taken out. A record's number (its order of
// arrival) is its place in the zone file the secondary writes (one record
// per line, a blank line for a record taken out), so that the rules the
// list store holds for it keep their line across changes and restarts.
//
// Record layout in a chunk, an owner then a tail:
//
//   - owner: a literal, its length L (0 to maxLiteralOwner, 1 byte) then
//     its labels below the apex in wire form (no root); or a reference to
//     the owner of the last record stored with a literal one: refSame
//     (the same owner), refWild ("*." and that owner) or refUnwild (that
//     owner without its leading "*" label), then that record's chunk
//     offset (4 bytes). So "*.name" after "name" (or "name" after
//     "*.name", or a second record of an owner) costs 5 bytes, not the
//     name again.
//   - tail: the type (2), class (2), TTL (4), RDATA length (2) and RDATA,
//     written once in the copy's table of shapes when it is short (a
//     policy zone has a handful: "CNAME ." with the zone's TTL, ...) and
//     referenced by its index (1 byte); shapeLiteral then the tail itself
//     otherwise.
//
// A record with a literal owner and the references that follow it (up to
// the next literal) form a group: their owners are the same once a leading
// "*" label is set aside (a reference to a literal that starts with "*"
// is never refWild). The index holds the groups, by that owner: one slot
// per group, not per record.
//
// A 28-character name and its wildcard, both "CNAME .", take 38 bytes of
// chunk, 8 of offsets and 4 to 8 of index: about 26 bytes per record.
//
// Elsewhere a record is handled in its expanded form (what encode
// returns and rec builds): owner length, the owner's labels, the tail.

const (
	chunkBits = 20
	chunkSize = 1 << chunkBits

	maxLiteralOwner = 0xfc
	refSame         = 0xfd
	refWild         = 0xfe
	refUnwild       = 0xff
	shapeLiteral    = 0xff
	maxShapes       = 0xff
	maxShapeLen     = 64

	// placeholderOff is the offset of a record number that holds nothing.
	placeholderOff = ^uint32(0)
)

var zoneSeed = maphash.MakeSeed()

type zoneCopy struct {
	soa      *dns.SOA
	apex     string // absolute, lower case
	apexWire []byte // wire form of apex
	chunks   [][]byte
	offs     []uint32 // record i at chunks[offs[i]>>chunkBits][offs[i]&(chunkSize-1):]
	dead     []uint64
	live     int
	slots    []uint32 // record number + 1 of the literal-owner records, by owner hash (see group)
	lits     int      // records in slots
	sum      uint64   // sum of the live records' hashes (with TTLs): the content's identity
	// shapes are the tails stored once (see above), shapeIdx their index.
	shapes   [][]byte
	shapeIdx map[string]uint8
	// lastLit is the last record stored with a literal owner (-1: none):
	// the one a reference may name.
	lastLit int
	// sorted: records [0, sorted) are in canonical order (by number).
	sorted    int
	unsorted  bool // a record after them broke the order: sorted stays
	lastBelow int  // the last record below the apex, -1 for none
	// order, when set, lists the records numbered below ordered in
	// canonical order (some may be dead since); without it the records
	// numbered below sorted are. extra lists, in canonical order, the
	// live records numbered below extraTo that these leave out (see
	// digest).
	order   []uint32
	ordered int
	extra   []uint32
	extraTo int
	pack    []byte // scratch for encode
	// layout, when set, is the zone file's order of the records numbered
	// below len(layout) (canonical, see canonicalLayout), inv its inverse;
	// later records follow in number order.
	layout, inv []uint32
	// m3, once a MERKLE3 digest was computed, is the state that keeps the
	// next one in time proportional to the change (see m3Copy); nil
	// until then, and after an undo.
	m3     *m3Copy
	m3Keep int // the bytes of leaves a MERKLE3 build keeps between its passes (see m3KeepBelow)
}

func newZoneCopy(apex string, soa *dns.SOA) *zoneCopy {
	apex = strings.ToLower(dns.Fqdn(apex))
	w := make([]byte, 256)
	n, _ := dns.PackDomainName(apex, w, 0, nil, false)
	return &zoneCopy{soa: soa, apex: apex, apexWire: w[:n], lastBelow: -1, lastLit: -1, shapeIdx: map[string]uint8{}}
}

func (z *zoneCopy) records() int { return len(z.offs) }

// recParts is a record taken apart: its owner (relative wire form, after
// "*." when wild) and its tail (type, class, TTL, RDATA length, RDATA).
// An owner whose first label is "*" is always given as wild and the rest.
type recParts struct {
	wild  bool
	owner []byte
	tail  []byte
}

var starLabel = []byte{1, '*'}

func splitWild(owner []byte) recParts {
	if len(owner) >= 2 && owner[0] == 1 && owner[1] == '*' {
		return recParts{wild: true, owner: owner[2:]}
	}
	return recParts{owner: owner}
}

// partsOf takes an expanded record apart.
func partsOf(r []byte) recParts {
	p := splitWild(r[1 : 1+int(r[0])])
	p.tail = r[1+int(r[0]):]
	return p
}

// at returns record i (stored, maybe dead) taken apart; the slices point
// into the copy.
func (z *zoneCopy) at(i int) recParts {
	o := z.offs[i]
	c := z.chunks[o>>chunkBits]
	off := int(o & (chunkSize - 1))
	var p recParts
	switch b := c[off]; {
	case b <= maxLiteralOwner:
		p = splitWild(c[off+1 : off+1+int(b)])
		off += 1 + int(b)
	default:
		lit := z.literalAt(binary.BigEndian.Uint32(c[off+1:]))
		switch b {
		case refSame:
			p = splitWild(lit)
		case refWild:
			p = recParts{wild: true, owner: lit}
		default: // refUnwild
			p = recParts{owner: lit[2:]}
		}
		off += 5
	}
	if k := c[off]; k != shapeLiteral {
		p.tail = z.shapes[k]
	} else {
		rdl := int(binary.BigEndian.Uint16(c[off+1+8:]))
		p.tail = c[off+1 : off+1+10+rdl]
	}
	return p
}

// literalAt is the literal owner of the record stored at chunk offset o.
func (z *zoneCopy) literalAt(o uint32) []byte {
	c := z.chunks[o>>chunkBits]
	off := int(o & (chunkSize - 1))
	return c[off+1 : off+1+int(c[off])]
}

func (p recParts) ownerLen() int {
	if p.wild {
		return len(p.owner) + 2
	}
	return len(p.owner)
}

func (p recParts) appendOwner(dst []byte) []byte {
	if p.wild {
		dst = append(dst, starLabel...)
	}
	return append(dst, p.owner...)
}

func (p recParts) isApex() bool { return !p.wild && len(p.owner) == 0 }

func (p recParts) typ() uint16 { return binary.BigEndian.Uint16(p.tail) }

func (p recParts) class() uint16 { return binary.BigEndian.Uint16(p.tail[2:]) }

func (p recParts) ttl() uint32 { return binary.BigEndian.Uint32(p.tail[4:]) }

func (p recParts) rdata() []byte { return p.tail[10:] }

func sameOwner(a, b recParts) bool { return a.wild == b.wild && bytes.Equal(a.owner, b.owner) }

// sameKeyParts: the same owner, type, class and RDATA (a record as IXFR
// deletions name it, regardless of TTL).
func sameKeyParts(a, b recParts) bool {
	return sameOwner(a, b) && bytes.Equal(a.tail[:4], b.tail[:4]) && bytes.Equal(a.tail[8:], b.tail[8:])
}

// sameRecord: the same record, TTL included.
func sameRecord(a, b recParts) bool { return sameOwner(a, b) && bytes.Equal(a.tail, b.tail) }

// expand appends p's expanded form.
func (p recParts) expand(dst []byte) []byte {
	dst = append(dst, byte(p.ownerLen()))
	dst = p.appendOwner(dst)
	return append(dst, p.tail...)
}

// rec returns record i in expanded form (a new slice).
func (z *zoneCopy) rec(i int) []byte { return z.at(i).expand(nil) }

func (z *zoneCopy) isDead(i int) bool { return z.dead[i>>6]&(1<<(i&63)) != 0 }

// recOwner, recType: parts of an expanded record.
func recOwner(r []byte) []byte { return r[1 : 1+int(r[0])] }

func recType(r []byte) uint16 { return binary.BigEndian.Uint16(r[1+int(r[0]):]) }

// sameKey compares two expanded records as sameKeyParts does.
func sameKey(a, b []byte) bool { return sameKeyParts(partsOf(a), partsOf(b)) }

func recHash(p recParts) uint64 {
	var h maphash.Hash
	h.SetSeed(zoneSeed)
	if p.wild {
		h.WriteByte(1)
	} else {
		h.WriteByte(0)
	}
	h.WriteByte(byte(len(p.owner)))
	h.Write(p.owner)
	h.Write(p.tail)
	return h.Sum64()
}

// encode returns rr's record in expanded form (scratch is reused), or an
// error for a record outside the zone or that does not pack.
func (z *zoneCopy) encode(rr dns.RR, scratch []byte) ([]byte, error) {
	if c, ok := rr.(*dns.CNAME); ok && c.Hdr.Class == dns.ClassINET {
		if out, ok := z.encodeCNAME(c, scratch); ok {
			return out, nil
		}
	}
	return z.encodePacked(rr, scratch)
}

// encodeCNAME is encode for the plain CNAME records nearly all of a policy
// zone is, without packing the record whole: owner and target in
// presentation form are laid out as wire labels directly. It declines
// (false) anything else: escapes, empty or long labels, upper case, the
// apex, names outside the zone, for encodePacked to handle or refuse.
func (z *zoneCopy) encodeCNAME(c *dns.CNAME, scratch []byte) ([]byte, bool) {
	owner := c.Hdr.Name
	if len(owner) <= len(z.apex) || owner[len(owner)-len(z.apex)-1] != '.' || owner[len(owner)-len(z.apex):] != z.apex {
		return nil, false
	}
	rel := owner[:len(owner)-len(z.apex)-1]
	out := append(scratch[:0], 0)
	out, ok := appendPlainLabels(out, rel)
	if !ok || len(out)-1 > maxLiteralOwner {
		return nil, false
	}
	out[0] = byte(len(out) - 1)
	out = append(out, byte(dns.TypeCNAME>>8), byte(dns.TypeCNAME), byte(dns.ClassINET>>8), byte(dns.ClassINET))
	out = binary.BigEndian.AppendUint32(out, c.Hdr.Ttl)
	rdStart := len(out)
	out = append(out, 0, 0)
	if c.Target != "." {
		if len(c.Target) < 2 || c.Target[len(c.Target)-1] != '.' {
			return nil, false
		}
		if out, ok = appendPlainLabels(out, c.Target[:len(c.Target)-1]); !ok || len(out)-rdStart-2 > 254 {
			return nil, false
		}
	}
	out = append(out, 0)
	binary.BigEndian.PutUint16(out[rdStart:], uint16(len(out)-rdStart-2))
	return out, true
}

// appendPlainLabels appends the wire labels of a relative name in
// presentation form (no root label), or reports false for one it does
// not take as plain: an escape, an upper-case letter, an empty label or
// one over 63 bytes.
func appendPlainLabels(dst []byte, name string) ([]byte, bool) {
	for len(name) > 0 {
		i := strings.IndexByte(name, '.')
		label := name
		if i >= 0 {
			label, name = name[:i], name[i+1:]
			if name == "" {
				return dst, false // a trailing dot: an empty label
			}
		} else {
			name = ""
		}
		if len(label) == 0 || len(label) > 63 {
			return dst, false
		}
		dst = append(dst, byte(len(label)))
		for j := 0; j < len(label); j++ {
			b := label[j]
			if b == '\\' || (b >= 'A' && b <= 'Z') {
				return dst, false
			}
			dst = append(dst, b)
		}
	}
	return dst, true
}

// encodePacked is encode for any record: packed by miekg/dns, in lower
// case, and taken apart.
func (z *zoneCopy) encodePacked(rr dns.RR, scratch []byte) ([]byte, error) {
	if hasUpper(rr) {
		rr = dns.Copy(rr)
		rr.Header().Name = strings.ToLower(rr.Header().Name)
		lowerNames(rr)
	}
	if need := dns.Len(rr) + 16; cap(z.pack) < need {
		z.pack = make([]byte, max(need, 512))
	}
	buf := z.pack[:cap(z.pack)]
	n, err := dns.PackRR(rr, buf, 0, nil, false)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", rr.Header().Name, err)
	}
	wire := buf[:n]
	// The owner ends where the apex's labels start.
	off, end := 0, 0
	for {
		if off >= len(wire) {
			return nil, fmt.Errorf("record does not pack: %s", rr)
		}
		if bytes.Equal(wire[off:min(off+len(z.apexWire), len(wire))], z.apexWire) && off+len(z.apexWire) <= len(wire) {
			end = off
			break
		}
		if wire[off] == 0 {
			return nil, fmt.Errorf("record outside the zone: %s", rr)
		}
		off += 1 + int(wire[off])
	}
	if end > maxLiteralOwner {
		return nil, fmt.Errorf("owner name too long for the zone copy: %s", rr.Header().Name)
	}
	rest := wire[end+len(z.apexWire):]
	if len(rest) < 10 {
		return nil, fmt.Errorf("record does not pack: %s", rr)
	}
	out := append(scratch[:0], byte(end))
	out = append(out, wire[:end]...)
	return append(out, rest...), nil
}

// appendWire appends record p in canonical wire form.
func (z *zoneCopy) appendWire(dst []byte, p recParts) []byte {
	dst = p.appendOwner(dst)
	dst = append(dst, z.apexWire...)
	return append(dst, p.tail...)
}

// rr unpacks record p.
func (z *zoneCopy) rr(p recParts) (dns.RR, error) {
	rr, _, err := dns.UnpackRR(z.appendWire(nil, p), 0)
	return rr, err
}

// find returns the number of the live record with r's key (r expanded).
func (z *zoneCopy) find(r []byte) (int, bool) {
	p := partsOf(r)
	found := -1
	z.group(p.owner, func(i int, q recParts) bool {
		if sameKeyParts(q, p) {
			found = i
			return false
		}
		return true
	})
	return found, found >= 0
}

// owner calls fn for every live record of owner (relative wire form),
// with the record in expanded form.
func (z *zoneCopy) owner(owner []byte, fn func(i int, r []byte)) {
	p := splitWild(owner)
	z.group(p.owner, func(i int, q recParts) bool {
		if sameOwner(q, p) {
			fn(i, q.expand(nil))
		}
		return true
	})
}

// group calls fn for every live record of the groups whose owner (with
// a leading "*" label set aside) is key, until fn returns false.
func (z *zoneCopy) group(key []byte, fn func(i int, p recParts) bool) {
	if len(z.slots) == 0 {
		return
	}
	mask := len(z.slots) - 1
	for s := int(maphash.Bytes(zoneSeed, key)) & mask; ; s = (s + 1) & mask {
		v := z.slots[s]
		if v == 0 {
			return
		}
		l := int(v - 1)
		if !bytes.Equal(splitWild(z.literalAt(z.offs[l])).owner, key) {
			continue
		}
		for i := l; i < len(z.offs); i++ {
			if i > l && z.isLiteral(i) {
				break
			}
			if z.isDead(i) {
				continue
			}
			if !fn(i, z.at(i)) {
				return
			}
		}
	}
}

// extendsOrder reports whether record r (expanded) comes after every
// record of the copy in canonical order, the copy being in that order so
// far (its records below the apex; see addParts): then none of them has
// r's key, and a transfer in canonical order (a sinkhole primary's, most
// of BIND's) is read without an index look-up per record for duplicates.
func (z *zoneCopy) extendsOrder(r []byte) bool {
	p := partsOf(r)
	if p.isApex() || z.unsorted || z.sorted != len(z.offs) {
		return false
	}
	return z.lastBelow < 0 || canonicalCompare(z.at(z.lastBelow), p) < 0
}

// isLiteral reports whether record i is stored with a literal owner.
func (z *zoneCopy) isLiteral(i int) bool {
	o := z.offs[i]
	return o != placeholderOff && z.chunks[o>>chunkBits][o&(chunkSize-1)] <= maxLiteralOwner
}

// add appends a record in expanded form (not yet in the copy) and returns
// its number.
func (z *zoneCopy) add(r []byte) int { return z.addParts(partsOf(r)) }

func (z *zoneCopy) addParts(p recParts) int {
	var hdr [5]byte
	head := hdr[:0]
	var lit []byte
	if z.lastLit >= 0 {
		lit = z.literalAt(z.offs[z.lastLit])
		ref := byte(0)
		switch {
		case !p.wild && bytes.Equal(p.owner, lit):
			ref = refSame
		case p.wild && len(lit) == len(p.owner)+2 && lit[0] == 1 && lit[1] == '*' && bytes.Equal(lit[2:], p.owner):
			ref = refSame
		case p.wild && bytes.Equal(p.owner, lit) && !splitWild(lit).wild:
			ref = refWild
		case !p.wild && len(lit) >= 2 && lit[0] == 1 && lit[1] == '*' && bytes.Equal(lit[2:], p.owner):
			ref = refUnwild
		}
		if ref != 0 {
			head = append(head, ref)
			head = binary.BigEndian.AppendUint32(head, z.offs[z.lastLit])
		}
	}
	literal := len(head) == 0
	shape, shaped := -1, false
	if len(p.tail) <= maxShapeLen {
		if k, ok := z.shapeIdx[string(p.tail)]; ok {
			shape, shaped = int(k), true
		} else if len(z.shapes) < maxShapes {
			shape, shaped = len(z.shapes), true
			t := slices.Clone(p.tail)
			z.shapes = append(z.shapes, t)
			z.shapeIdx[string(t)] = uint8(shape)
		}
	}
	size := len(head) + 1
	if literal {
		size = 1 + p.ownerLen() + 1
	}
	if !shaped {
		size += len(p.tail)
	}
	if len(z.chunks) == 0 || len(z.chunks[len(z.chunks)-1])+size > chunkSize {
		z.chunks = append(z.chunks, make([]byte, 0, chunkSize))
	}
	c := len(z.chunks) - 1
	off := len(z.chunks[c])
	b := z.chunks[c]
	if literal {
		b = append(b, byte(p.ownerLen()))
		b = p.appendOwner(b)
	} else {
		b = append(b, head...)
	}
	if shaped {
		b = append(b, byte(shape))
	} else {
		b = append(b, shapeLiteral)
		b = append(b, p.tail...)
	}
	z.chunks[c] = b
	i := len(z.offs)
	z.offs = append(z.offs, uint32(c)<<chunkBits|uint32(off))
	if literal {
		z.lastLit = i
	}
	if i>>6 >= len(z.dead) {
		z.dead = append(z.dead, 0)
	}
	z.live++
	z.sum += recHash(p)
	below := !p.isApex()
	if z.sorted == i && !z.unsorted {
		if !below || z.lastBelow < 0 || canonicalCompare(z.at(z.lastBelow), p) < 0 {
			z.sorted = i + 1
		} else {
			z.unsorted = true
		}
	}
	if below {
		z.lastBelow = i
	}
	if literal {
		if (z.lits+1)*3/2 > len(z.slots) {
			z.rehash(max(1024, len(z.slots)*2))
		} else {
			z.index(i, p.owner)
		}
	}
	return i
}

// compacted returns a copy of z's live records, without the records
// taken out and the placeholders, numbered in canonical order as a full
// transfer of the same version numbers them.
func (z *zoneCopy) compacted() *zoneCopy {
	c := newZoneCopy(z.apex, z.soa)
	// A MERKLE3 state up to date with z goes with it, renumbered (the
	// records are the same, so is the tree).
	m := z.m3
	if m != nil && (len(m.killed) > 0 || m.synced != len(z.offs)) {
		m = nil
	}
	var nodeOf []uint16
	for p := range z.offs {
		i := p
		if p < len(z.layout) {
			i = int(z.layout[p])
		}
		if !z.isDead(i) {
			c.addParts(z.at(i))
			if m != nil {
				nodeOf = append(nodeOf, m.nodeOf[i])
			}
		}
	}
	c.canonicalLayout()
	if m != nil {
		cm := &m3Copy{tree: m.tree, nodeOf: nodeOf, members: make([][]uint32, m3Level2), apex: m.apex, synced: len(c.offs)}
		for i, n := range nodeOf {
			if !c.at(i).isApex() {
				cm.members[n] = append(cm.members[n], uint32(i))
			}
		}
		c.m3, c.m3Keep = cm, z.m3Keep
	}
	return c
}

// placeholder appends a record number that holds nothing (a blank line
// of the zone file): dead from the start, never read.
func (z *zoneCopy) placeholder() {
	i := len(z.offs)
	z.offs = append(z.offs, placeholderOff)
	if i>>6 >= len(z.dead) {
		z.dead = append(z.dead, 0)
	}
	z.dead[i>>6] |= 1 << (i & 63)
	if z.sorted == i {
		z.sorted = i + 1
	}
}

// index adds literal-owner record i, whose owner is key once a leading
// "*" label is set aside.
func (z *zoneCopy) index(i int, key []byte) {
	mask := len(z.slots) - 1
	for s := int(maphash.Bytes(zoneSeed, key)) & mask; ; s = (s + 1) & mask {
		if z.slots[s] == 0 {
			z.slots[s] = uint32(i + 1)
			z.lits++
			return
		}
	}
}

// rehash rebuilds the index with size slots (a power of two): every
// literal-owner record, dead or not (the references after it may live).
func (z *zoneCopy) rehash(size int) {
	z.slots, z.lits = make([]uint32, size), 0
	for i := range z.offs {
		if z.isLiteral(i) {
			z.index(i, splitWild(z.literalAt(z.offs[i])).owner)
		}
	}
}

// kill takes record i out.
func (z *zoneCopy) kill(i int, count bool) {
	z.dead[i>>6] |= 1 << (i & 63)
	if count {
		z.live--
		z.sum -= recHash(z.at(i))
	}
	if z.m3 != nil {
		z.m3.killed = append(z.m3.killed, uint32(i))
	}
}

// canonicalCompare orders two records as RFC 4034 section 6 (and RFC
// 8976's SIMPLE scheme) does: owner names label by label from the right,
// then type, then RDATA.
func canonicalCompare(a, b recParts) int {
	if c := compareOwners(a, b); c != 0 {
		return c
	}
	if c := bytes.Compare(a.tail[:2], b.tail[:2]); c != 0 {
		return c
	}
	return bytes.Compare(a.tail[10:], b.tail[10:])
}

// compareOwners compares two owners in canonical order.
func compareOwners(a, b recParts) int {
	var la, lb [128]uint8 // label offsets (a wire name is at most 255 bytes)
	na, nb := labelStarts(a.owner, &la), labelStarts(b.owner, &lb)
	ta, tb := na, nb
	if a.wild {
		ta++
	}
	if b.wild {
		tb++
	}
	for i, j := ta-1, tb-1; i >= 0 && j >= 0; i, j = i-1, j-1 {
		if c := bytes.Compare(labelAt(a, &la, i), labelAt(b, &lb, j)); c != 0 {
			return c
		}
	}
	return ta - tb
}

// labelAt is label k (from the left) of p's owner.
func labelAt(p recParts, starts *[128]uint8, k int) []byte {
	if p.wild {
		if k == 0 {
			return starLabel[1:]
		}
		k--
	}
	o := int(starts[k])
	return p.owner[o+1 : o+1+int(p.owner[o])]
}

func labelStarts(n []byte, out *[128]uint8) int {
	k := 0
	for off := 0; off < len(n) && k < len(out); off += 1 + int(n[off]) {
		out[k] = uint8(off)
		k++
	}
	return k
}

func (z *zoneCopy) compareAt(x, y int) int { return canonicalCompare(z.at(x), z.at(y)) }

// digestBatch is how much canonical wire form a digest hands the hash at
// once: a write per record costs more than the hashing.
const digestBatch = 64 << 10

// extraFold is the least number of records in extra that is folded into
// a new base order (or a sixteenth of the zone, if more).
var extraFold = 4096

// digest computes the SIMPLE-scheme digest (RFC 8976) of the zone: the
// SOA and every live record, the apex ZONEMD left out, in canonical
// order, in one pass over the copy (eachCanonical: nothing is sorted but
// what was added since the last pass).
func (z *zoneCopy) digest(hashAlg uint8) ([]byte, error) {
	h, err := zonemdHash(hashAlg)
	if err != nil {
		return nil, err
	}
	scratch := make([]byte, 0, digestBatch+1024)
	// Apex records (the SOA among them) sort before every other name.
	soa, err := z.encode(z.soa, nil)
	if err != nil {
		return nil, err
	}
	for _, p := range z.apexParts(soa) {
		scratch = z.appendWire(scratch, p)
	}
	z.eachCanonical(func(_ int, p recParts) {
		if scratch = z.appendWire(scratch, p); len(scratch) >= digestBatch {
			h.Write(scratch)
			scratch = scratch[:0]
		}
	})
	h.Write(scratch)
	return h.Sum(nil), nil
}

// apexParts returns the apex records a digest covers, the SOA first
// (soa, the SOA in expanded form), in canonical order: the apex ZONEMD
// and RRSIGs covering it left out.
func (z *zoneCopy) apexParts(soa []byte) []recParts {
	apex := []recParts{partsOf(soa)}
	z.owner(nil, func(i int, _ []byte) {
		if p := z.at(i); p.typ() != dns.TypeZONEMD && !(p.typ() == dns.TypeRRSIG && coversZonemd(p)) {
			apex = append(apex, p)
		}
	})
	slices.SortFunc(apex, canonicalCompare)
	return apex
}

// eachCanonical calls fn with every live record below the apex, in
// canonical order. Nothing is sorted but what was added since the last
// walk: the records in canonical order already (a transfer that sends
// them so, or the order canonicalLayout found) are the base; the records
// added after it are kept sorted in extra, merged with the base as they
// are walked; when extra grows large it is folded into a new base order.
func (z *zoneCopy) eachCanonical(fn func(i int, p recParts)) {
	covered := z.sorted // records numbered below covered are in the base
	if z.order != nil {
		covered = z.ordered
	}
	// The records added since the last walk, sorted, merged into extra.
	var added []uint32
	for i := max(z.extraTo, covered); i < len(z.offs); i++ {
		if !z.isDead(i) && !z.at(i).isApex() {
			added = append(added, uint32(i))
		}
	}
	if len(added) > 0 {
		slices.SortFunc(added, func(x, y uint32) int { return z.compareAt(int(x), int(y)) })
		extra := make([]uint32, 0, len(z.extra)+len(added))
		a, e := 0, 0
		for a < len(added) || e < len(z.extra) {
			if e >= len(z.extra) || (a < len(added) && z.compareAt(int(added[a]), int(z.extra[e])) < 0) {
				extra = append(extra, added[a])
				a++
			} else if !z.isDead(int(z.extra[e])) {
				extra = append(extra, z.extra[e])
				e++
			} else {
				e++
			}
		}
		z.extra = extra
	}
	z.extraTo = len(z.offs)
	base := z.order
	limit := covered
	if base != nil {
		limit = len(base)
	}
	// A large extra is folded into a new base order.
	var merged []uint32
	if len(z.extra) > max(extraFold, z.live/16) {
		merged = make([]uint32, 0, z.live)
	}
	extra := z.extra
	k, j := 0, 0
	for {
		// The next live record below the apex of the base.
		i := -1
		var p recParts
		for ; k < limit; k++ {
			n := k
			if base != nil {
				n = int(base[k])
			}
			if z.isDead(n) {
				continue
			}
			if p = z.at(n); !p.isApex() {
				i = n
				break
			}
		}
		for j < len(extra) && z.isDead(int(extra[j])) {
			j++
		}
		switch {
		case i >= 0 && (j >= len(extra) || canonicalCompare(p, z.at(int(extra[j]))) <= 0):
			k++
		case j < len(extra):
			i = int(extra[j])
			p = z.at(i)
			j++
		default:
			if merged != nil {
				z.order, z.ordered, z.extra = merged, len(z.offs), nil
			}
			return
		}
		if merged != nil {
			merged = append(merged, uint32(i))
		}
		fn(i, p)
	}
}

func coversZonemd(p recParts) bool {
	rd := p.rdata()
	return len(rd) >= 2 && binary.BigEndian.Uint16(rd) == dns.TypeZONEMD
}

// verifyZonemd checks the copy against its apex ZONEMD records as
// VerifyZonemd does for a list of records (MERKLE3 first, from the state
// the copy keeps for it; SIMPLE when no MERKLE3 record matches) and
// returns the scheme that matched.
func (z *zoneCopy) verifyZonemd() (uint8, error) {
	mds, err := z.zonemds()
	if err != nil {
		return 0, err
	}
	// MERKLE3 first where its state is kept (a change then costs what
	// changed); without it (a full transfer, a start from the zone file,
	// an undone version) SIMPLE first: one pass over the zone, where a
	// MERKLE3 build hashes every RRset (several times SIMPLE's CPU). The
	// state is built after the version is in service (buildMerkle3After).
	first := uint8(ZonemdSchemeSimple)
	if z.m3 != nil {
		first = ZonemdSchemeMerkle3
	}
	return checkZonemds(mds, z.soa.Serial, first, func(scheme, alg uint8) ([]byte, error) {
		if scheme == ZonemdSchemeMerkle3 {
			return z.merkle3(alg)
		}
		return z.digest(alg)
	})
}

// merkle3Wanted reports whether the copy carries a MERKLE3 ZONEMD this
// sinkhole can check but keeps no MERKLE3 state for it, and its hash.
func (z *zoneCopy) merkle3Wanted() (uint8, bool) {
	mds, err := z.zonemds()
	if err != nil {
		return 0, false
	}
	for _, md := range mds {
		if md.Scheme == ZonemdSchemeMerkle3 && supportedZonemd(md) && (z.m3 == nil || z.m3.tree.alg != md.Hash) {
			return md.Hash, true
		}
	}
	return 0, false
}

// zonemds returns the copy's apex ZONEMD records.
func (z *zoneCopy) zonemds() ([]*dns.ZONEMD, error) {
	var mds []*dns.ZONEMD
	var derr error
	z.owner(nil, func(i int, _ []byte) {
		p := z.at(i)
		if p.typ() != dns.TypeZONEMD {
			return
		}
		rr, err := z.rr(p)
		if err != nil {
			derr = err
			return
		}
		if md, ok := rr.(*dns.ZONEMD); ok {
			mds = append(mds, md)
		}
	})
	return mds, derr
}

// copyMark is where a copy stood before a tentative change.
type copyMark struct {
	records, chunks, lastLen int
	live                     int
	sum                      uint64
	sorted, lastBelow        int
	lastLit                  int
	unsorted                 bool
	order, extra             []uint32
	ordered, extraTo         int
	slots                    int
}

func (z *zoneCopy) mark() copyMark {
	m := copyMark{records: len(z.offs), chunks: len(z.chunks), live: z.live, sum: z.sum, sorted: z.sorted,
		lastBelow: z.lastBelow, lastLit: z.lastLit, unsorted: z.unsorted, slots: len(z.slots), order: z.order, ordered: z.ordered,
		extra: z.extra, extraTo: z.extraTo}
	if len(z.chunks) > 0 {
		m.lastLen = len(z.chunks[len(z.chunks)-1])
	}
	return m
}

// undo takes back the records added since m and revives those killed.
// (Shapes added since stay: they are only a table.)
func (z *zoneCopy) undo(m copyMark, killed []int) {
	for _, i := range killed {
		z.dead[i>>6] &^= 1 << (i & 63)
	}
	for i := m.records; i < len(z.offs); i++ {
		z.dead[i>>6] &^= 1 << (i & 63)
	}
	z.offs = z.offs[:m.records]
	z.chunks = z.chunks[:m.chunks]
	if m.chunks > 0 {
		z.chunks[m.chunks-1] = z.chunks[m.chunks-1][:m.lastLen]
	}
	z.dead = z.dead[:(len(z.offs)+63)/64]
	z.live, z.sum, z.sorted, z.lastBelow, z.lastLit, z.unsorted = m.live, m.sum, m.sorted, m.lastBelow, m.lastLit, m.unsorted
	z.order, z.ordered, z.extra, z.extraTo = m.order, m.ordered, m.extra, m.extraTo
	z.rehash(max(1024, len(z.slots)))
	// The MERKLE3 state may have followed the change: built again when
	// next needed.
	z.m3 = nil
}
