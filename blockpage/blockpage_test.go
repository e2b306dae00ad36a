package blockpage

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func testLookup(host string) (Rule, bool) {
	if host == "www.binance.com" || host == "binance.com" {
		return Rule{Rule: "binance.com", File: "exchanges.txt", Line: 5, Platform: "Binance", Authority: "Ministry of Finance",
			Order: "MoF-2024-17", Contact: "https://appeal.example/"}, true
	}
	return Rule{}, false
}

func start(t *testing.T, cfg Config) *Server {
	t.Helper()
	cfg.Addrs = []string{"127.0.0.1:0"}
	cfg.TLSAddrs = []string{"127.0.0.1:0"}
	if cfg.Lookup == nil {
		cfg.Lookup = testLookup
	}
	cfg.Now = func() time.Time { return time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC) }
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Close(ctx)
	})
	return s
}

func get(t *testing.T, s *Server, host, lang string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+s.Addrs()[0]+"/some/path?q=1", nil)
	req.Host = host
	if lang != "" {
		req.Header.Set("Accept-Language", lang)
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// external matches anything that would make a browser load a resource:
// scripts, and src/href/url() pointing anywhere but the contact link.
var external = regexp.MustCompile(`(?i)<script|<img|<link|<iframe|<object|src=|@import|url\(`)

func TestPage(t *testing.T) {
	s := start(t, Config{Operator: "Example ISP"})
	tests := []struct {
		host, lang string
		status     int
		lang2      string
		want       []string
	}{
		{"www.binance.com", "en-US,en;q=0.9", 451, "en", []string{"This site is blocked", "www.binance.com", "Binance", "Ministry of Finance", "MoF-2024-17",
			`<a href="https://appeal.example/">https://appeal.example/</a>`, "2026-12-01T08:00:00Z", "exchanges.txt:5", "Example ISP"}},
		{"WWW.Binance.COM.:80", "zh-CN,zh;q=0.9,en;q=0.8", 451, "zh-Hans", []string{"此网站已被封锁", "主管机关", "Ministry of Finance", "MoF-2024-17", "命令或案件编号"}},
		{"binance.com", "zh", 451, "zh-Hans", []string{"此网站已被封锁"}},
		{"binance.com", "fr-FR,de;q=0.5", 451, "en", []string{"This site is blocked"}},
		{"binance.com", "en;q=0.1, zh-Hans;q=0.8", 451, "zh-Hans", []string{"此网站已被封锁"}},
		{"binance.com", "", 451, "en", []string{"This site is blocked"}},
		{"example.org", "en", 404, "en", []string{"Nothing is blocked at this address"}},
		{"example.org", "zh-CN", 404, "zh-Hans", []string{"此地址未封锁任何内容"}},
		{"192.0.2.1", "en", 404, "en", []string{"Nothing is blocked"}},
		{"<script>", "en", 404, "en", []string{"Nothing is blocked"}},
	}
	for _, tt := range tests {
		status, h, body := get(t, s, tt.host, tt.lang)
		if status != tt.status || h.Get("Content-Language") != tt.lang2 || !strings.HasPrefix(h.Get("Content-Type"), "text/html") {
			t.Errorf("%s %q: status %d, language %q", tt.host, tt.lang, status, h.Get("Content-Language"))
		}
		for _, w := range tt.want {
			if !strings.Contains(body, w) {
				t.Errorf("%s %q: page lacks %q:\n%s", tt.host, tt.lang, w, body)
			}
		}
		if external.MatchString(body) {
			t.Errorf("%s: page loads an external resource or has a script:\n%s", tt.host, body)
		}
		if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
			t.Errorf("CSP %q", csp)
		}
	}
}

func TestContactURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://appeal.example/x":  "https://appeal.example/x",
		"appeals@regulator.example": "mailto:appeals@regulator.example",
		"javascript:alert(1)":       "",
		"+86 10 1234 5678":          "",
		"Room 5, Ministry":          "",
	} {
		if got := contactURL(in); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}

func TestTLSClosedAtOnce(t *testing.T) {
	s := start(t, Config{})
	c, err := net.DialTimeout("tcp", s.TLSAddrs()[0], 2*time.Second)
	if err != nil {
		if strings.Contains(err.Error(), "reset") {
			return // reset before the dial returned: closed at once indeed
		}
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	c.Write([]byte("\x16\x03\x01\x00\x05hello")) // the start of a ClientHello
	start := time.Now()
	_, err = c.Read(make([]byte, 1))
	if err == nil || time.Since(start) > time.Second {
		t.Fatalf("TLS connection not closed at once: %v after %s", err, time.Since(start))
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("read timed out: the connection was kept open")
	}
}

func TestTemplateFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.html")
	os.WriteFile(good, []byte(`<p>{{.T.Title}}: {{.Host}} {{.Rule.Platform}} {{.Rule.Order}}</p>`), 0o644)
	tmpl, err := Parse(good)
	if err != nil {
		t.Fatal(err)
	}
	s := start(t, Config{Template: tmpl})
	if _, _, body := get(t, s, "binance.com", "zh-CN"); body != "<p>此网站已被封锁: binance.com Binance MoF-2024-17</p>" {
		t.Fatalf("custom page %q", body)
	}
	for name, text := range map[string]string{
		"syntax.html": `<p>{{.Host</p>`,
		"field.html":  `<p>{{.Nope}}</p>`,
		"method.html": `<p>{{.Rule.Platform.Bad}}</p>`,
	} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(text), 0o644)
		if _, err := Parse(p); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := Parse(filepath.Join(dir, "missing.html")); err == nil {
		t.Error("missing template accepted")
	}
	if err := check(builtin); err != nil {
		t.Fatal(err)
	}
}

func TestMethods(t *testing.T) {
	s := start(t, Config{})
	resp, err := http.Post("http://"+s.Addrs()[0]+"/", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %d", resp.StatusCode)
	}
}
