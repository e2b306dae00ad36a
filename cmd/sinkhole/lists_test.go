package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/blocklist"
	"github.com/sinkhole-dns/sinkhole/internal/admin"
)

// listOf returns a list file of n rules r0.exchange.test ... under a
// platform, okx.com last.
func listOf(n int) string {
	var b strings.Builder
	b.WriteString("# platform: OKX\n")
	for i := range n - 1 {
		fmt.Fprintf(&b, "r%d.exchange.test\n", i)
	}
	b.WriteString("okx.com\n")
	return b.String()
}

// blockedBy reports whether ts answers name with a block (NXDOMAIN).
func (ts *testServer) blocked(t *testing.T, name string) bool {
	t.Helper()
	return ts.query(t, "udp", name, dns.TypeA).Rcode == dns.RcodeNameError
}

// readyz fetches /readyz: the status code and body.
func (ts *testServer) readyz(t *testing.T) (int, admin.Readiness) {
	t.Helper()
	resp, err := http.Get("http://" + ts.in.admin.Addr() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var rd admin.Readiness
	if err := json.NewDecoder(resp.Body).Decode(&rd); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, rd
}

// waitFile waits until the store's status of a file satisfies cond.
func (ts *testServer) waitFile(t *testing.T, name, what string, cond func(*blocklist.FileStatus) bool) *blocklist.FileStatus {
	t.Helper()
	var f *blocklist.FileStatus
	waitUntil(t, what, 10*time.Second, func() bool {
		f = ts.in.store.Current().File(name)
		return cond(f)
	})
	return f
}

// TestShrinkGuardHolds: a list file truncated to 0 bytes, left with
// comments only, cut by more than --max-shrink, or deleted is held: the
// last good version keeps serving, the log says so at ERROR with the
// counts, status (exit 1), /readyz detail, the reload answer and a metric
// show it, and "sinkhole reload --accept" applies it.
func TestShrinkGuardHolds(t *testing.T) {
	up := startUpstream(t, "okx.com. 60 IN A 192.0.2.9", "r1500.exchange.test. 60 IN A 192.0.2.9")
	cases := []struct {
		name   string
		edit   func(path string) error
		reason string
		rules  int
	}{
		{"truncated", func(p string) error { return os.Truncate(p, 0) }, "the new version has no rules (the version in service has 2001)", 0},
		{"comments only", func(p string) error { return os.WriteFile(p, []byte("# platform: OKX\n# emptied\n"), 0o644) }, "the new version has no rules", 0},
		{"shrunk", func(p string) error { return os.WriteFile(p, []byte(listOf(1051)), 0o644) }, "would drop 950 of 2001 rules (47%)", -1},
		{"cut", func(p string) error { return os.WriteFile(p, []byte(listOf(900)), 0o644) }, "would drop 1101 of 2001 rules (55%), more than --max-shrink 50%", 900},
		{"deleted", os.Remove, "the file was deleted (the version in service has 2001 rules)", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			lists := writeLists(t, map[string]string{"main.txt": listOf(2001), "other.txt": "other.test\n"})
			ts := startSinkhole(t, lists, "--upstream", up.Addr, "--reload-debounce", "20ms", "--log-format", "json")
			path := filepath.Join(lists, "main.txt")
			if err := tc.edit(path); err != nil {
				t.Fatal(err)
			}
			if tc.rules < 0 { // 47% is within the guard: applied
				ts.waitFile(t, "main.txt", "the shrunk version in service", func(f *blocklist.FileStatus) bool { return f != nil && f.Rules() == 1051 })
				return
			}
			f := ts.waitFile(t, "main.txt", "held", func(f *blocklist.FileStatus) bool {
				return f != nil && f.Withheld != nil && f.Withheld.State == blocklist.StateHeld
			})
			if f.Withheld.State != blocklist.StateHeld || !strings.Contains(f.Withheld.Reason, tc.reason) || f.Rules() != 2001 {
				t.Fatalf("withheld: %+v, %d rules serving", f.Withheld, f.Rules())
			}
			if !ts.blocked(t, "okx.com") || !ts.blocked(t, "r1500.exchange.test") {
				t.Fatal("the last good version does not serve")
			}
			// The log: ERROR with the counts.
			waitUntil(t, "the ERROR line", 5*time.Second, func() bool {
				return strings.Contains(ts.stderr.String(), `"level":"ERROR","msg":"list file held: its last good version stays in service; \"sinkhole reload --accept\" applies the new one","file":"main.txt"`)
			})
			if log := ts.stderr.String(); !strings.Contains(log, fmt.Sprintf(`"new_rules":%d,"serving_rules":2001`, tc.rules)) {
				t.Fatalf("ERROR line without the counts:\n%s", log)
			}
			// /readyz: still ready (a version serves), the hold in its detail.
			code, rd := ts.readyz(t)
			if code != http.StatusOK || len(rd.Withheld) != 1 || rd.Withheld[0].File != "main.txt" || rd.Withheld[0].State != "held" || rd.Withheld[0].ServingRules != 2001 {
				t.Fatalf("readyz %d %+v", code, rd)
			}
			// The metric.
			if v := ts.metrics(t).Value("sinkhole_list_held", "file", "main.txt", "state", "held"); v != 1 {
				t.Fatalf("sinkhole_list_held = %v", v)
			}
			// status: exit 1 naming the hold.
			out, errOut, exit := runBin(t, "status", "--admin", ts.in.admin.Addr())
			if exit != 1 || !strings.Contains(out, "HELD (last good version serving): ") || !strings.Contains(out, tc.reason) || !strings.Contains(errOut, "list file main.txt held") {
				t.Fatalf("status: exit %d\n%s\n%s", exit, out, errOut)
			}
			// A plain reload keeps holding it (exit 1); --accept applies it.
			out, _, exit = runBin(t, "reload", "--admin", ts.in.admin.Addr())
			if exit != 1 || !strings.Contains(out, "held") || !strings.Contains(out, `"sinkhole reload --accept" applies them`) {
				t.Fatalf("reload: exit %d\n%s", exit, out)
			}
			out, errOut, exit = runBin(t, "reload", "--accept", "--admin", ts.in.admin.Addr())
			if exit != 0 || !strings.Contains(out, "accepted") {
				t.Fatalf("reload --accept: exit %d\n%s\n%s", exit, out, errOut)
			}
			if ts.blocked(t, "r1500.exchange.test") || !ts.blocked(t, "other.test") {
				t.Fatal("the accepted version is not in service")
			}
			if tc.rules > 0 && !ts.blocked(t, "okx.com") {
				t.Fatal("okx.com (kept in the cut version) is not blocked")
			}
			if _, _, exit = runBin(t, "status", "--admin", ts.in.admin.Addr()); exit != 0 {
				t.Fatalf("status after accept: exit %d", exit)
			}
		})
	}
}

