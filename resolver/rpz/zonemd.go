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
var ErrNoZonemd = errors.New("the zone has no ZONEMD record with a supported scheme (SIMPLE) and hash (SHA-384, SHA-512)")

// canonicalRR is one record in RFC 4034 canonical wire form, with the
// owner's labels kept for canonical name ordering.
type canonicalRR struct {
	wire   []byte // owner | type | class | TTL | RDLENGTH | RDATA
	owner  []byte // the owner in wire form (a prefix of wire)
	rtype  uint16
	rdata  []byte // a suffix of wire
	labels [][]byte
}

// canonicalize packs rr in canonical form (RFC 4034 section 6.2): the owner
// and the domain names inside the RDATA of the types listed there in
// lower case, no compression, the record's own TTL.
func canonicalize(rr dns.RR) (canonicalRR, error) {
	cp := dns.Copy(rr)
	h := cp.Header()
	h.Name = strings.ToLower(h.Name)
	switch r := cp.(type) {
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
	buf := make([]byte, dns.Len(cp)+16)
	n, err := dns.PackRR(cp, buf, 0, nil, false)
	if err != nil {
		return canonicalRR{}, fmt.Errorf("%s: %w", rr.Header().Name, err)
	}
	buf = buf[:n]
	c := canonicalRR{wire: buf, rtype: h.Rrtype}
	off := 0
	for off < len(buf) && buf[off] != 0 {
		l := int(buf[off])
		c.labels = append(c.labels, buf[off+1:off+1+l])
		off += 1 + l
	}
	off++
	c.owner = buf[:off]
	c.rdata = buf[off+10:]
	slices.Reverse(c.labels)
	return c, nil
}

// compareCanonical orders records by owner name in canonical order (RFC
// 4034 section 6.1), then type, then RDATA as octet strings (section 6.3).
func compareCanonical(a, b canonicalRR) int {
	for i := 0; i < len(a.labels) && i < len(b.labels); i++ {
		if c := bytes.Compare(a.labels[i], b.labels[i]); c != 0 {
			return c
		}
	}
	if c := len(a.labels) - len(b.labels); c != 0 {
		return c
	}
	if a.rtype != b.rtype {
		if a.rtype < b.rtype {
			return -1
		}
		return 1
	}
	return bytes.Compare(a.rdata, b.rdata)
}

// ZoneDigest computes the SIMPLE-scheme digest (RFC 8976 section 3.3) of a
// zone's records with the given hash (ZonemdHashSHA384 or
// ZonemdHashSHA512). apex is the zone's name; the apex ZONEMD RRset (and
// RRSIGs covering it) is left out, as are duplicate records.
func ZoneDigest(apex string, rrs []dns.RR, hashAlg uint8) ([]byte, error) {
	var h hash.Hash
	switch hashAlg {
	case ZonemdHashSHA384:
		h = sha512.New384()
	case ZonemdHashSHA512:
		h = sha512.New()
	default:
		return nil, fmt.Errorf("ZONEMD hash algorithm %d is not supported", hashAlg)
	}
	apex = strings.ToLower(dns.Fqdn(apex))
	recs := make([]canonicalRR, 0, len(rrs))
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
		c, err := canonicalize(rr)
		if err != nil {
			return nil, err
		}
		recs = append(recs, c)
	}
	slices.SortFunc(recs, compareCanonical)
	var prev []byte
	for _, c := range recs {
		if prev != nil && bytes.Equal(prev, c.wire) {
			continue // a duplicate record counts once
		}
		h.Write(c.wire)
		prev = c.wire
	}
	return h.Sum(nil), nil
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
// when one ZONEMD with a supported scheme and hash, and the SOA's serial,
// matches the digest. It returns ErrNoZonemd when there is nothing to
// check, and an error saying what differs on a mismatch.
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
	digests := map[uint8][]byte{}
	var errs []string
	checked := 0
	for _, md := range mds {
		if md.Scheme != ZonemdSchemeSimple || (md.Hash != ZonemdHashSHA384 && md.Hash != ZonemdHashSHA512) {
			continue
		}
		checked++
		if md.Serial != soa.Serial {
			errs = append(errs, fmt.Sprintf("ZONEMD serial %d is not the SOA serial %d", md.Serial, soa.Serial))
			continue
		}
		d, ok := digests[md.Hash]
		if !ok {
			var err error
			if d, err = ZoneDigest(apex, rrs, md.Hash); err != nil {
				return err
			}
			digests[md.Hash] = d
		}
		if strings.EqualFold(md.Digest, hex.EncodeToString(d)) {
			return nil
		}
		errs = append(errs, fmt.Sprintf("ZONEMD digest %s does not match the zone's %s", short(md.Digest), short(hex.EncodeToString(d))))
	}
	if checked == 0 {
		return ErrNoZonemd
	}
	return fmt.Errorf("ZONEMD mismatch (RFC 8976): %s", strings.Join(errs, "; "))
}

func short(hexDigest string) string {
	if len(hexDigest) > 16 {
		return strings.ToLower(hexDigest[:16]) + "..."
	}
	return hexDigest
}
