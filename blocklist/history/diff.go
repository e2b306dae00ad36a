package history

import "github.com/sinkhole-dns/sinkhole/blocklist"

// diffFiles computes, for every file the reload added, updated or
// removed, the rules (canonical text, e.g. "*.binance.com",
// "@@198.51.100.0/24", "AS13335") in cur and not in old, and the other way
// round, counting repeats.
//
// It is the interim source of Diff: it walks both snapshots' rules, so it
// keeps the previous snapshot alive between reloads (History.prev). The
// store's own per-file line diff in the reload report, when it lands,
// replaces it (and the retained snapshot).
func diffFiles(old, cur *blocklist.Snapshot, rep *blocklist.ReloadReport) []Diff {
	// A file that is new (every file at the first load) gained all its
	// rules and a removed one lost all of its: list the first few and
	// count the rest without building every rule's text. Only an updated
	// file needs both versions compared.
	updated := map[string]bool{}
	var out []Diff
	for _, f := range rep.Files {
		switch {
		case f.Change == blocklist.ChangeUpdated && old != nil:
			updated[f.Name] = true
		case f.Change == blocklist.ChangeAdded || f.Change == blocklist.ChangeUpdated:
			d := Diff{File: f.Name}
			d.Added, d.AddedCount = firstRules(cur, f.Name)
			out = append(out, d)
		case f.Change == blocklist.ChangeRemoved && old != nil:
			d := Diff{File: f.Name}
			d.Removed, d.RemovedCount = firstRules(old, f.Name)
			out = append(out, d)
		}
	}
	if len(updated) > 0 {
		before, after := rulesOf(old, updated), rulesOf(cur, updated)
		for _, f := range rep.Files {
			if !updated[f.Name] {
				continue
			}
			d := Diff{File: f.Name}
			d.Added, d.AddedCount = minus(after[f.Name], before[f.Name])
			d.Removed, d.RemovedCount = minus(before[f.Name], after[f.Name])
			out = append(out, d)
		}
	}
	kept := out[:0]
	for _, d := range out {
		if d.AddedCount+d.RemovedCount > 0 {
			kept = append(kept, d)
		}
	}
	return kept
}

// firstRules returns the texts of file's first MaxListed rules in s and
// how many rules it has.
func firstRules(s *blocklist.Snapshot, file string) ([]string, int) {
	var list []string
	n := 0
	var buf []byte
	for t := range s.Triggers() {
		f, _, _ := s.RulePlace(t.ID)
		if f != file {
			continue
		}
		n++
		if len(list) < MaxListed {
			buf = s.AppendRuleText(buf[:0], t.ID)
			list = append(list, string(buf))
		}
	}
	return list, n
}

// rulesOf returns the rule texts of the given files in s.
func rulesOf(s *blocklist.Snapshot, files map[string]bool) map[string][]string {
	out := map[string][]string{}
	var buf []byte
	for t := range s.Triggers() {
		file, _, _ := s.RulePlace(t.ID)
		if files[file] {
			buf = s.AppendRuleText(buf[:0], t.ID)
			out[file] = append(out[file], string(buf))
		}
	}
	return out
}

// minus returns the first MaxListed elements of a not in b (as multisets,
// in a's order) and how many there are.
func minus(a, b []string) ([]string, int) {
	have := make(map[string]int, len(b))
	for _, r := range b {
		have[r]++
	}
	var list []string
	n := 0
	for _, r := range a {
		if have[r] > 0 {
			have[r]--
			continue
		}
		n++
		if len(list) < MaxListed {
			list = append(list, r)
		}
	}
	return list, n
}
