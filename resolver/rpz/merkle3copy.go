package rpz

import (
	"bytes"
	"hash"
	"slices"
	"sync"
)

// m3Copy is a secondary's MERKLE3 state for its zone copy: the tree's
// inner nodes, the level-2 node of every record's RRset (2 bytes per
// record) and each level-2 node's records (4 bytes per record), not the
// leaves (48 bytes per RRset would be 96 MB at 2M RRsets). A change
// re-hashes the RRsets it touches, then every RRset of the level-2 nodes
// they leave and join (about 30 each at 2M RRsets), then the level-1
// nodes above them and the root.
type m3Copy struct {
	tree *m3Tree
	// nodeOf is, by record number, the level-2 node of the record's RRset
	// (for the live records numbered below synced).
	nodeOf []uint16
	// members lists, by level-2 node, the numbers of its RRsets' records
	// in canonical order; some may be stale (taken out, or moved to
	// another node since), dropped when the node is next computed.
	members [][]uint32
	apex    []m3Leaf // the apex RRsets' leaves (the SOA's among them) at the last digest
	synced  int      // records numbered below synced are in the state
	killed  []uint32 // records taken out since the last digest
}

type m3Leaf struct {
	node uint16
	hash []byte
}

// sameRRsetParts reports whether two records belong to one RRset: the
// same owner, type and class.
func sameRRsetParts(a, b recParts) bool {
	return sameOwner(a, b) && bytes.Equal(a.tail[:4], b.tail[:4])
}

// m3Hasher hashes RRsets of a copy (one per goroutine).
type m3Hasher struct {
	z     *zoneCopy
	h     hash.Hash
	buf   []byte
	arena []byte // leaf hashes of the node being computed
	parts []recParts
}

func (z *zoneCopy) newM3Hasher(alg uint8) *m3Hasher {
	h, _ := zonemdHash(alg) // alg was checked by newM3Tree
	return &m3Hasher{z: z, h: h}
}

// leaf returns the hash of an RRset's records (in canonical order),
// appended to the hasher's arena.
func (x *m3Hasher) leaf(recs []recParts) []byte {
	x.buf = x.buf[:0]
	for _, p := range recs {
		x.buf = x.z.appendWire(x.buf, p)
	}
	x.h.Reset()
	x.h.Write(x.buf)
	n := len(x.arena)
	x.arena = x.h.Sum(x.arena)
	return x.arena[n:len(x.arena):len(x.arena)]
}

// apexLeaves hashes the apex RRsets (the SOA's, from z.soa).
func (z *zoneCopy) apexLeaves(x *m3Hasher) ([]m3Leaf, error) {
	soa, err := z.encode(z.soa, nil)
	if err != nil {
		return nil, err
	}
	apex := z.apexParts(soa)
	var out []m3Leaf
	for i := 0; i < len(apex); {
		j := i + 1
		for j < len(apex) && sameRRsetParts(apex[i], apex[j]) {
			j++
		}
		l := bytes.Clone(x.leaf(apex[i:j]))
		out = append(out, m3Leaf{node: m3Node(l), hash: l})
		i = j
	}
	x.arena = x.arena[:0]
	return out, nil
}

// merkle3 returns the MERKLE3 digest of the copy with hash alg: from the
// state kept for it, brought up to date with the records added and taken
// out since the last digest, or built whole (after a full transfer, at
// start, after an undo).
func (z *zoneCopy) merkle3(alg uint8) ([]byte, error) {
	if z.m3 == nil || z.m3.tree.alg != alg {
		return z.buildMerkle3(alg)
	}
	return z.updateMerkle3()
}

// m3Batch is a run of whole RRsets in canonical order for a hashing
// goroutine: record numbers, and where each RRset starts.
type m3Batch struct {
	recs   []uint32
	starts []int32
	done   chan struct{}
	// The leaves of its RRsets in the nodes below the build's keepBelow,
	// kept from pass 1 for pass 2 (keptNode[k] is kept[k*size:]'s node).
	kept     []byte
	keptNode []uint16
}

const m3BatchRecords = 16384

// m3Rounds is how many rounds pass 2 of a build takes (a sixteenth of
// the nodes each), m3KeepBytes how much of pass 1's leaves a build keeps
// for it (the first rounds' leaves, which pass 2 then need not hash
// again): 24 MB, a quarter of the leaves at 2M RRsets.
const (
	m3Rounds    = 16
	m3KeepBytes = 24 << 20
)

