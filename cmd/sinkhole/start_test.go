package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sinkhole-dns/sinkhole/blocklist"
	"github.com/sinkhole-dns/sinkhole/internal/admin"
)

// serveExit runs the binary's serve expecting it to exit (a start that
// fails): exit status, stderr and how long it took.
func serveExit(t *testing.T, args ...string) (int, string, time.Duration) {
	t.Helper()
	cmd := exec.Command(sinkholeBin(t), append([]string{"serve", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
		"--audit-log", filepath.Join(t.TempDir(), "audit.log")}, args...)...)
	cmd.Dir = t.TempDir() // its ./state
	var errb bytes.Buffer
	cmd.Stderr = &errb
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("serve %v did not exit: %s", args, errb.String())
	}
	return cmd.ProcessState.ExitCode(), errb.String(), time.Since(start)
}

// readyzOf fetches /readyz of an admin address.
func readyzOf(t *testing.T, addr string) (int, admin.Readiness) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/readyz")
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

func missingKinds(rd admin.Readiness) string {
	var out []string
	for _, m := range rd.Missing {
		out = append(out, m.Kind+" "+m.Name+": "+m.Reason)
	}
	return strings.Join(out, "\n")
}

// An empty lists directory: fail (the default) exits 1 at once; blocking
// waits until a list arrives; fast serves, not ready, /readyz naming why.
func TestStartStrategyEmptyLists(t *testing.T) {
	up := startUpstream(t)
	lists := writeLists(t, nil)
	code, errOut, took := serveExit(t, "--lists", lists, "--upstream", up.Addr)
	if code != 1 || !strings.Contains(errOut, "the lists add up to 0 rules") || took > 10*time.Second {
		t.Fatalf("fail: exit %d after %s: %s", code, took, errOut)
	}

	t.Run("blocking", func(t *testing.T) {
		lists := writeLists(t, nil)
		cmd := exec.Command(sinkholeBin(t), "serve", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--log-format", "json",
			"--audit-log", filepath.Join(t.TempDir(), "audit.log"), "--lists", lists, "--upstream", up.Addr,
			"--start-strategy", "blocking", "--reload-debounce", "20ms")
		cmd.Dir = t.TempDir() // its ./state
		stderr := &syncBuffer{}
		cmd.Stderr = stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		waitUntil(t, "the wait to be logged", 10*time.Second, func() bool {
			return strings.Contains(stderr.String(), "waiting for every list source to have a version before serving DNS")
		})
		time.Sleep(300 * time.Millisecond)
		if strings.Contains(stderr.String(), `"msg":"dns listening"`) {
			t.Fatal("blocking served DNS with no rules")
		}
		// SIGHUP while waiting rereads the lists instead of ending the process.
		cmd.Process.Signal(syscall.SIGHUP)
		waitUntil(t, "the SIGHUP reload", 10*time.Second, func() bool { return strings.Contains(stderr.String(), `"trigger":"SIGHUP"`) })
		os.WriteFile(filepath.Join(lists, "main.txt"), []byte("okx.com\n"), 0o644)
		waitUntil(t, "DNS served once a list arrived", 10*time.Second, func() bool {
			return strings.Contains(stderr.String(), `"msg":"dns listening"`)
		})
		cmd.Process.Signal(syscall.SIGTERM)
	})

	t.Run("fast", func(t *testing.T) {
		p := startBinary(t, t.TempDir(), "--lists", writeLists(t, nil), "--upstream", up.Addr, "--start-strategy", "fast")
		code, rd := readyzOf(t, p.admin)
		if code != http.StatusServiceUnavailable || rd.Status != "not ready" || !strings.Contains(missingKinds(rd), "lists") ||
			!strings.Contains(missingKinds(rd), "the lists add up to 0 rules") {
			t.Fatalf("readyz %d %+v", code, rd)
		}
		if !strings.Contains(p.stderr.String(), "serving before every list source has a version (--start-strategy fast)") {
			t.Fatalf("no warning:\n%s", p.stderr.String())
		}
		_, _, exit := runBin(t, "status", "--admin", p.admin)
		if exit != 1 {
			t.Fatalf("status exit %d, want 1", exit)
		}
	})
}

