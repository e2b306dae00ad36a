package blocklist

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

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
