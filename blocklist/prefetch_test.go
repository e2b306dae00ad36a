package blocklist

import (
	"strings"
	"testing"
)

// Prefetch changes no match: the same names match the same rules before
// and after it, on a plain and on a layered (delta) snapshot, for names
// that hit at every kind of rule, misses, odd names (empty, one label,
// more levels than match's fast path) and batches over PrefetchNames.
func TestPrefetchDecidesNothing(t *testing.T) {
	base := "example.com\n*.wild.test\n=exact.test\ndeep.a.b.c.test\nco.example.org\n@@ok.example.com\n"
	var more strings.Builder
	for _, n := range genNames(5000, 3) {
		more.WriteString(n + "\n")
	}
	st, dir := load(t, map[string]string{"l.txt": base + more.String()})
	probes := []string{"example.com", "www.example.com", "a.b.www.example.com", "x.wild.test", "y.x.wild.test",
		"exact.test", "deep.a.b.c.test", "q.deep.a.b.c.test", "co.example.org", "w.co.example.org",
		"ok.example.com", "in.ok.example.com", "added.test", "z.added.test", "", "com", "x",
		"p.q.r.s.t.u.v.w.x.y.z.a.b.c.d.e.f.g.added.test", strings.Repeat("a.", 100) + "example.com"}
	for i, n := range genNames(300, 3) {
		probes = append(probes, n, "www."+n)
		if i%3 == 0 {
			probes = append(probes, "not-"+n)
		}
	}
	check := func(s *Snapshot) {
		t.Helper()
		want := make([]Match, len(probes))
		for i, n := range probes {
			want[i] = s.MatchName(n)
		}
		var sink uint32
		for _, size := range []int{1, 7, PrefetchNames, len(probes)} {
			for i := 0; i < len(probes); i += size {
				sink += s.Prefetch(probes[i:min(i+size, len(probes))])
			}
			for i, n := range probes {
				if got := s.MatchName(n); got != want[i] {
					t.Fatalf("batches of %d: %q matched %+v after Prefetch, %+v before", size, n, got, want[i])
				}
			}
		}
		_ = sink
	}
	check(st.Current())
	check(Empty())
	write(t, dir, "l.txt", base+more.String()+"added.test\n")
	if rep := reload(t, st); !rep.Delta {
		t.Fatal("the one-line change was not applied as a delta")
	}
	check(st.Current())
}
