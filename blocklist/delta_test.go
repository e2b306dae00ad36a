package blocklist

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// deltaLine returns a random list line over a small universe of names and
// addresses, so that edits collide with rules of the other file and with
// each other: blocks, exceptions, wildcards, exact names, IPs, prefixes.
func deltaLine(rng *rand.Rand) string {
	name := fmt.Sprintf("n%d.example", rng.IntN(60))
	if rng.IntN(3) == 0 {
		name = fmt.Sprintf("s%d.%s", rng.IntN(4), name)
	}
	switch rng.IntN(12) {
	case 0:
		return "*." + name
	case 1:
		return "=" + name
	case 2:
		return "@@" + name
	case 3:
		return "@@*." + name
	case 4:
		return fmt.Sprintf("198.51.100.%d", rng.IntN(16))
	case 5:
		return fmt.Sprintf("@@198.51.100.%d", rng.IntN(16))
	case 6:
		return fmt.Sprintf("198.51.%d.0/24", 100+rng.IntN(2))
	case 7:
		return "# just a comment"
	}
	return name
}

// decisions describes how a snapshot decides every probe name and address.
func decisions(s *Snapshot, names []string, ips []netip.Addr) string {
	var b strings.Builder
	desc := func(m Match) {
		if m.HasRule {
			r := s.Rule(m.Rule)
			fmt.Fprintf(&b, " block=%s@%s/%s", r.Text, r.Where(), r.Action)
		}
		if m.HasAllow {
			r := s.Rule(m.Allow)
			fmt.Fprintf(&b, " allow=%s@%s", r.Text, r.Where())
		}
		b.WriteByte('\n')
	}
	for _, n := range names {
		b.WriteString(n)
		desc(s.MatchName(n))
	}
	for _, a := range ips {
		b.WriteString(a.String())
		desc(s.MatchIP(a))
	}
	fmt.Fprintf(&b, "rules %d\n", s.RuleCount())
	for _, f := range s.Files {
		fmt.Fprintf(&b, "%s %d/%d/%d\n", f.Name, f.Domains, f.IPs, f.ASNs)
	}
	return b.String()
}

// TestDeltaMatchesFullReload edits a list file at random (lines added,
// removed and replaced, one to a few at a time) and checks after every
// reload that the store (which applies most edits as deltas, and merges
// them in the background) decides every name and address exactly as a
// full load of the same files does, and reports the same rule counts.
func TestDeltaMatchesFullReload(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 13))
	var lines []string
	lines = append(lines, "# platform: Big", "# action: nxdomain")
	for range 3000 {
		lines = append(lines, deltaLine(rng))
	}
	other := "# platform: Other\n# action: log\nn1.example\n@@s1.n2.example\n*.n3.example\nn4.example\n198.51.100.3\n@@198.51.101.7\n"
	st, dir := load(t, map[string]string{"big.txt": strings.Join(lines, "\n") + "\n", "other.txt": other})
	var names []string
	for i := range 60 {
		names = append(names, fmt.Sprintf("n%d.example", i), fmt.Sprintf("s%d.n%d.example", i%4, i), fmt.Sprintf("x.s%d.n%d.example", i%4, i))
	}
	var ips []netip.Addr
	for i := range 20 {
		ips = append(ips, netip.MustParseAddr(fmt.Sprintf("198.51.100.%d", i)), netip.MustParseAddr(fmt.Sprintf("198.51.101.%d", i)))
	}
	deltas := 0
	for step := range 120 {
		// 1 to 3 edits (now and then 12), each at a random place after
		// the directives.
		edits := 1 + rng.IntN(3)
		if step%7 == 0 {
			edits = 12
		}
		for range edits {
			at := 2 + rng.IntN(len(lines)-2)
			switch rng.IntN(3) {
			case 0:
				lines = append(lines[:at], append([]string{deltaLine(rng)}, lines[at:]...)...)
			case 1:
				if len(lines) > 10 {
					lines = append(lines[:at], lines[at+1:]...)
				}
			default:
				lines[at] = deltaLine(rng)
			}
		}
		write(t, dir, "big.txt", strings.Join(lines, "\n")+"\n")
		rep := reload(t, st)
		if rep.Delta {
			deltas++
		}
		fresh, _ := load(t, map[string]string{"big.txt": strings.Join(lines, "\n") + "\n", "other.txt": other})
		want := decisions(fresh.Current(), names, ips)
		if got := decisions(st.Current(), names, ips); got != want {
			t.Fatalf("step %d (delta %v): decisions differ from a full load:\n%s", step, rep.Delta, diffLines(got, want))
		}
		if step%10 == 0 {
			st.WaitCompacted()
			if got := decisions(st.Current(), names, ips); got != want {
				t.Fatalf("step %d: after the merge, decisions differ from a full load:\n%s", step, diffLines(got, want))
			}
		}
	}
	if deltas < 60 {
		t.Fatalf("only %d of 120 reloads were deltas", deltas)
	}
}

