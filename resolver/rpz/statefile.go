package rpz

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/blocklist"
)

// The zone file a secondary keeps in its directory: the list store loads
// it, and a restart serves it until the primary answers. Line 1 is a
// comment, line 2 the SOA, then one record per line: the records of the
// last full transfer in canonical order (RFC 4034: "name" then "*.name",
// which the list store packs as one name), then those IXFRs added, in
// order; a record taken out leaves a blank line. So a rule keeps its line
// while the zone changes: the rules an IXFR adds go on new lines at the
// end. The file is written from a view of the copy (which
// only grows) in the background after an IXFR, and before the reload
// after a full transfer.

const stateFirstLine = 3

// zoneView is what a writer needs of a zone copy at one version; the copy
// may go on changing meanwhile.
type zoneView struct {
	z    zoneCopy // shallow: chunks and offs are only appended to
	dead []uint64
}

func (z *zoneCopy) view() *zoneView {
	v := &zoneView{z: *z, dead: slices.Clone(z.dead)}
	v.z.chunks = slices.Clone(z.chunks)
	v.z.offs = z.offs[:len(z.offs):len(z.offs)]
	v.z.dead = v.dead
	v.z.slots = nil
	return v
}

// writeZoneFile writes v as path atomically with its SHA-256 sidecar;
// note is told the file's hash before it is renamed into place.
func writeZoneFile(path string, v *zoneView, header string, check func(tmp string) error, note func(sha string)) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*"+filepath.Ext(path))
	if err != nil {
		return "", err
	}
	tmp := f.Name()
	h := sha256.New()
	w := bufio.NewWriterSize(io.MultiWriter(f, h), 1<<20)
	werr := v.z.writeText(w, header)
	werr = errors.Join(werr, w.Flush())
	cerr := f.Close()
	if err := errors.Join(werr, cerr, os.Chmod(tmp, 0o644)); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	sha := hex.EncodeToString(h.Sum(nil))
	if check != nil {
		if err := check(tmp); err != nil {
			os.Remove(tmp)
			return "", err
		}
	}
	if note != nil {
		note(sha)
	}
	if err := blocklist.ReplaceVerified(tmp, path, sha); err != nil {
		return "", err
	}
	return sha, nil
}

// writeText writes the zone in the layout above.
func (z *zoneCopy) writeText(w *bufio.Writer, header string) error {
	w.WriteString(header)
	w.WriteByte('\n')
	w.WriteString(z.soa.String())
	w.WriteByte('\n')
	var line []byte
	for p := range z.offs {
		i := p
		if p < len(z.layout) {
			i = int(z.layout[p])
		}
		if z.isDead(i) {
			w.WriteByte('\n')
			continue
		}
		var err error
		if line, err = z.appendText(line[:0], z.at(i)); err != nil {
			return err
		}
		line = append(line, '\n')
		if _, err := w.Write(line); err != nil {
			return err
		}
	}
	return nil
}

// appendText appends record p in master-file form on one line: CNAME
// records (nearly all of a policy zone) directly, others through dns.RR.
func (z *zoneCopy) appendText(dst []byte, p recParts) ([]byte, error) {
	if p.typ() == dns.TypeCNAME && p.class() == dns.ClassINET {
		if p.wild {
			dst = append(dst, "*."...)
		}
		dst = appendWireName(dst, p.owner)
		dst = append(dst, z.apex...)
		dst = append(dst, '\t')
		dst = strconv.AppendUint(dst, uint64(p.ttl()), 10)
		dst = append(dst, "\tIN\tCNAME\t"...)
		rd := p.rdata()
		if len(rd) == 1 && rd[0] == 0 {
			return append(dst, '.'), nil
		}
		if len(rd) > 0 && rd[len(rd)-1] == 0 {
			return appendWireName(dst, rd[:len(rd)-1]), nil
		}
	}
	rr, err := z.rr(p)
	if err != nil {
		return dst, err
	}
	return append(dst, rr.String()...), nil
}

