package blocklist

import (
	"bytes"
	"maps"
	"math/bits"
	"slices"
	"sync/atomic"

	"github.com/miekg/dns"
)

// Appends. Most changes to a big list are lines added at its end (a
// regulator's new orders). The merge of such a delta (compactAppend) does
// not compile the rules again: the new base is the old one with the added
// rules after its last, so it keeps the old base's names, kinds, lines
// and sections where they are and extends its arrays, and only the pages
// of the hash table the added rules go to are copied. A merge then holds
// little more than the snapshot in service, and costs the change plus a
// copy of the pages of slots it inserts into (64 KiB each).
//
// Extending in place. A compiled table's arrays (lens, kinds, lines,
// sections, name offsets, its last page of names) may have room past their
// length. Tables sharing those arrays (the base, the layered snapshots
// over it, the bases merged from it) read only up to their own length, so
// the merge writes the added rules past it, without copying, when no other
// table was extended from the same arrays before: the appendClaim,
// shared by the tables of one lineage, records the length the arrays were
// last extended to, and a merge extends in place only from that length
// (a merge from an older table, whose result lost the race to a newer
// one, copies instead). Nothing a table reads is ever written.

// appendClaim is the length (in rules) up to which the arrays of a lineage
// of tables are in use; see compactAppend.
type appendClaim struct{ n atomic.Int64 }

// newAppendClaim starts a lineage whose arrays are in use up to n rules.
func newAppendClaim(n int) *appendClaim {
	c := &appendClaim{}
	c.n.Store(int64(n))
	return c
}

// appendMerges counts the merges compactAppend made (for tests).
var appendMerges atomic.Int64

// appendLoad bounds the share of a table's slots its heads may fill after
// an append (4/5; a compile leaves 2/3); beyond it the merge compiles.
const appendLoadNum, appendLoadDen = 4, 5

