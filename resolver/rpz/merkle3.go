package rpz

import (
	"bytes"
	"encoding/binary"
	"hash"
	"math/bits"
	"slices"
)

// MERKLE3 (draft-aklpdw-dnsop-zonemd-incremental-00): a ZONEMD collation
// scheme for large, changing zones. Every RRset (its records sorted and
// serialized in RFC 4034 canonical form, concatenated, hashed once with
// the ZONEMD hash) is a leaf; the first two bytes of a leaf's hash pick
// its level-1 node (byte 0) and its level-2 node (byte 1). A level-2
// node's hash is the hash of its leaves' hashes, sorted as bytes and
// concatenated; a level-1 node's is the hash of its level-2 children's
// hashes in index order; the root's is the hash of the level-1 hashes in
// index order, and is the ZONEMD digest. Nodes without leaves are not
// hashed (and a zone without RRsets, which has no SOA, digests as the
// hash of nothing). The inclusion and exclusion rules are SIMPLE's
// (RFC 8976 section 3.3.1.1). A change re-hashes only the level-2 nodes
// its RRsets leave and join, their level-1 parents and the root: about
// 2 × 30 leaves at 2M RRsets, where SIMPLE hashes the whole zone.
//
// The draft's section "MERKLE3 Scheme Digest Calculation" says branch
// nodes hash their children "sorted numerically"; its "Computation"
// section, followed here, says level-1 and the root take their children
// in index order and level 2 its leaves sorted by hash.

// ZonemdSchemeMerkle3 is the MERKLE3 scheme's number: MERKLE3 until IANA
// assigns a value (the draft leaves it TBD; 240 is the first of RFC
// 8976's private-use scheme values, 240-254).
const ZonemdSchemeMerkle3 = 240

const (
	m3Level1 = 256
	m3Level2 = 256 * 256
)

// m3Node is the level-2 node of a leaf hash.
func m3Node(leaf []byte) uint16 { return binary.BigEndian.Uint16(leaf) }

// m3Tree holds a MERKLE3 tree's inner nodes: every level-2 and level-1
// hash (65,536 × 48 bytes for SHA-384), not the leaves. setNode replaces
// a level-2 node's leaves; root recomputes what changed above them.
type m3Tree struct {
	alg    uint8
	size   int      // hash length
	l2     []byte   // m3Level2 hashes, size bytes each
	l2Has  []uint64 // bit per level-2 node: it has leaves
	l1     []byte   // m3Level1 hashes
	l1Has  [m3Level1 / 64]uint64
	dirty1 [m3Level1 / 64]uint64 // level-1 nodes to recompute
	rootD  []byte
	h      hash.Hash
	buf    []byte
}

func newM3Tree(alg uint8) (*m3Tree, error) {
	h, err := zonemdHash(alg)
	if err != nil {
		return nil, err
	}
	n := h.Size()
	return &m3Tree{alg: alg, size: n, l2: make([]byte, m3Level2*n), l2Has: make([]uint64, m3Level2/64),
		l1: make([]byte, m3Level1*n), h: h}, nil
}

func bitSet(b []uint64, i int) bool { return b[i>>6]&(1<<(i&63)) != 0 }

func setBit(b []uint64, i int, on bool) {
	if on {
		b[i>>6] |= 1 << (i & 63)
	} else {
		b[i>>6] &^= 1 << (i & 63)
	}
}

// setNode sets level-2 node n from its leaves (each a hash whose first
// two bytes are n; sorted here, in place), none for an empty node.
func (t *m3Tree) setNode(n uint16, leaves [][]byte) {
	t.setNodeWith(t.h, n, leaves)
	t.mark(n)
}

// setNodeWith is setNode with a hash of its own, for goroutines that set
// distinct nodes at once (the level-1 marks are not theirs: see mark).
func (t *m3Tree) setNodeWith(h hash.Hash, n uint16, leaves [][]byte) {
	i := int(n)
	if len(leaves) == 0 {
		setBit(t.l2Has, i, false)
		return
	}
	slices.SortFunc(leaves, compareLeaves)
	h.Reset()
	for _, l := range leaves {
		h.Write(l)
	}
	h.Sum(t.l2[i*t.size : i*t.size : (i+1)*t.size])
	setBit(t.l2Has, i, true)
}