// appendWireName appends the labels of a wire name without its root (each
// label followed by a dot) in presentation form.
func appendWireName(dst, n []byte) []byte {
	for off := 0; off < len(n); {
		l := int(n[off])
		label := n[off+1 : off+1+l]
		plain := true
		for _, b := range label {
			if nameEscape[b] != 0 {
				plain = false
				break
			}
		}
		if plain {
			dst = append(dst, label...)
		} else {
			for _, b := range label {
				switch nameEscape[b] {
				case 0:
					dst = append(dst, b)
				case 1:
					dst = append(dst, '\\', b)
				default:
					dst = append(dst, '\\', '0'+b/100, '0'+b/10%10, '0'+b%10)
				}
			}
		}
		dst = append(dst, '.')
		off += 1 + l
	}
	return dst
}

// nameEscape says how a byte of a label is written: as is (0), after a
// backslash (1), or as a backslash and three decimal digits (2).
var nameEscape = func() (t [256]uint8) {
	for b := range 256 {
		switch {
		case b == '.' || b == ' ' || b == '(' || b == ')' || b == ';' || b == '@' || b == '"' || b == '\\' || b == '$':
			t[b] = 1
		case b < 0x21 || b > 0x7e:
			t[b] = 2
		}
	}
	return t
}()

// line is the line of record i in the zone file.
func (z *zoneCopy) line(i int) int {
	if i < len(z.inv) {
		return stateFirstLine + int(z.inv[i])
	}
	return stateFirstLine + i
}

// minLine is the first line of the records idx (an owner's).
func (z *zoneCopy) minLine(idx []int) int {
	m := 0
	for k, i := range idx {
		if l := z.line(i); k == 0 || l < m {
			m = l
		}
	}
	return m
}

// canonicalLayout, after a full transfer, puts the records in canonical
// order in the zone file when they did not arrive so: the file (and the
// rules loaded from it) then hold "name" and "*.name" side by side, which
// the list store keeps as one name, and a ZONEMD digest needs no sort.
func (z *zoneCopy) canonicalLayout() {
	if !z.unsorted {
		return
	}
	perm := make([]uint32, len(z.offs))
	for i := range perm {
		perm[i] = uint32(i)
	}
	slices.SortFunc(perm, func(x, y uint32) int {
		dx, dy := z.isDead(int(x)), z.isDead(int(y))
		if dx || dy { // placeholders (none after a transfer) and duplicates last
			switch {
			case dx && dy:
				return int(x) - int(y)
			case dx:
				return 1
			}
			return -1
		}
		return z.compareAt(int(x), int(y))
	})
	inv := make([]uint32, len(perm))
	for p, i := range perm {
		inv[i] = uint32(p)
	}
	z.layout, z.inv = perm, inv
	z.order, z.ordered, z.extra, z.extraTo = perm, len(perm), nil, len(perm)
}

// stateHeader is line 1 of the zone file.
func stateHeader(feed, apex, primary string, serial uint32) string {
	return fmt.Sprintf("; rpz feed %s: zone %s from %s, serial %d, written %s by sinkhole; record lines stay put (blank: taken out)",
		feed, apex, primary, serial, time.Now().UTC().Format(time.RFC3339))
}