// TestOneForOneReplacementIsNotAShrink: replacing every name is not a
// shrink; the API reload answer reports a held file with ok false.
func TestShrinkGuardAPI(t *testing.T) {
	up := startUpstream(t)
	lists := writeLists(t, map[string]string{"main.txt": listOf(100)})
	ts := startSinkhole(t, lists, "--upstream", up.Addr, "--reload-debounce", "1m")
	path := filepath.Join(lists, "main.txt")
	os.WriteFile(path, []byte(strings.ReplaceAll(listOf(100), "exchange.test", "other.test")), 0o644)
	cl := admin.NewClient(ts.in.admin.Addr(), "", 10*time.Second)
	// A version read too soon after its write is "settling" (not yet
	// read whole, README: Safety of the lists): ask again, as an operator
	// would, for at most 10 s.
	reload := func() (res *admin.ReloadResult, err error) {
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			res, err = cl.Reload(t.Context(), admin.ReloadOptions{})
			if err != nil || len(res.Files) == 0 || res.Files[0].Change != blocklist.ChangeSettling || time.Now().After(deadline) {
				return res, err
			}
		}
	}
	res, err := reload()
	if err != nil || !res.OK || res.Files[0].Change != blocklist.ChangeUpdated {
		t.Fatalf("one-for-one replacement: %v %+v", err, res)
	}
	os.WriteFile(path, nil, 0o644)
	res, err = reload()
	if err != nil || res.OK || res.Withheld != 1 || res.Files[0].Change != "held" || res.Files[0].Withheld == nil || res.Files[0].Rules != 100 {
		t.Fatalf("held reload answer: %v %+v", err, res)
	}
	resp, err := http.Post("http://"+ts.in.admin.Addr()+"/v1/reload?accept=true", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	var r admin.ReloadResult
	json.NewDecoder(resp.Body).Decode(&r)
	resp.Body.Close()
	if !r.OK || !r.Files[0].Accepted || r.Rules != 0 {
		t.Fatalf("accept over the API: %+v", r)
	}
}