// A file that does not load at a cold start does not stop the start, but
// the server is not ready, and /readyz names the file and why.
func TestStartWithBrokenFile(t *testing.T) {
	up := startUpstream(t)
	// Every strategy starts (nothing to wait for), not ready.
	for _, strategy := range []string{"blocking", "fast"} {
		lists := writeLists(t, map[string]string{"good.txt": "okx.com\n"})
		os.Symlink(filepath.Join(lists, "gone"), filepath.Join(lists, "unreadable.txt"))
		p := startBinary(t, t.TempDir(), "--lists", lists, "--upstream", up.Addr, "--start-strategy", strategy)
		if code, rd := readyzOf(t, p.admin); code != http.StatusServiceUnavailable || len(rd.Missing) != 1 || rd.Missing[0].Name != "unreadable.txt" {
			t.Fatalf("%s: readyz %d %+v", strategy, code, rd)
		}
	}
	lists := writeLists(t, map[string]string{"good.txt": "okx.com\n"})
	// Root reads any file; a dangling symlink cannot be opened by anyone.
	os.Symlink(filepath.Join(lists, "gone"), filepath.Join(lists, "unreadable.txt"))
	p := startBinary(t, t.TempDir(), "--lists", lists, "--upstream", up.Addr)
	code, rd := readyzOf(t, p.admin)
	if code != http.StatusServiceUnavailable || len(rd.Missing) != 1 || rd.Missing[0].Kind != "file" || rd.Missing[0].Name != "unreadable.txt" ||
		!strings.Contains(rd.Missing[0].Reason, "does not load: unreadable.txt: open ") {
		t.Fatalf("readyz %d %+v", code, rd)
	}
	out, _, exit := runBin(t, "status", "--admin", p.admin)
	if exit != 1 || !strings.Contains(out, "NOT READY: file unreadable.txt: does not load") {
		t.Fatalf("status: exit %d\n%s", exit, out)
	}
	// Fixed: ready.
	os.Remove(filepath.Join(lists, "unreadable.txt"))
	os.WriteFile(filepath.Join(lists, "unreadable.txt"), []byte("b.test\n"), 0o644)
	runBin(t, "reload", "--admin", p.admin)
	if code, rd := readyzOf(t, p.admin); code != http.StatusOK || rd.Status != "ready" {
		t.Fatalf("after the fix: readyz %d %+v", code, rd)
	}
}

// A feed whose primary is down and whose copy on disk is corrupt: the
// copy is never served; fail waits --start-timeout then exits 1 naming
// the feed; fast serves with the local lists, not ready.
func TestStartWithCorruptFeedCopy(t *testing.T) {
	up := startUpstream(t)
	state := t.TempDir()
	zone := []byte("$TTL 60\n@ SOA a. b. 1 60 60 600 60\nokx.com CNAME .\n")
	if p, _, err := blocklist.InstallFile(state, "regulator.rpz", zone); err != nil || p != nil {
		t.Fatal(p, err)
	}
	os.WriteFile(filepath.Join(state, "regulator.rpz"), zone[:30], 0o644) // garbled on disk
	lists := writeLists(t, map[string]string{"local.txt": "local.test\n"})
	feed := []string{"--lists", lists, "--upstream", up.Addr, "--state-dir", state, "--rpz-feed", "regulator=rpz.test@" + deadAddr(t)}
	code, errOut, took := serveExit(t, append(feed, "--start-timeout", "1s")...)
	if code != 1 || !strings.Contains(errOut, "no version of every list source after --start-timeout 1s: rpz-feed regulator: no verified copy of zone rpz.test yet") || took > 15*time.Second {
		t.Fatalf("fail: exit %d after %s:\n%s", code, took, errOut)
	}
	p := startBinary(t, t.TempDir(), append(feed, "--start-strategy", "fast")...)
	code, rd := readyzOf(t, p.admin)
	if code != http.StatusServiceUnavailable || !strings.Contains(missingKinds(rd), "rpz-feed regulator") {
		t.Fatalf("fast: readyz %d %+v", code, rd)
	}
	if !strings.Contains(p.stderr.String(), "checksum refused") && !strings.Contains(p.stderr.String(), "not the copy written") {
		t.Fatalf("the corrupt copy was not refused:\n%s", p.stderr.String())
	}
}

