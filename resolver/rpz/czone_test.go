package rpz

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
)

// The block list of a compact zone, edited at random, holds what a map
// holds, and diffBlocks finds exactly the keys whose codes differ.
func TestZoneBlocksEditAndDiff(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	key := func() string { return string(appendKey(nil, fmt.Sprintf("n%d.d%d.x", r.IntN(4000), r.IntN(3)))) }
	model := map[string]uint32{}
	var blocks []*zblock
	for round := 0; round < 40; round++ {
		prevBlocks, prevModel := blocks, maps.Clone(model)
		byKey := map[string]edit{}
		for k := 1 + r.IntN([]int{5, 50, 3000}[round%3]); k > 0; k-- {
			e := edit{key: key(), code: uint32(r.IntN(5))}
			e.del = r.IntN(3) == 0
			byKey[e.key] = e
		}
		var edits []edit
		for _, k := range slices.Sorted(maps.Keys(byKey)) {
			e := byKey[k]
			edits = append(edits, e)
			if e.del {
				delete(model, k)
			} else {
				model[k] = e.code
			}
		}
		blocks = editBlocks(blocks, edits)
		var got []string
		prev := ""
		for i, b := range blocks {
			if i > 0 && b.first <= blocks[i-1].first {
				t.Fatalf("round %d: blocks out of order", round)
			}
			it := blockIter{b: b}
			n := 0
			for it.next() {
				k := string(it.key)
				if n == 0 && k != b.first {
					t.Fatalf("round %d: block first %q, entry %q", round, b.first, k)
				}
				if k <= prev && len(got) > 0 {
					t.Fatalf("round %d: keys out of order: %q after %q", round, k, prev)
				}
				if c, ok := model[k]; !ok || c != it.code {
					t.Fatalf("round %d: key %q code %d, model %d %v", round, k, it.code, c, ok)
				}
				got = append(got, k)
				prev = k
				n++
			}
			if n != b.n {
				t.Fatalf("round %d: block says %d entries, has %d", round, b.n, n)
			}
		}
		if len(got) != len(model) {
			t.Fatalf("round %d: %d entries, model %d", round, len(got), len(model))
		}
		z := &czone{blocks: blocks}
		for _, k := range got[:min(len(got), 300)] {
			c := model[k]
			if gc, ok := z.lookup([]byte(k)); !ok || gc != c {
				t.Fatalf("round %d: lookup %q = %d %v, want %d", round, k, gc, ok, c)
			}
		}
		want := map[string][2]uint32{}
		for k := range maps.Keys(model) {
			if prevModel[k] != model[k] {
				want[k] = [2]uint32{prevModel[k], model[k]}
			}
		}
		for k := range maps.Keys(prevModel) {
			if _, ok := model[k]; !ok && prevModel[k] != 0 {
				want[k] = [2]uint32{prevModel[k], 0}
			}
		}
		gotDiff := map[string][2]uint32{}
		diffBlocks(prevBlocks, blocks, func(k []byte, a, b uint32) {
			if a != b {
				gotDiff[string(k)] = [2]uint32{a, b}
			}
		})
		if !maps.Equal(gotDiff, want) {
			t.Fatalf("round %d: diff %d keys, want %d", round, len(gotDiff), len(want))
		}
		if round > 0 && len(blocks) > 10 {
			old := map[*zblock]bool{}
			for _, b := range prevBlocks {
				old[b] = true
			}
			shared := 0
			for _, b := range blocks {
				if old[b] {
					shared++
				}
			}
			if round%3 == 0 && shared == 0 {
				t.Fatalf("round %d: a few edits shared no block (%d blocks)", round, len(blocks))
			}
		}
	}
	if len(blocks) < 20 {
		t.Fatalf("only %d blocks", len(blocks))
	}
}

func TestZoneKeys(t *testing.T) {
	for _, n := range []string{"a", "www.example.com", "*.example.com", "24.0.100.51.198.rpz-ip"} {
		k := appendKey(nil, n)
		if got := string(appendOwner(nil, k)); got != n {
			t.Errorf("%q: key %q back to %q", n, k, got)
		}
	}
	if w := appendOwnerWire(nil, appendKey(nil, "*.ab.c")); string(w) != "\x01*\x02ab\x01c" {
		t.Errorf("wire %q", w)
	}
	// Canonical order: a name before its children, *.name before the
	// other children, label by label from the right.
	names := []string{"a.x", "*.a.x", "b.a.x", "ab.x", "x", "a-b.x", "c.b.a.x", "z.a.x"}
	slices.SortFunc(names, func(a, b string) int { return slices.Compare(appendKey(nil, a), appendKey(nil, b)) })
	want := []string{"x", "a.x", "*.a.x", "b.a.x", "c.b.a.x", "z.a.x", "a-b.x", "ab.x"}
	if !slices.Equal(names, want) {
		t.Fatalf("order %v, want %v", names, want)
	}
}
