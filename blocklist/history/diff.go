package history

import "github.com/sinkhole-dns/sinkhole/blocklist"

// diffsOf takes, from the store's report, the rules each added, updated or
// removed file gained and lost (the store's line difference against the
// version served before: blocklist.FileChange.Added and Removed), the
// first MaxListed of each by their canonical text ("*.binance.com",
// "@@198.51.100.0/24", "AS13335"). A removed file reports its count only.
func diffsOf(rep *blocklist.ReloadReport) []Diff {
	var out []Diff
	for _, f := range rep.Files {
		switch f.Change {
		case blocklist.ChangeAdded, blocklist.ChangeUpdated, blocklist.ChangeRemoved:
		default:
			continue
		}
		if f.AddedCount+f.RemovedCount == 0 {
			continue
		}
		out = append(out, Diff{File: f.Name, AddedCount: f.AddedCount, RemovedCount: f.RemovedCount,
			Added: texts(f.Added), Removed: texts(f.Removed)})
	}
	return out
}

func texts(rules []blocklist.Rule) []string {
	var out []string
	for _, r := range rules[:min(len(rules), MaxListed)] {
		out = append(out, r.Text)
	}
	return out
}
