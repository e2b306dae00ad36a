package blocklist

import (
	"bytes"
	"encoding/binary"
	"math/bits"
	"slices"
	"sync/atomic"
	"unsafe"
)

// Kind bits as stored per domain rule. Each rule carries exactly one of the
// low six bits; a table head (the first rule for a name) carries the union of
// every rule for that name plus kindMore when there is more than one.
const (
	kindSubtree       uint8 = 1 << iota // "example.com"
	kindWildcard                        // "*.example.com"
	kindExact                           // "=example.com"
	kindAllowSubtree                    // "@@example.com"
	kindAllowWildcard                   // "@@*.example.com"
	kindAllowExact                      // "@@=example.com"
	// kindNext marks a head whose name is shared by the next rule, and
	// only by it (an RPZ zone's "name" and "*.name"): the head holds the
	// union of both kinds and the pair needs no entry in domainTable.dups.
	kindNext
	kindMore // head of a name with several rules; see domainTable.dups

	kindBlockAtName  = kindSubtree | kindExact
	kindBlockBelow   = kindSubtree | kindWildcard
	kindAllowAtName  = kindAllowSubtree | kindAllowExact
	kindAllowBelow   = kindAllowSubtree | kindAllowWildcard
	kindAnyAllow     = kindAllowSubtree | kindAllowWildcard | kindAllowExact
	kindMaskOwn      = kindNext - 1
	fnvOffset64      = 14695981039346656037
	fnvPrime64       = 1099511628211
	maxDomainRuleIDs = 1<<31 - 1
)

func kindBit(k MatchKind, allow bool) uint8 {
	b := kindSubtree << k // MatchSubtree=0, MatchWildcard=1, MatchExact=2
	if allow {
		b <<= 3
	}
	return b
}

// kindOf is the inverse of kindBit for a single bit.
func kindOf(b uint8) (MatchKind, bool) {
	allow := b&kindAnyAllow != 0
	if allow {
		b >>= 3
	}
	switch b {
	case kindWildcard:
		return MatchWildcard, allow
	case kindExact:
		return MatchExact, allow
	}
	return MatchSubtree, allow
}

// domainRules is the compact, append-only store of domain rules: names are
// encoded (see names.go) into pages of up to a MiB and every per-rule
// attribute is a parallel array or a run-length form, so a million rules
// cost a handful of large allocations and about 9 bytes each besides their
// encoded names. A rule with the same name as the rule before it stores no
// name of its own (an RPZ zone lists most names twice, as "name" and
// "*.name").
//
// Pages are immutable once a table is compiled, and the merge of a delta
// into a new base (compact) points the new table's blocks of unchanged
// rules into the old table's pages instead of copying their names: the
// names are most of a table's memory, so a merge holds little more than
// the old table while it runs.
type domainRules struct {
	// pages hold the encoded names, back to back; the names of one block
	// (nameBlock rules) are always in one page. A position in the pages
	// is page<<pageBits | offset.
	pages [][]byte
	// lens[i] is the length of rule i's encoded name, 0 when the rule
	// shares the name of the rule before it; blockOff[b] is the position
	// of the names of rules b*nameBlock on.
	lens     []uint8
	blockOff []uint32
	shared   int          // rules whose name is the previous rule's
	kind     []uint8      // one kind bit; heads of duplicated names get the union + kindMore
	kinds    *packedKinds // replaces kind in a compiled table (see packKinds); read with kindAt
	// Lines: rule i is on line lineBase[i/lineBlock] + lineDelta[i], or
	// lineBig[i] when that delta does not fit a byte (lineDelta[i] == 255).
	// A compiled table (see packLines) keeps the deltas of a block only
	// when its rules are not on consecutive lines.
	lineBase  []uint32
	lineDelta []uint8
	lineBig   map[uint32]uint32
	lines     *packedLines // set by packLines
	// sectRuns are the runs of consecutive rules under one section, by start.
	sectRuns []sectRun

	last []byte // the last rule's name (its own or the one it shares)
	// share, while a merge fills the table (see shareFrom), is the table
	// whose pages blocks of unchanged names point into; pend is the
	// block being filled.
	share *domainRules
	pend  pendingBlock
	// fromNext is the rule of share after the last one addFrom took, and
	// fromPos the position after its name (0, 0: none yet).
	fromNext, fromPos uint32
	// sharedPages maps a page of share to its index in pages.
	sharedPages map[int]int
	// sharedBytes counts the names of this table kept in pages of other
	// tables, and pagesShared those pages' bytes (see shareFrom).
	sharedBytes, pagesShared int
	// claim, set when the table is compiled, says up to where the
	// arrays are in use, and tailOwned whether the last page is this
	// lineage's own (see compactAppend, which extends them).
	claim     *appendClaim
	tailOwned bool
}

// nameBlock is how many rules share one name position.
const nameBlock = 32

