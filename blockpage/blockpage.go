// Package blockpage serves the page a blocked browser lands on. With the
// sinkhole block action, blocked names resolve to the sinkhole address;
// a browser that connects there over HTTP asks for the blocked site by its
// Host header, and this server answers with a page saying why the site is
// blocked: the platform, the authority, the order reference, the contact
// and the time, in English or Simplified Chinese by Accept-Language. The
// page is self-contained (inline style, no external resources, no
// JavaScript) and comes with HTTP status 451 (RFC 7725) for blocked
// names.
//
// HTTPS cannot be answered: the browser expects the blocked site's
// certificate, which only the site has. TLS listeners close every
// connection at once, so the browser fails fast with a connection error
// instead of waiting for a timeout.
package blockpage

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/text/language"
)

// Rule is what the page shows about the rule that blocks a host.
type Rule struct {
	Rule      string // the rule's text, e.g. "binance.com"
	File      string // the list file
	Line      int
	Platform  string
	Authority string
	Order     string
	Contact   string
}

// Lookup finds the enforced block rule for a host name (lower case, no
// port, no trailing dot); ok is false when the name is not blocked.
type Lookup func(host string) (r Rule, ok bool)

// Config configures a Server.
type Config struct {
	// Addrs are the HTTP listen addresses; TLSAddrs the ones that close
	// TLS connections at once.
	Addrs, TLSAddrs []string
	// Lookup finds the rule for a Host header.
	Lookup Lookup
	// Template, when set, replaces the built-in page (see Parse).
	Template *template.Template
	// Operator names who runs the resolver, shown on the page (may be
	// empty).
	Operator string
	// Now returns the time shown on the page; time.Now if nil.
	Now func() time.Time
	// Logger; slog.Default() if nil.
	Logger *slog.Logger
}

// Page is what a template is executed with.
type Page struct {
	Lang     string // "en" or "zh-Hans"
	Host     string // the Host header, without the port
	Blocked  bool   // a rule blocks Host
	Rule     Rule   // valid when Blocked
	Time     string // the time of the request, RFC 3339 UTC
	Operator string
	T        Text // the page's words in Lang
	// ContactURL is Rule.Contact as a link target when it is an http(s)
	// URL or a mail address ("mailto:..."), else "".
	ContactURL string
}

// contactURL makes a link of a contact that is a URL or a mail address.
func contactURL(c string) string {
	l := strings.ToLower(c)
	switch {
	case strings.HasPrefix(l, "https://"), strings.HasPrefix(l, "http://"), strings.HasPrefix(l, "mailto:"):
		return c
	case strings.Count(c, "@") == 1 && !strings.ContainsAny(c, " /:<>"):
		return "mailto:" + c
	}
	return ""
}

// Server serves the block page on HTTP listeners and closes TLS ones.
type Server struct {
	cfg   Config
	log   *slog.Logger
	tmpl  *template.Template
	http  *http.Server
	lns   []net.Listener
	tls   []net.Listener
	wg    sync.WaitGroup
	addrs []string
}

// Parse reads a replacement template from path and checks it by executing
// it for a blocked and an unknown host in both languages, so that a broken
// template stops the server at start instead of failing every page.
func Parse(path string) (*template.Template, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	t, err := template.New(path).Parse(string(b))
	if err != nil {
		return nil, err
	}
	if err := check(t); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// check executes t with sample pages.
func check(t *template.Template) error {
	sample := Rule{Rule: "example.com", File: "list.txt", Line: 1, Platform: "Example", Authority: "Authority", Order: "Order 1", Contact: "https://example.invalid/"}
	for _, lang := range []string{"en", "zh-Hans"} {
		for _, blocked := range []bool{true, false} {
			p := Page{Lang: lang, Host: "example.com", Blocked: blocked, Rule: sample, Time: time.Unix(0, 0).UTC().Format(time.RFC3339), T: texts[lang],
				ContactURL: sample.Contact, Operator: "Example ISP"}
			var sb strings.Builder
			if err := t.Execute(&sb, p); err != nil {
				return err
			}
		}
	}
	return nil
}

// Listen opens every listener and starts serving.
func Listen(cfg Config) (*Server, error) {
	if cfg.Lookup == nil {
		return nil, errors.New("blockpage: no Lookup")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{cfg: cfg, log: cfg.Logger, tmpl: cfg.Template}
	if s.tmpl == nil {
		s.tmpl = builtin
	}
	s.http = &http.Server{Handler: s, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 10 * time.Second, IdleTimeout: 30 * time.Second, MaxHeaderBytes: 16 << 10,
		ErrorLog: slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug)}
	for _, a := range cfg.Addrs {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			s.Close(context.Background())
			return nil, fmt.Errorf("--block-page %s: %w", a, err)
		}
		s.lns = append(s.lns, ln)
		s.addrs = append(s.addrs, ln.Addr().String())
	}
	for _, a := range cfg.TLSAddrs {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			s.Close(context.Background())
			return nil, fmt.Errorf("--block-page-tls %s: %w", a, err)
		}
		s.tls = append(s.tls, ln)
	}
	for _, ln := range s.lns {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.http.Serve(ln)
		}()
		s.log.Info("block page listening", "addr", ln.Addr().String())
	}
	for _, ln := range s.tls {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			closeAll(ln)
		}()
		s.log.Info("block page TLS address listening: connections are closed at once (no certificate for blocked sites)", "addr", ln.Addr().String())
	}
	return s, nil
}

