package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/internal/admin"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// sinkholeBin builds the binary once for the CLI tests.
func sinkholeBin(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sinkhole-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "sinkhole")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = errors.New(string(out))
		}
	})
	if buildErr != nil {
		t.Fatalf("go build: %v", buildErr)
	}
	return binPath
}

// runBin runs the built binary and returns stdout, stderr and the exit code.
func runBin(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(sinkholeBin(t), args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("sinkhole %v did not finish in 30s", args)
	}
	return out.String(), errb.String(), cmd.ProcessState.ExitCode()
}

func writeToken(t *testing.T, tok string) string {
	p := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(p, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCLIAgainstRunningServer(t *testing.T) {
	up := startUpstream(t, "academy.binance.com. 60 IN A 192.0.2.7", "www.allowed.test. 60 IN A 192.0.2.8")
	lists := writeLists(t, map[string]string{
		"foreign-exchanges.txt": "# platform: Binance\nbinance.com\n",
		"local.txt":             "@@academy.binance.com\n",
	})
	tok := writeToken(t, "s3cret")
	ts := startSinkhole(t, lists, "--upstream", up.Addr, "--admin-token-file", tok, "--reload-debounce", "1m")
	adminAddr := ts.in.admin.Addr()
	auth := []string{"--admin", adminAddr, "--admin-token-file", tok}

	// Some traffic for the counters.
	ts.query(t, "udp", "www.binance.com", dns.TypeA)
	ts.query(t, "udp", "www.allowed.test", dns.TypeA)

	out, errOut, code := runBin(t, append([]string{"status"}, auth...)...)
	if code != 0 || !strings.Contains(out, "foreign-exchanges.txt  1") || !strings.Contains(out, "queries 2, blocked 1 (50.0%)") ||
		!strings.Contains(out, up.Addr) || !strings.Contains(out, "Binance") {
		t.Fatalf("status: exit %d\n%s\n%s", code, out, errOut)
	}
	out, _, code = runBin(t, append([]string{"status", "--json"}, auth...)...)
	var st admin.Status
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || st.Generation != 1 || len(st.Files) != 2 || st.Counters.Blocked != 1 {
		t.Fatalf("status --json: exit %d %s", code, out)
	}

	// query explains blocks, exceptions and allowed names.
	out, _, code = runBin(t, append([]string{"query", "WWW.Binance.com."}, auth...)...)
	if code != 0 || !strings.Contains(out, "www.binance.com A: BLOCKED (nxdomain) by qname") ||
		!strings.Contains(out, "rule:      binance.com  (foreign-exchanges.txt:2, platform Binance, action nxdomain, scope any)") {
		t.Fatalf("query blocked: exit %d\n%s", code, out)
	}
	out, _, code = runBin(t, append([]string{"query", "academy.binance.com", "--type", "AAAA"}, auth...)...)
	if code != 0 || !strings.Contains(out, "academy.binance.com AAAA: ALLOWED") ||
		!strings.Contains(out, "exception: @@academy.binance.com  (local.txt:1") {
		t.Fatalf("query exception: exit %d\n%s", code, out)
	}
	out, _, code = runBin(t, append([]string{"query", "www.allowed.test"}, auth...)...)
	if code != 0 || !strings.Contains(out, "ALLOWED") || !strings.Contains(out, "www.allowed.test A 192.0.2.8") {
		t.Fatalf("query allowed (resolved upstream): exit %d\n%s", code, out)
	}
	_, errOut, code = runBin(t, "query", "bad name", "--admin", adminAddr, "--admin-token-file", tok)
	if code != 1 || !strings.Contains(errOut, `invalid character ' ' in domain name`) {
		t.Fatalf("query bad name: exit %d %s", code, errOut)
	}

	// reload: a good change, then a broken file (exit 1 with file:line).
	os.WriteFile(filepath.Join(lists, "foreign-exchanges.txt"), []byte("# platform: Binance\nbinance.com\n# platform: OKX\nokx.com\n"), 0o644)
	out, errOut, code = runBin(t, append([]string{"reload"}, auth...)...)
	if code != 0 || !strings.Contains(out, "generation 2 (new), 3 rules") || !strings.Contains(out, "updated    foreign-exchanges.txt  2 rules (was 1)") {
		t.Fatalf("reload: exit %d\n%s\n%s", code, out, errOut)
	}
	os.WriteFile(filepath.Join(lists, "local.txt"), []byte("@@academy.binance.com\nnot a rule\n"), 0o644)
	out, _, code = runBin(t, append([]string{"reload"}, auth...)...)
	if code != 1 || !strings.Contains(out, "failed     local.txt") || !strings.Contains(out, `local.txt:2: unexpected text after entry`) {
		t.Fatalf("reload broken: exit %d\n%s", code, out)
	}
	// The last good local.txt still exempts academy.binance.com.
	if r := ts.query(t, "udp", "academy.binance.com", dns.TypeA); r.Rcode != dns.RcodeSuccess {
		t.Fatalf("last good exception lost: %v", r)
	}
	out, _, _ = runBin(t, append([]string{"status"}, auth...)...)
	if !strings.Contains(out, "BROKEN (last good version serving)") || !strings.Contains(out, "local.txt:2:") {
		t.Fatalf("status after broken reload:\n%s", out)
	}

	// Wrong and missing token.
	_, errOut, code = runBin(t, "status", "--admin", adminAddr, "--admin-token-file", writeToken(t, "wrong"))
	if code != 1 || !strings.Contains(errOut, "refused the request") {
		t.Fatalf("wrong token: exit %d %s", code, errOut)
	}
	_, errOut, code = runBin(t, "reload", "--admin", adminAddr)
	if code != 1 || !strings.Contains(errOut, "refused the request") {
		t.Fatalf("missing token: exit %d %s", code, errOut)
	}

	// Stopped server: exit 3.
	ts.stop()
	_, errOut, code = runBin(t, append([]string{"status"}, auth...)...)
	if code != 3 || !strings.Contains(errOut, "cannot reach the server's admin API") {
		t.Fatalf("stopped server: exit %d %s", code, errOut)
	}
	_, _, code = runBin(t, append([]string{"reload"}, auth...)...)
	if code != 3 {
		t.Fatalf("reload stopped server: exit %d", code)
	}
}

func TestCLICheckAndOfflineQuery(t *testing.T) {
	good := writeLists(t, map[string]string{"a.txt": "# platform: A\na.com\n*.b.com\n203.0.113.0/24\nAS64500\n", "b.list": "@@x.a.com\n"})
	out, _, code := runBin(t, "check", good)
	if code != 0 || !strings.Contains(out, "a.txt: ok, 4 rules (2 domains, 1 IP, 1 ASN)") || !strings.Contains(out, "2 files ok, 5 rules") {
		t.Fatalf("check good: exit %d\n%s", code, out)
	}
	bad := writeLists(t, map[string]string{"bad.txt": "a.com\nhttps://b.com/\n\nc..com\n"})
	out, errOut, code := runBin(t, "check", good, filepath.Join(bad, "bad.txt"))
	if code != 1 || !strings.Contains(out, filepath.Join(bad, "bad.txt")+`:2: looks like a URL`) ||
		!strings.Contains(out, filepath.Join(bad, "bad.txt")+`:4: empty label`) || !strings.Contains(errOut, "1 of 3 files has errors") {
		t.Fatalf("check bad: exit %d\n%s\n%s", code, out, errOut)
	}
	_, errOut, code = runBin(t, "check", "/nonexistent")
	if code != 1 || !strings.Contains(errOut, "/nonexistent") {
		t.Fatalf("check missing: exit %d %s", code, errOut)
	}
	out, _, code = runBin(t, "query", "--lists", good, "y.b.com")
	if code != 0 || !strings.Contains(out, "y.b.com A: BLOCKED (nxdomain) by qname") || !strings.Contains(out, "*.b.com  (a.txt:3, platform A, action nxdomain, scope any)") {
		t.Fatalf("offline query: exit %d\n%s", code, out)
	}
	out, _, code = runBin(t, "query", "--lists", good, "--json", "x.a.com")
	var ex admin.Explanation
	if code != 0 || json.Unmarshal([]byte(out), &ex) != nil || ex.Verdict != "allowed" || ex.Exception == nil || ex.Exception.File != "b.list" {
		t.Fatalf("offline query exception: exit %d\n%s", code, out)
	}
	_, errOut, code = runBin(t, "query")
	if code != 2 || !strings.Contains(errOut, "query takes exactly one NAME") {
		t.Fatalf("query usage: exit %d %s", code, errOut)
	}
}

// binaryServer is "sinkhole serve" run as a process of its own.
type binaryServer struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   <-chan error // the process's exit
	dns    string       // DNS address (UDP and TCP)
	admin  string       // admin API address
}

// startBinary runs the built binary's serve on loopback ports with JSON
// logs, in dir, and learns its addresses from its log. The process is
// killed when the test ends.
func startBinary(t *testing.T, dir string, args ...string) *binaryServer {
	t.Helper()
	cmd := exec.Command(sinkholeBin(t), append([]string{"serve", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--log-format", "json"}, args...)...)
	cmd.Dir = dir
	p := &binaryServer{cmd: cmd, stderr: &syncBuffer{}}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	p.done = done
	t.Cleanup(func() { cmd.Process.Kill() })
	deadline := time.Now().Add(10 * time.Second)
	for (p.admin == "" || p.dns == "") && time.Now().Before(deadline) {
		for _, line := range strings.Split(p.stderr.String(), "\n") {
			var rec map[string]any
			if json.Unmarshal([]byte(line), &rec) != nil {
				continue
			}
			switch rec["msg"] {
			case "admin API listening":
				p.admin, _ = rec["addr"].(string)
			case "dns listening":
				p.dns, _ = rec["addr"].(string)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if p.admin == "" || p.dns == "" {
		t.Fatalf("no DNS or admin address in the log:\n%s", p.stderr.String())
	}
	return p
}

func TestSIGHUPAndSIGTERM(t *testing.T) {
	up := startUpstream(t)
	lists := writeLists(t, map[string]string{"x.txt": "a.test\n"})
	// The audit log defaults to sinkhole-audit.log in the working directory.
	workdir := t.TempDir()
	p := startBinary(t, workdir, "--lists", lists, "--upstream", up.Addr, "--reload-debounce", "1m")
	cmd, stderr, done, adminAddr, dnsAddr := p.cmd, p.stderr, p.done, p.admin, p.dns
	deadline := time.Now().Add(10 * time.Second)
	os.WriteFile(filepath.Join(lists, "x.txt"), []byte("a.test\nb.test\n"), 0o644)
	cmd.Process.Signal(syscall.SIGHUP)
	var st admin.Status
	for time.Now().Before(deadline.Add(5 * time.Second)) {
		resp, err := http.Get("http://" + adminAddr + "/v1/status")
		if err == nil {
			json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
			// The reload is logged just after it goes into service: wait
			// for both.
			if st.Rules == 2 && strings.Contains(stderr.String(), `"trigger":"SIGHUP"`) {
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st.Rules != 2 || st.Generation != 2 {
		t.Fatalf("SIGHUP did not reload: %+v", st)
	}
	if !strings.Contains(stderr.String(), `"trigger":"SIGHUP"`) {
		t.Fatalf("reload not logged with its trigger:\n%s", stderr.String())
	}
	// A block just before SIGTERM is in the audit log once the server exits.
	q := new(dns.Msg)
	q.SetQuestion("www.b.test.", dns.TypeAAAA)
	if r, _, err := (&dns.Client{Timeout: 5 * time.Second}).Exchange(q, dnsAddr); err != nil || r.Rcode != dns.RcodeNameError {
		t.Fatalf("b.test after reload: %v %v", r, err)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
	audit, err := os.ReadFile(filepath.Join(workdir, "sinkhole-audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	var line map[string]any
	if err := json.Unmarshal(audit, &line); err != nil || line["name"] != "www.b.test" || line["type"] != "AAAA" ||
		line["file"] != "x.txt" || line["line"] != 2.0 || line["generation"] != 2.0 || line["enforced"] != true {
		t.Fatalf("audit log after SIGTERM (%v):\n%s", err, audit)
	}
}

func TestAdminAPI(t *testing.T) {
	up := startUpstream(t)
	lists := writeLists(t, map[string]string{"x.txt": "a.test\n"})
	ts := startSinkhole(t, lists, "--upstream", up.Addr)
	base := "http://" + ts.in.admin.Addr()
	tests := []struct {
		method, path string
		code         int
		body         string
	}{
		{"GET", "/healthz", 200, `"status": "ok"`},
		{"GET", "/readyz", 200, `"status": "ready"`},
		{"GET", "/v1/status", 200, `"generation": 1`},
		{"POST", "/v1/reload", 200, `"ok": true`},
		{"GET", "/v1/query?name=a.test", 200, `"verdict": "blocked"`},
		{"GET", "/v1/query?name=b.test&type=MX", 200, `"verdict": "passed"`},
		{"GET", "/v1/query", 400, `"error": "missing parameter name"`},
		{"GET", "/v1/query?name=a.test&type=BOGUS", 400, `type \"BOGUS\"`},
		{"GET", "/v1/query?name=a..test", 400, `empty label`},
		{"GET", "/v1/query?name=a.test&x=1", 400, `unknown parameter \"x\"`},
		{"GET", "/v1/query?name=a.test&name=b.test", 400, `must be given once`},
		{"GET", "/v1/reload", 405, `method GET not allowed; use POST`},
		{"DELETE", "/v1/status", 405, `use GET`},
		{"GET", "/nope", 404, `no such route: /nope`},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest(tt.method, base+tt.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.code || !strings.Contains(string(b), tt.body) || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s %s: %d %s; want %d containing %s", tt.method, tt.path, resp.StatusCode, b, tt.code, tt.body)
		}
	}
}

func TestAdminTokenRules(t *testing.T) {
	lists := writeLists(t, map[string]string{"x.txt": "a.test\n"})
	var stderr syncBuffer
	code := run(t.Context(), []string{"sinkhole", "serve", "--lists", lists, "--upstream", "127.0.0.1:1", "--admin", "0.0.0.0:0"}, io.Discard, &stderr)
	if code != exitUsage || !strings.Contains(stderr.String(), "is not a loopback address: set --admin-token-file") {
		t.Fatalf("non-loopback admin without token: exit %d %s", code, stderr.String())
	}
	empty := filepath.Join(t.TempDir(), "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	stderr = syncBuffer{}
	code = run(t.Context(), []string{"sinkhole", "serve", "--lists", lists, "--upstream", "127.0.0.1:1", "--admin-token-file", empty}, io.Discard, &stderr)
	if code != exitUsage || !strings.Contains(stderr.String(), "is empty") {
		t.Fatalf("empty token file: exit %d %s", code, stderr.String())
	}
	// Every route needs the token when one is set, health checks included.
	up := startUpstream(t)
	ts := startSinkhole(t, lists, "--upstream", up.Addr, "--admin-token-file", writeToken(t, "tok"))
	for _, p := range []string{"/healthz", "/v1/status", "/nope"} {
		resp, err := http.Get("http://" + ts.in.admin.Addr() + p)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 401 || strings.Contains(string(b), lists) {
			t.Fatalf("%s without token: %d %s", p, resp.StatusCode, b)
		}
	}
}
