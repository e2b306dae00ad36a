package blocklist

import (
	"math/bits"
	"slices"
	"sort"
	"time"

	"github.com/miekg/dns"
)

// Deltas. A small change to a big list file (k lines edited, added or
// removed) is not recompiled: the snapshot in service keeps its compiled
// domain rules as an immutable base and gets a layer on top, a set of
// base rules taken out, a small table of added rules and, per file, the
// line moves of the rules after each edit. Building the layer costs the
// change (plus a pass over the changed file's rule lines); queries consult
// base and layer from one snapshot, without locks. In the background the
// store merges the layer into a new base (compact), which replaces the
// layered snapshot with the same rules and generation. IP and ASN rules,
// far fewer, are rebuilt whole when a change touches a file that has them.

// domainLayer is the delta over a snapshot's compiled domain rules.
type domainLayer struct {
	removed  []uint64 // bitset over the base rules
	nremoved int
	// add holds the added rules, with rule ids dom.len()+i; their sections
	// index the snapshot's sections.
	add domainTable
	// addRange is each file's range of rules in add (files in order).
	addRange map[string][2]int
	// shifts are each file's line moves, applied in order to base lines.
	shifts  map[string][]lineShift
	filePos map[string]int // a file's place in Snapshot.Files
	// local holds the local data of added RPZ rules, by index in add.
	local map[uint32][]dns.RR
}

// lineShift moves lines at or after from by delta.
type lineShift struct{ from, delta int }

// nextKept returns the first base rule id in [id, end) the layer did not
// take out, or end.
func (l *domainLayer) nextKept(id, end uint32) uint32 {
	if l == nil {
		return id
	}
	for id < end {
		w := id >> 6
		if int(w) >= len(l.removed) {
			return id
		}
		free := ^l.removed[w] >> (id & 63)
		if free != 0 {
			return min(id+uint32(bits.TrailingZeros64(free)), end)
		}
		id = (w + 1) << 6
	}
	return end
}

func (l *domainLayer) isRemoved(id uint32) bool {
	return l != nil && int(id>>6) < len(l.removed) && l.removed[id>>6]&(1<<(id&63)) != 0
}

// shifted returns the current line of a base rule of file written on line.
func (l *domainLayer) shifted(file string, line int) int {
	for _, sh := range l.shifts[file] {
		if line >= sh.from {
			line += sh.delta
		}
	}
	return line
}

// candidate is a rule offered at one level of a layered match.
type candidate struct {
	id    uint32
	t     *domainTable
	j     uint32 // index in t
	score int
}

// levelBest keeps the best block and allow rules of one level.
type levelBest struct {
	blk, alw candidate
	hasBlk   bool
	hasAlw   bool
}

// better reports whether rule c beats b (both offered at one level): a
// higher score, then the rule a full compile would list first (file
// order, then line).
func (s *Snapshot) better(c, b candidate) bool {
	if c.score != b.score {
		return c.score > b.score
	}
	cf, bf := s.sections[c.t.sect(c.j)].File, s.sections[b.t.sect(b.j)].File
	if cf != bf {
		return s.layer.filePos[cf] < s.layer.filePos[bf]
	}
	return s.domLine(c.id) < s.domLine(b.id)
}

// matchLayered is MatchName for a snapshot with a layer: every suffix of
// the name that some rule's label count allows is looked up in the base
// and in the added rules, rules taken out are skipped, and the most
// specific level wins, as in a compiled snapshot holding the same rules.
func (s *Snapshot) matchLayered(name string) Match {
	var m Match
	if len(name) == 0 {
		return m
	}
	levels := s.dom.levels | s.layer.add.levels
	h := uint64(fnvOffset64)
	labels := 0
	for i := len(name) - 1; ; i-- {
		if i < 0 || name[i] == '.' {
			labels++
			if levels&(1<<min(labels, 63)) != 0 {
				var lb levelBest
				suffix := name[i+1:]
				s.levelCandidates(&s.dom, 0, h, suffix, i < 0, &lb)
				s.levelCandidates(&s.layer.add, uint32(s.dom.len()), h, suffix, i < 0, &lb)
				if lb.hasBlk {
					m.Rule, m.HasRule, m.At = makeRuleID(RuleDomain, int(lb.blk.id)), true, i+1
				}
				if lb.hasAlw {
					m.Allow, m.HasAllow = makeRuleID(RuleDomain, int(lb.alw.id)), true
				}
			}
			if i < 0 {
				return m
			}
		}
		h = (h ^ uint64(name[i])) * fnvPrime64
	}
}

