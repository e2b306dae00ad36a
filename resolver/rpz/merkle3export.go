package rpz

import (
	"bytes"
	"fmt"
	"hash"
	"slices"
	"strings"
	"sync"

	"github.com/miekg/dns"
)

// m3Export is the exporter's MERKLE3 state (SHA-384) for the version last
// published: the tree's inner nodes, the level-2 node of every RRset kept
// with its block (2 bytes per RRset, zblock.m3; blocks are shared between
// versions), and for each level-2 node the blocks holding its RRsets.
// A new version costs the blocks it rewrote: their RRsets are hashed
// (those of the blocks it dropped too), the level-2 nodes whose leaves
// differ are hashed again from their blocks, then the level-1 nodes above
// them and the root. The apex (SOA, NS, TXT) and the address owners are
// hashed whole per version (the SOA changes every time; the address rules
// are few and recomputed whole by the zone itself).
type m3Export struct {
	tree     *m3Tree
	zone     *czone      // the version it covers
	members  [][]*zblock // by level-2 node: the blocks with an RRset in it, each once
	apex     []m3Leaf
	ipLeaves []m3Leaf
}

// m3ExportHasher hashes the exported zone's RRsets (one per goroutine).
type m3ExportHasher struct {
	e          *Exporter
	h          hash.Hash
	buf, owner []byte
	arena      []byte
}

func (e *Exporter) newM3ExportHasher() *m3ExportHasher {
	h, _ := zonemdHash(ZonemdHashSHA384)
	return &m3ExportHasher{e: e, h: h}
}

// leaf returns the hash of the RRset of tails (one type, canonical order)
// at owner (full wire form), appended to the arena.
func (x *m3ExportHasher) leaf(owner []byte, tails [][]byte) []byte {
	x.buf = x.buf[:0]
	for _, t := range tails {
		x.buf = append(append(x.buf, owner...), t...)
	}
	x.h.Reset()
	x.h.Write(x.buf)
	n := len(x.arena)
	x.arena = x.h.Sum(x.arena)
	return x.arena[n:len(x.arena):len(x.arena)]
}

// rrsets calls fn with each RRset of set (runs of one type in its tails).
func rrsets(set *rset, fn func(tails [][]byte)) {
	t := set.tails
	for i := 0; i < len(t); {
		j := i + 1
		for j < len(t) && bytes.Equal(t[i][:2], t[j][:2]) {
			j++
		}
		fn(t[i:j])
		i = j
	}
}

// ownerLeaves calls fn with the leaf of each RRset at the owner of key.
func (x *m3ExportHasher) ownerLeaves(key []byte, set *rset, fn func(leaf []byte)) {
	x.owner = append(appendOwnerWire(x.owner[:0], key), x.e.wire...)
	rrsets(set, func(tails [][]byte) { fn(x.leaf(x.owner, tails)) })
}

// blockNodes returns the level-2 node of each RRset of b (in entry order,
// then type order), hashing them on first use.
func (x *m3ExportHasher) blockNodes(z *czone, b *zblock) []uint16 {
	return x.blockNodesKeep(z, b, nil)
}

// blockNodesKeep is blockNodes; keep, if not nil, is given the leaves it
// hashes (valid during the call).
func (x *m3ExportHasher) blockNodesKeep(z *czone, b *zblock, keep func(n uint16, leaf []byte)) []uint16 {
	if p := b.m3.Load(); p != nil {
		return *p
	}
	var nodes []uint16
	n0 := len(x.arena)
	it := blockIter{b: b}
	for it.next() {
		if it.code != 0 {
			x.ownerLeaves(it.key, z.sets[it.code], func(l []byte) {
				nodes = append(nodes, m3Node(l))
				if keep != nil {
					keep(m3Node(l), l)
				}
			})
			x.arena = x.arena[:n0]
		}
	}
	nodes = slices.Clip(nodes)
	b.m3.Store(&nodes)
	return nodes
}

// blockLeaves calls fn with every RRset leaf of b whose node is in
// [lo, hi) (all: 0, m3Level2).
func (x *m3ExportHasher) blockLeaves(z *czone, b *zblock, lo, hi int, fn func(n uint16, leaf []byte)) {
	nodes := x.blockNodes(z, b)
	k := 0
	it := blockIter{b: b}
	for it.next() {
		if it.code == 0 {
			continue
		}
		set := z.sets[it.code]
		rrsets(set, func(tails [][]byte) {
			if n := nodes[k]; int(n) >= lo && int(n) < hi {
				x.owner = append(appendOwnerWire(x.owner[:0], it.key), x.e.wire...)
				fn(n, x.leaf(x.owner, tails))
			}
			k++
		})
	}
}

