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
// canonical wire form (RFC 4034 section 6.2: lower-case owner and RDATA
// names, no compression), its owner relative to the apex, packed into
// 1 MiB chunks that are only appended to; an open-addressing index by
// owner name; a bit per record taken out. A record's number (its order of
// arrival) is its place in the zone file the secondary writes (one record
// per line, a blank line for a record taken out), so that the rules the
// list store holds for it keep their line across changes and restarts.
//
// Record layout in a chunk: owner length (1 byte), the owner's labels
// below the apex in wire form (no root), type (2), class (2), TTL (4),
// RDATA length (2), RDATA.

const (
	chunkBits = 20
	chunkSize = 1 << chunkBits
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
	slots    []uint32 // record number + 1, by owner hash
	sum      uint64   // sum of the live records' hashes (with TTLs): the content's identity
	// sorted: records [0, sorted) are in canonical order (by number).
	sorted    int
	unsorted  bool // some record before sorted broke the order
	lastBelow int  // the last record below the apex, -1 for none
	// order, once a digest had to sort, lists records numbered below
	// ordered in canonical order (some may be dead since).
	order   []uint32
	ordered int
	pack    []byte // scratch for encode
	// layout, when set, is the zone file's order of the records numbered
	// below len(layout) (canonical, see canonicalLayout), inv its inverse;
	// later records follow in number order.
	layout, inv []uint32
}

func newZoneCopy(apex string, soa *dns.SOA) *zoneCopy {
	apex = strings.ToLower(dns.Fqdn(apex))
	w := make([]byte, 256)
	n, _ := dns.PackDomainName(apex, w, 0, nil, false)
	return &zoneCopy{soa: soa, apex: apex, apexWire: w[:n], lastBelow: -1}
}

func (z *zoneCopy) records() int { return len(z.offs) }

func (z *zoneCopy) rec(i int) []byte {
	o := z.offs[i]
	c := z.chunks[o>>chunkBits]
	off := int(o & (chunkSize - 1))
	olen := int(c[off])
	rdl := int(binary.BigEndian.Uint16(c[off+1+olen+8:]))
	return c[off : off+1+olen+10+rdl]
}

func (z *zoneCopy) isDead(i int) bool { return z.dead[i>>6]&(1<<(i&63)) != 0 }

// recOwner, recKey: parts of an encoded record. The key (owner, type,
// class, RDATA) names a record as IXFR deletions do, regardless of TTL.
func recOwner(r []byte) []byte { return r[1 : 1+int(r[0])] }

func recType(r []byte) uint16 { return binary.BigEndian.Uint16(r[1+int(r[0]):]) }

func recTTL(r []byte) uint32 { return binary.BigEndian.Uint32(r[1+int(r[0])+4:]) }

func recRdata(r []byte) []byte { return r[1+int(r[0])+10:] }

func sameKey(a, b []byte) bool {
	oa, ob := 1+int(a[0]), 1+int(b[0])
	return bytes.Equal(a[:oa+4], b[:ob+4]) && bytes.Equal(a[oa+8:], b[ob+8:])
}

func ownerHash(owner []byte) uint64 { return maphash.Bytes(zoneSeed, owner) }

func recHash(r []byte) uint64 { return maphash.Bytes(zoneSeed, r) }

// encode returns rr's record encoding (scratch is reused), or an error
// for a record outside the zone or that does not pack.
func (z *zoneCopy) encode(rr dns.RR, scratch []byte) ([]byte, error) {
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
	rest := wire[end+len(z.apexWire):]
	if len(rest) < 10 {
		return nil, fmt.Errorf("record does not pack: %s", rr)
	}
	out := append(scratch[:0], byte(end))
	out = append(out, wire[:end]...)
	return append(out, rest...), nil
}

// wire returns record r in canonical wire form (appended to dst).
func (z *zoneCopy) wire(dst, r []byte) []byte {
	dst = append(dst, recOwner(r)...)
	dst = append(dst, z.apexWire...)
	return append(dst, r[1+int(r[0]):]...)
}

// rr unpacks record r.
func (z *zoneCopy) rr(r []byte) (dns.RR, error) {
	rr, _, err := dns.UnpackRR(z.wire(nil, r), 0)
	return rr, err
}

// find returns the number of the live record with r's key.
func (z *zoneCopy) find(r []byte) (int, bool) {
	if len(z.slots) == 0 {
		return 0, false
	}
	owner := recOwner(r)
	for s := int(ownerHash(owner) % uint64(len(z.slots))); ; s = (s + 1) % len(z.slots) {
		v := z.slots[s]
		if v == 0 {
			return 0, false
		}
		i := int(v - 1)
		if !z.isDead(i) && sameKey(z.rec(i), r) {
			return i, true
		}
	}
}

// owner calls fn for every live record of owner (relative wire form).
func (z *zoneCopy) owner(owner []byte, fn func(i int, r []byte)) {
	if len(z.slots) == 0 {
		return
	}
	for s := int(ownerHash(owner) % uint64(len(z.slots))); ; s = (s + 1) % len(z.slots) {
		v := z.slots[s]
		if v == 0 {
			return
		}
		i := int(v - 1)
		if z.isDead(i) {
			continue
		}
		if r := z.rec(i); bytes.Equal(recOwner(r), owner) {
			fn(i, r)
		}
	}
}