// levelCandidates offers every rule of t (ids offset by base) for suffix
// to the best block and allow rules of the level.
func (s *Snapshot) levelCandidates(t *domainTable, base uint32, h uint64, suffix string, atName bool, lb *levelBest) {
	head, ok := t.lookup(h, suffix)
	if !ok {
		return
	}
	switch k := t.kindAt(head); {
	case k&kindNext != 0:
		s.offer(t, base, head, t.ownKind(head), atName, lb)
		s.offer(t, base, head+1, t.kindAt(head+1), atName, lb)
	case k&kindMore != 0:
		for _, d := range t.dups[head] {
			s.offer(t, base, d.id, d.kind, atName, lb)
		}
	default:
		s.offer(t, base, head, k, atName, lb)
	}
}

func (s *Snapshot) offer(t *domainTable, base, id uint32, own uint8, atName bool, lb *levelBest) {
	gid := base + id
	if base == 0 && s.layer.isRemoved(gid) {
		return
	}
	blockMask, allowMask := kindBlockBelow, kindAllowBelow
	if atName {
		blockMask, allowMask = kindBlockAtName, kindAllowAtName
	}
	c := candidate{id: gid, t: t, j: id}
	sec := &s.sections[t.sect(id)]
	if sec.Action.Enforced() {
		c.score += 2
	}
	if sec.Scope == ScopeAny {
		c.score++
	}
	switch {
	case own&blockMask != 0:
		if !lb.hasBlk || s.better(c, lb.blk) {
			lb.blk, lb.hasBlk = c, true
		}
	case own&allowMask != 0:
		if !lb.hasAlw || s.better(c, lb.alw) {
			lb.alw, lb.hasAlw = c, true
		}
	}
}

// fileDomainRules calls fn, in line order, for every domain rule of file f
// in service: base rules not taken out and added rules, with their ids,
// encoded names (names.go; appendDecoded gives the name), current lines
// and sections.
func (s *Snapshot) fileDomainRules(f *FileStatus, fn func(id uint32, enc []byte, kind uint8, line int, sect uint16)) {
	l := s.layer
	if l == nil {
		for i := f.dom[0]; i < f.dom[1]; i++ {
			id := uint32(i)
			fn(id, s.dom.enc(id), s.dom.ownKind(id), s.dom.line(id), s.dom.sect(id))
		}
		return
	}
	i, end := f.dom[0], f.dom[1]
	ar := l.addRange[f.Name]
	j := ar[0]
	for i < end || j < ar[1] {
		for i < end && l.isRemoved(uint32(i)) {
			i++
		}
		bl := -1
		if i < end {
			bl = l.shifted(f.Name, s.dom.line(uint32(i)))
		}
		if j < ar[1] && (bl < 0 || l.add.line(uint32(j)) < bl) {
			id := uint32(j)
			fn(uint32(s.dom.len())+id, l.add.enc(id), l.add.ownKind(id), l.add.line(id), l.add.sect(id))
			j++
			continue
		}
		if i < end {
			id := uint32(i)
			fn(id, s.dom.enc(id), s.dom.ownKind(id), bl, s.dom.sect(id))
			i++
		}
	}
}