// Pages: a position is page<<pageBits | offset. A page takes a new block
// only while it has pageRoom bytes free; a name that does not fit in the
// page moves the names of its block so far to a new page (tailFor), so
// no offset reaches pageSize and a page ends at most a block's names
// short of full (it ended up to maxBlockBytes short before: 1.3 MB of
// the 173 MB of names of 10M rules).
const (
	pageBits      = 20
	pageSize      = 1 << pageBits
	pageMask      = pageSize - 1
	maxBlockBytes = nameBlock * 255
	maxPages      = 1 << (32 - pageBits)
	pageRoom      = 1 << 10
)

// lineBlock is how many rules share one line base.
const lineBlock = 32

// sectRun says that rules from start on (to the next run) are in section sect.
type sectRun struct {
	start uint32
	sect  uint16
}

func (d *domainRules) len() int { return len(d.lens) }

// kindAt returns rule i's kind byte (a head's holds the union, see build).
func (d *domainRules) kindAt(i uint32) uint8 {
	if p := d.kinds; p != nil {
		if len(p.ids) == 0 || p.odd[i/64]&(1<<(i%64)) == 0 {
			return p.common
		}
		k, _ := slices.BinarySearch(p.ids, i)
		return p.vals[k]
	}
	return d.kind[i]
}

// packedKinds holds a compiled table's kind bytes when nearly all are one
// value (a plain list's): the rest are listed by rule. A table whose
// rules all have the common kind has no bitmap (1.25 MB at 10M rules).
type packedKinds struct {
	common uint8
	odd    []uint64 // bit i: rule i's kind is not common; nil when ids is empty
	ids    []uint32 // those rules, in order
	vals   []uint8  // and their kinds
}

// packKinds replaces the kind bytes by packedKinds when at most one rule
// in 64 differs from the most common kind.
func (d *domainRules) packKinds() {
	if d.kinds != nil || len(d.kind) < 1024 {
		return
	}
	var count [256]int
	for _, k := range d.kind {
		count[k]++
	}
	common := 0
	for k := range count {
		if count[k] > count[common] {
			common = k
		}
	}
	odd := len(d.kind) - count[common]
	if odd > len(d.kind)/64 {
		return
	}
	p := &packedKinds{common: uint8(common)}
	if odd == 0 {
		d.kind, d.kinds = nil, p
		return
	}
	p.odd, p.ids, p.vals = make([]uint64, (len(d.kind)+63)/64), make([]uint32, 0, odd), make([]uint8, 0, odd)
	for i, k := range d.kind {
		if k != p.common {
			p.odd[i/64] |= 1 << (i % 64)
			p.ids = append(p.ids, uint32(i))
			p.vals = append(p.vals, k)
		}
	}
	d.kind, d.kinds = nil, p
}

// unpackKinds undoes packKinds (before the table changes).
func (d *domainRules) unpackKinds() {
	p := d.kinds
	if p == nil {
		return
	}
	all := make([]uint8, len(d.lens))
	for i := range all {
		all[i] = p.common
	}
	for k, id := range p.ids {
		all[id] = p.vals[k]
	}
	d.kind, d.kinds = all, nil
}

// encStart returns the position of rule i's own encoded name.
func (d *domainRules) encStart(i uint32) uint32 {
	b := i / nameBlock
	off := d.blockOff[b]
	l := d.lens[b*nameBlock : i]
	for len(l) >= 8 {
		// Eight lengths at a time: pairwise sums in 16-bit lanes, then
		// the lanes summed (at most 31*255, so no lane overflows).
		x := binary.LittleEndian.Uint64(l)
		x = x&0x00ff00ff00ff00ff + x>>8&0x00ff00ff00ff00ff
		off += uint32(x * 0x0001000100010001 >> 48)
		l = l[8:]
	}
	for _, v := range l {
		off += uint32(v)
	}
	return off
}

// ownEnc is the encoded name stored with rule i itself: empty when the
// rule shares the previous rule's name. A table head always has its own.
func (d *domainRules) ownEnc(i uint32) []byte {
	v := d.encStart(i)
	off := v & pageMask
	return d.pages[v>>pageBits][off : off+uint32(d.lens[i])]
}

// nameBytes is the size of the pages the table holds (its names, and
// those of removed rules in pages it shares with the table it was merged
// from).
func (d *domainRules) nameBytes() int {
	n := 0
	for _, p := range d.pages {
		n += len(p)
	}
	return n
}

// tail returns the page the next name goes to: a new one at a block
// start when the last page has less than pageRoom bytes free (or is
// another table's).
func (d *domainRules) tail() *[]byte {
	if n := len(d.pages); n == 0 || len(d.lens)%nameBlock == 0 && (len(d.pages[n-1]) > pageSize-pageRoom || d.pageShared(n-1)) {
		c := 256
		if n > 0 {
			c = pageSize // a page after the first is likely to fill
		}
		d.pages = append(d.pages, make([]byte, 0, c))
	}
	return &d.pages[len(d.pages)-1]
}