// closeAll accepts connections and resets each at once.
func closeAll(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // out of descriptors: back off
			continue
		}
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0) // a reset: the browser reports an error at once
		}
		c.Close()
	}
}

// Addrs returns the HTTP listeners' addresses.
func (s *Server) Addrs() []string { return s.addrs }

// TLSAddrs returns the TLS listeners' addresses.
func (s *Server) TLSAddrs() []string {
	out := make([]string, len(s.tls))
	for i, ln := range s.tls {
		out[i] = ln.Addr().String()
	}
	return out
}

// Close stops every listener and waits for open requests until ctx ends.
func (s *Server) Close(ctx context.Context) {
	if s == nil {
		return
	}
	for _, ln := range s.tls {
		ln.Close()
	}
	if len(s.lns) > 0 {
		s.http.Shutdown(ctx)
	}
	s.wg.Wait()
}

// ServeHTTP answers every path with the page for the Host header.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	host := hostOf(r.Host)
	p := Page{Lang: pickLang(r.Header.Get("Accept-Language")), Host: host, Operator: s.cfg.Operator,
		Time: s.cfg.Now().UTC().Format(time.RFC3339)}
	p.T = texts[p.Lang]
	if host != "" {
		p.Rule, p.Blocked = s.cfg.Lookup(host)
		p.ContactURL = contactURL(p.Rule.Contact)
	}
	var sb strings.Builder
	if err := s.tmpl.Execute(&sb, p); err != nil {
		s.log.Error("block page template failed", "host", host, "err", err)
		http.Error(w, "block page unavailable", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Language", p.Lang)
	h.Set("Vary", "Accept-Language")
	h.Set("Cache-Control", "no-store")
	// Nothing but the page itself: no scripts, images, fonts or frames.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	status := http.StatusNotFound
	if p.Blocked {
		status = http.StatusUnavailableForLegalReasons // RFC 7725
	}
	w.WriteHeader(status)
	if r.Method == http.MethodGet {
		w.Write([]byte(sb.String()))
	}
}

// hostOf returns a Host header's name: no port, no trailing dot, lower
// case; "" for an address literal or garbage.
func hostOf(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	h = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(h)), ".")
	if h == "" || net.ParseIP(strings.Trim(h, "[]")) != nil || len(h) > 253 {
		return ""
	}
	for _, c := range h {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c > 0x7f) {
			return ""
		}
	}
	return h
}

// langs are the page's languages, in the order the matcher prefers.
var langs = []language.Tag{language.English, language.SimplifiedChinese}

var matcher = language.NewMatcher(langs)

// pickLang chooses "en" or "zh-Hans" for an Accept-Language header
// (RFC 9110 section 12.5.4, q-values honoured); English by default.
func pickLang(accept string) string {
	tags, _, err := language.ParseAcceptLanguage(accept)
	if err != nil || len(tags) == 0 {
		return "en"
	}
	_, i, conf := matcher.Match(tags...)
	if conf == language.No {
		return "en"
	}
	if langs[i] == language.SimplifiedChinese {
		return "zh-Hans"
	}
	return "en"
}
