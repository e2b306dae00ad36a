package blocklist

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

// The parallel build (two workers, each inserting the rules homed in its
// half of the slots, deferring those whose probe would leave it) gives
// the table a build on one goroutine gives: the same head for every
// name, the same kind bytes (pairs and unions), the same duplicate lists
// and levels. The rules include names homed just before each half's end
// (so some are deferred, with their duplicates and pairs), duplicates far
// apart and next to each other, and allow rules.
func TestParallelBuildMatchesSerial(t *testing.T) {
	type rule struct {
		name string
		kind uint8
	}
	const filler, again = 3*buildChunk + 777, 300
	kinds := []uint8{kindSubtree, kindWildcard, kindExact, kindAllowSubtree, kindAllowWildcard, kindAllowExact}
	// The specials: 6 names homed in each of the last 3 slots of both
	// halves. Each is listed once among the filler, again next to itself
	// with another kind (a pair), and a third time near the end.
	const perSlot, slotsAtEnd = 6, 3
	specials := 2 * slotsAtEnd * perSlot
	n := filler + 3*specials + again
	shared := specials // each special's pair
	size := slotCount(n - shared)
	half := size / 2
	want := map[int]int{}
	for s := half - slotsAtEnd; s < half; s++ {
		want[s] = perSlot
	}
	for s := size - slotsAtEnd; s < size; s++ {
		want[s] = perSlot
	}
	var special []string
	for i := 0; len(special) < specials; i++ {
		name := fmt.Sprintf("s%d.special.org", i)
		s := fastrange(mix(hashName([]byte(name))), size)
		if want[s] > 0 {
			want[s]--
			special = append(special, name)
		}
	}
	var rules []rule
	for i := 0; i < filler; i++ {
		rules = append(rules, rule{fmt.Sprintf("f%d.x%d.example.net", i, i%7), kinds[i%len(kinds)]})
		if k := i / 1000; i%1000 == 500 && k < len(special) {
			rules = append(rules, rule{special[k], kindSubtree}, rule{special[k], kindWildcard})
		}
	}
	for k, name := range special {
		rules = append(rules, rule{name, kinds[k%len(kinds)]})
	}
	// A third listing of some filler names, far from the first.
	for i := 0; i < again; i++ {
		rules = append(rules, rule{fmt.Sprintf("f%d.x%d.example.net", i*97, i*97%7), kindAllowExact})
	}
	make1 := func(serial bool) *domainTable {
		buildSerial = serial
		defer func() { buildSerial = false }()
		var d domainTable
		for i, r := range rules {
			d.add([]byte(r.name), r.kind, i+1, 0)
		}
		d.build()
		return &d
	}
	if len(rules) != n || filler/1000 < specials {
		t.Fatalf("%d rules, want %d", len(rules), n)
	}
	ser, par := make1(true), make1(false)
	if par.nslots != size {
		t.Fatalf("%d slots, want %d", par.nslots, size)
	}
	if par.deferred == 0 {
		t.Fatal("the parallel build deferred no rule: the test does not reach the deferral")
	}
	if ser.nslots != par.nslots || ser.levels != par.levels {
		t.Fatalf("slots %d/%d, levels %x/%x", ser.nslots, par.nslots, ser.levels, par.levels)
	}
	for i := range rules {
		if a, b := ser.kindAt(uint32(i)), par.kindAt(uint32(i)); a != b {
			t.Fatalf("rule %d (%s): kind %08b serial, %08b parallel", i, rules[i].name, a, b)
		}
	}
	for i, r := range rules {
		h := hashName([]byte(r.name))
		a, okA := ser.lookup(h, r.name)
		b, okB := par.lookup(h, r.name)
		if !okA || a != b || okA != okB {
			t.Fatalf("rule %d (%s): head %d %v serial, %d %v parallel", i, r.name, a, okA, b, okB)
		}
		if q := "www." + r.name; !reflect.DeepEqual(ser.match(q), par.match(q)) {
			t.Fatalf("match %s: %+v serial, %+v parallel", q, ser.match(q), par.match(q))
		}
	}
	if !reflect.DeepEqual(ser.dups, par.dups) {
		t.Fatalf("duplicate lists differ: %d heads serial, %d parallel", len(ser.dups), len(par.dups))
	}
	if len(ser.dups) < specials {
		t.Fatalf("%d duplicated names, want at least %d", len(ser.dups), specials)
	}
	t.Logf("%d rules, %d slots, %d deferred, %d duplicated names", len(rules), par.nslots, par.deferred, len(par.dups))
}

// Names of every length fill pages to within a block of full: a name that
// does not fit moves its block's names to a new page, no name crosses a
// page's end, every rule keeps its name (and after a rollback), and the
// merge that appends to the last block (compactAppend) finds room.
func TestPagesFillToABlock(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var d domainRules
	var names []string
	for i := 0; d.nameBytes() < 3*pageSize; i++ {
		var b strings.Builder
		for b.Len() < 1+rng.IntN(240) {
			fmt.Fprintf(&b, "l%d.", rng.IntN(1000))
		}
		b.WriteString("com")
		name := b.String()
		if i%7 == 3 && len(names) > 0 {
			name = names[len(names)-1] // shares the name before
		}
		names = append(names, name)
		d.add([]byte(name), kindSubtree, i+1, 0)
	}
	check := func(n int) {
		t.Helper()
		for i := 0; i < n; i++ {
			if got := string(d.name(uint32(i))); got != names[i] {
				t.Fatalf("rule %d: %q, want %q", i, got, names[i])
			}
		}
		for k, p := range d.pages {
			if len(p) > pageSize {
				t.Fatalf("page %d: %d bytes", k, len(p))
			}
			if k < len(d.pages)-1 && pageSize-len(p) > pageRoom+maxBlockBytes {
				t.Errorf("page %d: %d bytes free", k, pageSize-len(p))
			}
		}
	}
	check(len(names))
	if len(d.pages) < 3 {
		t.Fatalf("%d pages", len(d.pages))
	}
	d.truncate(len(names) / 2)
	check(len(names) / 2)
}
