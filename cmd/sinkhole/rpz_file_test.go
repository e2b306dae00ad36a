package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/blocklist"
)

const regulatorZone = `$TTL 60
@ SOA ns.rpz.test. admin.rpz.test. 7 3600 600 86400 60
  NS ns.rpz.test.
binance.com        CNAME .
*.binance.com      CNAME .
academy.binance.com CNAME rpz-passthru.
quiet.test         CNAME *.
gone.test          CNAME rpz-drop.
garden.test        A 192.0.2.80
garden.test        TXT "blocked by order of the regulator"
*.redirect.test    CNAME *.walled.garden.
ns1.bad.test.rpz-nsdname CNAME .
32.66.2.0.192.rpz-ip CNAME .
128.66.zz.db8.2001.rpz-ip CNAME *.
`

func TestRPZFileEndToEnd(t *testing.T) {
	up := startUpstream(t,
		"academy.binance.com. 300 IN A 192.0.2.30",
		"cdn.allowed.test. 300 IN A 192.0.2.66",
		"v6.allowed.test. 300 IN AAAA 2001:db8::66",
		"fine.allowed.test. 300 IN A 192.0.2.67",
	)
	ts := startSinkhole(t, writeLists(t, map[string]string{"rpz.test.rpz": regulatorZone}), "--upstream", up.Addr, "--block-action", "refused")
	type want struct {
		name   string
		qtype  uint16
		rcode  int
		answer []string // suffixes, in order
		soa    bool
		reason string
	}
	for _, w := range []want{
		// RPZ actions win over --block-action.
		{"binance.com", dns.TypeA, dns.RcodeNameError, nil, true, "blocked by rpz.test.rpz:4"},
		{"www.binance.com", dns.TypeA, dns.RcodeNameError, nil, true, "blocked by rpz.test.rpz:5"},
		{"academy.binance.com", dns.TypeA, dns.RcodeSuccess, []string{"IN A 192.0.2.30"}, false, ""},
		{"quiet.test", dns.TypeA, dns.RcodeSuccess, nil, true, "blocked by rpz.test.rpz:7"},
		{"www.quiet.test", dns.TypeA, dns.RcodeServerFailure, nil, false, ""}, // exact trigger only: forwarded, upstream has no such name
		{"garden.test", dns.TypeA, dns.RcodeSuccess, []string{"garden.test.\t60\tIN\tA\t192.0.2.80"}, false, "blocked by rpz.test.rpz:9"},
		{"garden.test", dns.TypeTXT, dns.RcodeSuccess, []string{`IN TXT "blocked by order of the regulator"`}, false, ""},
		{"garden.test", dns.TypeAAAA, dns.RcodeSuccess, nil, true, ""},
		{"a.redirect.test", dns.TypeA, dns.RcodeSuccess, []string{"a.redirect.test. 60 IN CNAME a.redirect.test.walled.garden."}, false, ""},
		{"cdn.allowed.test", dns.TypeA, dns.RcodeNameError, nil, true, "blocked by rpz.test.rpz:13; 192.0.2.66"},
		{"v6.allowed.test", dns.TypeAAAA, dns.RcodeSuccess, nil, true, "blocked by rpz.test.rpz:14; 2001:db8::66"},
		{"fine.allowed.test", dns.TypeA, dns.RcodeSuccess, []string{"IN A 192.0.2.67"}, false, ""},
	} {
		r := ts.query(t, "udp", w.name, w.qtype)
		if w.rcode == dns.RcodeServerFailure {
			if r.Rcode == dns.RcodeNameError && ede(r) != nil && ede(r).InfoCode == dns.ExtendedErrorCodeCensored {
				t.Errorf("%s: blocked: %v", w.name, r)
			}
			continue
		}
		if r.Rcode != w.rcode {
			t.Errorf("%s %s: rcode %s want %s", w.name, dns.TypeToString[w.qtype], dns.RcodeToString[r.Rcode], dns.RcodeToString[w.rcode])
			continue
		}
		got := answerStrings(r)
		if len(got) != len(w.answer) {
			t.Errorf("%s %s: answer %v want %v", w.name, dns.TypeToString[w.qtype], got, w.answer)
			continue
		}
		for i := range got {
			if !strings.HasSuffix(got[i], strings.ReplaceAll(w.answer[i], "\t", " ")) {
				t.Errorf("%s %s: answer %q want suffix %q", w.name, dns.TypeToString[w.qtype], got[i], w.answer[i])
			}
		}
		if (len(r.Ns) == 1) != w.soa {
			t.Errorf("%s %s: authority %v", w.name, dns.TypeToString[w.qtype], r.Ns)
		}
		if w.reason != "" && (ede(r) == nil || ede(r).ExtraText != w.reason) {
			t.Errorf("%s %s: EDE %v want %q", w.name, dns.TypeToString[w.qtype], ede(r), w.reason)
		}
	}
	// rpz-drop: no answer at all.
	m := new(dns.Msg)
	m.SetQuestion("gone.test.", dns.TypeA)
	c := &dns.Client{Net: "udp", Timeout: 300 * time.Millisecond}
	if r, _, err := c.Exchange(m, ts.addr); err == nil {
		t.Fatalf("rpz-drop answered: %v", r)
	}
	// The unsupported NSDNAME trigger is reported, not silently ignored.
	if log := ts.stderr.String(); !strings.Contains(log, "rpz.test.rpz:12: NSDNAME triggers are not supported; ignored") {
		t.Fatalf("no warning in the log:\n%s", log)
	}
}