// copyFileLayered is copyFile for a snapshot with a layer: the file's
// rules in service, in line order, with their sections renumbered.
func (b *builder) copyFileLayered(old *Snapshot, f *FileStatus) {
	sects := map[uint16]uint16{}
	sect := func(i uint16) uint16 {
		if n, ok := sects[i]; ok {
			return n
		}
		n := uint16(len(b.s.sections))
		b.s.sections = append(b.s.sections, old.sections[i])
		if old.sections[i].Scope == ScopeOverseas {
			b.s.overseas = true
		}
		sects[i] = n
		return n
	}
	local := len(old.local) > 0 || old.layer != nil && len(old.layer.local) > 0
	old.fileDomainRules(f, func(id uint32, enc []byte, kind uint8, line int, sc uint16) {
		if b.s.dom.share == &old.dom.domainRules && id < uint32(old.dom.len()) {
			b.s.dom.addFrom(id, kind, line, sect(sc)) // the name stays in old's pages when it can
		} else {
			b.s.dom.addEnc(enc, kind, line, sect(sc))
		}
		// Local data (RPZ rules) follows its rule, base or added.
		if !local {
			return
		}
		if rrs := old.LocalData(makeRuleID(RuleDomain, int(id))); rrs != nil {
			b.last = makeRuleID(RuleDomain, b.s.dom.len()-1)
			b.setLocalData(rrs)
		}
	})
	ipBase := len(b.s.ips)
	for k, r := range old.ips[f.ip[0]:f.ip[1]] {
		r.sect = sect(r.sect)
		b.s.ips = append(b.s.ips, r)
		if rrs, ok := old.local[makeRuleID(RuleIP, f.ip[0]+k)]; ok {
			b.last = makeRuleID(RuleIP, ipBase+k)
			b.setLocalData(rrs)
		}
	}
	for _, r := range old.asns[f.asn[0]:f.asn[1]] {
		r.sect = sect(r.sect)
		b.s.asns = append(b.s.asns, r)
	}
}

// compact merges a layered snapshot into a freshly compiled one with the
// same rules and generation. A layer that only appends rules is merged by
// extending the base instead (compactAppend).
//
// The new base keeps the names of the base's unchanged blocks in the
// base's pages (see domainRules); when under half of the bytes of the
// pages it would keep are its names (deltas removed the rest), it copies
// every name instead.
func compact(s *Snapshot) (*Snapshot, error) {
	if next := compactAppend(s); next != nil {
		return next, nil
	}
	next, err := compactNames(s, true)
	if err == nil && next.dom.sharedBytes < next.dom.pagesShared/2 {
		next, err = compactNames(s, false)
	}
	return next, err
}

// compactNames is compact, with the names kept in the base's pages
// (share) or copied.
func compactNames(s *Snapshot, share bool) (*Snapshot, error) {
	nameBytes := s.dom.nameBytes() + s.layer.add.nameBytes()
	if share {
		nameBytes = s.layer.add.nameBytes() + maxBlockBytes
	}
	b := newBuilder(s.domainCount(), nameBytes)
	if share {
		b.s.dom.shareFrom(&s.dom.domainRules)
	}
	files := make([]*FileStatus, len(s.Files))
	for i, f := range s.Files {
		m := b.mark()
		b.copyFileLayered(s, f)
		fs := *f
		b.finishFile(&fs, m)
		files[i] = &fs
	}
	next, err := b.compile(s.Generation, files)
	if err != nil {
		return nil, err
	}
	next.Created = s.Created
	return next, nil
}

// fileDelta is one file's change as a delta: the rules of the old lines of
// each hunk give way to those of its new lines (parsed into add), and the
// lines between hunks move with them.
type fileDelta struct {
	file   string
	hunks  []hunk
	add    *builder // the new rules, one file's worth, lines as in the new version
	status FileStatus
}

// mapLine returns where an old line not in a hunk is in the new version,
// or false for a line a hunk replaced.
func (d *fileDelta) mapLine(line int) (int, bool) {
	if inHunks(d.hunks, line, true) {
		return 0, false
	}
	k := sort.Search(len(d.hunks), func(k int) bool { return d.hunks[k].oldEnd > line })
	if k == 0 {
		return line, true
	}
	h := d.hunks[k-1] // the last hunk before line
	return line + h.newEnd - h.oldEnd, true
}

