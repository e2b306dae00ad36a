package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sinkhole-dns/sinkhole/blocklist"
)

// TestHeldAcrossRestart: a list file emptied or deleted while sinkhole
// is down is held at the next start as a live reload holds it: the last
// good version, kept in --state-dir, serves; the log says so at ERROR with
// both counts; status (exit 1), /readyz and the metric show the hold;
// "sinkhole reload --accept" applies the version on disk. A copy that does
// not match its SHA-256 is refused and never served; a normal edit made
// while down serves at the restart, not held.
func TestHeldAcrossRestart(t *testing.T) {
	up := startUpstream(t, "okx.com. 60 IN A 192.0.2.9", "other.test. 60 IN A 192.0.2.9", "new.test. 60 IN A 192.0.2.9")
	cases := []struct {
		name    string
		edit    func(lists, state string) error
		held    bool
		deleted bool
		reason  string
	}{
		{name: "emptied", held: true, reason: "the new version has no rules (the version in service has 2001)",
			edit: func(lists, _ string) error { return os.Truncate(filepath.Join(lists, "main.txt"), 0) }},
		{name: "deleted", held: true, deleted: true, reason: "the file was deleted (the version in service has 2001 rules)",
			edit: func(lists, _ string) error { return os.Remove(filepath.Join(lists, "main.txt")) }},
		{name: "corrupt copy", edit: func(lists, state string) error {
			// The copy garbled: the file emptied on disk is what serves.
			if err := os.WriteFile(filepath.Join(state, lastGoodDir, "main.txt"), []byte(listOf(2001)+"x.test\n"), 0o644); err != nil {
				return err
			}
			return os.Truncate(filepath.Join(lists, "main.txt"), 0)
		}},
		{name: "normal edit", edit: func(lists, _ string) error {
			return os.WriteFile(filepath.Join(lists, "main.txt"), []byte(strings.Replace(listOf(2001), "okx.com", "new.test", 1)), 0o644)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			lists := writeLists(t, map[string]string{"main.txt": listOf(2001), "other.txt": "other.test\n"})
			state := t.TempDir()
			args := []string{"--upstream", up.Addr, "--reload-debounce", "20ms", "--log-format", "json", "--state-dir", state, "--cache-size", "0"}
			ts := startSinkhole(t, lists, args...)
			ts.in.store.WaitLastGood()
			if _, err := blocklist.ReadVerified(filepath.Join(state, lastGoodDir, "main.txt")); err != nil {
				t.Fatalf("no last good copy: %v", err)
			}
			ts.stop()
			if err := tc.edit(lists, state); err != nil {
				t.Fatal(err)
			}
			// The default start strategy (fail) starts: the lists have rules.
			ts = startSinkhole(t, lists, append(args, "--start-strategy", "fail")...)
			admin := ts.in.admin.Addr()
			log := ts.stderr.String
			switch {
			case tc.held:
				if !ts.blocked(t, "okx.com") || !ts.blocked(t, "r1500.exchange.test") {
					t.Fatal("the last good version does not serve after the restart")
				}
				f := ts.in.store.Current().File("main.txt")
				if f == nil || f.Withheld == nil || f.Withheld.State != blocklist.StateHeld || f.Withheld.Deleted != tc.deleted ||
					!strings.Contains(f.Withheld.Reason, tc.reason) || f.Rules() != 2001 {
					t.Fatalf("main.txt: %+v", f)
				}
				waitUntil(t, "the ERROR line", 5*time.Second, func() bool {
					return strings.Contains(log(), `"level":"ERROR","msg":"list file held at start: its last good version, kept in the state directory, serves; \"sinkhole reload --accept\" applies the version on disk","file":"main.txt"`)
				})
				if !strings.Contains(log(), `"new_rules":0,"serving_rules":2001`) {
					t.Fatalf("ERROR line without the counts:\n%s", log())
				}
				code, rd := ts.readyz(t)
				if code != http.StatusOK || len(rd.Withheld) != 1 || rd.Withheld[0].File != "main.txt" || rd.Withheld[0].State != "held" || rd.Withheld[0].ServingRules != 2001 {
					t.Fatalf("readyz %d %+v", code, rd)
				}
				if v := ts.metrics(t).Value("sinkhole_list_held", "file", "main.txt", "state", "held"); v != 1 {
					t.Fatalf("sinkhole_list_held = %v", v)
				}
				out, errOut, exit := runBin(t, "status", "--admin", admin)
				if exit != 1 || !strings.Contains(out, "HELD (last good version serving): ") || !strings.Contains(errOut, "list file main.txt held") {
					t.Fatalf("status: exit %d\n%s\n%s", exit, out, errOut)
				}
				// Held across another restart too, until accepted.
				ts.stop()
				ts = startSinkhole(t, lists, args...)
				admin = ts.in.admin.Addr()
				if !ts.blocked(t, "okx.com") {
					t.Fatal("not held at the second restart")
				}
				out, errOut, exit = runBin(t, "reload", "--accept", "--admin", admin)
				if exit != 0 || !strings.Contains(out, "accepted") {
					t.Fatalf("reload --accept: exit %d\n%s\n%s", exit, out, errOut)
				}
				if ts.blocked(t, "okx.com") || !ts.blocked(t, "other.test") {
					t.Fatal("the accepted version is not in service")
				}
				if _, _, exit = runBin(t, "status", "--admin", admin); exit != 0 {
					t.Fatalf("status after accept: exit %d", exit)
				}
				// Accepted is the last good version now: not held at a restart.
				ts.in.store.WaitLastGood()
				ts.stop()
				ts = startSinkhole(t, lists, args...)
				if f := ts.in.store.Current().File("main.txt"); ts.blocked(t, "okx.com") || f != nil && f.Withheld != nil {
					t.Fatal("held again after it was accepted")
				}
			case tc.name == "corrupt copy":
				if ts.blocked(t, "okx.com") || ts.in.store.Current().MatchName("x.test").Blocked() {
					t.Fatalf("the corrupt copy was served:\n%s", log())
				}
				if !strings.Contains(log(), `"level":"ERROR","msg":"last good version refused: it is not served","file":"main.txt"`) ||
					!strings.Contains(log(), "does not match") {
					t.Fatalf("no ERROR for the corrupt copy:\n%s", log())
				}
			default:
				if !ts.blocked(t, "new.test") || ts.blocked(t, "okx.com") {
					t.Fatal("the edited version does not serve after the restart")
				}
				if f := ts.in.store.Current().File("main.txt"); f.Withheld != nil || f.Rules() != 2001 {
					t.Fatalf("main.txt: %+v", f)
				}
				if _, _, exit := runBin(t, "status", "--admin", admin); exit != 0 {
					t.Fatalf("status: exit %d", exit)
				}
			}
		})
	}
}
