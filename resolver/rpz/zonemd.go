package rpz

import (
	"bytes"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// ZONEMD (RFC 8976) parameters sinkhole writes and reads.
const (
	// ZonemdSchemeSimple is the SIMPLE collation scheme.
	ZonemdSchemeSimple = 1
	// ZonemdHashSHA384 and ZonemdHashSHA512 are the hash algorithms.
	ZonemdHashSHA384 = 1
	ZonemdHashSHA512 = 2
)

// ErrNoZonemd is returned by VerifyZonemd for a zone without a ZONEMD
// record it can check (none at the apex, or only unknown schemes and
// algorithms).
var ErrNoZonemd = errors.New("the zone has no ZONEMD record with a supported scheme (SIMPLE, MERKLE3) and hash (SHA-384, SHA-512)")

// canonicalRR is one record in RFC 4034 canonical wire form, located in
// an arena: its sort key (the owner's labels right to left, escaped so
// that byte order is canonical name order, then the type and the RDATA)
// and its wire form (owner | type | class | TTL | RDLENGTH | RDATA).
type canonicalRR struct {
	key, wire [2]int // start and end in the arena
}

// lowerNames lists the types whose RDATA names RFC 4034 section 6.2 (as
// amended by RFC 6840) puts in lower case.
func lowerNames(rr dns.RR) dns.RR {
	switch r := rr.(type) {
	case *dns.NS:
		r.Ns = strings.ToLower(r.Ns)
	case *dns.CNAME:
		r.Target = strings.ToLower(r.Target)
	case *dns.DNAME:
		r.Target = strings.ToLower(r.Target)
	case *dns.PTR:
		r.Ptr = strings.ToLower(r.Ptr)
	case *dns.SOA:
		r.Ns, r.Mbox = strings.ToLower(r.Ns), strings.ToLower(r.Mbox)
	case *dns.MX:
		r.Mx = strings.ToLower(r.Mx)
	case *dns.SRV:
		r.Target = strings.ToLower(r.Target)
	case *dns.NAPTR:
		r.Replacement = strings.ToLower(r.Replacement)
	case *dns.KX:
		r.Exchanger = strings.ToLower(r.Exchanger)
	case *dns.RP:
		r.Mbox, r.Txt = strings.ToLower(r.Mbox), strings.ToLower(r.Txt)
	case *dns.AFSDB:
		r.Hostname = strings.ToLower(r.Hostname)
	case *dns.RT:
		r.Host = strings.ToLower(r.Host)
	case *dns.MINFO:
		r.Rmail, r.Email = strings.ToLower(r.Rmail), strings.ToLower(r.Email)
	case *dns.MB:
		r.Mb = strings.ToLower(r.Mb)
	case *dns.MG:
		r.Mg = strings.ToLower(r.Mg)
	case *dns.MR:
		r.Mr = strings.ToLower(r.Mr)
	case *dns.MD:
		r.Md = strings.ToLower(r.Md)
	case *dns.MF:
		r.Mf = strings.ToLower(r.Mf)
	case *dns.PX:
		r.Map822, r.Mapx400 = strings.ToLower(r.Map822), strings.ToLower(r.Mapx400)
	case *dns.RRSIG:
		r.SignerName = strings.ToLower(r.SignerName)
	}
	return rr
}

// hasUpper reports whether the presentation form of rr has an upper-case
// ASCII letter (most records have none, and need no lower-cased copy).
func hasUpper(rr dns.RR) bool {
	switch r := rr.(type) {
	case *dns.CNAME:
		return upper(r.Hdr.Name) || upper(r.Target)
	case *dns.A, *dns.AAAA, *dns.ZONEMD:
		return upper(rr.Header().Name)
	}
	return true
}

func upper(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			return true
		}
	}
	return false
}

// canonicalizer packs records in canonical form into one arena.
type canonicalizer struct {
	arena []byte
	buf   []byte
}