// compareLeaves orders leaf hashes as bytes.Compare does, their first
// eight bytes compared as one number (they nearly always decide).
func compareLeaves(a, b []byte) int {
	if len(a) >= 8 && len(b) >= 8 {
		if x, y := binary.BigEndian.Uint64(a), binary.BigEndian.Uint64(b); x != y {
			if x < y {
				return -1
			}
			return 1
		}
		return bytes.Compare(a[8:], b[8:])
	}
	return bytes.Compare(a, b)
}

// mark notes that level-2 node n changed (setNode marks it itself when
// called alone; setNodeWith callers mark after).
func (t *m3Tree) mark(n uint16) { setBit(t.dirty1[:], int(n>>8), true) }

// markAll notes that every node may have changed.
func (t *m3Tree) markAll() {
	for i := range t.dirty1 {
		t.dirty1[i] = ^uint64(0)
	}
}

// root recomputes the dirty level-1 nodes and the root and returns the
// digest (valid until the next call).
func (t *m3Tree) root() []byte {
	h := t.h
	changed := t.rootD == nil
	for i := 0; i < m3Level1; i++ {
		if !bitSet(t.dirty1[:], i) {
			continue
		}
		changed = true
		h.Reset()
		any := false
		base := i * 256
		for w := base / 64; w < (base+256)/64; w++ {
			for b := t.l2Has[w]; b != 0; b &= b - 1 {
				j := w*64 + bits.TrailingZeros64(b)
				h.Write(t.l2[j*t.size : (j+1)*t.size])
				any = true
			}
		}
		if any {
			h.Sum(t.l1[i*t.size : i*t.size : (i+1)*t.size])
		}
		setBit(t.l1Has[:], i, any)
	}
	t.dirty1 = [m3Level1 / 64]uint64{}
	if !changed {
		return t.rootD
	}
	h.Reset()
	for i := 0; i < m3Level1; i++ {
		if bitSet(t.l1Has[:], i) {
			h.Write(t.l1[i*t.size : (i+1)*t.size])
		}
	}
	t.rootD = h.Sum(t.rootD[:0])
	return t.rootD
}

// merkle3Root computes a MERKLE3 digest from every leaf hash of a zone
// (the reference: each level built whole).
func merkle3Root(alg uint8, leaves [][]byte) ([]byte, error) {
	t, err := newM3Tree(alg)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(leaves, bytes.Compare) // groups each node's leaves, sorted
	for i := 0; i < len(leaves); {
		n := m3Node(leaves[i])
		j := i + 1
		for j < len(leaves) && m3Node(leaves[j]) == n {
			j++
		}
		t.setNode(n, leaves[i:j])
		i = j
	}
	t.markAll()
	return slices.Clone(t.root()), nil
}

// m3ByNode sorts the leaves of a round (nodes[k] is leaf k's level-2
// node, each in [lo, hi)) by node, a counting sort: the leaves of node n
// are byNode[start[n-lo]:start[n-lo+1]], in their order in nodes.
func m3ByNode(nodes []uint16, lo, hi int) (start, byNode []int32) {
	start = make([]int32, hi-lo+1)
	for _, n := range nodes {
		start[int(n)-lo+1]++
	}
	for i := 1; i < len(start); i++ {
		start[i] += start[i-1]
	}
	pos := slices.Clone(start)
	byNode = make([]int32, len(nodes))
	for k, n := range nodes {
		byNode[pos[int(n)-lo]] = int32(k)
		pos[int(n)-lo]++
	}
	return start, byNode
}

// m3RoundStart readies a build round's leaf arena and node list for about
// a round's share of rrsets RRsets (and a little more): arena emptied,
// grown when it is smaller.
func m3RoundStart(arena []byte, rrsets, size int) ([]byte, []uint16) {
	want := rrsets/m3Rounds + rrsets/(4*m3Rounds) + 16
	if cap(arena) < want*size {
		arena = make([]byte, 0, want*size)
	}
	return arena[:0], make([]uint16, 0, want)
}

// m3KeptIn appends the leaves pass 1 kept (leaves, of[k] leaf k's node)
// that fall in the round's nodes [lo, hi) to arena and nodes.
func m3KeptIn(arena []byte, nodes []uint16, leaves []byte, of []uint16, lo, hi, size int) ([]byte, []uint16) {
	for k, n := range of {
		if int(n) >= lo && int(n) < hi {
			arena = append(arena, leaves[k*size:(k+1)*size]...)
			nodes = append(nodes, n)
		}
	}
	return arena, nodes
}
