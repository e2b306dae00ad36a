package blocklist

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// encodingCases are names at the edges of the encoding: every remainder of
// the packed groups, the suffix dictionary's labels in every place, label
// and name length limits, and names the packing cannot hold.
func encodingCases() []string {
	label63 := strings.Repeat("a", 63)
	max253 := strings.Join([]string{label63, label63, label63, strings.Repeat("b", 61)}, ".") // 253 characters
	maxDict := strings.Join([]string{label63, label63, label63, strings.Repeat("b", 57), "com"}, ".")
	return []string{
		"com", "a.com", "ab.com", "abc.com", "abcd.com", "abcde.com", "x", "xy", "xyz", "wxyz",
		"com.com", "com.example", "www.com.example", "ly.ly", "uk", "co.uk", "a.co.uk", "example.notinthedict",
		"a-b_c.d9.uk", "0.1.2.3.example", "9", "-", "_", "a.b", "a..b", ".com",
		"label-2k3f9.abcdef.com", "xn--bcher-kva.example", "_dmarc.example.org",
		label63 + ".com", label63, max253, maxDict,
		"UPPER.com", "a*b.com", "a\x00b.net", "\xff.org", "a b.io", "dhc.com", "a\xffc.com",
	}
}

func TestNameEncodingRoundTrip(t *testing.T) {
	if symOf['.'] != symDot {
		t.Fatalf("symDot %d, but '.' is symbol %d", symDot, symOf['.'])
	}
	if len(suffixDict) >= encPacked {
		t.Fatalf("suffix dictionary has %d entries, at most %d fit the header byte", len(suffixDict), encPacked-1)
	}
	for _, n := range encodingCases() {
		e := appendEncoded(nil, []byte(n))
		if len(e) > maxEncodedName {
			t.Fatalf("%q: %d encoded bytes", n, len(e))
		}
		if got := string(appendDecoded(nil, e)); got != n {
			t.Errorf("%q decodes to %q (encoded % x)", n, got, e)
		}
		if !encodedEqual(e, n) {
			t.Errorf("%q does not equal its own encoding", n)
		}
		if want := strings.Count(n, ".") + 1; encodedLabels(e) != want {
			t.Errorf("%q: %d labels, want %d", n, encodedLabels(e), want)
		}
		if h, l := hashEncoded(e); h != hashName([]byte(n)) || l != strings.Count(n, ".")+1 {
			t.Errorf("%q: hashEncoded %x, %d labels; want %x, %d", n, h, l, hashName([]byte(n)), strings.Count(n, ".")+1)
		}
	}
	// A 27-character name with a dictionary TLD takes 17 bytes (23
	// characters packed: 7 groups and a byte).
	if e := appendEncoded(nil, []byte("abcdefghij-2k3f.abcdef.com")); len(e) != 1+2*7+1 {
		t.Errorf("27-character name: %d bytes", len(e))
	}
}

// TestNameEncodingNoFalseMatch compares every case's encoding with every
// other case and with near misses of it: a changed, added or removed
// character (in the alphabet or not), another last label, a dot moved.
func TestNameEncodingNoFalseMatch(t *testing.T) {
	cases := encodingCases()
	variants := func(n string) []string {
		out := []string{n + "a", "a" + n, n + ".com", "x." + n, "." + n, n + "."}
		if len(n) > 1 {
			out = append(out, n[1:], n[:len(n)-1])
		}
		for i := 0; i < len(n); i++ {
			for _, c := range []byte{'a', 'z', '0', '9', '-', '.', '_', 'A', '*', 0, 0x80, 0xff} {
				if n[i] != c {
					out = append(out, n[:i]+string([]byte{c})+n[i+1:])
				}
			}
		}
		return out
	}
	for _, n := range cases {
		e := appendEncoded(nil, []byte(n))
		for _, m := range cases {
			if m != n && encodedEqual(e, m) {
				t.Errorf("%q matched the encoding of %q", m, n)
			}
		}
		for _, m := range variants(n) {
			if m != n && encodedEqual(e, m) {
				t.Errorf("%q matched the encoding of %q", m, n)
			}
		}
	}
	// A byte outside the alphabet adds up to a valid group ("a\xffc" and
	// "dhc" both sum to 6723) but never matches.
	if encodedEqual(appendEncoded(nil, []byte("dhc.com")), "a\xffc.com") {
		t.Error("a byte outside the alphabet matched a packed group")
	}
}