func diffLines(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	var out []string
	for i := 0; i < len(g) || i < len(w); i++ {
		var a, b string
		if i < len(g) {
			a = g[i]
		}
		if i < len(w) {
			b = w[i]
		}
		if a != b {
			out = append(out, "got:  "+a, "want: "+b)
		}
		if len(out) > 20 {
			break
		}
	}
	return strings.Join(out, "\n")
}

// TestDeltaReport checks the reload report of a one-line change: applied
// as a delta, with the rules added and removed.
func TestDeltaReport(t *testing.T) {
	var b strings.Builder
	for i := range 2000 {
		fmt.Fprintf(&b, "site%d.example\n", i)
	}
	st, dir := load(t, map[string]string{"big.txt": b.String()})
	body := strings.Replace(b.String(), "site1000.example\n", "site1000.example\nnew.example\n", 1)
	body = strings.Replace(body, "site1500.example\n", "", 1)
	write(t, dir, "big.txt", body)
	rep := reload(t, st)
	fc := change(rep, "big.txt")
	if !rep.Delta || fc.AddedCount != 1 || fc.RemovedCount != 1 || fc.Added[0].Text != "new.example" || fc.Added[0].Line != 1002 ||
		fc.Removed[0].Text != "site1500.example" || fc.Removed[0].Line != 1501 {
		t.Fatalf("report: delta %v %+v", rep.Delta, fc)
	}
	s := st.Current()
	if m := s.MatchName("site1999.example"); !m.Blocked() || s.Rule(m.Rule).Line != 2000 {
		t.Fatalf("site1999: %+v line %d", m, s.Rule(m.Rule).Line)
	}
	if s.MatchName("site1500.example").Blocked() || !s.MatchName("www.new.example").Blocked() {
		t.Fatal("delta not in service")
	}
	// A full reload (a second file appears) reports the change by lines too.
	write(t, dir, "big.txt", body+"later.example\n")
	write(t, dir, "b.txt", "x.example\n")
	rep = reload(t, st)
	if fc := change(rep, "big.txt"); rep.Delta || fc.AddedCount != 1 || fc.RemovedCount != 0 || fc.Added[0].Text != "later.example" {
		t.Fatalf("full reload report: delta %v %+v", rep.Delta, fc)
	}
	if fc := change(rep, "b.txt"); fc.AddedCount != 1 {
		t.Fatalf("new file: %+v", fc)
	}
	os.Remove(filepath.Join(dir, "b.txt"))
}

