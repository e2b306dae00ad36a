package rpz

import (
	"bytes"
	"encoding/binary"
	"slices"
	"sort"
	"strings"
	"sync/atomic"

	"github.com/miekg/dns"
)

// The exported zone in compact form. Every owner of the zone is an entry:
// its name as a sort key (the labels right to left, each ended by a zero
// byte, which is RFC 4034 canonical order when compared as bytes) and a
// code naming its records in a table of distinct record sets (most of a
// big zone shares a handful: "CNAME .", "CNAME rpz-passthru.", ...).
// Entries are front-coded in blocks of about blockTarget bytes; a version
// of the zone is the list of its blocks, and a change rewrites only the
// blocks it touches, so versions share every other block. Names that hold
// a rule but no record (a block an exception covers, a monitor-only rule)
// stay in the zone with code 0, so that a change of an exception can find
// the names under it.

const blockTarget = 4096

// zblock is an immutable run of entries in key order.
type zblock struct {
	first string // key of the first entry
	data  []byte // entries: uvarint shared prefix, uvarint suffix length, suffix, uvarint code
	n     int
	// canonical is the RFC 4034 canonical wire of the records at the
	// block's owners, in order, once a ZONEMD needed it (blockCanonical).
	canonical atomic.Pointer[[]byte]
	// m3 is the MERKLE3 level-2 node of each RRset at the block's owners
	// (entry order, then type order), once a MERKLE3 ZONEMD needed it.
	m3 atomic.Pointer[[]uint16]
}

// blockIter walks a block's entries.
type blockIter struct {
	b    *zblock
	off  int
	key  []byte
	code uint32
}

func (it *blockIter) next() bool {
	if it.b == nil || it.off >= len(it.b.data) {
		return false
	}
	d := it.b.data
	shared, n := binary.Uvarint(d[it.off:])
	it.off += n
	sl, n := binary.Uvarint(d[it.off:])
	it.off += n
	it.key = append(it.key[:shared], d[it.off:it.off+int(sl)]...)
	it.off += int(sl)
	c, n := binary.Uvarint(d[it.off:])
	it.off += n
	it.code = uint32(c)
	return true
}

func (it *blockIter) done() bool { return it.b == nil || it.off >= len(it.b.data) }

// blockWriter front-codes entries (in key order) into blocks.
type blockWriter struct {
	out   []*zblock
	cur   []byte
	n     int
	prev  []byte
	first string
}

func (w *blockWriter) add(key []byte, code uint32) {
	shared := 0
	if w.n == 0 {
		w.first = string(key)
	} else {
		for shared < len(key) && shared < len(w.prev) && key[shared] == w.prev[shared] {
			shared++
		}
	}
	w.cur = binary.AppendUvarint(w.cur, uint64(shared))
	w.cur = binary.AppendUvarint(w.cur, uint64(len(key)-shared))
	w.cur = append(w.cur, key[shared:]...)
	w.cur = binary.AppendUvarint(w.cur, uint64(code))
	w.prev = append(w.prev[:0], key...)
	w.n++
	if len(w.cur) >= blockTarget {
		w.cut()
	}
}

func (w *blockWriter) cut() {
	if w.n == 0 {
		return
	}
	w.out = append(w.out, &zblock{first: w.first, data: bytes.Clone(w.cur), n: w.n})
	w.cur, w.n = w.cur[:0], 0
}

// ipEntry is an owner of the rpz-ip subtree (the few address rules are
// kept apart from the domain entries and recomputed whole).
type ipEntry struct {
	key  string
	code uint32
}

// czone is one immutable version of the zone's owners (the apex records
// but the SOA and NS: txt).
type czone struct {
	blocks  []*zblock
	ips     []ipEntry // sorted by key, code != 0
	txt     []record  // apex TXT records, sorted
	sets    []*rset   // the code table as of this version
	records int       // records at the owners (not the apex)
}

func (z *czone) set(code uint32) *rset { return z.sets[code] }

// blockFor returns the index of the block whose range holds key (-1 when
// key is before every block).
func blockFor(blocks []*zblock, key []byte) int {
	return sort.Search(len(blocks), func(i int) bool { return blocks[i].first > string(key) }) - 1
}

// lookup returns key's code in the domain entries.
func (z *czone) lookup(key []byte) (uint32, bool) {
	i := blockFor(z.blocks, key)
	if i < 0 {
		return 0, false
	}
	it := blockIter{b: z.blocks[i]}
	for it.next() {
		switch c := bytes.Compare(it.key, key); {
		case c == 0:
			return it.code, true
		case c > 0:
			return 0, false
		}
	}
	return 0, false
}