// shifts returns the line moves of d as stages for domainLayer.shifted:
// the last hunk's first, so that each compares old lines.
func (d *fileDelta) shifts() []lineShift {
	var out []lineShift
	prev := 0 // the move of the hunks before
	moves := make([]int, len(d.hunks))
	for k, h := range d.hunks {
		moves[k] = h.newEnd - h.oldEnd - prev
		prev = h.newEnd - h.oldEnd
	}
	for k := len(d.hunks) - 1; k >= 0; k-- {
		if moves[k] != 0 {
			out = append(out, lineShift{from: d.hunks[k].oldEnd, delta: moves[k]})
		}
	}
	return out
}

// nextLayer starts the layer of the snapshot after cur: the base's rules
// removed so far and the line shifts of cur's layer, nothing added yet.
func nextLayer(cur *Snapshot) *domainLayer {
	l := &domainLayer{filePos: map[string]int{}, addRange: map[string][2]int{}, shifts: map[string][]lineShift{}}
	if ol := cur.layer; ol != nil {
		l.removed, l.nremoved = slices.Clone(ol.removed), ol.nremoved
		for k, v := range ol.shifts {
			l.shifts[k] = v
		}
	} else {
		l.removed = make([]uint64, (cur.dom.len()+63)/64)
	}
	return l
}