// TestLineDiff checks the changed runs found between two versions of a
// file: two edits far apart are two runs, and the lines between them are
// matched however they moved.
func TestLineDiff(t *testing.T) {
	chunks := func(lines []string) []lineChunk {
		var c chunker
		c.write([]byte(strings.Join(lines, "\n") + "\n"))
		return c.finish()
	}
	var old []string
	for i := range 5000 {
		old = append(old, fmt.Sprintf("line%d.example", i))
	}
	cur := append([]string(nil), old[:1000]...)
	cur = append(cur, "new1.example", "new2.example")
	cur = append(cur, old[1000:4000]...)
	cur = append(cur, old[4001:]...)
	hunks, directive := lineDiff(chunks(old), chunks(cur))
	if directive || len(hunks) != 2 {
		t.Fatalf("hunks %+v directive %v", hunks, directive)
	}
	// Every line outside the runs is the same line in both versions.
	d := &fileDelta{hunks: hunks}
	for i, l := range old {
		if n, kept := d.mapLine(i + 1); kept && cur[n-1] != l {
			t.Fatalf("old line %d (%s) maps to new line %d (%s)", i+1, l, n, cur[n-1])
		}
	}
	for _, want := range []int{1001, 4001} { // old lines the edits touch
		if _, kept := d.mapLine(want); kept && want == 4001 {
			t.Fatalf("removed line %d kept", want)
		}
	}
	if got, want := chunks(old), chunks(old); len(got) != len(want) {
		t.Fatal("chunking is not deterministic")
	}
	if h, _ := lineDiff(chunks(old), chunks(old)); len(h) != 0 {
		t.Fatalf("equal versions: %+v", h)
	}
}

// TestChunkerSplits checks that a file's chunks do not depend on how its
// bytes arrive (openList reads 256 KiB at a time, so lines are cut): the
// same content written whole, a byte at a time and in uneven pieces gives
// the same chunks, directive flags included.
func TestChunkerSplits(t *testing.T) {
	var b strings.Builder
	for i := range 3000 {
		switch i % 700 {
		case 5:
			b.WriteString("  # platform: P" + strconv.Itoa(i) + "\n")
		case 9:
			b.WriteString("# a comment\n\t\n\n")
		default:
			fmt.Fprintf(&b, "name%d.example\n", i)
		}
	}
	b.WriteString("# last: no newline")
	data := []byte(b.String())
	chunks := func(sizes ...int) []lineChunk {
		var c chunker
		rest := data
		for k := 0; len(rest) > 0; k++ {
			n := min(sizes[k%len(sizes)], len(rest))
			c.write(rest[:n])
			rest = rest[n:]
		}
		return c.finish()
	}
	whole := chunks(len(data))
	if len(whole) < 3 {
		t.Fatalf("%d chunks", len(whole))
	}
	directives := 0
	for _, c := range whole {
		if c.directive {
			directives++
		}
	}
	if directives == 0 {
		t.Fatal("no chunk has a directive")
	}
	for _, sizes := range [][]int{{1}, {2, 3}, {7, 1, 100}, {4096}, {13, 0, 5}} {
		if got := chunks(sizes...); !slices.Equal(got, whole) {
			t.Errorf("written in pieces of %v: %d chunks, whole: %d", sizes, len(got), len(whole))
		}
	}
}