// readZoneFile loads a zone file this package wrote, if it is the version
// written (its recorded SHA-256 matches), keeping every record's number.
// It streams: the file is hashed as it is read (no copy of it is held),
// and the lines this package writes for CNAME records are taken to the
// copy's form directly, without a dns.RR each.
func readZoneFile(path, apex string) (*zoneCopy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	sc := bufio.NewScanner(io.TeeReader(f, h))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	apex = strings.ToLower(dns.Fqdn(apex))
	var z *zoneCopy
	var scratch []byte
	lineNo := 0
	for sc.Scan() {
		lineNo++
		t := bytes.TrimSpace(sc.Bytes())
		switch {
		case lineNo == 1:
			continue
		case lineNo == 2:
			rr, err := dns.NewRR(string(t))
			soa, ok := rr.(*dns.SOA)
			if err != nil || !ok || !strings.EqualFold(soa.Hdr.Name, apex) {
				return nil, fmt.Errorf("%s:2: want the zone's SOA", path)
			}
			z = newZoneCopy(apex, soa)
			continue
		case len(t) == 0:
			z.placeholder()
			continue
		}
		var ok bool
		if scratch, ok = z.encodeCNAMELine(scratch, t); !ok {
			rr, err := parseStateLine(t)
			if err != nil {
				return nil, fmt.Errorf("%s:%d: %w", path, lineNo, err)
			}
			if _, isSOA := rr.(*dns.SOA); isSOA {
				return nil, fmt.Errorf("%s:%d: unexpected SOA", path, lineNo)
			}
			if scratch, err = z.encode(rr, scratch); err != nil {
				return nil, fmt.Errorf("%s:%d: %w", path, lineNo, err)
			}
		}
		if _, dup := z.find(scratch); dup {
			return nil, fmt.Errorf("%s:%d: duplicate record", path, lineNo)
		}
		z.add(scratch)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := blocklist.CheckHash(path, hex.EncodeToString(h.Sum(nil))); err != nil {
		return nil, err
	}
	if z == nil {
		return nil, errors.New("no SOA record")
	}
	return z, nil
}

// encodeCNAMELine encodes a line as appendText writes a CNAME record
// ("owner<TAB>TTL<TAB>IN<TAB>CNAME<TAB>target", lower case, no escapes)
// in expanded form; false for any other line (parsed the general way).
func (z *zoneCopy) encodeCNAMELine(dst, t []byte) ([]byte, bool) {
	var f [5][]byte
	for k := range 4 {
		i := bytes.IndexByte(t, '\t')
		if i < 0 {
			return dst, false
		}
		f[k], t = t[:i], t[i+1:]
	}
	f[4] = t
	if bytes.IndexByte(t, '\t') >= 0 || string(f[2]) != "IN" || string(f[3]) != "CNAME" {
		return dst, false
	}
	owner, target := f[0], f[4]
	if !bytes.HasSuffix(owner, []byte(z.apex)) || !plainName(owner) || !plainName(target) {
		return dst, false
	}
	ttl, err := strconv.ParseUint(string(f[1]), 10, 32)
	if err != nil {
		return dst, false
	}
	rel := owner[:len(owner)-len(z.apex)]
	if len(rel) > 0 && rel[len(rel)-1] != '.' {
		return dst, false // not a label boundary
	}
	out := append(dst[:0], 0)
	if out, ok := appendLabels(out, rel); ok && len(out)-1 <= maxLiteralOwner {
		out[0] = byte(len(out) - 1)
		out = binary.BigEndian.AppendUint16(out, dns.TypeCNAME)
		out = binary.BigEndian.AppendUint16(out, dns.ClassINET)
		out = binary.BigEndian.AppendUint32(out, uint32(ttl))
		at := len(out)
		out = append(out, 0, 0)
		if string(target) != "." {
			if out, ok = appendLabels(out, target); !ok {
				return dst, false
			}
		}
		out = append(out, 0)
		if len(out)-at-2 > 255 {
			return dst, false
		}
		binary.BigEndian.PutUint16(out[at:], uint16(len(out)-at-2))
		return out, true
	}
	return dst, false
}

// plainName: a name in lower case without escapes or characters the
// master-file syntax treats specially, ending with a dot.
func plainName(n []byte) bool {
	if len(n) == 0 || n[len(n)-1] != '.' {
		return false
	}
	for _, b := range n {
		switch {
		case b == '\\' || b == '(' || b == ')' || b == ';' || b == '@' || b == '"' || b == '$':
			return false
		case (b >= 'A' && b <= 'Z') || b <= ' ' || b > '~':
			return false
		}
	}
	return true
}

// appendLabels appends the wire labels of a dotted name ("a.b.", or
// empty), no root.
func appendLabels(dst, n []byte) ([]byte, bool) {
	for len(n) > 0 {
		i := bytes.IndexByte(n, '.')
		if i <= 0 || i > 63 {
			return dst, false
		}
		dst = append(dst, byte(i))
		dst = append(dst, n[:i]...)
		n = n[i+1:]
	}
	return dst, true
}

// parseStateLine reads one record line as written: the CNAME form
// directly, anything else with miekg/dns.
func parseStateLine(t []byte) (dns.RR, error) {
	f := bytes.Split(t, []byte{'\t'})
	if len(f) == 5 && string(f[2]) == "IN" && string(f[3]) == "CNAME" && bytes.IndexByte(t, '\\') < 0 {
		ttl, err := strconv.ParseUint(string(f[1]), 10, 32)
		if err == nil {
			return &dns.CNAME{Hdr: dns.RR_Header{Name: string(f[0]), Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: uint32(ttl)}, Target: string(f[4])}, nil
		}
	}
	return dns.NewRR(string(t))
}
