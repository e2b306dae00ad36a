package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/blocklist"
)

// prober queries a listed name (which every version blocks) and a name no
// version lists, without pause, from a few clients, and counts wrong
// decisions and queries that got no answer.
type prober struct {
	addr             string
	listed, unlisted string
	stop             atomic.Bool
	wg               sync.WaitGroup
	queries, wrong   atomic.Int64
	lost             atomic.Int64
	mu               sync.Mutex
	first            []string
}

func startProber(t *testing.T, addr, listed, unlisted string, clients int) *prober {
	p := &prober{addr: addr, listed: listed, unlisted: unlisted}
	for i := range clients {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			c := &dns.Client{Net: "udp", Timeout: 5 * time.Second}
			for n := 0; !p.stop.Load(); n++ {
				name, wantBlocked := p.listed, true
				if (n+i)%4 == 3 {
					name, wantBlocked = p.unlisted, false
				}
				m := new(dns.Msg)
				m.SetQuestion(dns.Fqdn(name), dns.TypeA)
				r, _, err := c.Exchange(m, p.addr)
				p.queries.Add(1)
				switch {
				case err != nil:
					p.lost.Add(1)
					p.note(fmt.Sprintf("%s: %v", name, err))
				case (r.Rcode == dns.RcodeNameError) != wantBlocked:
					p.wrong.Add(1)
					p.note(fmt.Sprintf("%s: %s", name, dns.RcodeToString[r.Rcode]))
				}
			}
		}()
	}
	return p
}

func (p *prober) note(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.first) < 5 {
		p.first = append(p.first, s)
	}
}

// finish stops the clients and fails the test on any wrong or lost answer.
func (p *prober) finish(t *testing.T) {
	t.Helper()
	p.stop.Store(true)
	p.wg.Wait()
	t.Logf("%d queries, %d wrong decisions, %d lost", p.queries.Load(), p.wrong.Load(), p.lost.Load())
	if p.wrong.Load() != 0 || p.lost.Load() != 0 {
		t.Fatalf("%d wrong decisions and %d lost queries of %d; first: %v", p.wrong.Load(), p.lost.Load(), p.queries.Load(), p.first)
	}
	if p.queries.Load() < 50 {
		t.Fatalf("only %d queries ran", p.queries.Load())
	}
}

// writeInChunks writes body to path in place (truncate, then n pieces with
// a pause between them), the way a shell redirection or scp does.
func writeInChunks(path string, body []byte, n int, pause time.Duration) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	step := (len(body) + n - 1) / n
	for off := 0; off < len(body); off += step {
		if _, err := f.Write(body[off:min(off+step, len(body))]); err != nil {
			f.Close()
			return err
		}
		if off+step < len(body) {
			time.Sleep(pause)
		}
	}
	return f.Close()
}