// add packs rr (RFC 4034 section 6.2: owner and the RDATA names of the
// listed types in lower case, no compression, the record's own TTL).
func (z *canonicalizer) add(rr dns.RR) (canonicalRR, error) {
	if hasUpper(rr) {
		rr = dns.Copy(rr)
		rr.Header().Name = strings.ToLower(rr.Header().Name)
		lowerNames(rr)
	}
	if need := dns.Len(rr) + 16; cap(z.buf) < need {
		z.buf = make([]byte, need*2)
	}
	n, err := dns.PackRR(rr, z.buf[:cap(z.buf)], 0, nil, false)
	if err != nil {
		return canonicalRR{}, fmt.Errorf("%s: %w", rr.Header().Name, err)
	}
	wire := z.buf[:n]
	// The owner's label offsets, to write them right to left.
	var offs [128]int
	nl, off := 0, 0
	for off < len(wire) && wire[off] != 0 && nl < len(offs) {
		offs[nl] = off
		nl++
		off += 1 + int(wire[off])
	}
	off++ // the root label
	var c canonicalRR
	c.key[0] = len(z.arena)
	for i := nl - 1; i >= 0; i-- {
		l := int(wire[offs[i]])
		for _, b := range wire[offs[i]+1 : offs[i]+1+l] {
			// 0x00 ends a label in the key; 0x00 and 0x01 inside one are
			// escaped so that byte order stays label order.
			if b <= 1 {
				z.arena = append(z.arena, 1, b+1)
				continue
			}
			z.arena = append(z.arena, b)
		}
		z.arena = append(z.arena, 0)
	}
	// The end of the name sorts before any label: a name before its
	// children, whatever the type.
	z.arena = append(z.arena, 0)
	z.arena = append(z.arena, wire[off:off+2]...) // type
	z.arena = append(z.arena, wire[off+10:]...)   // RDATA
	c.key[1] = len(z.arena)
	c.wire[0] = len(z.arena)
	z.arena = append(z.arena, wire...)
	c.wire[1] = len(z.arena)
	return c, nil
}

// zonemdHash returns a new hash for a ZONEMD hash algorithm (RFC 8976
// section 5.3): SHA-384 or SHA-512.
func zonemdHash(hashAlg uint8) (hash.Hash, error) {
	switch hashAlg {
	case ZonemdHashSHA384:
		return sha512.New384(), nil
	case ZonemdHashSHA512:
		return sha512.New(), nil
	}
	return nil, fmt.Errorf("ZONEMD hash algorithm %d is not supported", hashAlg)
}

// ZoneDigest computes the SIMPLE-scheme digest (RFC 8976 section 3.3) of a
// zone's records with the given hash (ZonemdHashSHA384 or
// ZonemdHashSHA512). apex is the zone's name; the apex ZONEMD RRset (and
// RRSIGs covering it) is left out, as are duplicate records.
func ZoneDigest(apex string, rrs []dns.RR, hashAlg uint8) ([]byte, error) {
	h, err := zonemdHash(hashAlg)
	if err != nil {
		return nil, err
	}
	wires, err := canonicalZone(apex, rrs)
	if err != nil {
		return nil, err
	}
	for _, w := range wires {
		h.Write(w)
	}
	return h.Sum(nil), nil
}

// ZoneDigestMerkle3 computes the MERKLE3-scheme digest
// (draft-aklpdw-dnsop-zonemd-incremental-00, ZonemdSchemeMerkle3) of a
// zone's records with the given hash, with SIMPLE's inclusion rules (see
// ZoneDigest). It is the reference: the whole tree is built from the
// records.
func ZoneDigestMerkle3(apex string, rrs []dns.RR, hashAlg uint8) ([]byte, error) {
	h, err := zonemdHash(hashAlg)
	if err != nil {
		return nil, err
	}
	wires, err := canonicalZone(apex, rrs)
	if err != nil {
		return nil, err
	}
	var leaves [][]byte
	for i := 0; i < len(wires); {
		j := i + 1
		for j < len(wires) && sameRRset(wires[i], wires[j]) {
			j++
		}
		h.Reset()
		for _, w := range wires[i:j] {
			h.Write(w)
		}
		leaves = append(leaves, h.Sum(nil))
		i = j
	}
	return merkle3Root(hashAlg, leaves)
}