// withCollidingHashes runs f with every name hashing alike in the tables
// it builds, so each lookup walks one probe chain holding every name and
// rests on the name comparison alone.
func withCollidingHashes(t *testing.T, f func(t *testing.T)) {
	collideHashes.Store(true)
	defer collideHashes.Store(false)
	f(t)
}

func TestMatchNameCollidingHashes(t *testing.T) {
	withCollidingHashes(t, TestMatchName)
	withCollidingHashes(t, TestMatchNameMostSpecificAndDuplicates)
}

func TestDeltaCollidingHashes(t *testing.T) {
	withCollidingHashes(t, TestDeltaMatchesFullReload)
}

// TestMatchNameSharedSuffixes loads names that are suffixes of one another,
// share labels with the dictionary's or end in the same characters, with
// every kind, and checks MatchName against a plain reference, with real
// and with colliding hashes.
func TestMatchNameSharedSuffixes(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	labels := []string{"a", "b", "ab", "ba", "abc", "com", "co", "uk", "x-y", "_t", "9", "aaa", "aab"}
	type rule struct {
		name string
		kind MatchKind
	}
	var rules []rule
	seen := map[string]bool{}
	var body strings.Builder
	for len(rules) < 300 {
		n := 1 + rng.IntN(4)
		parts := make([]string, n)
		for i := range parts {
			parts[i] = labels[rng.IntN(len(labels))]
		}
		name := strings.Join(parts, ".")
		k := MatchKind(rng.IntN(3))
		if seen[name] || (k != MatchExact && publicSuffixMsg([]byte(name), "") != "") {
			continue
		}
		seen[name] = true
		rules = append(rules, rule{name, k})
		switch k {
		case MatchWildcard:
			body.WriteString("*.")
		case MatchExact:
			body.WriteString("=")
		}
		body.WriteString(name + "\n")
	}
	// want is the most specific rule covering q, by hand.
	want := func(q string) (string, bool) {
		best, bestLabels := "", -1
		for _, r := range rules {
			ok := false
			switch r.kind {
			case MatchSubtree:
				ok = q == r.name || strings.HasSuffix(q, "."+r.name)
			case MatchWildcard:
				ok = strings.HasSuffix(q, "."+r.name)
			case MatchExact:
				ok = q == r.name
			}
			if l := strings.Count(r.name, ".") + 1; ok && l > bestLabels {
				best, bestLabels = r.name, l
			}
		}
		return best, bestLabels >= 0
	}
	check := func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "s.txt"), []byte(body.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		st := NewStore(Options{Dirs: []string{dir}, Logger: discardLogger()})
		rep, err := st.Reload(context.Background(), "test")
		if err != nil || rep.Failed() {
			t.Fatalf("load: %v %v", err, rep.Errors())
		}
		s := st.Current()
		for i := 0; i < 3000; i++ {
			n := 1 + rng.IntN(5)
			parts := make([]string, n)
			for j := range parts {
				parts[j] = labels[rng.IntN(len(labels))]
			}
			q := strings.Join(parts, ".")
			m := s.MatchName(q)
			name, ok := want(q)
			if m.HasRule != ok {
				t.Fatalf("%s: matched %v, want %v (%s)", q, m.HasRule, ok, name)
			}
			if !ok {
				continue
			}
			text := strings.TrimLeft(s.Rule(m.Rule).Text, "*.=")
			if text != name {
				t.Fatalf("%s: rule %q, want %q", q, s.Rule(m.Rule).Text, name)
			}
		}
	}
	t.Run("hashed", check)
	t.Run("colliding", func(t *testing.T) { withCollidingHashes(t, check) })
}