// m3KeepBelow is the first node whose leaves a build of about rrsets
// RRsets does not keep from pass 1 (a round boundary), keeping at most
// keep bytes of them (m3KeepBytes when 0, none when negative: the tests
// use both ways of pass 2).
func m3KeepBelow(rrsets, size, keep int) int {
	switch {
	case keep == 0:
		keep = m3KeepBytes
	case keep < 0:
		return 0
	}
	perRound := max(1, rrsets*size/m3Rounds)
	return min(m3Rounds, keep/perRound) * (m3Level2 / m3Rounds)
}

// buildMerkle3 builds the state from scratch on two goroutines: the
// records are walked in canonical order (each RRset's records are then
// together) and every RRset hashed for its node; then the RRsets are
// hashed again, a sixteenth of the nodes at a time, for the nodes' hashes
// (keeping the 2M leaf hashes of a 1M-name zone between the two passes
// would take 96 MB; a round's take 6 MB).
func (z *zoneCopy) buildMerkle3(alg uint8) ([]byte, error) {
	tree, err := newM3Tree(alg)
	if err != nil {
		return nil, err
	}
	m := &m3Copy{tree: tree, nodeOf: make([]uint16, len(z.offs)), members: make([][]uint32, m3Level2)}
	keepBelow := m3KeepBelow(z.live, tree.size, z.m3Keep)
	const workers = 2
	work := make(chan *m3Batch, workers*2)
	ordered := make(chan *m3Batch, workers*4)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			x := z.newM3Hasher(alg)
			for b := range work {
				for k, s := range b.starts {
					e := len(b.recs)
					if k+1 < len(b.starts) {
						e = int(b.starts[k+1])
					}
					x.parts = x.parts[:0]
					for _, i := range b.recs[s:e] {
						x.parts = append(x.parts, z.at(int(i)))
					}
					l := x.leaf(x.parts)
					n := m3Node(l)
					if int(n) < keepBelow {
						b.kept = append(b.kept, l...)
						b.keptNode = append(b.keptNode, n)
					}
					x.arena = x.arena[:0]
					for _, i := range b.recs[s:e] {
						m.nodeOf[i] = n
					}
				}
				close(b.done)
			}
		}()
	}
	appended := make(chan struct{})
	var all []*m3Batch
	go func() {
		defer close(appended)
		for b := range ordered {
			<-b.done
			for _, i := range b.recs {
				n := m.nodeOf[i]
				m.members[n] = append(m.members[n], i)
			}
			all = append(all, b)
		}
	}()
	cur := &m3Batch{done: make(chan struct{})}
	send := func() {
		work <- cur
		ordered <- cur
		cur = &m3Batch{done: make(chan struct{})}
	}
	var prev recParts
	have := false
	z.eachCanonical(func(i int, p recParts) {
		if !have || !sameRRsetParts(prev, p) {
			if len(cur.recs) >= m3BatchRecords {
				send()
			}
			cur.starts = append(cur.starts, int32(len(cur.recs)))
		}
		cur.recs = append(cur.recs, uint32(i))
		prev, have = p, true
	})
	send()
	close(work)
	close(ordered)
	<-appended
	wg.Wait()
	x := z.newM3Hasher(alg)
	if m.apex, err = z.apexLeaves(x); err != nil {
		return nil, err
	}
	// Pass 2, in rounds of a sixteenth of the nodes (each round's leaves
	// take 6 MB at 2M RRsets), the rounds shared by two goroutines: the
	// RRsets are read again in canonical order (the order the copy keeps
	// them in memory, mostly), not node by node.
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			x := z.newM3Hasher(alg)
			for r := w; r < m3Rounds; r += workers {
				m.buildRound(x, all, r*m3Level2/m3Rounds, (r+1)*m3Level2/m3Rounds, keepBelow)
			}
		}(w)
	}
	wg.Wait()
	tree.markAll()
	m.synced = len(z.offs)
	z.m3 = m
	return bytes.Clone(tree.root()), nil
}

// buildRound computes level-2 nodes [lo, hi) from the RRsets of all (in
// canonical order, nodeOf set).
func (m *m3Copy) buildRound(x *m3Hasher, all []*m3Batch, lo, hi, keepBelow int) {
	z := x.z
	size := m.tree.size
	var nodes []uint16
	x.arena, nodes = m3RoundStart(x.arena, z.live, size)
	for _, b := range all {
		if hi <= keepBelow { // pass 1 kept these leaves
			x.arena, nodes = m3KeptIn(x.arena, nodes, b.kept, b.keptNode, lo, hi, size)
			continue
		}
		for k, s := range b.starts {
			n := m.nodeOf[b.recs[s]]
			if int(n) < lo || int(n) >= hi {
				continue
			}
			e := len(b.recs)
			if k+1 < len(b.starts) {
				e = int(b.starts[k+1])
			}
			x.parts = x.parts[:0]
			for _, i := range b.recs[s:e] {
				x.parts = append(x.parts, z.at(int(i)))
			}
			x.leaf(x.parts)
			nodes = append(nodes, n)
		}
	}
	// The leaves by node (a counting sort).
	start, byNode := m3ByNode(nodes, lo, hi)
	var leaves [][]byte
	for n := lo; n < hi; n++ {
		leaves = leaves[:0]
		for _, k := range byNode[start[n-lo]:start[n-lo+1]] {
			leaves = append(leaves, x.arena[int(k)*size:int(k+1)*size])
		}
		for _, l := range m.apex {
			if int(l.node) == n {
				leaves = append(leaves, l.hash)
			}
		}
		m.tree.setNodeWith(x.h, uint16(n), leaves)
	}
}