// sameRRset reports whether two records in canonical wire form have the
// same owner and type (and class: the zone's records are all IN).
func sameRRset(a, b []byte) bool {
	n := wireNameLen(a)
	return n+4 <= len(a) && n+4 <= len(b) && bytes.Equal(a[:n+4], b[:n+4])
}

// wireNameLen is the length of the uncompressed name w starts with.
func wireNameLen(w []byte) int {
	off := 0
	for off < len(w) && w[off] != 0 {
		off += 1 + int(w[off])
	}
	return off + 1
}

// canonicalZone returns a zone's records that a digest covers (class IN,
// the apex ZONEMD RRset and the RRSIGs covering it left out), in RFC 4034
// canonical form and order, duplicates dropped.
func canonicalZone(apex string, rrs []dns.RR) ([][]byte, error) {
	apex = strings.ToLower(dns.Fqdn(apex))
	recs := make([]canonicalRR, 0, len(rrs))
	z := &canonicalizer{arena: make([]byte, 0, len(rrs)*64)}
	for _, rr := range rrs {
		hdr := rr.Header()
		if hdr.Class != dns.ClassINET {
			continue
		}
		if strings.EqualFold(hdr.Name, apex) {
			if hdr.Rrtype == dns.TypeZONEMD {
				continue
			}
			if sig, ok := rr.(*dns.RRSIG); ok && sig.TypeCovered == dns.TypeZONEMD {
				continue
			}
		}
		c, err := z.add(rr)
		if err != nil {
			return nil, err
		}
		recs = append(recs, c)
	}
	a := z.arena
	slices.SortFunc(recs, func(x, y canonicalRR) int { return bytes.Compare(a[x.key[0]:x.key[1]], a[y.key[0]:y.key[1]]) })
	out := make([][]byte, 0, len(recs))
	for _, c := range recs {
		w := a[c.wire[0]:c.wire[1]]
		if len(out) > 0 && bytes.Equal(out[len(out)-1], w) {
			continue // a duplicate record counts once
		}
		out = append(out, w)
	}
	return out, nil
}

// NewZonemd returns the apex ZONEMD record (SIMPLE, SHA-384) of a zone
// whose records (its SOA included, no ZONEMD) are rrs.
func NewZonemd(apex string, serial, ttl uint32, rrs []dns.RR) (*dns.ZONEMD, error) {
	d, err := ZoneDigest(apex, rrs, ZonemdHashSHA384)
	if err != nil {
		return nil, err
	}
	return &dns.ZONEMD{
		Hdr:    dns.RR_Header{Name: dns.Fqdn(apex), Rrtype: dns.TypeZONEMD, Class: dns.ClassINET, Ttl: ttl},
		Serial: serial, Scheme: ZonemdSchemeSimple, Hash: ZonemdHashSHA384, Digest: hex.EncodeToString(d),
	}, nil
}

// VerifyZonemd checks a whole zone (rrs, SOA and apex ZONEMD included)
// against its ZONEMD records as RFC 8976 section 4 says: the zone verifies
// when one ZONEMD with a supported scheme (SIMPLE, MERKLE3) and hash
// (SHA-384, SHA-512), and the SOA's serial, matches the digest. It
// returns ErrNoZonemd when there is nothing to check, and an error saying
// what differs on a mismatch.
func VerifyZonemd(apex string, rrs []dns.RR) error {
	apex = strings.ToLower(dns.Fqdn(apex))
	var soa *dns.SOA
	var mds []*dns.ZONEMD
	for _, rr := range rrs {
		if !strings.EqualFold(rr.Header().Name, apex) {
			continue
		}
		switch r := rr.(type) {
		case *dns.SOA:
			soa = r
		case *dns.ZONEMD:
			mds = append(mds, r)
		}
	}
	if soa == nil {
		return errors.New("the zone has no SOA record at its apex")
	}
	_, err := checkZonemds(mds, soa.Serial, ZonemdSchemeMerkle3, func(scheme, alg uint8) ([]byte, error) {
		if scheme == ZonemdSchemeMerkle3 {
			return ZoneDigestMerkle3(apex, rrs, alg)
		}
		return ZoneDigest(apex, rrs, alg)
	})
	return err
}