// TestRPZFileDelta edits a served RPZ zone file, in place and by rename
// (a name added, one removed, the SOA serial bumped each time) and checks
// with a real client that the new name is blocked and the removed one is
// not, with the reason's file:line of the new version, and that the
// reloads were applied as deltas.
func TestRPZFileDelta(t *testing.T) {
	var body strings.Builder
	body.WriteString("$ORIGIN rpz.test.\n$TTL 60\n@ SOA ns.rpz.test. admin.rpz.test. (\n   1 ; serial\n   3600 600 86400 60 )\n  NS ns.rpz.test.\n")
	for i := range 500 {
		fmt.Fprintf(&body, "site%d.test CNAME .\n", i)
	}
	zone := body.String()
	lists := writeLists(t, map[string]string{"rpz.test.rpz": zone})
	ts := startSinkhole(t, lists)
	var deltas atomic.Int32
	ts.in.store.OnReload(func(_ *blocklist.Snapshot, rep *blocklist.ReloadReport) {
		if rep.Delta {
			deltas.Add(1)
		}
	})
	path := filepath.Join(lists, "rpz.test.rpz")
	blocked := func(name string) (bool, string) {
		r := ts.query(t, "udp", name, dns.TypeA)
		reason := ""
		if e := ede(r); e != nil {
			reason = e.ExtraText
		}
		return r.Rcode == dns.RcodeNameError && strings.HasPrefix(reason, "blocked by "), reason
	}
	if b, _ := blocked("site7.test"); !b {
		t.Fatal("site7.test not blocked at start")
	}
	for step, kind := range []string{"in-place", "rename"} {
		serial := fmt.Sprintf("   %d ; serial", step+2)
		added := fmt.Sprintf("new%d.test", step)
		removed := fmt.Sprintf("site%d.test", 10+step)
		zone = strings.Replace(zone, fmt.Sprintf("   %d ; serial", step+1), serial, 1)
		zone = strings.Replace(zone, removed+" CNAME .\n", "", 1)
		zone = strings.Replace(zone, "site300.test CNAME .\n", "site300.test CNAME .\n"+added+" CNAME .\n", 1)
		switch kind {
		case "in-place":
			if err := os.WriteFile(path, []byte(zone), 0o644); err != nil {
				t.Fatal(err)
			}
		case "rename":
			tmp := filepath.Join(lists, ".rpz.test.rpz.tmp")
			if err := os.WriteFile(tmp, []byte(zone), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, path); err != nil {
				t.Fatal(err)
			}
		}
		waitUntil(t, kind+" edit served", 10*time.Second, func() bool { b, _ := blocked(added); return b })
		line := strings.Count(zone[:strings.Index(zone, added)], "\n") + 1
		if b, reason := blocked(added); !b || reason != fmt.Sprintf("blocked by rpz.test.rpz:%d", line) {
			t.Fatalf("%s: %s blocked %v, reason %q, want line %d", kind, added, b, reason, line)
		}
		if b, _ := blocked(removed); b {
			t.Fatalf("%s: removed %s still blocked", kind, removed)
		}
		// A name after the edit moved with it.
		line = strings.Count(zone[:strings.Index(zone, "site400.test")], "\n") + 1
		if b, reason := blocked("site400.test"); !b || reason != fmt.Sprintf("blocked by rpz.test.rpz:%d", line) {
			t.Fatalf("%s: site400.test blocked %v, reason %q, want line %d", kind, b, reason, line)
		}
	}
	if deltas.Load() < 2 {
		t.Fatalf("%d of the reloads were deltas, want 2", deltas.Load())
	}
}
