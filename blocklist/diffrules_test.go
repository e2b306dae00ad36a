package blocklist

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// sortKeyed orders by key, and by place within a key, as a stable sort
// does: sizes on both sides of its radix cut-over, keys with repeats and
// keys that differ only in their high bits.
func TestSortKeyed(t *testing.T) {
	for _, n := range []int{0, 1, 7, 255, 256, 1000, 70000} {
		for _, spread := range []uint64{3, 1 << 20, ^uint64(0)} {
			r := rand.New(rand.NewPCG(uint64(n), spread))
			a := make([]keyedRule, n)
			for i := range a {
				k := r.Uint64N(spread)
				if spread == ^uint64(0) && i%2 == 0 {
					k <<= 48 // only the top pass tells these apart
				}
				a[i] = keyedRule{k, int32(i)}
			}
			want := slices.Clone(a)
			slices.SortStableFunc(want, func(x, y keyedRule) int { return cmp.Compare(x.k, y.k) })
			if got := sortKeyed(a); !slices.Equal(got, want) {
				t.Fatalf("n=%d spread=%d: not the stable order", n, spread)
			}
		}
	}
}

// A reload's report counts and lists the rules a version brought and took
// away, whatever moved: every line moving (the file reversed) cancels out,
// a rule under another directive counts as removed and added, and the
// lists are in file order.
func TestReloadReportsRuleDifference(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "big.txt")
	var v1, v2 strings.Builder
	const n = 3000
	for i := range n {
		fmt.Fprintf(&v1, "name%d.test\n", i)
	}
	for i := 2799; i >= 0; i-- {
		if i == 9 {
			v2.WriteString("# platform: moved\n")
		}
		fmt.Fprintf(&v2, "name%d.test\n", i)
	}
	for j := range 100 {
		fmt.Fprintf(&v2, "new%d.test\n", j)
	}
	if err := os.WriteFile(path, []byte(v1.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	st := NewStore(Options{Dirs: []string{dir}, Logger: discardLogger()})
	if _, err := st.Reload(context.Background(), "first"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(v2.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	rep, err := st.ReloadWith(context.Background(), ReloadOptions{Trigger: "second", Accept: true})
	if err != nil {
		t.Fatal(err)
	}
	var fc *FileChange
	for i := range rep.Files {
		if rep.Files[i].Name == "big.txt" {
			fc = &rep.Files[i]
		}
	}
	if fc == nil {
		t.Fatalf("no report for big.txt: %+v", rep.Files)
	}
	var wantRemoved, wantAdded []string
	for i := range 10 { // under "# platform: moved" now
		wantAdded = append(wantAdded, fmt.Sprintf("name%d.test", 9-i))
	}
	for j := range 100 {
		wantAdded = append(wantAdded, fmt.Sprintf("new%d.test", j))
	}
	for i := range 10 {
		wantRemoved = append(wantRemoved, fmt.Sprintf("name%d.test", i))
	}
	for i := 2800; i < n; i++ {
		wantRemoved = append(wantRemoved, fmt.Sprintf("name%d.test", i))
	}
	texts := func(rules []Rule) []string {
		var out []string
		for _, r := range rules {
			out = append(out, r.Text)
		}
		return out
	}
	if fc.AddedCount != len(wantAdded) || fc.RemovedCount != len(wantRemoved) {
		t.Fatalf("added %d, removed %d; want %d, %d", fc.AddedCount, fc.RemovedCount, len(wantAdded), len(wantRemoved))
	}
	if got := texts(fc.Added); !slices.Equal(got, wantAdded) {
		t.Errorf("added %v\nwant %v", got, wantAdded)
	}
	if got := texts(fc.Removed); !slices.Equal(got, wantRemoved) {
		t.Errorf("removed %v\nwant %v", got, wantRemoved)
	}
}