// TestCompactSharesNames follows a list through deltas that each remove
// a quarter of it, each merged into a new base: the merge keeps the names
// in the pages of the base before while at least half of those pages'
// bytes are names in service, and copies them once fewer are; after every
// merge each listed name matches the rule, text and line a fresh load of
// the same file gives.
func TestCompactSharesNames(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "big.txt")
	var names []string
	for i := range 4000 {
		names = append(names, fmt.Sprintf("n%04d.shared-pages.example", i))
	}
	write := func() {
		if err := os.WriteFile(path, []byte(strings.Join(names, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write()
	s := NewStore(Options{Dirs: []string{dir}, Logger: discardLogger()})
	if _, err := s.Reload(context.Background(), "test"); err != nil {
		t.Fatal(err)
	}
	for step, wantShared := range []bool{true, true, false} {
		// Drop a run of just under a quarter of the lines (still a delta).
		cut := len(names)/4 - 2
		names = append(names[:len(names)/3:len(names)/3], names[len(names)/3+cut:]...)
		write()
		rep, err := s.Reload(context.Background(), "test")
		if err != nil || !rep.Delta {
			t.Fatalf("step %d: not a delta: %v %+v", step, err, rep)
		}
		s.WaitCompacted()
		cur := s.Current()
		if cur.layer != nil {
			t.Fatalf("step %d: not merged", step)
		}
		if shared := cur.dom.pagesShared > 0; shared != wantShared {
			t.Errorf("step %d: names kept in the old pages %v (%d of %d bytes), want %v", step, shared, cur.dom.sharedBytes, cur.dom.pagesShared, wantShared)
		}
		fresh := NewStore(Options{Dirs: []string{dir}, Logger: discardLogger()})
		if _, err := fresh.Reload(context.Background(), "test"); err != nil {
			t.Fatal(err)
		}
		want := fresh.Current()
		if cur.RuleCount() != want.RuleCount() {
			t.Fatalf("step %d: %d rules, fresh load %d", step, cur.RuleCount(), want.RuleCount())
		}
		for _, n := range names {
			q := "www." + n
			got, exp := cur.MatchName(q), want.MatchName(q)
			if !got.Blocked() || cur.Rule(got.Rule).Text != want.Rule(exp.Rule).Text || cur.Rule(got.Rule).Line != want.Rule(exp.Rule).Line {
				t.Fatalf("step %d: %s: %+v, fresh load %+v", step, q, cur.Rule(got.Rule), want.Rule(exp.Rule))
			}
		}
		for tr := range cur.Triggers() {
			if !strings.HasSuffix(tr.Name, ".shared-pages.example") {
				t.Fatalf("step %d: trigger %q", step, tr.Name)
			}
		}
	}
}

// Match.At points at the block rule's own name inside the matched name,
// for every kind of rule, deep names, and rules a delta layer added (the
// layered match) as well as the compiled table's.
func TestMatchAt(t *testing.T) {
	base := "example.com\n*.wild.test\n=exact.test\ndeep.a.b.c.test\nco.example.org\n@@ok.example.com\n"
	st, dir := load(t, map[string]string{"l.txt": base})
	probes := []string{"example.com", "www.example.com", "a.b.www.example.com", "x.wild.test", "y.x.wild.test",
		"exact.test", "deep.a.b.c.test", "q.deep.a.b.c.test", "co.example.org", "w.co.example.org",
		"ok.example.com", "in.ok.example.com", "added.test", "z.added.test", "p.q.r.s.t.u.v.w.x.y.z.a.b.c.d.e.f.g.added.test"}
	check := func(s *Snapshot, layered bool) {
		t.Helper()
		if got := s.layer != nil; got != layered {
			t.Fatalf("layered %v, want %v", got, layered)
		}
		for _, n := range probes {
			m := s.MatchName(n)
			if !m.HasRule || m.Rule.Type() != RuleDomain {
				continue
			}
			text := s.Rule(m.Rule).Text
			own := strings.TrimPrefix(strings.TrimPrefix(text, "*."), "=")
			if m.At < 0 || m.At > len(n) || n[m.At:] != own || (m.At > 0 && n[m.At-1] != '.') {
				t.Errorf("layered %v: %s matched %q with At %d (%q)", layered, n, text, m.At, n[min(max(m.At, 0), len(n)):])
			}
		}
	}
	check(st.Current(), false)
	write(t, dir, "l.txt", base+"added.test\n")
	if rep := reload(t, st); !rep.Delta {
		t.Fatal("the one-line change was not applied as a delta")
	}
	// The merge runs a second after the change: the snapshot taken now is
	// the layered one unless this machine stalled for that long.
	if cur := st.Current(); cur.layer != nil {
		check(cur, true)
	} else {
		t.Log("the delta was merged before it could be checked; only the merged snapshot is")
	}
	st.WaitCompacted()
	check(st.Current(), false)
	if !st.Current().MatchName("p.q.r.s.t.u.v.w.x.y.z.a.b.c.d.e.f.g.added.test").Blocked() {
		t.Fatal("the added rule does not block")
	}
}
