package resolver_test

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/blocklist"
	"github.com/sinkhole-dns/sinkhole/resolver"
	"github.com/sinkhole-dns/sinkhole/resolver/policy"
	"github.com/sinkhole-dns/sinkhole/resolver/query"
)

// Stats counts blocks under the platform of the snapshot each was decided
// under, across a reload that moves a rule to another platform and blocks
// alternating between the two snapshots (it remembers each section's
// counter by the section).
func TestStatsPlatformsFollowSections(t *testing.T) {
	dir := t.TempDir()
	write := func(body string) {
		if err := os.WriteFile(filepath.Join(dir, "ex.txt"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	st := blocklist.NewStore(blocklist.Options{Dirs: []string{dir}, Logger: slog.New(slog.DiscardHandler)})
	load := func() *blocklist.Snapshot {
		if _, err := st.Reload(context.Background(), "test"); err != nil {
			t.Fatal(err)
		}
		return st.Current()
	}
	write("# platform: A\nbinance.com\n")
	old := load()
	write("# platform: B\nbinance.com\n")
	cur := load()
	var s resolver.Stats
	observe := func(snap *blocklist.Snapshot) {
		msg := new(dns.Msg)
		msg.SetQuestion("www.binance.com.", dns.TypeA)
		req := query.NewRequest(msg, netip.MustParseAddrPort("192.0.2.1:1234"), "udp", snap)
		m := snap.MatchName(req.Name)
		if !m.Blocked() {
			t.Fatal("www.binance.com is not blocked")
		}
		req.Info.Decision = (&policy.Blocker{}).Decide(snap, m.Rule, query.TriggerQName, req.Name)
		s.Observe(req, nil)
	}
	for i := range 5 {
		observe(old)
		for range i + 1 {
			observe(cur)
		}
	}
	got := map[string]uint64{}
	for _, p := range s.TopPlatforms(10) {
		got[p.Platform] = p.Blocks
	}
	if got["A"] != 5 || got["B"] != 15 || len(got) != 2 {
		t.Errorf("blocks by platform %v, want A 5 and B 15", got)
	}
	if s.Blocked.Load() != 20 {
		t.Errorf("%d blocked, want 20", s.Blocked.Load())
	}
}