// tailFor is tail for a name of up to need encoded bytes: when the name
// does not fit in the page, the names of its block so far move to a new
// page (a block's names are in one page).
func (d *domainRules) tailFor(need int) *[]byte {
	p := d.tail()
	if len(*p)+need <= pageSize {
		return p
	}
	// Mid-block (tail leaves pageRoom at a block start): the block's
	// names so far are at the end of the last page, which is d's own.
	b := len(d.blockOff) - 1
	k, off := int(d.blockOff[b]>>pageBits), int(d.blockOff[b]&pageMask)
	old := d.pages[k]
	np := append(make([]byte, 0, pageSize), old[off:]...)
	if len(old) > off {
		// The last own name is the last one in the block.
		d.last = np[len(np)-len(d.last):]
	}
	d.pages[k] = old[:off]
	d.pages = append(d.pages, np)
	d.blockOff[b] = uint32(len(d.pages)-1) << pageBits
	return &d.pages[len(d.pages)-1]
}

// pageShared reports whether page k of d is another table's.
func (d *domainRules) pageShared(k int) bool {
	for _, v := range d.sharedPages {
		if v == k {
			return true
		}
	}
	return false
}

// enc returns rule i's encoded name.
func (d *domainRules) enc(i uint32) []byte {
	for d.lens[i] == 0 && i > 0 {
		i--
	}
	return d.ownEnc(i)
}

// name returns rule i's name (a new slice).
func (d *domainRules) name(i uint32) []byte { return appendDecoded(nil, d.enc(i)) }

// appendName appends rule i's name to dst.
func (d *domainRules) appendName(dst []byte, i uint32) []byte { return appendDecoded(dst, d.enc(i)) }

// line returns rule i's line number.
func (d *domainRules) line(i uint32) int {
	dl := uint8(i % lineBlock)
	if p := d.lines; p == nil {
		dl = d.lineDelta[i]
	} else if b := i / lineBlock; p.kept[b/64]&(1<<(b%64)) != 0 {
		rank := int(p.rank[b/64]) + bits.OnesCount64(p.kept[b/64]&(1<<(b%64)-1))
		dl = d.lineDelta[rank*lineBlock+int(i%lineBlock)]
	}
	if dl != 255 {
		return int(d.lineBase[i/lineBlock]) + int(dl)
	}
	return int(d.lineBig[i])
}

// packedLines says which line blocks keep their deltas: bit b of kept is
// set when block b's rules are not on lines base, base+1, ...; their
// deltas are in lineDelta in block order, rank[w] blocks before word w.
type packedLines struct {
	kept []uint64
	rank []uint32
}

// packLines drops the line deltas of blocks whose rules are on
// consecutive lines (most blocks of a big list: a byte per rule).
func (d *domainRules) packLines() {
	if d.lines != nil {
		return
	}
	nb := len(d.lineBase)
	p := &packedLines{kept: make([]uint64, (nb+63)/64), rank: make([]uint32, (nb+63)/64)}
	var deltas []uint8
	n := 0
	for b := 0; b < nb; b++ {
		if b%64 == 0 {
			p.rank[b/64] = uint32(n)
		}
		blk := d.lineDelta[b*lineBlock : min((b+1)*lineBlock, len(d.lineDelta))]
		plain := true
		for k, dl := range blk {
			if dl != uint8(k) {
				plain = false
				break
			}
		}
		if plain {
			continue
		}
		if deltas == nil {
			deltas = make([]uint8, 0, len(d.lineDelta)/8+lineBlock)
		}
		p.kept[b/64] |= 1 << (b % 64)
		deltas = append(deltas, blk...)
		n++
	}
	// A copy of the deltas kept: deltas was allocated for an eighth of
	// the rules, and a clip would keep all of that.
	d.lineDelta, d.lines = slices.Clone(deltas), p
}

// unpackLines undoes packLines (before the table grows or shrinks again).
func (d *domainRules) unpackLines() {
	if d.lines == nil {
		return
	}
	all := make([]uint8, len(d.lens))
	for i := range all {
		dl := uint8(i % lineBlock)
		if b := i / lineBlock; d.lines.kept[b/64]&(1<<(b%64)) != 0 {
			rank := int(d.lines.rank[b/64]) + bits.OnesCount64(d.lines.kept[b/64]&(1<<(b%64)-1))
			dl = d.lineDelta[rank*lineBlock+i%lineBlock]
		}
		all[i] = dl
	}
	d.lineDelta, d.lines = all, nil
}

