package rpz

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sinkhole-dns/sinkhole/blocklist"
)

// TestExportCarriesZoneDirectives: what every exported rule shares
// (authority, contact) travels as apex TXT records, and a sinkhole feed
// applies them to the zone's rules; what differs per rule (order) cannot
// travel in RPZ and is left out.
func TestExportCarriesZoneDirectives(t *testing.T) {
	list := "# authority: Ministry of Finance\n# contact: https://appeal.example/\n# order: A-1\nbinance.com\n# order: A-2\nokx.com\n198.51.100.0/24\n"
	p := startPrimary(t, "", map[string]string{"a.txt": list}, ExportConfig{})
	got, err := xfr(t, p.addr, axfrMsg("rpz.test"))
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join(got, "\n")
	for _, w := range []string{`rpz.test. 300 IN TXT "authority: Ministry of Finance"`, `rpz.test. 300 IN TXT "contact: https://appeal.example/"`} {
		if !strings.Contains(text, w) {
			t.Fatalf("AXFR lacks %s:\n%s", w, text)
		}
	}
	if strings.Contains(text, "order:") {
		t.Fatalf("a per-rule order was exported:\n%s", text)
	}
	checkZonemd(t, "rpz.test.", got[:len(got)-1])

	dir := t.TempDir()
	s, err := NewSecondary(FeedConfig{Name: "regulator", Zone: "rpz.test", Primary: addrPort(t, p.addr), Dir: dir, RequireZonemd: true, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.refresh(ctx, true); err != nil {
		t.Fatal(err)
	}
	st := blocklist.NewStore(blocklist.Options{Dirs: []string{dir}, Logger: quietLogger()})
	rep, err := st.Reload(ctx, "test")
	if err != nil || rep.Failed() {
		t.Fatalf("%v %v", err, rep.Errors())
	}
	if f := st.Current().File("regulator.rpz"); f == nil || len(f.Warnings) != 0 {
		t.Fatalf("feed zone warnings: %+v", f)
	}
	snap := st.Current()
	for _, name := range []string{"www.binance.com", "okx.com"} {
		m := snap.MatchName(name)
		r := snap.Rule(m.Rule)
		if !m.Blocked() || r.Authority != "Ministry of Finance" || r.Contact != "https://appeal.example/" || r.Order != "" {
			t.Fatalf("%s at the feed: %+v", name, r)
		}
	}
	if _, errs := blocklist.CheckFile(filepath.Join(dir, "regulator.rpz"), 0); len(errs) > 0 {
		t.Fatal(errs)
	}
}