// TestDomainRulesSharedNamesAtBlocks puts rules sharing the name before
// them at and around the name blocks' boundaries, then truncates there.
func TestDomainRulesSharedNamesAtBlocks(t *testing.T) {
	var d domainRules
	var names []string
	add := func(n string) {
		d.add([]byte(n), kindSubtree, len(names)+1, 0)
		names = append(names, n)
	}
	check := func(stage string) {
		t.Helper()
		shared := 0
		for i, n := range names {
			if got := string(d.name(uint32(i))); got != n {
				t.Fatalf("%s: rule %d is %q, want %q", stage, i, got, n)
			}
			if i > 0 && names[i-1] == n {
				shared++
			}
		}
		if d.shared != shared {
			t.Fatalf("%s: %d shared, want %d", stage, d.shared, shared)
		}
	}
	for i := 0; len(names) < 20*nameBlock; i++ {
		n := fmt.Sprintf("n%d.example.com", i)
		add(n)
		if k := len(names) % nameBlock; k == 0 || k == nameBlock-1 || k == 1 {
			add(n) // the next rule shares it, across or beside a boundary
		}
	}
	check("built")
	for _, n := range []int{len(names) - 1, 10*nameBlock + 1, 10 * nameBlock, 10*nameBlock - 1, nameBlock, 1, 0} {
		d.truncate(n)
		names = names[:n]
		check(fmt.Sprintf("truncated to %d", n))
		add("again.example.com")
		add("again.example.com")
		check(fmt.Sprintf("regrown after %d", n))
	}
}

// TestDomainRulesPackedLines checks packed line blocks (consecutive lines
// drop their deltas) against plain arrays, around block boundaries, big
// jumps and a table that grows again after packing.
func TestDomainRulesPackedLines(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var d domainRules
	var lines []int
	line := 1
	add := func() {
		switch r := rng.IntN(1000); {
		case r < 3:
			line += 300 + rng.IntN(5000) // past a byte's delta
		case r < 10:
			line += 2 // a comment line
		default:
			line++
		}
		d.add([]byte(fmt.Sprintf("n%d.test", len(lines))), kindSubtree, line, 0)
		lines = append(lines, line)
	}
	check := func(stage string) {
		t.Helper()
		for i, want := range lines {
			if got := d.line(uint32(i)); got != want {
				t.Fatalf("%s: rule %d line %d want %d", stage, i, got, want)
			}
		}
	}
	for i := 0; i < 20000; i++ {
		add()
	}
	d.packLines()
	if d.lines == nil || len(d.lineDelta) >= len(lines)/2 {
		t.Fatalf("packed: %d deltas kept of %d", len(d.lineDelta), len(lines))
	}
	check("packed")
	for i := 0; i < 100; i++ {
		add()
	}
	check("grown after packing")
	d.packLines()
	d.truncate(lineBlock*300 + 5)
	lines = lines[:lineBlock*300+5]
	check("truncated after packing")
	d.packLines()
	check("packed again")
}

// TestPackedKinds loads a big plain list with a few rules of other kinds
// (exceptions, wildcards, exact names, names listed twice) so that the
// compiled table packs its kinds, and checks every decision and rule
// against the same table with its kinds unpacked.
func TestPackedKinds(t *testing.T) {
	var body strings.Builder
	var probes []string
	for i := 0; i < 6000; i++ {
		n := fmt.Sprintf("n%d.example.com", i)
		switch i % 499 {
		case 1:
			body.WriteString("@@")
		case 2:
			body.WriteString("*.")
		case 3:
			body.WriteString("=")
		case 4:
			body.WriteString(n + "\n=") // the name twice
		}
		body.WriteString(n + "\n")
		probes = append(probes, n, "www."+n)
	}
	body.WriteString("@@www.n4.example.com\n")
	st, _ := load(t, map[string]string{"big.txt": body.String()})
	s := st.Current()
	if s.dom.kinds == nil || s.dom.kind != nil {
		t.Fatal("kinds not packed")
	}
	packed := decisions(s, probes, nil)
	var texts []string
	for id := range s.Triggers() {
		texts = append(texts, s.Rule(id.ID).Text)
	}
	s.dom.unpackKinds()
	if got := decisions(s, probes, nil); got != packed {
		t.Fatalf("packed kinds decide differently:\n%s", diffLines(packed, got))
	}
	k := 0
	for id := range s.Triggers() {
		if r := s.Rule(id.ID).Text; r != texts[k] {
			t.Fatalf("rule %d: %s packed, %s unpacked", k, texts[k], r)
		}
		k++
	}
}