// applyDelta returns a snapshot of cur's rules with d applied, and the
// rules d removed (as cur describes them) and added.
func applyDelta(cur *Snapshot, d *fileDelta, gen uint64) (next *Snapshot, rem, add []Rule) {
	var removed, added []RuleID // in cur, in d.add.s
	next = &Snapshot{Generation: gen, Created: time.Now(), dom: cur.dom, overseas: cur.overseas, local: cur.local}
	old := cur.layer
	l := nextLayer(cur)
	// addRule adds rule j of t (sections offset by sectBase) to the layer,
	// with its local data.
	addRule := func(t *domainTable, j uint32, kind uint8, line int, sect uint16, rrs []dns.RR) {
		if rrs != nil {
			if l.local == nil {
				l.local = map[uint32][]dns.RR{}
			}
			l.local[uint32(l.add.len())] = rrs
		}
		l.add.addEnc(t.enc(j), kind, line, sect)
	}
	newLocal := func(j int) []dns.RR { return d.add.s.local[makeRuleID(RuleDomain, j)] }
	oldLocal := func(i uint32) []dns.RR {
		if old == nil {
			return nil
		}
		return old.local[i]
	}
	next.layer = l
	noteRemoved := func(id RuleID) { removed = append(removed, id) }
	// Sections: cur's, then the new rules'.
	next.sections = append(cur.sections[:len(cur.sections):len(cur.sections)], d.add.s.sections...)
	newSect := uint16(len(cur.sections))
	for _, sec := range d.add.s.sections {
		if sec.Scope == ScopeOverseas {
			next.overseas = true
		}
	}
	f := cur.File(d.file)
	// Base rules of the changed file in the changed lines are taken out.
	var stages []lineShift
	if old != nil {
		stages = old.shifts[d.file]
	}
	// A file's base rules are in line order, and so are their current
	// lines (the rules a layer took out aside): each hunk's are found by a
	// binary search.
	curLine := func(id uint32) int {
		line := cur.dom.line(id)
		for _, sh := range stages {
			if line >= sh.from {
				line += sh.delta
			}
		}
		return line
	}
	lo, hi := uint32(f.dom[0]), uint32(f.dom[1])
	for _, h := range d.hunks {
		if h.oldEnd <= h.oldFrom {
			continue
		}
		first := lo + uint32(sort.Search(int(hi-lo), func(k int) bool {
			id := old.nextKept(lo+uint32(k), hi)
			return id == hi || curLine(id) >= h.oldFrom
		}))
		for id := old.nextKept(first, hi); id < hi && curLine(id) < h.oldEnd; id = old.nextKept(id+1, hi) {
			noteRemoved(makeRuleID(RuleDomain, int(id)))
			l.removed[id>>6] |= 1 << (id & 63)
			l.nremoved++
		}
	}
	if st := d.shifts(); len(st) > 0 {
		l.shifts[d.file] = append(slices.Clip(l.shifts[d.file]), st...)
	}
	// The added rules, rebuilt file by file in order.
	nd := &d.add.s.dom
	for pos, fs := range cur.Files {
		l.filePos[fs.Name] = pos
		start := l.add.len()
		var ar [2]int
		if old != nil {
			ar = old.addRange[fs.Name]
		}
		j := 0 // next new rule (changed file only)
		for i := ar[0]; i < ar[1]; i++ {
			id := uint32(i)
			line := old.add.line(id)
			if fs.Name == d.file {
				var kept bool
				if line, kept = d.mapLine(line); !kept {
					noteRemoved(makeRuleID(RuleDomain, cur.dom.len()+i))
					continue
				}
				for ; j < nd.len() && nd.line(uint32(j)) < line; j++ {
					addRule(nd, uint32(j), nd.kindAt(uint32(j)), nd.line(uint32(j)), nd.sect(uint32(j))+newSect, newLocal(j))
				}
			}
			addRule(&old.add, id, old.add.ownKind(id), line, old.add.sect(id), oldLocal(id))
		}
		if fs.Name == d.file {
			for ; j < nd.len(); j++ {
				addRule(nd, uint32(j), nd.kindAt(uint32(j)), nd.line(uint32(j)), nd.sect(uint32(j))+newSect, newLocal(j))
			}
		}
		if l.add.len() > start {
			l.addRange[fs.Name] = [2]int{start, l.add.len()}
		}
	}
	l.add.build()
	removedDomains := len(removed)
	for i := 0; i < nd.len(); i++ {
		added = append(added, makeRuleID(RuleDomain, i))
	}
	// Files: the changed file's new status, every range as in cur.
	next.Files = make([]*FileStatus, len(cur.Files))
	for i, fs := range cur.Files {
		if fs.Name == d.file {
			st := d.status
			st.dom = fs.dom
			st.ip, st.asn, st.sect = fs.ip, fs.asn, fs.sect
			fs = &st
		}
		next.Files[i] = fs
	}
	// IP and ASN rules: shared when the change has none, else rebuilt.
	next.ips, next.asns = cur.ips, cur.asns
	next.ipBlock, next.ipAllow, next.asnBlock, next.asnAllow = cur.ipBlock, cur.ipAllow, cur.asnBlock, cur.asnAllow
	if f.ip[1] > f.ip[0] || f.asn[1] > f.asn[0] || len(d.add.s.ips) > 0 || len(d.add.s.asns) > 0 {
		r, a := next.rebuildAddrs(cur, d, newSect)
		removed, added = append(removed, r...), append(added, a...)
	}
	rem, add, _, _ = diffRuleIDs(cur, removed, d.add.s, added, -1)
	st := next.Files[l.filePos[d.file]]
	st.Domains = f.Domains - removedDomains + nd.len()
	if l.nremoved == 0 && l.add.len() == 0 && len(l.shifts) == 0 {
		next.layer = nil // nothing layered (only IP or ASN rules changed)
	}
	return next, rem, add
}

// fileDomainCount counts file f's domain rules in service.
func (s *Snapshot) fileDomainCount(f *FileStatus) int {
	n := 0
	if s.layer == nil {
		return f.dom[1] - f.dom[0]
	}
	for i := f.dom[0]; i < f.dom[1]; i++ {
		if !s.layer.isRemoved(uint32(i)) {
			n++
		}
	}
	ar := s.layer.addRange[f.Name]
	return n + ar[1] - ar[0]
}

