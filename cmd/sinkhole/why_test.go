package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/internal/admin"
)

// whyList is a list whose entries carry an authority, an order reference
// and a contact.
const whyList = `# platform: Binance
# authority: Ministry of Finance
# order: MoF-2024-17
# contact: https://appeal.example/
binance.com
# order: MoF-2024-18
203.0.113.0/24
`

// TestWhyDirectivesEverywhere follows "# authority:", "# order:" and
// "# contact:" through a running server: the EDE text, the admin API's
// query route, "sinkhole query" (online and offline) and the audit log.
func TestWhyDirectivesEverywhere(t *testing.T) {
	up := startUpstream(t, "ip.example. 60 IN A 203.0.113.5")
	lists := writeLists(t, map[string]string{"exchanges.txt": whyList})
	ts := startSinkhole(t, lists, "--upstream", up.Addr)

	r := ts.query(t, "udp", "www.binance.com", dns.TypeA)
	want := "blocked by exchanges.txt:5 (Binance); authority: Ministry of Finance; order: MoF-2024-17; contact: https://appeal.example/"
	if e := ede(r); e == nil || e.ExtraText != want {
		t.Fatalf("EDE %+v, want %q", e, want)
	}
	r = ts.query(t, "tcp", "ip.example", dns.TypeA)
	if e := ede(r); e == nil || !strings.Contains(e.ExtraText, "order: MoF-2024-18") {
		t.Fatalf("answer-based EDE %+v", e)
	}

	resp, err := http.Get("http://" + ts.in.admin.Addr() + "/v1/query?name=www.binance.com")
	if err != nil {
		t.Fatal(err)
	}
	var ex admin.Explanation
	json.NewDecoder(resp.Body).Decode(&ex)
	resp.Body.Close()
	if ex.Rule == nil || ex.Rule.Authority != "Ministry of Finance" || ex.Rule.Order != "MoF-2024-17" || ex.Rule.Contact != "https://appeal.example/" {
		t.Fatalf("admin API rule %+v", ex.Rule)
	}

	out, _, code := runBin(t, "query", "--admin", ts.in.admin.Addr(), "www.binance.com")
	for _, w := range []string{"  authority: Ministry of Finance\n", "  order:     MoF-2024-17\n", "  contact:   https://appeal.example/\n"} {
		if code != 0 || !strings.Contains(out, w) {
			t.Fatalf("sinkhole query lacks %q: exit %d\n%s", w, code, out)
		}
	}
	out, _, _ = runBin(t, "query", "--lists", lists, "binance.com")
	if !strings.Contains(out, "  order:     MoF-2024-17\n") {
		t.Fatalf("offline query:\n%s", out)
	}

	ts.stop()
	var found int
	for _, l := range readJSONLines(t, ts.audit) {
		switch l["name"] {
		case "www.binance.com":
			found++
			if l["authority"] != "Ministry of Finance" || l["order"] != "MoF-2024-17" || l["contact"] != "https://appeal.example/" {
				t.Errorf("audit line %v", l)
			}
		case "ip.example":
			found++
			if l["order"] != "MoF-2024-18" {
				t.Errorf("audit line %v", l)
			}
		}
	}
	if found != 2 {
		t.Fatalf("%d audit lines for the two blocks", found)
	}
}