// TestEncodedLabels counts labels on the encoded form of random names
// (the alphabet, dots in every place, dictionary last labels, bytes
// outside the alphabet) and compares the count with the name's own.
func TestEncodedLabels(t *testing.T) {
	r := rand.New(rand.NewPCG(18, 1))
	const chars = "abcdefghijklmnopqrstuvwxyz0123456789-._...."
	for i := 0; i < 20000; i++ {
		b := make([]byte, 1+r.IntN(80))
		for j := range b {
			b[j] = chars[r.IntN(len(chars))]
		}
		if r.IntN(4) == 0 {
			b[r.IntN(len(b))] = byte(r.IntN(256)) // maybe outside the alphabet: raw
		}
		if r.IntN(2) == 0 {
			b = append(append(b, '.'), suffixDict[r.IntN(len(suffixDict))]...)
		}
		n := string(b)
		if got, want := encodedLabels(appendEncoded(nil, b)), strings.Count(n, ".")+1; got != want {
			t.Fatalf("%q: %d labels, want %d", n, got, want)
		}
	}
}

// TestSuffixIndex holds the short-label table to the dictionary map: every
// dictionary label and its near misses (a byte more, less or changed, a
// zero byte) get the map's answer.
func TestSuffixIndex(t *testing.T) {
	var cases []string
	for _, s := range suffixDict {
		cases = append(cases, s, s+"x", s[1:], "x"+s, s[:len(s)-1]+"\x00", s+"\x00", strings.ToUpper(s))
	}
	cases = append(cases, "", "\x00", "a", "comcomc", "comcomco", "accountant", "solutionz")
	for _, c := range cases {
		got, gok := suffixIndex([]byte(c))
		want, wok := suffixIdx[c]
		if got != want || gok != wok {
			t.Errorf("suffixIndex(%q) = %d %v, map: %d %v", c, got, gok, want, wok)
		}
	}
}

// TestHashEncodedRandom holds hashEncoded to hashName of the decoded name,
// and appendEncoded to appendDecoded and encodedEqual, over random names
// of the alphabet (with and without a dictionary label) and random bytes
// (raw encodings).
func TestHashEncodedRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	const alpha = "abcdefghijklmnopqrstuvwxyz0123456789-._"
	for i := range 20000 {
		b := make([]byte, 1+rng.IntN(60))
		for j := range b {
			b[j] = alpha[rng.IntN(len(alpha))]
			if i%10 == 0 {
				b[j] = byte(rng.IntN(256))
			}
		}
		n := string(b)
		if i%3 == 0 {
			n += "." + suffixDict[rng.IntN(len(suffixDict))]
		}
		e := appendEncoded(nil, []byte(n))
		if h, l := hashEncoded(e); h != hashName([]byte(n)) || l != strings.Count(n, ".")+1 {
			t.Fatalf("%q: hashEncoded %x, %d labels; want %x, %d", n, h, l, hashName([]byte(n)), strings.Count(n, ".")+1)
		}
		// The encoding decodes back, and the matcher's comparison (which
		// packs the query on its own) takes it as the name.
		if got := string(appendDecoded(nil, e)); got != n || !encodedEqual(e, n) {
			t.Fatalf("%q: encoded % x, decodes to %q", n, e, got)
		}
	}
}