// sect returns rule i's section index.
func (d *domainRules) sect(i uint32) uint16 {
	runs := d.sectRuns
	lo, hi := 0, len(runs)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if runs[m].start <= i {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return runs[lo-1].sect
}

func (d *domainRules) add(name []byte, kind uint8, line int, sect uint16) {
	d.unpackLines()
	d.unpackKinds()
	p := d.tailFor(len(name) + 1)
	start := len(*p)
	*p = appendEncoded(*p, name)
	d.addEncoded(start, kind, line, sect)
}

// addAgain is add for a name its caller knows is the name of the rule
// added last (an RPZ zone's "*.name" after "name"): the rule shares that
// name without encoding it again. Outside a merge it does what add does
// for an equal name.
func (d *domainRules) addAgain(name []byte, kind uint8, line int, sect uint16) {
	if d.share != nil || len(d.lens) == 0 {
		d.add(name, kind, line, sect)
		return
	}
	d.unpackLines()
	d.unpackKinds()
	p := d.tail()
	d.shared++
	if i := len(d.lens); i%nameBlock == 0 {
		d.blockOff = append(d.blockOff, uint32(len(d.pages)-1)<<pageBits|uint32(len(*p)))
	}
	d.addAttrs(0, kind, line, sect)
}

// addEnc adds a rule whose encoded name is e (as enc returns it).
func (d *domainRules) addEnc(e []byte, kind uint8, line int, sect uint16) {
	d.unpackLines()
	d.unpackKinds()
	if d.share != nil {
		d.addPending(e, noPos, kind, line, sect)
		return
	}
	p := d.tailFor(len(e))
	start := len(*p)
	*p = append(*p, e...)
	d.addEncoded(start, kind, line, sect)
}

// addEncoded adds a rule whose encoded name was just appended to the last
// page at start.
func (d *domainRules) addEncoded(start int, kind uint8, line int, sect uint16) {
	i := uint32(len(d.lens))
	p := &d.pages[len(d.pages)-1]
	e := (*p)[start:]
	if i > 0 && bytes.Equal(e, d.last) {
		d.shared++
		*p = (*p)[:start]
		e = nil
	} else {
		d.last = e
	}
	if i%nameBlock == 0 {
		d.blockOff = append(d.blockOff, uint32(len(d.pages)-1)<<pageBits|uint32(start))
	}
	d.addAttrs(uint8(len(e)), kind, line, sect)
}

// addAttrs appends rule i's name length and other attributes.
func (d *domainRules) addAttrs(l, kind uint8, line int, sect uint16) {
	i := uint32(len(d.lens))
	d.lens = append(d.lens, l)
	d.kind = append(d.kind, kind)
	if i%lineBlock == 0 {
		d.lineBase = append(d.lineBase, uint32(line))
	}
	if base := int(d.lineBase[i/lineBlock]); line >= base && line-base < 255 {
		d.lineDelta = append(d.lineDelta, uint8(line-base))
	} else {
		if d.lineBig == nil {
			d.lineBig = make(map[uint32]uint32)
		}
		d.lineBig[i] = uint32(line)
		d.lineDelta = append(d.lineDelta, 255)
	}
	if n := len(d.sectRuns); n == 0 || d.sectRuns[n-1].sect != sect {
		d.sectRuns = append(d.sectRuns, sectRun{i, sect})
	}
}

// pendingBlock is the block a merge is filling: its rules' attributes are
// in the table already, their names wait here until the block is whole,
// to be kept where they are in share's pages when they lie there back to
// back, or copied.
type pendingBlock struct {
	n     int      // rules in the block so far
	names [][]byte // each own name (none for a rule sharing the one before)
	pos   []uint32 // its position in share, or noPos
}

const noPos = ^uint32(0)

// shareFrom makes d, an empty table about to receive (by addFrom and
// addEnc) the rules of a merge, keep the names of old's unchanged runs of
// rules in old's pages.
func (d *domainRules) shareFrom(old *domainRules) {
	d.share, d.sharedPages = old, map[int]int{}
}

// addFrom adds rule id of share (with the given attributes).
func (d *domainRules) addFrom(id uint32, kind uint8, line int, sect uint16) {
	d.unpackLines()
	d.unpackKinds()
	old := d.share
	if l := old.lens[id]; l != 0 {
		// Rules come in order: the position follows from the last one's.
		pos := d.fromPos
		if id != d.fromNext || id%nameBlock == 0 {
			pos = old.encStart(id)
		}
		d.fromNext, d.fromPos = id+1, pos+uint32(l)
		off := pos & pageMask
		d.addPending(old.pages[pos>>pageBits][off:off+uint32(l)], pos, kind, line, sect)
		return
	}
	d.fromNext, d.fromPos = id+1, old.encStart(id) // rule id has no name of its own: the next one's starts there
	j := id
	for old.lens[j] == 0 && j > 0 {
		j--
	}
	d.addPending(old.ownEnc(j), old.encStart(j), kind, line, sect)
}

// addPending adds a rule of a merge whose name is e, at position pos of
// share (noPos: elsewhere).
func (d *domainRules) addPending(e []byte, pos uint32, kind uint8, line int, sect uint16) {
	l := uint8(len(e))
	if len(d.lens) > 0 && bytes.Equal(e, d.last) {
		d.shared++
		l = 0
	} else {
		d.last = e
		d.pend.names = append(d.pend.names, e)
		d.pend.pos = append(d.pend.pos, pos)
	}
	d.pend.n++
	d.addAttrs(l, kind, line, sect)
	if d.pend.n == nameBlock {
		d.flushPending()
	}
}

// flushPending places the names of the pending block: in share's page
// when they are back to back there, else copied to d's own last page.
func (d *domainRules) flushPending() {
	pb := &d.pend
	if pb.n == 0 {
		return
	}
	first := uint32(len(d.lens) - pb.n) // the block's first rule
	together := len(pb.pos) > 0
	for k := range pb.pos {
		if pb.pos[k] == noPos || k > 0 && pb.pos[k] != pb.pos[k-1]+uint32(len(pb.names[k-1])) {
			together = false
			break
		}
	}
	if together {
		page := int(pb.pos[0] >> pageBits)
		k, ok := d.sharedPages[page]
		if !ok {
			k = len(d.pages)
			d.pages = append(d.pages, d.share.pages[page])
			d.sharedPages[page] = k
			d.pagesShared += len(d.share.pages[page])
		}
		d.blockOff = append(d.blockOff, uint32(k)<<pageBits|pb.pos[0]&pageMask)
		for _, e := range pb.names {
			d.sharedBytes += len(e)
		}
	} else {
		// The lens of the block are set; tail must see the block start.
		n := len(d.lens)
		d.lens = d.lens[:first]
		p := d.tail()
		d.lens = d.lens[:n]
		total := 0
		for _, e := range pb.names {
			total += len(e)
		}
		if len(*p)+total > pageSize {
			d.pages = append(d.pages, make([]byte, 0, pageSize))
			p = &d.pages[len(d.pages)-1]
		}
		d.blockOff = append(d.blockOff, uint32(len(d.pages)-1)<<pageBits|uint32(len(*p)))
		for _, e := range pb.names {
			*p = append(*p, e...)
		}
	}
	pb.n, pb.names, pb.pos = 0, pb.names[:0], pb.pos[:0]
}

// truncate drops rules from index n on (used to roll back a failed file).
func (d *domainRules) truncate(n int) {
	if n >= d.len() {
		return
	}
	d.unpackLines()
	d.unpackKinds()
	for i := n; i < len(d.kind); i++ {
		if d.lens[i] == 0 {
			d.shared--
		}
	}
	v := d.encStart(uint32(n))
	d.pages = d.pages[:v>>pageBits+1]
	d.pages[len(d.pages)-1] = d.pages[len(d.pages)-1][:v&pageMask]
	d.lens = d.lens[:n]
	d.blockOff = d.blockOff[:(n+nameBlock-1)/nameBlock]
	d.kind = d.kind[:n]
	d.lineDelta = d.lineDelta[:n]
	d.lineBase = d.lineBase[:(n+lineBlock-1)/lineBlock]
	for i := range d.lineBig {
		if int(i) >= n {
			delete(d.lineBig, i)
		}
	}
	for len(d.sectRuns) > 0 && int(d.sectRuns[len(d.sectRuns)-1].start) >= n {
		d.sectRuns = d.sectRuns[:len(d.sectRuns)-1]
	}
	d.last = nil
	if n > 0 {
		d.last = d.enc(uint32(n - 1))
	}
}

// grow reserves room for n more rules with about nameBytes of names.
func (d *domainRules) grow(n, nameBytes int) {
	if len(d.pages) == 0 {
		d.pages = append(d.pages, make([]byte, 0, min(max(nameBytes, 256), pageSize)))
	} else if p := &d.pages[len(d.pages)-1]; !d.pageShared(len(d.pages)-1) && cap(*p)-len(*p) < nameBytes && cap(*p) < pageSize {
		a := make([]byte, len(*p), min(len(*p)+nameBytes, pageSize))
		copy(a, *p)
		*p = a
		if len(d.lens) > 0 {
			d.last = d.enc(uint32(len(d.lens) - 1))
		}
	}
	d.unpackLines()
	d.unpackKinds()
	if cap(d.kind)-len(d.kind) < n {
		d.lens = append(make([]uint8, 0, len(d.lens)+n), d.lens...)
		d.blockOff = append(make([]uint32, 0, len(d.blockOff)+n/nameBlock+1), d.blockOff...)
		d.kind = append(make([]uint8, 0, len(d.kind)+n), d.kind...)
		d.lineDelta = append(make([]uint8, 0, len(d.lineDelta)+n), d.lineDelta...)
		d.lineBase = append(make([]uint32, 0, len(d.lineBase)+n/lineBlock+1), d.lineBase...)
	}
}

// shrink drops spare capacity above an eighth, so a compiled snapshot
// holds little slack without copying arrays that are already about right
// (the load pre-sizes them from the file's line count and size).
func (d *domainRules) shrink() {
	d.flushPending()
	if k := len(d.pages) - 1; k >= 0 && !d.pageShared(k) && cap(d.pages[k])-len(d.pages[k]) > len(d.pages[k])/8 {
		d.pages[k] = append([]byte(nil), d.pages[k]...)
		if len(d.lens) > 0 {
			// The last name, in the copy: last would keep the whole
			// page it was cut from.
			d.last = d.enc(uint32(len(d.lens) - 1))
		}
	}
	d.tailOwned = len(d.pages) > 0 && !d.pageShared(len(d.pages)-1)
	d.claim = newAppendClaim(len(d.lens))
	d.share, d.sharedPages, d.pend = nil, nil, pendingBlock{}
	if cap(d.kind)-len(d.kind) > len(d.kind)/8 {
		d.lens = append([]uint8(nil), d.lens...)
		d.blockOff = append([]uint32(nil), d.blockOff...)
		d.kind = append([]uint8(nil), d.kind...)
		d.lineBase = append([]uint32(nil), d.lineBase...)
	}
	d.packLines()
	d.sectRuns = append([]sectRun(nil), d.sectRuns...)
}

// domainTable is the compiled suffix matcher: an open-addressing hash table
// over domainRules whose slots pack a rule id with a hash tag, so a miss is
// usually decided without touching the names.
type domainTable struct {
	domainRules
	// slots, 0 = empty, else tag<<idBits | (id+1), are in pages of
	// slotPage (each its own allocation, the last one shorter), so that a
	// merge that inserts a few rules copies only the pages it changes
	// (compactAppend); slot s is slots[s>>slotPageBits][s&slotPageMask].
	slots  [][]uint32
	nslots int
	idBits uint
	idMask uint32
	// levels has bit l set when some rule's name has l labels (bit 63: 63
	// or more), so a match skips suffixes no rule can equal.
	levels uint64
	// dups maps a head rule to every rule (head included) that shares its
	// name, with each rule's own kind bit. Only names listed more than once
	// appear here.
	dups map[uint32][]dupRule
	mask uint64 // applied to every hash: all ones, but see collideHashes
	// touch sums the home slots build loaded ahead of its inserts (it
	// keeps the compiler from dropping those loads).
	touch uint32
}

// Slot pages: 16Ki slots (64 KiB).
const (
	slotPageBits = 14
	slotPage     = 1 << slotPageBits
	slotPageMask = slotPage - 1
)

// makeSlots returns size empty slots in pages.
func makeSlots(size int) [][]uint32 {
	pages := make([][]uint32, (size+slotPage-1)/slotPage)
	for i := range pages {
		pages[i] = make([]uint32, min(slotPage, size-i*slotPage))
	}
	return pages
}

// slot returns slot s.
func (t *domainTable) slot(s int) uint32 { return t.slots[s>>slotPageBits][s&slotPageMask] }

type dupRule struct {
	id   uint32
	kind uint8
}

// hashName hashes a name from its last byte to its first, the order in which
// a query name's suffixes are hashed during a match.
func hashName(name []byte) uint64 {
	h := uint64(fnvOffset64)
	for i := len(name) - 1; i >= 0; i-- {
		h = (h ^ uint64(name[i])) * fnvPrime64
	}
	return h
}

// mix finalizes an FNV hash so that both its high and low bits are usable.
func mix(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	return h
}

// slotHash is mix for t's slots and tags.
func (t *domainTable) slotHash(h uint64) uint64 { return mix(h) & t.mask }

// collideHashes, set by tests, makes every name's hash collide in the
// domain tables built from then on (each lookup then rests on the name
// comparison alone).
var collideHashes atomic.Bool

// ownKind returns the kind bit of rule i itself (heads hold a union).
func (t *domainTable) ownKind(i uint32) uint8 {
	k := t.kindAt(i)
	if k&kindNext != 0 {
		return k & kindMaskOwn &^ t.kindAt(i+1)
	}
	if k&kindMore == 0 {
		return k
	}
	for _, d := range t.dups[i] {
		if d.id == i {
			return d.kind
		}
	}
	return k & kindMaskOwn
}

// build indexes every rule. Rules sharing a name are chained under the
// first. Every kind byte must hold the rule's own kind (see ownKind).
//
// Hashing the names (hashEncoded, straight from their encoding) and
// inserting them are two stages: a table of more than buildChunk rules
// has its names hashed on two other goroutines (buildHashers), each
// taking every other chunk, ahead of the inserts, so a load or merge
// uses both cores. The inserts work a batch
// of buildBatch rules at a time: each one's home slot is loaded first (a
// tight loop of independent loads, so the CPU overlaps their cache
// misses, as match does), then the rules are inserted in rule order, so
// the head of a name is its first rule whatever the batching.
func (t *domainTable) build() {
	t.unpackKinds()
	n := t.len()
	t.dups = nil
	t.mask = ^uint64(0)
	if collideHashes.Load() {
		t.mask = 0
	}
	t.idBits = uint(bits.Len32(uint32(n) + 1))
	t.idMask = 1<<t.idBits - 1
	size := slotCount(n - t.shared)
	t.slots, t.nslots = makeSlots(size), size
	t.levels = 0
	lastHead := -1
	if n <= buildChunk {
		hashes := make([]uint64, n)
		t.levels = t.hashRules(0, n, hashes)
		t.touch = t.insertRules(0, hashes, size, &lastHead)
		t.packKinds()
		return
	}
	// Chunk k is hashed by lane k%buildHashers; the inserts take the
	// chunks in order, from each lane in turn.
	var lanes [buildHashers]struct {
		full, free chan []uint64
		levels     uint64 // the lane's goroutine's, read after full is closed
	}
	for j := range lanes {
		l := &lanes[j]
		l.full, l.free = make(chan []uint64, 2), make(chan []uint64, 2)
		l.free <- make([]uint64, buildChunk)
		l.free <- make([]uint64, buildChunk)
		go func() {
			defer close(l.full)
			for c0 := j * buildChunk; c0 < n; c0 += buildHashers * buildChunk {
				c1 := min(c0+buildChunk, n)
				buf := (<-l.free)[:c1-c0]
				l.levels |= t.hashRules(c0, c1, buf)
				l.full <- buf
			}
		}()
	}
	var touch uint32
	for k, c0 := 0, 0; c0 < n; k++ {
		l := &lanes[k%buildHashers]
		buf := <-l.full
		touch += t.insertRules(c0, buf, size, &lastHead)
		c0 += len(buf)
		l.free <- buf
	}
	for j := range lanes {
		for range lanes[j].full { // wait until the lane is done
		}
		t.levels |= lanes[j].levels
	}
	t.touch = touch
	t.packKinds()
}

// buildHashers is how many goroutines hash the names for build's inserts
// (hashing costs about twice the inserts: two hashers and the inserts
// share two cores evenly).
const buildHashers = 2

// slotCount is the size of a table of n distinct names: 1.375 slots a
// name, 5 MB less than 1.5 at 10M names. The higher load factor costs
// lookups that miss: BenchmarkMatchNameMiss, pinned, on a quiet machine,
// about 15% slower than at 1.5 slots with the slot pages (282-295 ns
// before the pages, 329-337 ns now, 283-318 ns at 1.5 slots with pages;
// docs/benchmarks.md); 1.25 slots made a miss 44% slower. Hits do not
// move.
func slotCount(n int) int { return n*11/8 + 1 }

// buildChunk is how many rules build hashes ahead of its inserts (a
// multiple of nameBlock).
const buildChunk = 1 << 14

// hashRules stores the slot hash of rules c0 to c1 (their names') in out
// and returns the label counts seen, as levels bits. It only reads the
// names, so it runs beside insertRules.
func (t *domainTable) hashRules(c0, c1 int, out []uint64) uint64 {
	var levels, h uint64
	if c0 < c1 && t.lens[c0] == 0 && c0 > 0 {
		hn, _ := hashEncoded(t.enc(uint32(c0))) // the name of a rule before the range
		h = t.slotHash(hn)
	}
	for b0 := c0; b0 < c1; b0 += nameBlock {
		off := t.blockOff[b0/nameBlock]
		page := t.pages[off>>pageBits]
		off &= pageMask
		for i := b0; i < min(b0+nameBlock, c1); i++ {
			if l := t.lens[i]; l != 0 {
				hn, labels := hashEncoded(page[off : off+uint32(l)])
				levels |= 1 << min(labels, 63)
				h = t.slotHash(hn)
				off += uint32(l)
			}
			out[i-c0] = h
		}
	}
	return levels
}

// insertRules inserts rules c0 on, whose slot hashes are hashes, into a
// table of size slots. lastHead is the last rule inserted as a head.
func (t *domainTable) insertRules(c0 int, hashes []uint64, size int, lastHead *int) uint32 {
	var touch uint32
	for b0 := 0; b0 < len(hashes); b0 += buildBatch {
		b1 := min(b0+buildBatch, len(hashes))
		for _, h := range hashes[b0:b1] {
			touch += t.slot(fastrange(h, size))
		}
		for k := b0; k < b1; k++ {
			i := c0 + k
			id := uint32(i)
			if t.lens[i] == 0 && *lastHead == i-1 &&
				t.kind[i-1]&(kindNext|kindMore) == 0 && t.kind[i-1] != t.kind[i] {
				// The second of a pair sharing a name: the head holds both.
				t.kind[i-1] |= t.kind[i] | kindNext
				continue
			}
			h := hashes[k]
			tag := t.tag(h)
			s := fastrange(h, size)
			var e []byte // rule i's name, read when a tag matches
			for {
				v := t.slot(s)
				if v == 0 {
					t.slots[s>>slotPageBits][s&slotPageMask] = tag | (id + 1)
					*lastHead = i
					break
				}
				if v&^t.idMask == tag {
					if e == nil {
						e = t.enc(id)
					}
					head := v&t.idMask - 1
					if bytes.Equal(t.ownEnc(head), e) {
						t.addDup(head, id)
						break
					}
				}
				s++
				if s == size {
					s = 0
				}
			}
		}
	}
	return touch
}

// buildBatch is how many rules insertRules loads the home slots of before
// it inserts them.
const buildBatch = nameBlock

func (t *domainTable) addDup(head, id uint32) {
	if t.dups == nil {
		t.dups = make(map[uint32][]dupRule)
	}
	list := t.dups[head]
	if list == nil {
		if t.kind[head]&kindNext != 0 {
			// A pair becomes a list: its second rule joins it.
			own := t.ownKind(head)
			list = append(list, dupRule{head, own}, dupRule{head + 1, t.kind[head+1]})
			t.kind[head] &^= kindNext
		} else {
			list = append(list, dupRule{head, t.kind[head]})
		}
	}
	list = append(list, dupRule{id, t.kind[id]})
	t.dups[head] = list
	t.kind[head] |= t.kind[id] | kindMore
}

var dot = []byte{'.'}

// tag returns the slot bits above the id that identify h.
func (t *domainTable) tag(h uint64) uint32 {
	return uint32(h) &^ t.idMask
}

// fastrange maps the high 32 bits of h onto [0, n) without a division.
func fastrange(h uint64, n int) int {
	return int((h >> 32) * uint64(n) >> 32)
}

// lookup finds the head rule for name, given its unmixed hash.
func (t *domainTable) lookup(h uint64, name string) (uint32, bool) {
	size := t.nslots
	if size == 0 {
		return 0, false
	}
	h = t.slotHash(h)
	return t.find(h, t.slot(fastrange(h, size)), name)
}

// nameMatch is the raw outcome of walking a query name's suffixes.
type nameMatch struct {
	block, allow       uint32 // head rule ids, valid when the bits are set
	blockBits          uint8  // kind bits that applied at the block level
	allowBits          uint8
	blockAt            int32 // where the block level's suffix starts in the name
	blockExact         bool  // the block applies at the query name itself
	allowExact         bool
	hasBlock, hasAllow bool
}

// maxLevels is how many suffixes of one name match checks in its fast path;
// deeper names take the plain path.
const maxLevels = 16

// match walks name's suffixes and records the most specific block and allow
// heads. name must be in canonical form (lower-case, no trailing dot). It
// does not allocate.
//
// It works in two passes so the table reads of the different suffixes are
// independent and the CPU can overlap their cache misses: the first pass
// hashes every suffix (right to left, each hash extends the previous) and
// loads its home slot; the second resolves each level. Suffixes with a label
// count that no rule has are skipped.
func (t *domainTable) match(name string) nameMatch {
	var m nameMatch
	size := t.nslots
	if size == 0 || len(name) == 0 {
		return m
	}
	var (
		hashes [maxLevels]uint64
		starts [maxLevels]int32
		first  [maxLevels]uint32
		n      int
	)
	h := uint64(fnvOffset64)
	labels := 0
	for i := len(name) - 1; ; i-- {
		if i < 0 || name[i] == '.' {
			labels++
			if t.levels&(1<<min(labels, 63)) != 0 {
				if n == maxLevels {
					return t.matchSlow(name)
				}
				mh := t.slotHash(h)
				hashes[n], starts[n] = mh, int32(i+1)
				first[n] = t.slot(fastrange(mh, size))
				n++
			}
			if i < 0 {
				break
			}
		}
		h = (h ^ uint64(name[i])) * fnvPrime64
	}
	for l := 0; l < n; l++ {
		if first[l] == 0 {
			continue // empty home slot: a miss without probing
		}
		id, ok := t.find(hashes[l], first[l], name[starts[l]:])
		if !ok {
			continue
		}
		m.note(t.kindAt(id), id, starts[l])
	}
	return m
}

// note records a table hit at one level of the walk (levels come from the
// top-level label down, so later hits are more specific).
func (m *nameMatch) note(k uint8, id uint32, start int32) {
	atName := start == 0
	var blk, alw uint8
	if atName {
		blk, alw = k&kindBlockAtName, k&kindAllowAtName
	} else {
		blk, alw = k&kindBlockBelow, k&kindAllowBelow
	}
	if blk != 0 {
		m.block, m.blockBits, m.blockExact, m.hasBlock, m.blockAt = id, blk, atName, true, start
	}
	if alw != 0 {
		m.allow, m.allowBits, m.allowExact, m.hasAllow = id, alw, atName, true
	}
}

// find resolves one suffix given its mixed hash and its home slot's value.
func (t *domainTable) find(h uint64, v uint32, suffix string) (uint32, bool) {
	size := t.nslots
	tag := t.tag(h)
	s := fastrange(h, size)
	for v != 0 {
		if v&^t.idMask == tag {
			id := v&t.idMask - 1
			if encodedEqual(t.ownEnc(id), suffix) { // a head has its own name
				return id, true
			}
		}
		s++
		if s == size {
			s = 0
		}
		v = t.slot(s)
	}
	return 0, false
}

// matchSlow is match without the level limit, for names of more than
// maxLevels labels.
func (t *domainTable) matchSlow(name string) nameMatch {
	var m nameMatch
	h := uint64(fnvOffset64)
	for i := len(name) - 1; ; i-- {
		if i < 0 || name[i] == '.' {
			if id, ok := t.lookup(h, name[i+1:]); ok {
				m.note(t.kindAt(id), id, int32(i+1))
			}
			if i < 0 {
				return m
			}
		}
		h = (h ^ uint64(name[i])) * fnvPrime64
	}
}

// heapBytes estimates the memory the table holds (for status and benchmarks).
func (t *domainTable) heapBytes() int {
	n := t.nameBytes() + 24*cap(t.pages) + cap(t.lens) + 4*cap(t.blockOff) + cap(t.kind) + 12*len(t.lineBase)/64 + t.kinds.heapBytes() + cap(t.lineDelta) + 4*cap(t.lineBase) + 8*len(t.lineBig) +
		8*cap(t.sectRuns) + 4*t.nslots + 24*cap(t.slots)
	for _, l := range t.dups {
		n += 48 + int(unsafe.Sizeof(dupRule{}))*cap(l)
	}
	return n
}

func (p *packedKinds) heapBytes() int {
	if p == nil {
		return 0
	}
	return 8*cap(p.odd) + 5*cap(p.ids)
}