// A list URL copy garbled on disk while the remote keeps answering 304:
// the copy is refused (never served), fetched again unconditionally and
// repaired; at start too.
func TestListURLCopyRepairedBehind304(t *testing.T) {
	lh := &listHTTP{body: "binance.com\nokx.com\n", etag: `"1"`, counts: map[int]int{}}
	hs := httptest.NewServer(lh)
	defer hs.Close()
	up := testUpstream(t)
	state := t.TempDir()
	args := []string{"--upstream", up.Addr, "--list-url", "regulator=" + hs.URL + "/list.txt", "--list-url-interval", "100ms", "--state-dir", state}
	lists := writeLists(t, map[string]string{"local.txt": "local.test\n"})
	ts := startSinkhole(t, lists, append(args, "--start-strategy", "fail")...)
	if !censored(ts.addr, "okx.com") {
		t.Fatal("fail strategy served before the list URL was fetched")
	}
	waitUntil(t, "304 answers", 5*time.Second, func() bool { return lh.count(http.StatusNotModified) >= 2 })
	copyPath := filepath.Join(state, "regulator.txt")
	os.WriteFile(copyPath, []byte("binance.com\n"), 0o644) // truncated on disk
	ok := lh.count(http.StatusOK)
	waitUntil(t, "an unconditional fetch", 5*time.Second, func() bool { return lh.count(http.StatusOK) > ok })
	waitUntil(t, "the copy repaired", 5*time.Second, func() bool { return blocklist.VerifyCopy(copyPath) == nil })
	if b, _ := os.ReadFile(copyPath); string(b) != lh.body {
		t.Fatalf("copy %q", b)
	}
	ts.in.reloadLists(t.Context(), "test", false)
	if !censored(ts.addr, "okx.com") {
		t.Fatal("okx.com lapsed")
	}
	ts.stop()
	// At start: a garbled copy is not served; the fetch is unconditional.
	os.WriteFile(copyPath, []byte("garbage here\n"), 0o644)
	ok = lh.count(http.StatusOK)
	ts = startSinkhole(t, lists, append(args, "--start-strategy", "fail")...)
	if lh.count(http.StatusOK) <= ok || !censored(ts.addr, "okx.com") {
		t.Fatal("the garbled copy was trusted at start")
	}
}

// auditLines reads an audit log: every line must be whole JSON.
func auditLines(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n := 0
	for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		if line == "" {
			continue
		}
		if !json.Valid([]byte(line)) {
			t.Fatalf("%s: line %d is not whole JSON: %q", path, n+1, line)
		}
		n++
	}
	if len(b) > 0 && b[len(b)-1] != '\n' {
		t.Fatalf("%s ends in a partial line", path)
	}
	return n
}

// The audit log deleted while serving is reopened at its path within a
// second, without a signal; SIGUSR1 reopens it after a logrotate-style
// rename; a full disk (a small tmpfs) never leaves a partial line.
func TestAuditLogSurvives(t *testing.T) {
	up := startUpstream(t)
	lists := writeLists(t, map[string]string{"x.txt": "okx.com\n"})
	dir := t.TempDir()
	tmpfs := false
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", dir).CombinedOutput(); err == nil {
		tmpfs = true
		t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	} else {
		t.Logf("no tmpfs (needs root: %v %s): the disk-full part is skipped", err, strings.TrimSpace(string(out)))
	}
	audit := filepath.Join(dir, "audit.log")
	p := startBinary(t, t.TempDir(), "--lists", lists, "--upstream", up.Addr, "--audit-log", audit)
	ts := &testServer{addr: p.dns}
	block := func(n int) {
		for range n {
			ts.query(t, "udp", "okx.com", 1)
		}
	}
	block(3)
	waitUntil(t, "3 audit lines", 5*time.Second, func() bool { return auditLines(t, audit) >= 3 })

	os.Remove(audit)
	start := time.Now()
	waitUntil(t, "the audit log back at its path", 5*time.Second, func() bool {
		block(1)
		return auditLines(t, audit) >= 1
	})
	if d := time.Since(start); d > 4*time.Second {
		t.Fatalf("reopened after %s, want about a second (checked every 0.5 s)", d)
	} else {
		t.Logf("reopened after %s", d.Round(time.Millisecond))
	}
	// The reopen is logged just after the new file takes lines.
	waitUntil(t, "a WARN about the reopen", 5*time.Second, func() bool {
		return strings.Contains(p.stderr.String(), `"msg":"log reopened","log":"audit"`)
	})

	// logrotate: rename, then SIGUSR1.
	os.Rename(audit, audit+".1")
	p.cmd.Process.Signal(syscall.SIGUSR1)
	waitUntil(t, "the audit log reopened after SIGUSR1", 5*time.Second, func() bool {
		block(1)
		return auditLines(t, audit) >= 1
	})
	os.Remove(audit + ".1")

	if !tmpfs {
		t.Skip("disk full: no tmpfs could be mounted (needs root)")
	}
	filler, _ := os.Create(filepath.Join(dir, "filler"))
	for {
		if _, err := filler.Write(make([]byte, 1024)); err != nil {
			break
		}
	}
	filler.Close()
	for range 40 {
		ts.query(t, "udp", "okx.com", 1) // lines the full disk refuses
	}
	time.Sleep(200 * time.Millisecond)
	os.Remove(filepath.Join(dir, "filler"))
	before := auditLines(t, audit)
	block(5)
	waitUntil(t, "lines after the disk has room again", 5*time.Second, func() bool { return auditLines(t, audit) >= before+5 })
}
