package main

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// blockPageServer runs sinkhole with the sinkhole action pointing at
// loopback and the block page on a kernel-chosen port.
func blockPageServer(t *testing.T) (*testServer, string) {
	t.Helper()
	up := startUpstream(t)
	lists := writeLists(t, map[string]string{"exchanges.txt": whyList})
	ts := startSinkhole(t, lists, "--upstream", up.Addr, "--block-action", "sinkhole", "--sinkhole-ipv4", "127.0.0.1",
		"--block-page", "127.0.0.1:0", "--block-page-tls", "127.0.0.1:0", "--operator", "Example ISP")
	r := ts.query(t, "udp", "www.binance.com", dns.TypeA)
	if len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "127.0.0.1" {
		t.Fatalf("sinkhole answer %v", r.Answer)
	}
	return ts, ts.in.blockPage.Addrs()[0]
}

func needTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not installed (apt-get install %s)", name, pkg)
		}
		t.Skipf("%s not installed; CI installs %s", name, pkg)
	}
	return p
}

// TestBlockPageCurl fetches the page for a blocked host with curl, as a
// browser sent to the sinkhole address would, in English and Simplified
// Chinese, and checks the TLS address fails fast.
func TestBlockPageCurl(t *testing.T) {
	curl := needTool(t, "curl", "curl")
	ts, addr := blockPageServer(t)
	_, port, _ := net.SplitHostPort(addr)
	fetch := func(host, lang string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, curl, "-s", "-i", "--max-time", "5", "--resolve", host+":"+port+":127.0.0.1",
			"-H", "Accept-Language: "+lang, "http://"+host+":"+port+"/login").CombinedOutput()
		if err != nil {
			t.Fatalf("curl: %v\n%s", err, out)
		}
		return string(out)
	}
	en := fetch("www.binance.com", "en-GB,en;q=0.9")
	for _, w := range []string{"HTTP/1.1 451 Unavailable For Legal Reasons", "Content-Language: en", "This site is blocked", "www.binance.com",
		"Binance", "Ministry of Finance", "MoF-2024-17", "https://appeal.example/", "exchanges.txt:5", "Example ISP"} {
		if !strings.Contains(en, w) {
			t.Errorf("English page lacks %q:\n%s", w, en)
		}
	}
	zh := fetch("www.binance.com", "zh-CN,zh;q=0.9")
	for _, w := range []string{"451", "Content-Language: zh-Hans", "此网站已被封锁", "主管机关", "Ministry of Finance", "MoF-2024-17", "Binance"} {
		if !strings.Contains(zh, w) {
			t.Errorf("Chinese page lacks %q:\n%s", w, zh)
		}
	}
	if other := fetch("example.org", "en"); !strings.Contains(other, "404 Not Found") || !strings.Contains(other, "Nothing is blocked") {
		t.Errorf("unknown host:\n%s", other)
	}
	// An edit takes effect on the page at once: the page reads the lists in service.
	os.WriteFile(filepath.Join(ts.lists, "exchanges.txt"), []byte(strings.Replace(whyList, "MoF-2024-17", "MoF-2025-01", 1)), 0o644)
	waitUntil(t, "the page to show the new order", 10*time.Second, func() bool { return strings.Contains(fetch("www.binance.com", "en"), "MoF-2025-01") })

	// HTTPS: the TLS address closes the connection at once.
	_, tport, _ := net.SplitHostPort(ts.in.blockPage.TLSAddrs()[0])
	start := time.Now()
	out, err := exec.Command(curl, "-s", "-S", "--max-time", "5", "--resolve", "www.binance.com:"+tport+":127.0.0.1", "https://www.binance.com:"+tport+"/").CombinedOutput()
	if err == nil || time.Since(start) > 3*time.Second {
		t.Fatalf("HTTPS to the block page: %v after %s\n%s", err, time.Since(start), out)
	}
}

// TestBlockPageChromium renders the page in headless Chromium (with the
// blocked name mapped to the block page, as the sinkhole answer does) and
// checks the DOM shows the platform; SINKHOLE_SCREENSHOT=FILE also saves a
// screenshot (docs/block-page.png is one).
func TestBlockPageChromium(t *testing.T) {
	bin := ""
	for _, n := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(n); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		needTool(t, "chromium", "chromium")
	}
	_, addr := blockPageServer(t)
	_, port, _ := net.SplitHostPort(addr)
	run := func(lang string, extra ...string) string {
		t.Helper()
		args := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
			"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
			"--user-data-dir=" + t.TempDir(), "--host-resolver-rules=MAP www.binance.com 127.0.0.1",
			"--lang=" + lang, "--accept-lang=" + lang}
		args = append(append(args, extra...), "http://www.binance.com:"+port+"/")
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
		var stdout strings.Builder
		cmd.Stdout = &stdout
		if err := cmd.Run(); err != nil {
			t.Fatalf("chromium: %v\n%s", err, stdout.String())
		}
		return stdout.String()
	}
	dom := run("en-US", "--dump-dom")
	if !strings.Contains(dom, `<td id="platform">Binance</td>`) || !strings.Contains(dom, "This site is blocked") {
		t.Fatalf("Chromium's DOM does not show the platform:\n%s", dom)
	}
	if dom := run("zh-CN", "--dump-dom"); !strings.Contains(dom, `<td id="platform">Binance</td>`) || !strings.Contains(dom, "此网站已被封锁") {
		t.Fatalf("Chromium's DOM in Chinese:\n%s", dom)
	}
	if shot := os.Getenv("SINKHOLE_SCREENSHOT"); shot != "" {
		abs, _ := filepath.Abs(shot)
		run("en-US", "--screenshot="+abs, "--window-size=900,760", "--hide-scrollbars")
		if st, err := os.Stat(abs); err != nil || st.Size() < 1000 {
			t.Fatalf("screenshot %s: %v", abs, err)
		}
	}
}

func TestBlockPageFlagErrors(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.html")
	os.WriteFile(bad, []byte("<p>{{.Nope}}</p>"), 0o644)
	lists := writeLists(t, map[string]string{"x.txt": "a.com\n"})
	base := []string{"--lists", lists, "--upstream", "127.0.0.1:53"}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--block-page", "80"}, `--block-page "80": want host:port`},
		{[]string{"--block-page-tls", "x"}, `--block-page-tls "x": want host:port`},
		{[]string{"--block-page-template", bad}, "--block-page-template needs --block-page"},
		{[]string{"--block-page", "127.0.0.1:0", "--block-page-template", bad}, "bad.html"},
	} {
		if _, err := loadServeConfig(t, append(base, tt.args...)...); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: %v, want %q", tt.args, err, tt.want)
		}
	}
}
