package blocklist

import (
	"strings"
	"testing"

	"github.com/sinkhole-dns/sinkhole/internal/scalenames"
)

// TestSuffixFilter holds the filter in front of the RPZ wildcard check to
// isPublicSuffix: it never turns away a public suffix (every node of the
// list, names one and two labels under it, wildcard nodes' children,
// addresses, single labels), and it turns away most generated names, which
// is what it is for.
func TestSuffixFilter(t *testing.T) {
	f := theSuffixFilter()
	cases := []string{"com", "co.uk", "foo.ck", "www.ck", "a.www.ck", "foo.kawasaki.jp", "city.kawasaki.jp", "1.2.3.4",
		"10.0.0.1", "1.2.3", "wpad", "x.compute.amazonaws.com", "foo.bd", "x.er", "a.b.c.d.e.f", "example.com"}
	for line := range strings.SplitSeq(strings.TrimSpace(pslNodes), "\n") {
		n := line[2:]
		_, parent, _ := strings.Cut(n, ".")
		cases = append(cases, n, "x."+n, "a.b."+n, "www."+n, parent, "x"+n)
	}
	g := scalenames.New(5)
	generated := 0
	for i := range 20000 {
		cases = append(cases, string(g.Name(i)))
		generated++
	}
	suffixes := 0
	for _, name := range cases {
		if !isPublicSuffix(name) {
			continue
		}
		suffixes++
		if !f.maybePublicSuffix([]byte(name)) {
			t.Errorf("filter turns away %q, a public suffix", name)
		}
		if wildcardSuffixMsg([]byte(name)) == "" {
			t.Errorf("wildcardSuffixMsg(%q) is empty", name)
		}
	}
	if suffixes < 5000 {
		t.Fatalf("only %d public suffixes among the cases", suffixes)
	}
	passed := 0
	for _, name := range cases[len(cases)-generated:] {
		if f.maybePublicSuffix([]byte(name)) {
			passed++
		}
	}
	t.Logf("filter lets %d of %d generated names through", passed, generated)
	if passed > generated/10 {
		t.Errorf("filter lets %d of %d generated names through to the lookup", passed, generated)
	}
	for _, tt := range []struct {
		name string
		want bool
	}{{"w7lvhdsnc-uzhsnt.yvlhsaqm6.net", false}, {"example.com", false}, {"com", true}, {"co.uk", true}, {"1.2.3.4", true}} {
		if got := wildcardSuffixMsg([]byte(tt.name)) != ""; got != tt.want {
			t.Errorf("wildcardSuffixMsg(%q) set = %v, want %v", tt.name, got, tt.want)
		}
	}
}