// apexLeaves hashes the apex RRsets of a version: SOA, NS and TXT.
func (e *Exporter) apexLeaves(x *m3ExportHasher, z *czone, serial uint32) ([]m3Leaf, error) {
	rrs := []dns.RR{e.ns(), e.soa(serial)}
	for _, r := range z.txt {
		rr, err := r.rr(e.apex)
		if err != nil {
			return nil, err
		}
		rrs = append(rrs, rr)
	}
	var wires [][]byte
	for _, rr := range rrs {
		rr = lowerNames(dns.Copy(rr))
		buf := make([]byte, dns.Len(rr)+16)
		n, err := dns.PackRR(rr, buf, 0, nil, false)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", rr.Header().Name, err)
		}
		wires = append(wires, buf[len(e.wire):n])
	}
	slices.SortFunc(wires, func(a, b []byte) int {
		if c := bytes.Compare(a[:2], b[:2]); c != 0 {
			return c
		}
		return bytes.Compare(a[10:], b[10:])
	})
	wires = slices.CompactFunc(wires, bytes.Equal)
	var out []m3Leaf
	for i := 0; i < len(wires); {
		j := i + 1
		for j < len(wires) && bytes.Equal(wires[i][:2], wires[j][:2]) {
			j++
		}
		l := bytes.Clone(x.leaf(e.wire, wires[i:j]))
		out = append(out, m3Leaf{node: m3Node(l), hash: l})
		i = j
	}
	x.arena = x.arena[:0]
	return out, nil
}

// ipLeaves hashes the RRsets of the address owners.
func (x *m3ExportHasher) ipLeaves(z *czone) []m3Leaf {
	var out []m3Leaf
	for _, ip := range z.ips {
		x.ownerLeaves([]byte(ip.key), z.sets[ip.code], func(l []byte) {
			out = append(out, m3Leaf{node: m3Node(l), hash: bytes.Clone(l)})
		})
		x.arena = x.arena[:0]
	}
	return out
}

// ParseZonemdSchemes reads --rpz-export-zonemd: a list of schemes,
// "simple", "merkle3" or "simple,merkle3" (ExportConfig.ZonemdSchemes);
// "true" or "" for DefaultExportZonemd (nil); "false" or "none" for no
// ZONEMD at all (none).
func ParseZonemdSchemes(s string) (schemes []uint8, none bool, err error) {
	switch v := strings.ToLower(strings.TrimSpace(s)); v {
	case "", "true":
		return nil, false, nil
	case "false", "none":
		return nil, true, nil
	}
	for _, f := range strings.Split(s, ",") {
		var sc uint8
		switch strings.ToLower(strings.TrimSpace(f)) {
		case "simple":
			sc = ZonemdSchemeSimple
		case "merkle3":
			sc = ZonemdSchemeMerkle3
		default:
			return nil, false, fmt.Errorf("unknown ZONEMD scheme %q: want simple, merkle3, simple,merkle3, or false", strings.TrimSpace(f))
		}
		if !slices.Contains(schemes, sc) {
			schemes = append(schemes, sc)
		}
	}
	return schemes, false, nil
}

// merkle3Of returns the MERKLE3 (SHA-384) digest of version z with the
// given serial, bringing the state from the version before (nil: built
// whole).
func (e *Exporter) merkle3Of(z *czone, serial uint32) ([]byte, error) {
	m := e.m3
	x := e.newM3ExportHasher()
	if m == nil || len(z.sets) == 0 || len(m.zone.sets) == 0 || z.sets[0] != m.zone.sets[0] {
		// First version, or a rebuild (a new code table, new blocks).
		return e.buildMerkle3(z, serial)
	}
	// The blocks dropped and added (both lists are in key order; shared
	// blocks are the same pointers).
	var gone, added []*zblock
	a, b := m.zone.blocks, z.blocks
	for i, j := 0, 0; i < len(a) || j < len(b); {
		switch {
		case i < len(a) && j < len(b) && a[i] == b[j]:
			i, j = i+1, j+1
		case j >= len(b) || (i < len(a) && a[i].first < b[j].first):
			gone = append(gone, a[i])
			i++
		case i >= len(a) || a[i].first > b[j].first:
			added = append(added, b[j])
			j++
		default: // the same first key, another block
			gone, added = append(gone, a[i]), append(added, b[j])
			i, j = i+1, j+1
		}
	}
	if len(gone) > len(a)/2+16 {
		return e.buildMerkle3(z, serial)
	}
	// The leaves that come and go; nodes whose leaves differ are dirty.
	count := map[string]int{}
	nodeOf := map[string]uint16{}
	note := func(n uint16, l []byte, d int) {
		count[string(l)] += d
		nodeOf[string(l)] = n
	}
	for _, blk := range gone {
		seen := map[uint16]bool{}
		x.blockLeaves(m.zone, blk, 0, m3Level2, func(n uint16, l []byte) {
			note(n, l, -1)
			if !seen[n] {
				seen[n] = true
				m.members[n] = slices.DeleteFunc(m.members[n], func(o *zblock) bool { return o == blk })
			}
		})
		x.arena = x.arena[:0]
	}
	for _, blk := range added {
		seen := map[uint16]bool{}
		x.blockLeaves(z, blk, 0, m3Level2, func(n uint16, l []byte) {
			note(n, l, 1)
			if !seen[n] {
				seen[n] = true
				m.members[n] = append(m.members[n], blk)
			}
		})
		x.arena = x.arena[:0]
	}
	dirty := map[uint16]bool{}
	for l, c := range count {
		if c != 0 {
			dirty[nodeOf[l]] = true
		}
	}
	apex, err := e.apexLeaves(x, z, serial)
	if err != nil {
		return nil, err
	}
	ips := m.ipLeaves
	if !slices.Equal(z.ips, m.zone.ips) {
		ips = x.ipLeaves(z)
	}
	for _, pair := range [][2][]m3Leaf{{m.apex, apex}, {m.ipLeaves, ips}} {
		if !slices.EqualFunc(pair[0], pair[1], func(a, b m3Leaf) bool { return bytes.Equal(a.hash, b.hash) }) {
			for _, side := range pair {
				for _, l := range side {
					dirty[l.node] = true
				}
			}
		}
	}
	m.apex, m.ipLeaves, m.zone = apex, ips, z
	var leaves [][]byte
	for n := range dirty {
		leaves = leaves[:0]
		x.arena = x.arena[:0]
		for _, blk := range m.members[n] {
			x.blockLeaves(z, blk, int(n), int(n)+1, func(_ uint16, l []byte) { leaves = append(leaves, l) })
		}
		leaves = m.extraLeaves(leaves, int(n))
		m.tree.setNode(n, leaves)
	}
	return bytes.Clone(m.tree.root()), nil
}