// ownerCode returns the code of the records at key (domain or address
// owner), 0 when there are none.
func (z *czone) ownerCode(key []byte) uint32 {
	if c, ok := z.lookup(key); ok && c != 0 {
		return c
	}
	i, ok := slices.BinarySearchFunc(z.ips, key, func(e ipEntry, k []byte) int { return strings.Compare(e.key, string(k)) })
	if ok {
		return z.ips[i].code
	}
	return 0
}

// below calls fn with every domain entry strictly below key (its
// subtree), in order.
func (z *czone) below(key []byte, fn func(k []byte, code uint32)) {
	prefix := append(bytes.Clone(key), 0)
	i := max(blockFor(z.blocks, prefix), 0)
	for ; i < len(z.blocks); i++ {
		it := blockIter{b: z.blocks[i]}
		for it.next() {
			if bytes.HasPrefix(it.key, prefix) {
				fn(it.key, it.code)
			} else if bytes.Compare(it.key, prefix) > 0 {
				return
			}
		}
	}
}

// eachOwner calls fn for every owner with records (domain and address
// entries merged), in canonical order, until fn returns false. The key
// is only valid during the call.
func (z *czone) eachOwner(fn func(key []byte, code uint32) bool) {
	ips := z.ips
	for _, b := range z.blocks {
		it := blockIter{b: b}
		for it.next() {
			for len(ips) > 0 && ips[0].key < string(it.key) {
				if !fn([]byte(ips[0].key), ips[0].code) {
					return
				}
				ips = ips[1:]
			}
			if it.code != 0 && !fn(it.key, it.code) {
				return
			}
		}
	}
	for _, e := range ips {
		if !fn([]byte(e.key), e.code) {
			return
		}
	}
}

// edit is one change to the domain entries: key's code, or its removal.
type edit struct {
	key  string
	code uint32
	del  bool
}

// editBlocks applies edits (sorted by key, one per key) to blocks and
// returns the new block list; blocks no edit falls in are shared.
func editBlocks(blocks []*zblock, edits []edit) []*zblock {
	if len(edits) == 0 {
		return blocks
	}
	if len(blocks) == 0 {
		var w blockWriter
		for _, e := range edits {
			if !e.del {
				w.add([]byte(e.key), e.code)
			}
		}
		w.cut()
		return w.out
	}
	out := make([]*zblock, 0, len(blocks)+len(edits)/16+1)
	ci := 0
	for bi, b := range blocks {
		hi := len(edits)
		if bi+1 < len(blocks) {
			next := blocks[bi+1].first
			hi = ci + sort.Search(len(edits)-ci, func(j int) bool { return edits[ci+j].key >= next })
		}
		if hi == ci {
			out = append(out, b)
			continue
		}
		var w blockWriter
		it := blockIter{b: b}
		have := it.next()
		for j := ci; have || j < hi; {
			var c int
			switch {
			case j >= hi:
				c = -1
			case !have:
				c = 1
			default:
				c = strings.Compare(string(it.key), edits[j].key)
			}
			switch {
			case c < 0:
				w.add(it.key, it.code)
				have = it.next()
			default:
				if !edits[j].del {
					w.add([]byte(edits[j].key), edits[j].code)
				}
				if c == 0 {
					have = it.next()
				}
				j++
			}
		}
		w.cut()
		out = append(out, w.out...)
		ci = hi
	}
	return out
}

// zcursor walks a block list for diffBlocks.
type zcursor struct {
	blocks  []*zblock
	bi      int
	it      blockIter
	loaded  bool // it.key/it.code hold the current entry
	started bool // an entry of blocks[bi] was read
}

// peek loads the current entry; false at the end.
func (c *zcursor) peek() bool {
	for !c.loaded {
		if c.bi >= len(c.blocks) {
			return false
		}
		if c.it.b != c.blocks[c.bi] {
			c.it = blockIter{b: c.blocks[c.bi], key: c.it.key[:0]}
		}
		if c.it.next() {
			c.loaded, c.started = true, true
			break
		}
		c.bi++
		c.started = false
	}
	return true
}

func (c *zcursor) advance() {
	c.loaded = false
	if c.it.done() {
		c.bi++
		c.started = false
		c.it.b = nil
	}
}

// diffBlocks calls fn for every key whose code differs between a and b
// (0 for a key one side lacks), skipping the blocks both share.
func diffBlocks(a, b []*zblock, fn func(key []byte, ca, cb uint32)) {
	x, y := &zcursor{blocks: a}, &zcursor{blocks: b}
	for {
		for !x.started && !y.started && !x.loaded && !y.loaded && x.bi < len(a) && y.bi < len(b) && a[x.bi] == b[y.bi] {
			x.bi++
			y.bi++
		}
		okx, oky := x.peek(), y.peek()
		switch {
		case !okx && !oky:
			return
		case !oky || (okx && bytes.Compare(x.it.key, y.it.key) < 0):
			fn(x.it.key, x.it.code, 0)
			x.advance()
		case !okx || bytes.Compare(x.it.key, y.it.key) > 0:
			fn(y.it.key, 0, y.it.code)
			y.advance()
		default:
			fn(x.it.key, x.it.code, y.it.code)
			x.advance()
			y.advance()
		}
	}
}

