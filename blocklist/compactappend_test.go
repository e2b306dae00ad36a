package blocklist

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// rulesDump lists every rule of s in service with what a decision reports
// of it: text, file:line, section, local data.
func rulesDump(s *Snapshot) string {
	var b strings.Builder
	for tr := range s.Triggers() {
		r := s.Rule(tr.ID)
		fmt.Fprintf(&b, "%s %s %s/%s/%s/%v %+v", r.Text, r.Where(), r.Platform, r.Action, r.Scope, r.Allow, r.Why)
		for _, rr := range s.LocalData(tr.ID) {
			fmt.Fprintf(&b, " local %s", localText(rr))
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// appendMergeRounds appends lines (from next) to file z of dir, served by
// st, one to three at a time, 40 times, and checks after each reload and
// after each merge that st decides every probe, and lists every rule,
// exactly as a full load of the same files does; a snapshot taken before
// the merge must decide as it did after it (the merge extends arrays it
// reads). It returns how many merges extended the base (compactAppend).
func appendMergeRounds(t *testing.T, st *Store, dir, z string, files map[string]string, next func(round, k int) string,
	names []string, ips []netip.Addr) int {
	t.Helper()
	dec := func(s *Snapshot) string { return rpzDecisions(s, names, ips) }
	before := appendMerges.Load()
	for round := range 40 {
		var add strings.Builder
		for k := range 1 + round%3 {
			add.WriteString(next(round, k) + "\n")
		}
		files[z] += add.String()
		f, err := os.OpenFile(filepath.Join(dir, z), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteString(add.String()); err != nil {
			t.Fatal(err)
		}
		f.Close()
		rep := reload(t, st)
		fresh, _ := load(t, files)
		want, wantRules := dec(fresh.Current()), rulesDump(fresh.Current())
		layered := st.Current()
		if got := dec(layered); got != want {
			t.Fatalf("round %d (delta %v): decisions differ from a full load:\n%s", round, rep.Delta, diffLines(got, want))
		}
		st.WaitCompacted()
		merged := st.Current()
		if merged.layer != nil {
			t.Fatalf("round %d: not merged", round)
		}
		if got := dec(merged); got != want {
			t.Fatalf("round %d (delta %v): after the merge, decisions differ from a full load:\n%s", round, rep.Delta, diffLines(got, want))
		}
		if got := rulesDump(merged); got != wantRules {
			t.Fatalf("round %d: after the merge, rules differ from a full load:\n%s", round, diffLines(got, wantRules))
		}
		if got := dec(layered); got != want {
			t.Fatalf("round %d: the snapshot before the merge now decides otherwise:\n%s", round, diffLines(got, want))
		}
	}
	return int(appendMerges.Load() - before)
}

// TestAppendMergeMatchesFullLoad: lines appended to the last of two list
// files, 40 times, merged after each reload, decide as a full load of
// the same files, over a plain list (kinds and lines packed) and over a
// list of every kind of rule (exceptions, wildcards, exact names, IPs,
// names already listed, comments, a directive now and then), where some
// appends need the full merge.
func TestAppendMergeMatchesFullLoad(t *testing.T) {
	for _, tc := range []struct {
		name    string
		z       string
		line    func(rng *rand.Rand, round, k int) string
		minFast int
	}{
		{"plain", "", func(_ *rand.Rand, round, k int) string { return fmt.Sprintf("new%d-%d.example", round, k) }, 40},
		{"mixed", "", func(rng *rand.Rand, round, k int) string {
			switch rng.IntN(8) {
			case 0:
				return deltaLine(rng) // may repeat a listed name, or be an IP
			case 1:
				return "@@s.new" + fmt.Sprint(round) + ".example"
			case 2:
				return "*.w" + fmt.Sprint(round*3+k) + ".example"
			case 3:
				return "=e" + fmt.Sprint(round*3+k) + ".example"
			case 4:
				if rng.IntN(3) == 0 {
					return "# action: log"
				}
			}
			return fmt.Sprintf("new%d-%d.example", round, k)
		}, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(3, 5))
			var big strings.Builder
			big.WriteString("# platform: Big\n# action: nxdomain\n")
			for i := range 3000 {
				if tc.name == "plain" {
					fmt.Fprintf(&big, "b%d.example\n", i)
				} else {
					big.WriteString(deltaLine(rng) + "\n")
				}
			}
			files := map[string]string{"a.txt": "# platform: Other\nn1.example\n198.51.100.3\n", "z.txt": big.String()}
			st, dir := load(t, files)
			var names []string
			for i := range 60 {
				names = append(names, fmt.Sprintf("n%d.example", i), fmt.Sprintf("s%d.n%d.example", i%4, i), fmt.Sprintf("b%d.example", i*50))
			}
			for r := range 40 {
				for k := range 3 {
					names = append(names, fmt.Sprintf("new%d-%d.example", r, k), fmt.Sprintf("x.w%d.example", r*3+k), fmt.Sprintf("e%d.example", r*3+k), fmt.Sprintf("s.new%d.example", r))
				}
			}
			ips := []netip.Addr{netip.MustParseAddr("198.51.100.3"), netip.MustParseAddr("198.51.100.5")}
			fast := appendMergeRounds(t, st, dir, "z.txt", files, func(round, k int) string { return tc.line(rng, round, k) }, names, ips)
			if fast < tc.minFast {
				t.Fatalf("%d of 40 merges extended the base, want at least %d", fast, tc.minFast)
			}
		})
	}
}

// TestAppendMergeRPZ: RPZ records appended to a zone ("name" and
// "*.name" pairs, local data, a name already in the zone now and then),
// 40 times, decide after each merge as a full load of the zone.
func TestAppendMergeRPZ(t *testing.T) {
	var zone strings.Builder
	fmt.Fprintf(&zone, rpzDeltaHead, 1)
	for i := range 2000 {
		fmt.Fprintf(&zone, "e%d.example CNAME .\n*.e%d.example CNAME .\n", i, i)
	}
	files := map[string]string{"z.rpz": zone.String()}
	st, dir := load(t, files)
	names, ips := rpzProbes(2100)
	fast := appendMergeRounds(t, st, dir, "z.rpz", files, func(round, k int) string {
		o := fmt.Sprintf("e%d.example", 2000+round*3+k)
		switch (round + k) % 5 {
		case 1:
			return o + " A 192.0.2.7"
		case 2:
			return o + " CNAME rpz-passthru."
		case 3:
			return "; a comment"
		}
		return o + " CNAME .\n*." + o + " CNAME ."
	}, names, ips)
	if fast < 20 {
		t.Fatalf("%d of 40 merges extended the base, want at least 20", fast)
	}
}

// TestAppendMergeOlderBase merges a layered snapshot after a newer one
// over the same base was merged: the newer merge extended the base's
// arrays in place, so the older must copy them, and neither merge may
// change what the other decides.
func TestAppendMergeOlderBase(t *testing.T) {
	var big strings.Builder
	for range 400 {
		big.WriteString("# room for 400 more rules in the arrays the load sizes by lines\n")
	}
	for i := range 5000 {
		fmt.Fprintf(&big, "b%d.example\n", i)
	}
	st, dir := load(t, map[string]string{"z.txt": big.String()})
	st.mergeMu.Lock() // the store's own merges wait
	write(t, dir, "z.txt", big.String()+"one.example\n")
	reload(t, st)
	first := st.Current() // base + one.example, layered
	write(t, dir, "z.txt", big.String()+"two.example\nthree.example\n")
	reload(t, st)
	layered := st.Current() // base + two, three, layered over the same base
	if first.layer == nil || layered.layer == nil || first.dom.len() != 5000 || layered.dom.len() != 5000 {
		t.Fatalf("layers: first %v (%d), second %v (%d)", first.layer != nil, first.dom.len(), layered.layer != nil, layered.dom.len())
	}
	n := appendMerges.Load()
	second, err := compact(layered) // extends the base in place
	if err != nil {
		t.Fatal(err)
	}
	older, err := compact(first) // must copy
	if err != nil || appendMerges.Load() != n+2 {
		t.Fatalf("compact: %v, append merges %d", err, appendMerges.Load()-n)
	}
	if &second.dom.lens[0] != &first.dom.lens[0] || &older.dom.lens[0] == &first.dom.lens[0] {
		t.Errorf("arrays: the first merge copied them or the second did not")
	}
	st.mergeMu.Unlock()
	st.WaitCompacted()
	for _, c := range []struct {
		s    *Snapshot
		want map[string]bool
	}{
		{older, map[string]bool{"one.example": true, "two.example": false, "three.example": false, "b4999.example": true}},
		{second, map[string]bool{"one.example": false, "two.example": true, "three.example": true, "b4999.example": true}},
		{first, map[string]bool{"one.example": true, "two.example": false, "three.example": false, "b0.example": true}},
		{layered, map[string]bool{"one.example": false, "two.example": true, "three.example": true, "b0.example": true}},
		{st.Current(), map[string]bool{"one.example": false, "two.example": true, "three.example": true, "b0.example": true}},
	} {
		for name, want := range c.want {
			if got := c.s.MatchName(name).Blocked(); got != want {
				t.Errorf("generation %d (%d rules): %s blocked %v, want %v", c.s.Generation, c.s.RuleCount(), name, got, want)
			}
		}
	}
	if got := older.Rule(older.MatchName("one.example").Rule); got.Where() != "z.txt:5401" {
		t.Errorf("one.example at %s", got.Where())
	}
	if got := second.Rule(second.MatchName("three.example").Rule); got.Where() != "z.txt:5402" {
		t.Errorf("three.example at %s", got.Where())
	}
}

// TestAppendMergeCopiesFewSlotPages: merging one appended name copies the
// page of slots it goes to and shares the others with the base, which
// keeps finding every name it had.
func TestAppendMergeCopiesFewSlotPages(t *testing.T) {
	var big strings.Builder
	for i := range 100000 {
		fmt.Fprintf(&big, "b%d.pages.example\n", i)
	}
	st, dir := load(t, map[string]string{"z.txt": big.String()})
	base := st.Current()
	if len(base.dom.slots) < 8 {
		t.Fatalf("%d slot pages", len(base.dom.slots))
	}
	for round := range 3 {
		f, err := os.OpenFile(filepath.Join(dir, "z.txt"), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(f, "new%d.pages.example\n", round)
		f.Close()
		n := appendMerges.Load()
		if rep := reload(t, st); !rep.Delta {
			t.Fatalf("round %d: not a delta", round)
		}
		st.WaitCompacted()
		merged := st.Current()
		if appendMerges.Load() != n+1 || merged.layer != nil {
			t.Fatalf("round %d: not merged by extending the base", round)
		}
		copied := 0
		for i, pg := range merged.dom.slots {
			if &pg[0] != &base.dom.slots[i][0] {
				copied++
			}
		}
		if copied == 0 || copied > 2*(round+1) {
			t.Errorf("round %d: %d of %d slot pages copied", round, copied, len(merged.dom.slots))
		}
		for i := 0; i < 100000; i += 997 {
			name := fmt.Sprintf("x.b%d.pages.example", i)
			if !base.MatchName(name).Blocked() || !merged.MatchName(name).Blocked() {
				t.Fatalf("round %d: %s not blocked", round, name)
			}
		}
		for r := 0; r <= round; r++ {
			name := fmt.Sprintf("new%d.pages.example", r)
			if base.MatchName(name).Blocked() || !merged.MatchName(name).Blocked() {
				t.Fatalf("round %d: %s: base %v, merged %v", round, name, base.MatchName(name).Blocked(), merged.MatchName(name).Blocked())
			}
		}
	}
}
