package main

import (
	"io"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/sinkhole-dns/sinkhole/blocklist"
)

// The shipped list as the domain expert's review asked: 124 platforms, each
// with a status note; exchanges' own names only; no lapsed domains of
// closed platforms; the API and regional domains and missing platforms in.
func TestShippedListContent(t *testing.T) {
	const path = "../../lists/foreign-exchanges.txt"
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	if !strings.Contains(text, "compiled from public knowledge") {
		t.Error("the header does not say the list is compiled from public knowledge")
	}
	lines := strings.Split(text, "\n")
	platforms := map[string]bool{}
	note := regexp.MustCompile(`^# .*\b(active|defunct)\b`)
	for i, l := range lines {
		name, ok := strings.CutPrefix(l, "# platform: ")
		if !ok {
			continue
		}
		if platforms[name] {
			t.Errorf("line %d: platform %q twice", i+1, name)
		}
		platforms[name] = true
		if i+1 >= len(lines) || !note.MatchString(lines[i+1]) {
			t.Errorf("line %d: platform %q has no status note (\"# active; ...\" or \"# defunct; ...\") on the next line", i+1, name)
		}
	}
	if len(platforms) != 124 {
		t.Errorf("%d platforms, want 124 (or say in the header why the count changed, and change this test)", len(platforms))
	}

	st := blocklist.NewStore(blocklist.Options{Dirs: []string{"../../lists"}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if rep, err := st.Reload(t.Context(), "test"); err != nil || rep.Failed() {
		t.Fatalf("shipped lists: %v %v", err, rep.Errors())
	}
	snap := st.Current()
	for _, tc := range []struct {
		name    string
		blocked bool
		why     string
	}{
		{"www.binance.com", true, ""},
		{"api.gateio.ws", true, "Gate's API"},
		{"www.binance.th", true, "Binance TH"},
		{"www.trbinance.com", true, "Binance TR"},
		{"www.bybitglobal.com", true, "Bybit"},
		{"www.bybit.eu", true, "Bybit EU"},
		{"www.mexc.co", true, "MEXC"},
		{"www.btcc.com", true, "BTCC"},
		{"backpack.exchange", true, "Backpack"},
		{"coinlist.co", true, "CoinList"},
		{"garantex.org", true, "Garantex (seized) / Grinex"},
		{"exchange.blockchain.com", true, "the Blockchain.com exchange"},
		{"hashkey.com", true, "HashKey Exchange"},
		{"global.hashkey.com", true, "HashKey Global"},
		{"blockchain.com", false, "a wallet and explorer, not the exchange"},
		{"www.blockchain.com", false, "a wallet and explorer, not the exchange"},
		{"group.hashkey.com", false, "the HashKey group, not an exchange"},
		{"z.com", false, "GMO's whole brand"},
		{"liquid.com", false, "closed; generic, lapsed domain"},
		{"bittrex.com", false, "closed"},
		{"hotbit.io", false, "closed"},
		{"bkex.com", false, "closed"},
		{"bitforex.com", false, "closed"},
		{"zb.com", false, "closed"},
		{"changelly.com", false, "a swap service, not an exchange"},
		{"changenow.io", false, "a swap service, not an exchange"},
		{"fixedfloat.com", false, "a swap service, not an exchange"},
		{"paybis.com", false, "a broker, not an exchange"},
	} {
		m := snap.MatchName(tc.name)
		if m.Blocked() != tc.blocked {
			t.Errorf("%s: blocked %v, want %v (%s)", tc.name, m.Blocked(), tc.blocked, tc.why)
		}
		if tc.blocked && snap.Rule(m.Rule).Platform == "" {
			t.Errorf("%s: blocked without a platform", tc.name)
		}
	}
}