// compactAppend is compact for a layer that only adds rules, all after
// every rule of the base (lines appended to the last file with domain
// rules, with no IP or ASN rule of that file under a section the delta
// added): it returns the merged snapshot, or nil when the layer is not
// such a change (or the table would be too full), for compactNames to do.
func compactAppend(s *Snapshot) *Snapshot {
	l := s.layer
	old := &s.dom
	add := &l.add
	n, total := old.len(), add.len()
	if n == 0 || total == 0 || old.lines == nil || old.claim == nil || old.nslots == 0 || len(old.pages) >= maxPages-1 {
		return nil
	}
	// The file the rules go to: the only one with added rules, with no
	// rule or section after it.
	p := -1
	for i, f := range s.Files {
		ar := l.addRange[f.Name]
		if ar[1] > ar[0] {
			if p >= 0 || ar != [2]int{0, total} {
				return nil
			}
			p = i
		}
	}
	if p < 0 {
		return nil
	}
	F := s.Files[p]
	for _, f := range s.Files[p+1:] {
		if f.dom != [2]int{n, n} || f.ip[0] != f.ip[1] || f.asn[0] != f.asn[1] || f.sect != [2]int{F.sect[1], F.sect[1]} {
			return nil
		}
	}
	if F.dom[1] != n || F.sect[1] > len(s.sections) {
		return nil
	}
	// A delta reads whole chunks of lines: the lines before an append in
	// its chunk give way to the same rules again. Rules taken out must be
	// the last of the base, and the first added ones the same rules
	// (name, kind, line, section, local data): they stay as they are.
	r := l.nremoved
	cut := n - r
	if r > total || cut < F.dom[0] || l.nextKept(uint32(cut), uint32(n)) != uint32(n) {
		return nil
	}
	for j := 0; j < r; j++ {
		i := uint32(cut + j)
		if !bytes.Equal(old.enc(i), add.enc(uint32(j))) || old.ownKind(i) != add.ownKind(uint32(j)) ||
			old.line(i) != add.line(uint32(j)) || s.sections[old.sect(i)] != s.sections[add.sect(uint32(j))] ||
			!sameRRs(s.local[makeRuleID(RuleDomain, int(i))], l.local[uint32(j)]) {
			return nil
		}
	}
	m := total - r // the rules appended
	a := func(k int) uint32 { return uint32(r + k) }
	if n+m > maxDomainRuleIDs || uint(bits.Len32(uint32(n+m)+1)) != old.idBits ||
		(n-old.shared+m)*appendLoadDen > old.nslots*appendLoadNum {
		return nil
	}
	// No base rule kept moves: every line move of a file is after its
	// last rule kept.
	for _, f := range s.Files {
		sh := l.shifts[f.Name]
		end := f.dom[1]
		if f == F {
			end = cut
		}
		if len(sh) == 0 || end == f.dom[0] {
			continue
		}
		last := old.line(uint32(end - 1))
		for _, st := range sh {
			if st.from <= last {
				return nil
			}
		}
	}
	if m > 0 && F.dom[1] > F.dom[0] && add.line(a(0)) <= old.line(uint32(n-1)) {
		return nil
	}
	for _, r := range s.ips[F.ip[0]:F.ip[1]] {
		if int(r.sect) >= F.sect[1] {
			return nil
		}
	}
	for _, r := range s.asns[F.asn[0]:F.asn[1]] {
		if int(r.sect) >= F.sect[1] {
			return nil
		}
	}
	// The added rules' names: none may be a name of the base (its rules
	// would change kind), which the hashes tell before anything is built.
	hashes := make([]uint64, m)
	var levels uint64
	size := old.nslots
	var h uint64
	for k := 0; k < m; k++ {
		if add.lens[a(k)] != 0 || k == 0 {
			e := add.enc(a(k))
			hn, labels := hashEncoded(e)
			levels |= 1 << min(labels, 63)
			h = old.slotHash(hn)
			if old.findEnc(h, e) {
				return nil
			}
		}
		hashes[k] = h
	}
	// Sections: a section the delta added is an equal one of the file's
	// when there is one (so that sections do not pile up merge after
	// merge).
	sections := s.sections[:F.sect[1]:F.sect[1]]
	sectMap := map[uint16]uint16{}
	mapSect := func(sc uint16) uint16 {
		if int(sc) < F.sect[1] {
			return sc
		}
		if v, ok := sectMap[sc]; ok {
			return v
		}
		sec := s.sections[sc]
		v := -1
		for j := len(sections) - 1; j >= F.sect[0]; j-- {
			if sections[j] == sec {
				v = j
				break
			}
		}
		if v < 0 {
			v = len(sections)
			sections = append(sections, sec)
		}
		sectMap[sc] = uint16(v)
		return uint16(v)
	}
	for k := 0; k < m; k++ {
		mapSect(add.sect(a(k)))
	}
	if len(sections) >= 1<<16 {
		return nil
	}

	// From here on the merge does not fail.
	inPlace := old.claim.n.CompareAndSwap(int64(n), int64(n+m))
	nt := *old
	nt.claim = old.claim
	if !inPlace {
		nt.claim = newAppendClaim(n + m)
		// Copies, with room for the next appends.
		room := n/8 + m
		nt.lens = append(make([]uint8, 0, n+room), old.lens...)
		nt.blockOff = append(make([]uint32, 0, len(old.blockOff)+room/nameBlock+1), old.blockOff...)
		nt.lineBase = append(make([]uint32, 0, len(old.lineBase)+room/lineBlock+1), old.lineBase...)
		nt.lineDelta = slices.Clone(old.lineDelta)
		nt.sectRuns = slices.Clone(old.sectRuns)
		if old.kinds == nil {
			nt.kind = append(make([]uint8, 0, n+room), old.kind...)
		}
	}
	nt.pages = append(slices.Clip(old.pages), nil)[:len(old.pages)]
	nt.tailOwned = inPlace && old.tailOwned

	// Names: the rules of a block have their names back to back in one
	// page, so the first added rules continue the base's last block
	// where its names end when that is the end of a page of this
	// lineage, or the block moves to a new page.
	rest := 0
	for k := 0; k < m; k++ {
		rest += int(add.lens[a(k)])
	}
	newPage := func(need int) {
		nt.pages = append(nt.pages, make([]byte, 0, min(pageSize, max(1<<12, 2*need))))
		nt.tailOwned = true
	}
	if b := n / nameBlock; n%nameBlock != 0 && m > 0 {
		start, end := old.blockOff[b], old.encStart(uint32(n))
		pg := int(end >> pageBits)
		// A block started less than maxBlockBytes from its page's end
		// (tail leaves pageRoom) moves too: its names may not fit there.
		if !nt.tailOwned || pg != len(nt.pages)-1 || int(end&pageMask) != len(nt.pages[pg]) || int(start&pageMask)+maxBlockBytes > pageSize {
			names := old.pages[start>>pageBits][start&pageMask : end&pageMask]
			newPage(len(names) + rest)
			nt.pages[len(nt.pages)-1] = append(nt.pages[len(nt.pages)-1], names...)
			nt.blockOff = append(slices.Clip(nt.blockOff[:b]), uint32(len(nt.pages)-1)<<pageBits)
		}
	}
	shared := 0
	for k := 0; k < m; k++ {
		i := n + k
		e := add.ownEnc(a(k))
		if i%nameBlock == 0 {
			if last := len(nt.pages) - 1; !nt.tailOwned || len(nt.pages[last]) > pageSize-maxBlockBytes {
				newPage(rest)
			}
			last := len(nt.pages) - 1
			nt.blockOff = append(nt.blockOff, uint32(last)<<pageBits|uint32(len(nt.pages[last])))
		}
		pg := &nt.pages[len(nt.pages)-1]
		*pg = append(*pg, e...)
		rest -= len(e)
		nt.lens = append(nt.lens, uint8(len(e)))
		if len(e) == 0 {
			shared++
		}
	}
	nt.shared = old.shared + shared

	// The hash table: the base's pages, each one the added rules go to
	// copied first, with the added rules inserted as build inserts them
	// (nk holds their kind bytes meanwhile).
	nt.slots = slices.Clone(old.slots)
	copied := map[int]bool{}
	setSlot := func(s int, v uint32) {
		pg := s >> slotPageBits
		if !copied[pg] {
			nt.slots[pg], copied[pg] = slices.Clone(old.slots[pg]), true
		}
		nt.slots[pg][s&slotPageMask] = v
	}
	nk := make([]uint8, m)
	for k := range nk {
		nk[k] = add.ownKind(a(k))
	}
	dupsCloned := false
	lastHead := -1
	for k := 0; k < m; k++ {
		i := n + k
		id := uint32(i)
		if nt.lens[i] == 0 && lastHead == i-1 && nk[k-1]&(kindNext|kindMore) == 0 && nk[k-1] != nk[k] {
			nk[k-1] |= nk[k] | kindNext
			continue
		}
		h := hashes[k]
		tag := nt.tag(h)
		sl := fastrange(h, size)
		var e []byte
		for {
			v := nt.slot(sl)
			if v == 0 {
				setSlot(sl, tag|(id+1))
				lastHead = i
				break
			}
			if v&^nt.idMask == tag {
				if e == nil {
					e = nt.enc(id)
				}
				if head := v&nt.idMask - 1; bytes.Equal(nt.ownEnc(head), e) {
					// head is an added rule: the base has none of these names.
					if !dupsCloned {
						nt.dups, dupsCloned = maps.Clone(old.dups), true
						if nt.dups == nil {
							nt.dups = map[uint32][]dupRule{}
						}
					}
					hk := int(head) - n
					list := nt.dups[head]
					if list == nil {
						if nk[hk]&kindNext != 0 {
							own := nk[hk] & kindMaskOwn &^ nk[hk+1]
							list = append(list, dupRule{head, own}, dupRule{head + 1, nk[hk+1]})
							nk[hk] &^= kindNext
						} else {
							list = append(list, dupRule{head, nk[hk]})
						}
					}
					nt.dups[head] = append(list, dupRule{id, nk[k]})
					nk[hk] |= nk[k] | kindMore
					break
				}
			}
			sl++
			if sl == size {
				sl = 0
			}
		}
	}
	nt.levels = old.levels | levels

	// Kinds: a packed table's are copied (a bit per rule and the few odd
	// ones), a byte per rule is extended.
	if p := old.kinds; p != nil {
		q := &packedKinds{common: p.common}
		q.ids, q.vals = slices.Clone(p.ids), slices.Clone(p.vals)
		for k, v := range nk {
			if v != p.common {
				i := n + k
				if q.odd == nil { // the bitmap, from the first odd kind on
					q.odd = make([]uint64, (n+m+63)/64)
					copy(q.odd, p.odd)
				}
				q.odd[i/64] |= 1 << (i % 64)
				q.ids = append(q.ids, uint32(i))
				q.vals = append(q.vals, v)
			}
		}
		if q.odd == nil && len(q.ids) > 0 {
			q.odd = make([]uint64, (n+m+63)/64)
			copy(q.odd, p.odd)
		}
		nt.kinds = q
	} else {
		nt.kind = append(nt.kind, nk...)
	}

	// Lines, in packLines' form: a block's deltas are kept when its rules
	// are not on consecutive lines.
	nb := (n + m + lineBlock - 1) / lineBlock
	lp := &packedLines{kept: make([]uint64, (nb+63)/64)}
	copy(lp.kept, old.lines.kept)
	isKept := func(b int) bool { return lp.kept[b/64]&(1<<(b%64)) != 0 }
	bigCloned := false // nt.lineBig is old's until a rule needs it
	for k := 0; k < m; k++ {
		i := n + k
		b := i / lineBlock
		line := add.line(a(k))
		if i%lineBlock == 0 {
			nt.lineBase = append(nt.lineBase, uint32(line))
		}
		dl := uint8(255)
		if base := int(nt.lineBase[b]); line >= base && line-base < 255 {
			dl = uint8(line - base)
		} else {
			if !bigCloned {
				nt.lineBig, bigCloned = maps.Clone(nt.lineBig), true
				if nt.lineBig == nil {
					nt.lineBig = map[uint32]uint32{}
				}
			}
			nt.lineBig[uint32(i)] = uint32(line)
		}
		j := i % lineBlock
		switch {
		case isKept(b):
			nt.lineDelta = append(nt.lineDelta, dl)
		case int(dl) == j: // still plain
		default:
			// The block is no longer plain: its deltas so far (those of
			// the base's rules included) are kept from here.
			lp.kept[b/64] |= 1 << (b % 64)
			for x := range j {
				nt.lineDelta = append(nt.lineDelta, uint8(x))
			}
			nt.lineDelta = append(nt.lineDelta, dl)
		}
	}
	lp.rank = make([]uint32, len(lp.kept))
	for w := 1; w < len(lp.kept); w++ {
		lp.rank[w] = lp.rank[w-1] + uint32(bits.OnesCount64(lp.kept[w-1]))
	}
	nt.lines = lp

	// Sections of the added rules, as runs.
	for k := 0; k < m; k++ {
		sc := add.sect(a(k))
		if v, ok := sectMap[sc]; ok {
			sc = v
		}
		if r := nt.sectRuns; len(r) == 0 || r[len(r)-1].sect != sc {
			nt.sectRuns = append(nt.sectRuns, sectRun{uint32(n + k), sc})
		}
	}
	nt.last = nil

	next := &Snapshot{Generation: s.Generation, Created: s.Created, sections: sections, dom: nt,
		ips: s.ips, asns: s.asns, ipBlock: s.ipBlock, ipAllow: s.ipAllow, asnBlock: s.asnBlock, asnAllow: s.asnAllow, local: s.local}
	for _, sec := range sections {
		if sec.Scope == ScopeOverseas {
			next.overseas = true
		}
	}
	if len(l.local) > 0 {
		next.local = maps.Clone(s.local)
		if next.local == nil {
			next.local = map[RuleID][]dns.RR{}
		}
		for k, rrs := range l.local {
			if int(k) >= r {
				next.local[makeRuleID(RuleDomain, n+int(k)-r)] = rrs
			}
		}
	}
	next.Files = make([]*FileStatus, len(s.Files))
	for j, f := range s.Files {
		fs := *f
		switch {
		case j == p:
			fs.dom, fs.sect = [2]int{f.dom[0], n + m}, [2]int{f.sect[0], len(sections)}
		case j > p:
			fs.dom, fs.sect = [2]int{n + m, n + m}, [2]int{len(sections), len(sections)}
		}
		fs.Domains = fs.dom[1] - fs.dom[0]
		next.Files[j] = &fs
	}
	appendMerges.Add(1)
	return next
}

// sameRRs reports whether two rules' local data are the same records.
func sameRRs(a, b []dns.RR) bool {
	return slices.EqualFunc(a, b, func(x, y dns.RR) bool { return x.String() == y.String() })
}

// findEnc reports whether some head rule of t has the encoded name e,
// whose slot hash is h.
func (t *domainTable) findEnc(h uint64, e []byte) bool {
	size := t.nslots
	tag := t.tag(h)
	for s := fastrange(h, size); ; {
		v := t.slot(s)
		if v == 0 {
			return false
		}
		if v&^t.idMask == tag && bytes.Equal(t.ownEnc(v&t.idMask-1), e) {
			return true
		}
		s++
		if s == size {
			s = 0
		}
	}
}