// add appends an encoded record (not yet in the copy) and returns its
// number.
func (z *zoneCopy) add(r []byte) int {
	if len(z.chunks) == 0 || len(z.chunks[len(z.chunks)-1])+len(r) > chunkSize {
		z.chunks = append(z.chunks, make([]byte, 0, chunkSize))
	}
	c := len(z.chunks) - 1
	off := len(z.chunks[c])
	z.chunks[c] = append(z.chunks[c], r...)
	i := len(z.offs)
	z.offs = append(z.offs, uint32(c)<<chunkBits|uint32(off))
	if i>>6 >= len(z.dead) {
		z.dead = append(z.dead, 0)
	}
	z.live++
	z.sum += recHash(r)
	if z.sorted == i && !z.unsorted {
		if r[0] == 0 || z.lastBelow < 0 || canonicalLess(z.rec(z.lastBelow), r) {
			z.sorted = i + 1
		} else {
			z.unsorted = true
		}
	}
	if r[0] != 0 {
		z.lastBelow = i
	}
	if (len(z.offs)+1)*3/2 > len(z.slots) {
		z.rehash(max(1024, len(z.slots)*2))
	} else {
		z.index(i, r)
	}
	return i
}

// placeholder appends a record number that holds nothing (a blank line
// of the zone file): dead from the start, never read.
func (z *zoneCopy) placeholder() {
	i := len(z.offs)
	z.offs = append(z.offs, 0)
	if i>>6 >= len(z.dead) {
		z.dead = append(z.dead, 0)
	}
	z.dead[i>>6] |= 1 << (i & 63)
	if z.sorted == i {
		z.sorted = i + 1
	}
}

func (z *zoneCopy) index(i int, r []byte) {
	for s := int(ownerHash(recOwner(r)) % uint64(len(z.slots))); ; s = (s + 1) % len(z.slots) {
		if z.slots[s] == 0 {
			z.slots[s] = uint32(i + 1)
			return
		}
	}
}

func (z *zoneCopy) rehash(size int) {
	z.slots = make([]uint32, size)
	for i := range z.offs {
		if !z.isDead(i) {
			z.index(i, z.rec(i))
		}
	}
}

// kill takes record i out.
func (z *zoneCopy) kill(i int, count bool) {
	z.dead[i>>6] |= 1 << (i & 63)
	if count {
		z.live--
		z.sum -= recHash(z.rec(i))
	}
}

// canonicalLess orders two records as RFC 4034 section 6 (and RFC 8976's
// SIMPLE scheme) does: owner names label by label from the right, then
// type, then RDATA.
func canonicalLess(a, b []byte) bool { return canonicalCompare(a, b) < 0 }

func canonicalCompare(a, b []byte) int {
	if c := compareOwners(recOwner(a), recOwner(b)); c != 0 {
		return c
	}
	oa, ob := 1+int(a[0]), 1+int(b[0])
	if c := bytes.Compare(a[oa:oa+2], b[ob:ob+2]); c != 0 {
		return c
	}
	return bytes.Compare(a[oa+10:], b[ob+10:])
}

// compareOwners compares two relative wire names in canonical order.
func compareOwners(a, b []byte) int {
	var la, lb [128]uint8 // label offsets (a wire name is at most 255 bytes)
	na, nb := labelStarts(a, &la), labelStarts(b, &lb)
	for i, j := na-1, nb-1; i >= 0 && j >= 0; i, j = i-1, j-1 {
		x := a[int(la[i])+1 : int(la[i])+1+int(a[la[i]])]
		y := b[int(lb[j])+1 : int(lb[j])+1+int(b[lb[j]])]
		if c := bytes.Compare(x, y); c != 0 {
			return c
		}
	}
	return na - nb
}

func labelStarts(n []byte, out *[128]uint8) int {
	k := 0
	for off := 0; off < len(n) && k < len(out); off += 1 + int(n[off]) {
		out[k] = uint8(off)
		k++
	}
	return k
}