// --max-list-mb caps a list file's size: a file over it fails to load
// with an error naming the limit (the rest keeps serving), and a higher
// cap takes the same file. Out-of-range values are usage errors.
func TestMaxListSize(t *testing.T) {
	up := startUpstream(t)
	big := listOf(80_000) // about 1.6 MB
	if len(big) < 1<<20 || len(big) > 2<<20 {
		t.Fatalf("fixture is %d bytes, want between 1 and 2 MiB", len(big))
	}
	lists := writeLists(t, map[string]string{"big.txt": big, "small.txt": "small-list.example\n"})
	ts := startSinkhole(t, lists, "--upstream", up.Addr, "--max-list-mb", "1")
	f := ts.waitFile(t, "big.txt", "big.txt to fail", func(f *blocklist.FileStatus) bool { return f != nil && len(f.Errors) > 0 })
	if msg := f.Errors[0].Error(); !strings.Contains(msg, "over the 1048576-byte limit") || !strings.Contains(msg, "big.txt") {
		t.Errorf("error %q, want the file and the 1048576-byte limit", msg)
	}
	if censored(ts.addr, "okx.com") || !censored(ts.addr, "small-list.example") {
		t.Error("want big.txt refused and small.txt served")
	}
	ts.stop()
	ts = startSinkhole(t, lists, "--upstream", up.Addr, "--max-list-mb", "2")
	ts.waitFile(t, "big.txt", "big.txt to load", func(f *blocklist.FileStatus) bool { return f != nil && f.Rules() == 80_000 })
	if !censored(ts.addr, "okx.com") {
		t.Error("okx.com not blocked with --max-list-mb 2")
	}
	for _, v := range []string{"0", "65537"} {
		var stderr syncBuffer
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		code := run(ctx, []string{"sinkhole", "serve", "--lists", lists, "--upstream", "127.0.0.1:1", "--max-list-mb", v}, io.Discard, &stderr)
		cancel()
		if want := "--max-list-mb " + v + ": want between 1 and 65536"; code != exitUsage || !strings.Contains(stderr.String(), want) {
			t.Errorf("--max-list-mb %s: exit %d, %q; want 2 and %q", v, code, stderr.String(), want)
		}
	}
}

// sinkhole check reads files with the same --max-list-mb cap as serve: a
// file check accepts is one serve loads, and one over the cap is an error
// naming the file and the limit.
func TestCheckMaxListSize(t *testing.T) {
	lists := writeLists(t, map[string]string{"big.txt": listOf(80_000)}) // about 1.6 MB
	big := filepath.Join(lists, "big.txt")
	out, errOut, code := runBin(t, "check", "--max-list-mb", "1", lists)
	if code != 1 || !strings.Contains(out, big) || !strings.Contains(out, "over the 1048576-byte limit") || !strings.Contains(errOut, "1 of 1 file has errors") {
		t.Fatalf("check --max-list-mb 1: exit %d\n%s\n%s", code, out, errOut)
	}
	out, _, code = runBin(t, "check", "--max-list-mb", "2", lists)
	if code != 0 || !strings.Contains(out, "big.txt: ok, 80000 rules") {
		t.Fatalf("check --max-list-mb 2: exit %d\n%s", code, out)
	}
	if _, errOut, code = runBin(t, "check", "--max-list-mb", "0", lists); code != exitUsage || !strings.Contains(errOut, "--max-list-mb 0: want between 1 and 65536") {
		t.Fatalf("check --max-list-mb 0: exit %d %s", code, errOut)
	}
}
