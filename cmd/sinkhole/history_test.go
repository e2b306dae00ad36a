package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sinkhole-dns/sinkhole/internal/admin"
)

// cli runs a sinkhole command in-process against ts's admin API.
func (ts *testServer) cli(t *testing.T, args ...string) (string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(t.Context(), append(append([]string{"sinkhole"}, args...), "--admin", ts.in.admin.Addr()), &out, &errOut)
	return out.String() + errOut.String(), code
}

// What a reload changed: the rules added and removed per file in the
// reload answer and "sinkhole reload", the list versions in /v1/history
// and "sinkhole status --history" with who triggered each.
func TestReloadChangesAndHistory(t *testing.T) {
	lists := writeLists(t, map[string]string{
		"foreign-exchanges.txt": "# platform: Binance\nbinance.com\nokx.com\n",
		"other.txt":             "a.example\n",
	})
	ts := startSinkhole(t, lists, "--upstream", "127.0.0.1:1", "--reload-debounce", "1m")
	// One domain swapped for another: counts alone would say nothing changed.
	os.WriteFile(filepath.Join(lists, "foreign-exchanges.txt"), []byte("# platform: Binance\nbinance.com\nbybit.com\n"), 0o644)
	out, code := ts.cli(t, "reload")
	if code != 0 {
		t.Fatalf("reload: exit %d\n%s", code, out)
	}
	for _, want := range []string{
		"  updated    foreign-exchanges.txt  2 rules (was 2)\n",
		"foreign-exchanges.txt: 1 added, 1 removed\n  + bybit.com\n  - okx.com\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("reload output lacks %q:\n%s", want, out)
		}
	}
	// The JSON answer, and a long change listed 20 rules at a time.
	var b strings.Builder
	for i := range 25 {
		b.WriteString("n" + string(rune('a'+i)) + ".example\n")
	}
	os.WriteFile(filepath.Join(lists, "other.txt"), []byte(b.String()), 0o644)
	req, _ := http.NewRequest(http.MethodPost, "http://"+ts.in.admin.Addr()+"/v1/reload", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var res admin.ReloadResult
	json.NewDecoder(resp.Body).Decode(&res)
	resp.Body.Close()
	if len(res.Diffs) != 1 || res.Diffs[0].File != "other.txt" || res.Diffs[0].AddedCount != 25 || len(res.Diffs[0].Added) != 20 ||
		res.Diffs[0].RemovedCount != 1 || res.Diffs[0].Removed[0] != "a.example" {
		t.Errorf("reload answer diffs: %+v", res.Diffs)
	}
	// A signal reload (one rule swapped: the shrink guard would hold a
	// version that drops most rules).
	os.WriteFile(filepath.Join(lists, "other.txt"), []byte(strings.Replace(b.String(), "na.example", "z.example", 1)), 0o644)
	gen := ts.in.store.Current().Generation
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	waitUntil(t, "the SIGHUP reload", 10*time.Second, func() bool { return ts.in.store.Current().Generation > gen })

	out, code = ts.cli(t, "status", "--history")
	if code != 0 {
		t.Fatalf("status --history: exit %d\n%s", code, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	want := []string{
		`^TIME +GEN +FILE +CHANGE +RULES +ADDED +REMOVED +SHA-256 +TRIGGER +WHO$`,
		`^\S+Z +4 +other.txt +updated +25 +\+1 +-1 +[0-9a-f]{12} +signal +SIGHUP$`,
		`^\S+Z +3 +other.txt +updated +25 +\+25 +-1 +[0-9a-f]{12} +api +127.0.0.1:\d+$`,
		`^\S+Z +2 +foreign-exchanges.txt +updated +2 +\+1 +-1 +[0-9a-f]{12} +api +127.0.0.1:\d+$`,
		`^\S+Z +1 +other.txt +added +1 +\+1 +-0 +[0-9a-f]{12} +start +-$`,
		`^\S+Z +1 +foreign-exchanges.txt +added +2 +\+2 +-0 +[0-9a-f]{12} +start +-$`,
	}
	if len(lines) != len(want) {
		t.Fatalf("status --history:\n%s", out)
	}
	for i, re := range want {
		if !regexp.MustCompile(re).MatchString(lines[i]) {
			t.Errorf("line %d %q does not match %s", i, lines[i], re)
		}
	}
	var h admin.History
	out, _ = ts.cli(t, "status", "--history", "--json")
	if err := json.Unmarshal([]byte(out), &h); err != nil || len(h.Versions) != 5 || h.Versions[0].Who != "SIGHUP" || len(h.Versions[0].SHA256) != 64 {
		t.Errorf("status --history --json: %v\n%s", err, out)
	}
}