// supportedZonemd reports whether a ZONEMD's scheme and hash are ones
// sinkhole computes.
func supportedZonemd(md *dns.ZONEMD) bool {
	return (md.Scheme == ZonemdSchemeSimple || md.Scheme == ZonemdSchemeMerkle3) &&
		(md.Hash == ZonemdHashSHA384 || md.Hash == ZonemdHashSHA512)
}

// ZonemdSchemeName names a ZONEMD scheme: "SIMPLE", "MERKLE3" (for
// ZonemdSchemeMerkle3), else its number.
func ZonemdSchemeName(scheme uint8) string {
	switch scheme {
	case ZonemdSchemeSimple:
		return "SIMPLE"
	case ZonemdSchemeMerkle3:
		return "MERKLE3"
	}
	return fmt.Sprint(scheme)
}

// checkZonemds checks the apex ZONEMD records mds of a zone whose SOA
// serial is serial (RFC 8976 section 4), computing digests with digest
// (once per scheme and hash). Records of scheme first are tried first (a
// verifier may use any supported ZONEMD, so the caller names the cheaper
// one: MERKLE3 where its state is kept, since it then costs what changed,
// else SIMPLE, one pass where MERKLE3 would hash every RRset), the others
// only when none of those matches. It returns the
// scheme that matched, ErrNoZonemd when none is supported, or an error
// saying what differs.
func checkZonemds(mds []*dns.ZONEMD, serial uint32, first uint8, digest func(scheme, alg uint8) ([]byte, error)) (uint8, error) {
	order := slices.Clone(mds)
	slices.SortStableFunc(order, func(a, b *dns.ZONEMD) int {
		return boolInt(a.Scheme != first) - boolInt(b.Scheme != first)
	})
	digests := map[[2]uint8][]byte{}
	var errs []string
	checked := 0
	for _, md := range order {
		if !supportedZonemd(md) {
			continue
		}
		checked++
		name := ZonemdSchemeName(md.Scheme)
		if md.Serial != serial {
			errs = append(errs, fmt.Sprintf("%s ZONEMD serial %d is not the SOA serial %d", name, md.Serial, serial))
			continue
		}
		k := [2]uint8{md.Scheme, md.Hash}
		d, ok := digests[k]
		if !ok {
			var err error
			if d, err = digest(md.Scheme, md.Hash); err != nil {
				return 0, err
			}
			digests[k] = d
		}
		if strings.EqualFold(md.Digest, hex.EncodeToString(d)) {
			return md.Scheme, nil
		}
		errs = append(errs, fmt.Sprintf("%s ZONEMD digest %s does not match the zone's %s", name, short(md.Digest), short(hex.EncodeToString(d))))
	}
	if checked == 0 {
		return 0, ErrNoZonemd
	}
	return 0, fmt.Errorf("ZONEMD mismatch (RFC 8976): %s", strings.Join(errs, "; "))
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func short(hexDigest string) string {
	if len(hexDigest) > 16 {
		return strings.ToLower(hexDigest[:16]) + "..."
	}
	return hexDigest
}

// exportDigest computes the SIMPLE SHA-384 digest of an exported zone with
// the given serial in one pass: the zone is kept in canonical order, so
// the records are hashed as they are read (each owner's name in wire
// form once, then its records' prepared canonical tails).
func (e *Exporter) exportDigest(z *czone, serial uint32) ([]byte, error) {
	h := sha512.New384()
	if err := e.writeCanonical(z, serial, func(b []byte) { h.Write(b) }); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}

// writeCanonical calls write with the zone's records in RFC 4034 canonical
// form and order (the bytes the SIMPLE digest covers, the apex ZONEMD left
// out), in pieces of up to about 64 KB.
func (e *Exporter) writeCanonical(z *czone, serial uint32, write func([]byte)) error {
	// The apex: NS (type 2), SOA (6), then the TXT records by RDATA.
	var apex [][]byte
	rrs := []dns.RR{e.ns(), e.soa(serial)}
	for _, r := range z.txt {
		rr, err := r.rr(e.apex)
		if err != nil {
			return err
		}
		rrs = append(rrs, rr)
	}
	for _, rr := range rrs {
		rr = lowerNames(dns.Copy(rr))
		buf := make([]byte, dns.Len(rr)+16)
		n, err := dns.PackRR(rr, buf, 0, nil, false)
		if err != nil {
			return fmt.Errorf("%s: %w", rr.Header().Name, err)
		}
		apex = append(apex, buf[:n])
	}
	ow := len(e.wire)
	slices.SortFunc(apex, func(a, b []byte) int {
		if c := bytes.Compare(a[ow:ow+2], b[ow:ow+2]); c != 0 {
			return c
		}
		return bytes.Compare(a[ow+10:], b[ow+10:])
	})
	apex = slices.CompactFunc(apex, bytes.Equal)
	for _, w := range apex {
		write(w)
	}
	// The owners: each block's canonical bytes are kept with the block
	// (blocks are immutable and shared between versions), so a version
	// serializes only the blocks its change rewrote and the hash runs over
	// kept bytes. A block the few address owners fall in is written owner
	// by owner, merged with them.
	var (
		buf   []byte
		owner []byte
		ips   = z.ips
	)
	emit := func(key []byte, code uint32) {
		if buf == nil {
			buf = make([]byte, 0, 64<<10)
		}
		buf = appendOwnerRecords(buf, &owner, key, e.wire, z.sets[code])
		if len(buf) >= 60<<10 {
			write(buf)
			buf = buf[:0]
		}
	}
	for bi, b := range z.blocks {
		if len(ips) > 0 && (bi+1 == len(z.blocks) || ips[0].key < z.blocks[bi+1].first) {
			it := blockIter{b: b}
			for it.next() {
				for len(ips) > 0 && ips[0].key < string(it.key) {
					emit([]byte(ips[0].key), ips[0].code)
					ips = ips[1:]
				}
				if it.code != 0 {
					emit(it.key, it.code)
				}
			}
			continue
		}
		if len(buf) > 0 {
			write(buf)
			buf = buf[:0]
		}
		if c := e.blockCanonical(z, b); len(c) > 0 {
			write(c)
		}
	}
	for _, ip := range ips {
		emit([]byte(ip.key), ip.code)
	}
	if len(buf) > 0 {
		write(buf)
	}
	return nil
}

// appendOwnerRecords appends the canonical wire of the records of set at
// the owner of key (owner is scratch space).
func appendOwnerRecords(dst []byte, owner *[]byte, key, apex []byte, set *rset) []byte {
	*owner = append(appendOwnerWire((*owner)[:0], key), apex...)
	for _, tail := range set.tails {
		dst = append(append(dst, *owner...), tail...)
	}
	return dst
}

// blockCanonical returns the canonical wire of the records at b's owners,
// in order, computing it on first use (z's code table names them; codes
// keep their record sets for as long as the table lives, and a block
// belongs to one exporter and one table).
func (e *Exporter) blockCanonical(z *czone, b *zblock) []byte {
	if c := b.canonical.Load(); c != nil {
		return *c
	}
	var out, owner []byte
	it := blockIter{b: b}
	for it.next() {
		if it.code != 0 {
			out = appendOwnerRecords(out, &owner, it.key, e.wire, z.sets[it.code])
		}
	}
	out = slices.Clip(out)
	b.canonical.Store(&out)
	return out
}