// extraLeaves appends the apex and address leaves of node n.
func (m *m3Export) extraLeaves(leaves [][]byte, n int) [][]byte {
	for _, set := range [][]m3Leaf{m.apex, m.ipLeaves} {
		for _, l := range set {
			if int(l.node) == n {
				leaves = append(leaves, l.hash)
			}
		}
	}
	return leaves
}

// buildMerkle3 builds the state for version z from scratch on two
// goroutines: every block's RRsets hashed for their nodes, then hashed
// again a sixteenth of the nodes at a time for the nodes' hashes (as the
// secondary does, so that the leaves are never all held).
func (e *Exporter) buildMerkle3(z *czone, serial uint32) ([]byte, error) {
	e.m3 = nil
	e.m3Builds++
	tree, err := newM3Tree(ZonemdHashSHA384)
	if err != nil {
		return nil, err
	}
	m := &m3Export{tree: tree, zone: z, members: make([][]*zblock, m3Level2)}
	x := e.newM3ExportHasher()
	if m.apex, err = e.apexLeaves(x, z, serial); err != nil {
		return nil, err
	}
	m.ipLeaves = x.ipLeaves(z)
	const workers = 2
	var wg sync.WaitGroup
	// Pass 1 keeps the leaves of the first nodes for pass 2 (as the
	// secondary's build does).
	keepBelow := m3KeepBelow(z.records, tree.size, e.m3Keep)
	kept := make([]m3Kept, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			x := e.newM3ExportHasher()
			k := &kept[w]
			for i := w; i < len(z.blocks); i += workers {
				x.blockNodesKeep(z, z.blocks[i], func(n uint16, l []byte) {
					if int(n) < keepBelow {
						k.leaves, k.nodes = append(k.leaves, l...), append(k.nodes, n)
					}
				})
			}
		}(w)
	}
	wg.Wait()
	for _, blk := range z.blocks {
		nodes := *blk.m3.Load()
		for k, n := range nodes {
			if !slices.Contains(nodes[:k], n) {
				m.members[n] = append(m.members[n], blk)
			}
		}
	}
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			x := e.newM3ExportHasher()
			for r := w; r < m3Rounds; r += workers {
				lo, hi := r*m3Level2/m3Rounds, (r+1)*m3Level2/m3Rounds
				if hi <= keepBelow {
					m.buildRound(x, z, lo, hi, kept)
				} else {
					m.buildRound(x, z, lo, hi, nil)
				}
			}
		}(w)
	}
	wg.Wait()
	tree.markAll()
	e.m3 = m
	return bytes.Clone(tree.root()), nil
}

// m3Kept is leaves pass 1 kept for pass 2 (nodes[k] is the node of
// leaves[k*size:]).
type m3Kept struct {
	leaves []byte
	nodes  []uint16
}

// buildRound computes level-2 nodes [lo, hi) from every block of z, or
// from the leaves pass 1 kept when kept is not nil.
func (m *m3Export) buildRound(x *m3ExportHasher, z *czone, lo, hi int, kept []m3Kept) {
	size := m.tree.size
	var nodes []uint16
	x.arena, nodes = m3RoundStart(x.arena, z.records, size)
	for _, k := range kept {
		x.arena, nodes = m3KeptIn(x.arena, nodes, k.leaves, k.nodes, lo, hi, size)
	}
	if kept == nil {
		for _, blk := range z.blocks {
			x.blockLeaves(z, blk, lo, hi, func(n uint16, _ []byte) { nodes = append(nodes, n) })
		}
	}
	start, byNode := m3ByNode(nodes, lo, hi)
	var leaves [][]byte
	for n := lo; n < hi; n++ {
		leaves = leaves[:0]
		for _, k := range byNode[start[n-lo]:start[n-lo+1]] {
			leaves = append(leaves, x.arena[int(k)*size:int(k+1)*size])
		}
		m.tree.setNodeWith(x.h, uint16(n), m.extraLeaves(leaves, n))
	}
}