// rebuildAddrs rebuilds next's IP and ASN rules from cur's with d applied
// (the changed file's rules in the changed lines replaced, later lines
// moved) and recompiles their matchers. It returns what it removed and
// added.
func (next *Snapshot) rebuildAddrs(cur *Snapshot, d *fileDelta, newSect uint16) (removed, added []RuleID) {
	var ips []ipRule
	var asns []asnRule
	relocal := len(cur.local) > 0 || len(d.add.s.local) > 0
	if relocal {
		next.local = map[RuleID][]dns.RR{}
		for id, rrs := range cur.local {
			if id.Type() == RuleDomain {
				next.local[id] = rrs
			}
		}
	}
	for i, fs := range next.Files {
		of := cur.Files[i]
		ipStart, asnStart := len(ips), len(asns)
		var addIPs []ipRule
		var addASNs []asnRule
		isF := fs.Name == d.file
		if isF {
			addIPs, addASNs = d.add.s.ips, d.add.s.asns
		}
		ipLine := func(r *ipRule) (*uint32, *uint16) { return &r.line, &r.sect }
		asnLine := func(r *asnRule) (*uint32, *uint16) { return &r.line, &r.sect }
		var keep func(k, at int)
		if relocal {
			keep = func(k, at int) {
				if rrs, ok := cur.local[makeRuleID(RuleIP, of.ip[0]+k)]; ok {
					next.local[makeRuleID(RuleIP, at)] = rrs
				}
			}
		}
		var put func(j, at int)
		if relocal {
			put = func(j, at int) {
				if rrs, ok := d.add.s.local[makeRuleID(RuleIP, j)]; ok {
					next.local[makeRuleID(RuleIP, at)] = rrs
				}
			}
		}
		ips = spliceRules(ips, cur.ips[of.ip[0]:of.ip[1]], addIPs, isF, d, newSect, ipLine, keep, put,
			func(k int) { removed = append(removed, makeRuleID(RuleIP, of.ip[0]+k)) })
		asns = spliceRules(asns, cur.asns[of.asn[0]:of.asn[1]], addASNs, isF, d, newSect, asnLine, nil, nil,
			func(k int) { removed = append(removed, makeRuleID(RuleASN, of.asn[0]+k)) })
		if fs.Name == d.file || fs.ip != [2]int{ipStart, len(ips)} || fs.asn != [2]int{asnStart, len(asns)} {
			cp := *fs
			cp.ip, cp.asn = [2]int{ipStart, len(ips)}, [2]int{asnStart, len(asns)}
			cp.IPs, cp.ASNs = len(ips)-ipStart, len(asns)-asnStart
			next.Files[i] = &cp
		}
	}
	for i := range d.add.s.ips {
		added = append(added, makeRuleID(RuleIP, i))
	}
	for i := range d.add.s.asns {
		added = append(added, makeRuleID(RuleASN, i))
	}
	next.ips, next.asns = ips, asns
	next.compileAddrs()
	return removed, added
}

// spliceRules appends to out one file's IP or ASN rules with d applied:
// when isF, the rules in the changed lines are dropped (drop is told
// their index), later ones moved, and add (sections renumbered from
// newSect) put in line order; keep and added, when set, are told where
// each kept rule and each added one (by index in add) went.
func spliceRules[R any](out, rules, add []R, isF bool, d *fileDelta, newSect uint16,
	fields func(*R) (*uint32, *uint16), keep, added func(k, at int), drop func(k int)) []R {
	j := 0
	put := func(r R) {
		_, sect := fields(&r)
		*sect += newSect
		if added != nil {
			added(j, len(out))
		}
		out = append(out, r)
	}
	for k, r := range rules {
		if isF {
			lp, _ := fields(&r)
			line, kept := d.mapLine(int(*lp))
			if !kept {
				drop(k)
				continue
			}
			*lp = uint32(line)
			for ; j < len(add); j++ {
				al, _ := fields(&add[j])
				if *al >= *lp {
					break
				}
				put(add[j])
			}
		}
		if keep != nil {
			keep(k, len(out))
		}
		out = append(out, r)
	}
	for ; j < len(add); j++ {
		put(add[j])
	}
	return out
}