// appendKey appends the sort key of a relative owner name ("www.example",
// "*.example", "" for the apex).
func appendKey(dst []byte, name string) []byte {
	first := true
	for end := len(name); end > 0; {
		i := strings.LastIndexByte(name[:end], '.')
		if !first {
			dst = append(dst, 0)
		}
		first = false
		dst = append(dst, name[i+1:end]...)
		end = i
	}
	return dst
}

// appendOwner appends the relative owner name of a sort key.
func appendOwner(dst []byte, key []byte) []byte {
	for end := len(key); end > 0; {
		i := bytes.LastIndexByte(key[:end], 0)
		dst = append(dst, key[i+1:end]...)
		if i >= 0 {
			dst = append(dst, '.')
		}
		end = i
	}
	return dst
}

// appendOwnerWire appends the labels of a sort key in wire form (without
// the apex or the root).
func appendOwnerWire(dst []byte, key []byte) []byte {
	for end := len(key); end > 0; {
		i := bytes.LastIndexByte(key[:end], 0)
		dst = append(dst, byte(end-i-1))
		dst = append(dst, key[i+1:end]...)
		end = i
	}
	return dst
}

// rset is one distinct record set of the zone (owner left out).
type rset struct {
	recs  []record // canonical order, no duplicates
	tails [][]byte // canonical wire of each record after the owner: type, class, TTL, RDLENGTH, RDATA
	rrs   []dns.RR // each record with an empty owner, copied for transfers and answers
	// block and why: the set is a block's policy, and the section's
	// platform, authority, order and contact (uniformWhy).
	block bool
	why   [4]string
}

func (s *rset) sameRecords(o *rset) bool {
	if s == o {
		return true
	}
	if len(s.tails) != len(o.tails) {
		return false
	}
	for i := range s.tails {
		if !bytes.Equal(s.tails[i], o.tails[i]) {
			return false
		}
	}
	return true
}

// codeTable interns record sets. It only grows (versions in service read
// their codes while the next is built); a full rebuild starts a new one.
type codeTable struct {
	sets  []*rset // sets[0] is the empty set
	byKey map[string]uint32
}

func newCodeTable() *codeTable {
	return &codeTable{sets: []*rset{{}}, byKey: map[string]uint32{}}
}

// intern returns the code of recs (owner ignored; a zero TTL becomes ttl).
func (t *codeTable) intern(recs []record, ttl uint32, block bool, why [4]string) uint32 {
	if len(recs) == 0 {
		return 0
	}
	var kb strings.Builder
	if block {
		kb.WriteByte('b')
		for _, w := range why {
			kb.WriteString(w)
			kb.WriteByte(0)
		}
	}
	for _, r := range recs {
		t := r.ttl
		if t == 0 {
			t = ttl
		}
		kb.WriteString(r.rdata)
		kb.Write([]byte{0, byte(r.rtype >> 8), byte(r.rtype), byte(t >> 24), byte(t >> 16), byte(t >> 8), byte(t), 0})
	}
	key := kb.String()
	if c, ok := t.byKey[key]; ok {
		return c
	}
	s := &rset{block: block, why: why}
	type item struct {
		r    record
		tail []byte
		rr   dns.RR
	}
	var items []item
	buf := make([]byte, 0, 512)
	for _, r := range recs {
		r.owner = ""
		if r.ttl == 0 {
			r.ttl = ttl
		}
		rr, err := r.rr(".")
		if err != nil {
			continue
		}
		c := lowerNames(dns.Copy(rr))
		n, err := dns.PackRR(c, buf[:cap(buf)], 0, nil, false)
		if err != nil {
			continue
		}
		rr.Header().Name = ""
		items = append(items, item{r: r, tail: bytes.Clone(buf[1:n]), rr: rr})
	}
	slices.SortFunc(items, func(a, b item) int {
		if c := int(a.r.rtype) - int(b.r.rtype); c != 0 {
			return c
		}
		if c := bytes.Compare(a.tail[10:], b.tail[10:]); c != 0 {
			return c
		}
		return bytes.Compare(a.tail, b.tail)
	})
	items = slices.CompactFunc(items, func(a, b item) bool { return bytes.Equal(a.tail, b.tail) })
	if len(items) == 0 {
		t.byKey[key] = 0
		return 0
	}
	for _, it := range items {
		s.recs = append(s.recs, it.r)
		s.tails = append(s.tails, it.tail)
		s.rrs = append(s.rrs, it.rr)
	}
	t.sets = append(t.sets, s)
	c := uint32(len(t.sets) - 1)
	t.byKey[key] = c
	return c
}