// digest computes the SIMPLE-scheme digest (RFC 8976) of the zone: the
// SOA and every live record, the apex ZONEMD left out, in canonical
// order. Records in canonical order already (a transfer that sends them
// so, or the part of the copy ordered by an earlier digest) are not
// sorted again: only the records added since are.
func (z *zoneCopy) digest(hashAlg uint8) ([]byte, error) {
	h, err := zonemdHash(hashAlg)
	if err != nil {
		return nil, err
	}
	var scratch []byte
	// Apex records (the SOA among them) sort before every other name.
	soa, err := z.encode(z.soa, nil)
	if err != nil {
		return nil, err
	}
	apex := [][]byte{soa}
	var rest []uint32 // records below the apex outside the ordered part
	covered := 0      // records numbered below covered are in base (or in order by number)
	switch {
	case z.order != nil:
		covered = z.ordered
	case !z.unsorted:
		covered = z.sorted
	}
	for i := range z.offs {
		if z.isDead(i) {
			continue
		}
		r := z.rec(i)
		if r[0] == 0 {
			if recType(r) != dns.TypeZONEMD && !(recType(r) == dns.TypeRRSIG && coversZonemd(r)) {
				apex = append(apex, r)
			}
			continue
		}
		if i >= covered {
			rest = append(rest, uint32(i))
		}
	}
	slices.SortFunc(apex, canonicalCompare)
	slices.SortFunc(rest, func(x, y uint32) int { return canonicalCompare(z.rec(int(x)), z.rec(int(y))) })
	for _, r := range apex {
		scratch = z.wire(scratch, r)
	}
	// Merge the ordered part with the rest; the merged order is kept for
	// the next digest when it took in records.
	base := z.order
	next := func(k int) (int, bool) { // the k-th record of the ordered part
		if base != nil {
			if k < len(base) {
				return int(base[k]), true
			}
			return 0, false
		}
		return k, k < covered
	}
	var merged []uint32
	if len(rest) > 0 {
		merged = make([]uint32, 0, z.live)
	}
	k, j := 0, 0
	for {
		i, ok := next(k)
		for ok && (z.isDead(i) || z.rec(i)[0] == 0) {
			k++
			i, ok = next(k)
		}
		var n int
		switch {
		case ok && (j >= len(rest) || canonicalCompare(z.rec(i), z.rec(int(rest[j]))) <= 0):
			n = i
			k++
		case j < len(rest):
			n = int(rest[j])
			j++
		default:
			h.Write(scratch)
			if merged != nil {
				z.order, z.ordered = merged, len(z.offs)
			}
			return h.Sum(nil), nil
		}
		if merged != nil {
			merged = append(merged, uint32(n))
		}
		// Records are hashed in batches: a write per record costs more
		// than the hashing.
		if scratch = z.wire(scratch, z.rec(n)); len(scratch) >= 64<<10 {
			h.Write(scratch)
			scratch = scratch[:0]
		}
	}
}

func coversZonemd(r []byte) bool {
	rd := recRdata(r)
	return len(rd) >= 2 && binary.BigEndian.Uint16(rd) == dns.TypeZONEMD
}

// verifyZonemd checks the copy against its apex ZONEMD records as
// VerifyZonemd does for a list of records.
func (z *zoneCopy) verifyZonemd() error {
	var mds []*dns.ZONEMD
	var derr error
	z.owner(nil, func(_ int, r []byte) {
		if recType(r) != dns.TypeZONEMD {
			return
		}
		rr, err := z.rr(r)
		if err != nil {
			derr = err
			return
		}
		if md, ok := rr.(*dns.ZONEMD); ok {
			mds = append(mds, md)
		}
	})
	if derr != nil {
		return derr
	}
	digests := map[uint8][]byte{}
	var errs []string
	checked := 0
	for _, md := range mds {
		if md.Scheme != ZonemdSchemeSimple || (md.Hash != ZonemdHashSHA384 && md.Hash != ZonemdHashSHA512) {
			continue
		}
		checked++
		if md.Serial != z.soa.Serial {
			errs = append(errs, fmt.Sprintf("ZONEMD serial %d is not the SOA serial %d", md.Serial, z.soa.Serial))
			continue
		}
		d, ok := digests[md.Hash]
		if !ok {
			var err error
			if d, err = z.digest(md.Hash); err != nil {
				return err
			}
			digests[md.Hash] = d
		}
		if strings.EqualFold(md.Digest, fmt.Sprintf("%x", d)) {
			return nil
		}
		errs = append(errs, fmt.Sprintf("ZONEMD digest %s does not match the zone's %s", short(md.Digest), short(fmt.Sprintf("%x", d))))
	}
	if checked == 0 {
		return ErrNoZonemd
	}
	return fmt.Errorf("ZONEMD mismatch (RFC 8976): %s", strings.Join(errs, "; "))
}

// copyMark is where a copy stood before a tentative change.
type copyMark struct {
	records, chunks, lastLen int
	live                     int
	sum                      uint64
	sorted, lastBelow        int
	unsorted                 bool
	order                    []uint32
	ordered                  int
	slots                    int
}

func (z *zoneCopy) mark() copyMark {
	m := copyMark{records: len(z.offs), chunks: len(z.chunks), live: z.live, sum: z.sum, sorted: z.sorted,
		lastBelow: z.lastBelow, unsorted: z.unsorted, slots: len(z.slots), order: z.order, ordered: z.ordered}
	if len(z.chunks) > 0 {
		m.lastLen = len(z.chunks[len(z.chunks)-1])
	}
	return m
}

// undo takes back the records added since m and revives those killed.
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
	z.live, z.sum, z.sorted, z.lastBelow, z.unsorted = m.live, m.sum, m.sorted, m.lastBelow, m.unsorted
	z.order, z.ordered = m.order, m.ordered
	z.rehash(max(1024, len(z.slots)))
}