// A writer that pauses mid-write (1,051 of 2,001 rules written, then a
// pause far longer than the debounce): the half-written version never
// goes into service; okx.com, on the last line, stays blocked throughout,
// also across a reload asked for during the pause.
func TestPausedWriterNeverServes(t *testing.T) {
	up := startUpstream(t, "okx.com. 60 IN A 192.0.2.9", "allowed.test. 60 IN A 192.0.2.10")
	lists := writeLists(t, map[string]string{"main.txt": listOf(2001)})
	ts := startSinkhole(t, lists, "--upstream", up.Addr, "--reload-debounce", "30ms")
	gen := ts.in.store.Current().Generation
	p := startProber(t, ts.addr, "okx.com", "allowed.test", 2)

	body := []byte(strings.Replace(listOf(2001), "r0.exchange.test", "new.exchange.test", 1))
	half := strings.Index(string(body), "r1050.exchange.test\n") + len("r1050.exchange.test\n")
	f, err := os.OpenFile(filepath.Join(lists, "main.txt"), os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(body[:half])
	// Paused with the file open: ten debounces, and a reload.
	time.Sleep(300 * time.Millisecond)
	rep, err := ts.in.reloadLists(t.Context(), "test", false)
	if err != nil || rep.Files[0].Change != blocklist.ChangeSettling {
		t.Fatalf("a reload during the pause: %v %+v", err, rep.Files)
	}
	time.Sleep(300 * time.Millisecond)
	if g := ts.in.store.Current().Generation; g != gen {
		t.Fatalf("a new generation (%d) went into service mid-write", g)
	}
	f.Write(body[half:])
	f.Close()
	ts.waitFile(t, "main.txt", "the whole version in service", func(f *blocklist.FileStatus) bool {
		return f.SHA256 == blocklist.HashBytes(body) && f.Withheld == nil
	})
	if !ts.blocked(t, "new.exchange.test") || ts.in.store.Current().File("main.txt").Rules() != 2001 {
		t.Fatal("the whole version is not the one in service")
	}
	p.finish(t)
}

// 300 in-place rewrites (each written in pieces with pauses) and then 300
// by rename, under load: not one wrong decision, not one lost query, and
// the last version ends up in service.
func TestRewritesUnderLoad(t *testing.T) {
	up := startUpstream(t, "okx.com. 60 IN A 192.0.2.9", "allowed.test. 60 IN A 192.0.2.10")
	lists := writeLists(t, map[string]string{"main.txt": listOf(2001)})
	ts := startSinkhole(t, lists, "--upstream", up.Addr, "--reload-debounce", "5ms")
	p := startProber(t, ts.addr, "okx.com", "allowed.test", 3)
	path := filepath.Join(lists, "main.txt")
	start := time.Now()
	var body []byte
	for i := range 600 {
		body = []byte(listOf(2001) + fmt.Sprintf("v%d.exchange.test\n", i))
		if i < 300 {
			if err := writeInChunks(path, body, 3, 2*time.Millisecond); err != nil {
				t.Fatal(err)
			}
		} else {
			tmp := filepath.Join(lists, ".main.txt.tmp")
			if err := os.WriteFile(tmp, body, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, path); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(time.Millisecond)
	}
	ts.waitFile(t, "main.txt", "the last version in service", func(f *blocklist.FileStatus) bool { return f.SHA256 == blocklist.HashBytes(body) })
	t.Logf("600 rewrites in %s, generation %d", time.Since(start).Round(time.Millisecond), ts.in.store.Current().Generation)
	p.finish(t)
}

// The watch follows the --lists path: a directory replaced under it (mv),
// a symlink swapped (ln -sfn), noticed within the debounce; later edits in
// the new directory are seen, and "sinkhole reload" re-resolves the path.
func TestWatchFollowsListsPath(t *testing.T) {
	up := startUpstream(t)
	for _, how := range []string{"mv", "ln -sfn"} {
		t.Run(how, func(t *testing.T) {
			root := t.TempDir()
			path := filepath.Join(root, "lists")
			v1, v2 := filepath.Join(root, "v1"), filepath.Join(root, "v2")
			for _, d := range []string{v1, v2} {
				os.Mkdir(d, 0o755)
			}
			os.WriteFile(filepath.Join(v1, "main.txt"), []byte("# platform: Old\nold.test\n"), 0o644)
			os.WriteFile(filepath.Join(v2, "main.txt"), []byte("# platform: New\nnew.test\nold.test\n"), 0o644)
			if how == "mv" {
				os.Rename(v1, path)
			} else {
				os.Symlink(v1, path)
			}
			ts := startSinkhole(t, path, "--upstream", up.Addr, "--reload-debounce", "20ms")
			if !censored(ts.addr, "old.test") || censored(ts.addr, "new.test") {
				t.Fatal("first version")
			}
			if how == "mv" {
				os.Rename(path, filepath.Join(root, "v1.old"))
				os.Rename(v2, path)
			} else {
				tmp := filepath.Join(root, ".lists.new")
				os.Symlink(v2, tmp)
				os.Rename(tmp, path)
			}
			waitUntil(t, "the new directory's rules", 5*time.Second, func() bool { return ts.in.store.Current().MatchName("new.test").Blocked() })
			// An edit in the new directory is seen by the moved watch.
			dir, _ := filepath.EvalSymlinks(path)
			os.WriteFile(filepath.Join(dir, "more.txt"), []byte("more.test\n"), 0o644)
			waitUntil(t, "an edit in the new directory", 5*time.Second, func() bool { return ts.in.store.Current().MatchName("more.test").Blocked() })
			if !censored(ts.addr, "more.test") {
				t.Fatal("more.test not blocked")
			}
		})
	}
	// "sinkhole reload" (and SIGHUP) re-resolve the path too: with a
	// debounce too long for the watch to act, a swapped symlink is followed
	// by the reload, and the watch moves with it.
	root := t.TempDir()
	v1, v2, path := filepath.Join(root, "v1"), filepath.Join(root, "v2"), filepath.Join(root, "lists")
	os.Mkdir(v1, 0o755)
	os.Mkdir(v2, 0o755)
	os.WriteFile(filepath.Join(v1, "a.txt"), []byte("old.test\n"), 0o644)
	os.WriteFile(filepath.Join(v2, "a.txt"), []byte("old.test\nnew.test\n"), 0o644)
	os.Symlink(v1, path)
	ts := startSinkhole(t, path, "--upstream", up.Addr, "--reload-debounce", "1m")
	tmp := filepath.Join(root, ".lists.new")
	os.Symlink(v2, tmp)
	os.Rename(tmp, path)
	out, errOut, code := runBin(t, "reload", "--admin", ts.in.admin.Addr())
	if code != 0 || !censored(ts.addr, "new.test") {
		t.Fatalf("reload after a symlink swap: exit %d\n%s%s", code, out, errOut)
	}
	if ts.in.watch.Load().Rearm() {
		t.Fatal("the reload did not move the watch to the new directory")
	}
}

// An IPv4-mapped prefix in --allow counts as the IPv4 prefixes it maps:
// ::ffff:0:0/96 on [::]:53 is an open resolver and refused (exit 2).
func TestMappedAllowRefused(t *testing.T) {
	lists := writeLists(t, map[string]string{"x.txt": "a.test\n"})
	for _, allow := range []string{"::ffff:0:0/96", "::ffff:0.0.0.0/97"} {
		_, errOut, code := runBin(t, "serve", "--listen", "[::]:0", "--lists", lists, "--upstream", "127.0.0.1:9", "--allow", allow, "--admin", "127.0.0.1:0")
		if code != 2 || !strings.Contains(errOut, "public IPv4 addresses (more than a /8)") || !strings.Contains(errOut, "that is an open resolver") {
			t.Fatalf("--allow %s: exit %d: %s", allow, code, errOut)
		}
	}
	// The literal 0.0.0.0/0 is the deliberate open resolver (checked
	// without starting: the check is part of the configuration).
	_, errOut, code := runBin(t, "serve", "--check-config", "--listen", "[::]:0", "--lists", lists, "--upstream", "127.0.0.1:9", "--allow", "0.0.0.0/0", "--admin", "127.0.0.1:0")
	if code != 0 {
		t.Fatalf("--allow 0.0.0.0/0: exit %d: %s", code, errOut)
	}
}

// A UTF-8 byte order mark is skipped; a UTF-16 file gets one error naming
// it and what it looks like, in check, status and the log; a public
// suffix rule is an error with file:line.
func TestEncodingsAndBroadRules(t *testing.T) {
	utf16 := []byte{0xFF, 0xFE}
	for _, c := range "# platform: X\nokx.com\n" {
		utf16 = append(utf16, byte(c), 0)
	}
	lists := writeLists(t, map[string]string{
		"bom.txt":    "\ufeff# platform: OKX\nokx.com\n",
		"utf16.txt":  string(utf16),
		"broad.txt":  "# platform: Y\ngood.test\nco.uk\n",
		"escape.txt": "# allow-public-suffix\ngithub.io\n",
	})
	up := startUpstream(t, "okx.com. 60 IN A 192.0.2.9")
	ts := startSinkhole(t, lists, "--upstream", up.Addr)
	if !ts.blocked(t, "www.okx.com") || !ts.blocked(t, "x.github.io") {
		t.Fatal("the BOM file or the escaped public suffix does not serve")
	}
	st := ts.in.Status()
	errs := strings.Join(st.Errors, "\n")
	for _, want := range []string{
		"utf16.txt: the file is UTF-16 little-endian text (it starts with the byte order mark FF FE); save it as UTF-8",
		`broad.txt:3: "co.uk" is a public suffix: the rule would block every name registered under it`,
	} {
		if !strings.Contains(errs, want) {
			t.Errorf("status errors lack %q:\n%s", want, errs)
		}
	}
	out, _, code := runBin(t, "check", lists)
	if code != 1 || strings.Count(out, "UTF-16") != 1 || !strings.Contains(out, "bom.txt: ok, 1 rule") || !strings.Contains(out, `broad.txt:3: "co.uk" is a public suffix`) {
		t.Fatalf("check: exit %d\n%s", code, out)
	}
}

// freeUDPPort returns a loopback address nothing listens on (a primary
// that is down).
func deadAddr(t *testing.T) string {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := c.LocalAddr().String()
	c.Close()
	return addr
}