// nodeLeaves returns the leaf hashes of level-2 node n (valid until the
// hasher's next use): its members' RRsets and the apex leaves in it.
// It drops the members that are stale, and with resort sorts them first
// (members added by changes come after the others).
func (m *m3Copy) nodeLeaves(x *m3Hasher, n uint16, resort bool) [][]byte {
	z := x.z
	mem := m.members[n]
	if resort {
		slices.Sort(mem)
		mem = slices.Compact(mem)
	}
	keep := mem[:0]
	for _, i := range mem {
		if int(i) < len(m.nodeOf) && m.nodeOf[i] == n && !z.isDead(int(i)) {
			keep = append(keep, i)
		}
	}
	if resort {
		slices.SortFunc(keep, func(a, b uint32) int { return z.compareAt(int(a), int(b)) })
	}
	m.members[n] = keep
	x.arena = x.arena[:0]
	var leaves [][]byte
	for k := 0; k < len(keep); {
		x.parts = append(x.parts[:0], z.at(int(keep[k])))
		j := k + 1
		for ; j < len(keep); j++ {
			p := z.at(int(keep[j]))
			if !sameRRsetParts(x.parts[0], p) {
				break
			}
			x.parts = append(x.parts, p)
		}
		leaves = append(leaves, x.leaf(x.parts))
		k = j
	}
	for _, l := range m.apex {
		if l.node == n {
			leaves = append(leaves, l.hash)
		}
	}
	return leaves
}

// updateMerkle3 brings the state up to date with the records added (those
// numbered from synced) and taken out (killed) since the last digest.
func (z *zoneCopy) updateMerkle3() ([]byte, error) {
	m := z.m3
	if n := len(z.offs) - len(m.nodeOf); n > 0 {
		m.nodeOf = append(m.nodeOf, make([]uint16, n)...)
	}
	dirty := map[uint16]bool{}
	touched := map[string]recParts{}
	var key []byte
	touch := func(p recParts) {
		if p.isApex() {
			return
		}
		key = append(p.appendOwner(append(key[:0], byte(boolInt(p.wild)))), p.tail[:4]...)
		if _, ok := touched[string(key)]; !ok {
			touched[string(key)] = p
		}
	}
	for _, i := range m.killed {
		if int(i) < m.synced {
			dirty[m.nodeOf[i]] = true
		}
		touch(z.at(int(i)))
	}
	for i := m.synced; i < len(z.offs); i++ {
		if z.offs[i] != placeholderOff {
			touch(z.at(i))
		}
	}
	x := z.newM3Hasher(m.tree.alg)
	var recs []int
	for _, p := range touched {
		recs = recs[:0]
		z.group(p.owner, func(i int, q recParts) bool {
			if sameRRsetParts(p, q) {
				recs = append(recs, i)
			}
			return true
		})
		for _, i := range recs {
			if i < m.synced {
				dirty[m.nodeOf[i]] = true // where it was
			}
		}
		if len(recs) == 0 {
			continue
		}
		slices.SortFunc(recs, z.compareAt)
		x.parts = x.parts[:0]
		for _, i := range recs {
			x.parts = append(x.parts, z.at(i))
		}
		n := m3Node(x.leaf(x.parts))
		x.arena = x.arena[:0]
		for _, i := range recs {
			m.nodeOf[i] = n
			m.members[n] = append(m.members[n], uint32(i))
		}
		dirty[n] = true
	}
	apex, err := z.apexLeaves(x)
	if err != nil {
		return nil, err
	}
	if !slices.EqualFunc(apex, m.apex, func(a, b m3Leaf) bool { return bytes.Equal(a.hash, b.hash) }) {
		for _, l := range m.apex {
			dirty[l.node] = true
		}
		for _, l := range apex {
			dirty[l.node] = true
		}
	}
	m.apex = apex
	for n := range dirty {
		m.tree.setNode(n, m.nodeLeaves(x, n, true))
	}
	m.killed = m.killed[:0]
	m.synced = len(z.offs)
	return bytes.Clone(m.tree.root()), nil
}
