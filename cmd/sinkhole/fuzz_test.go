package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/dns"
	"github.com/urfave/cli/v2"

	"github.com/sinkhole-dns/sinkhole/blocklist"
	"github.com/sinkhole-dns/sinkhole/internal/admin"
	"github.com/sinkhole-dns/sinkhole/resolver/policy"
	"github.com/sinkhole-dns/sinkhole/resolver/query"
)

// FuzzConfig feeds arbitrary YAML to the --config loader and then to the
// serve flag validation. Any input is accepted or refused with a one-line
// usage error (exit status 2); nothing panics.
func FuzzConfig(f *testing.F) {
	for _, s := range []string{
		"listen: [ \"0.0.0.0:53\", \"[::]:53\" ]\nupstream: [ 192.0.2.53, \"192.0.2.54:53\" ]\nblock-action: nxdomain\nblock-ttl: 5m\n",
		"allow: [ 10.0.0.0/8, 203.0.113.0/24 ]\nrefuse-action: drop\nclient-qps: 200\nclient-burst: 400\nrrl-rate: 20\nrrl-slip: 2\n",
		"tcp-max-conns: 100\ntcp-max-conns-per-client: 4\ntcp-idle-timeout: 5s\nupstream-fail-threshold: 2\nupstream-probe-interval: 1s\n",
		"listen: 0.0.0.0:53\nallow: 0.0.0.0/1\n",
		"allow: 10.0.0.0/0\n",
		"config: other.yaml\n",
		"nonsense: 1\n",
		"- a\n- b\n",
		"listen: { a: b }\n",
		"listen: [ [ a ] ]\n",
		"a: &x [1, 2]\nb: *x\n",
		"upstream: *missing\n",
		"block-ttl: 99999999999999999999h\n",
		"\t\x00\xff",
		"admin-token-file: /nonexistent/token\n",
		"log-level: debug\nlog-format: json\nadmin: 0.0.0.0:8053\n",
		"",
		"---\n---\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		app := &cli.App{Name: "sinkhole", Writer: io.Discard, ErrWriter: io.Discard, ExitErrHandler: func(*cli.Context, error) {},
			Commands: []*cli.Command{{
				Name: "serve", Flags: serveFlags(),
				Before: func(c *cli.Context) error { return applyConfig(c, "fuzz.yaml", data) },
				Action: func(c *cli.Context) error {
					_, err := serveConfigFrom(c)
					return err
				},
			}}}
		err := app.Run([]string{"sinkhole", "serve", "--upstream", "192.0.2.1"})
		if err == nil {
			return
		}
		var ec cli.ExitCoder
		if !errors.As(err, &ec) || ec.ExitCode() != exitUsage {
			t.Fatalf("config %q: error %v is not a usage error", data, err)
		}
		if msg := err.Error(); msg == "" || strings.Contains(msg, "\n") {
			t.Fatalf("config %q: error %q is not one line", data, msg)
		}
	})
}

// fuzzBackend is an admin backend that explains with the real policy over
// a fixed snapshot and a fake upstream.
type fuzzBackend struct {
	answer *policy.Answer
	snap   *blocklist.Snapshot
}

func (b *fuzzBackend) Reload(context.Context, admin.ReloadOptions) (*admin.ReloadResult, error) {
	return &admin.ReloadResult{OK: true}, nil
}
func (b *fuzzBackend) Status() *admin.Status       { return &admin.Status{} }
func (b *fuzzBackend) Readiness() *admin.Readiness { return &admin.Readiness{Ready: true} }
func (b *fuzzBackend) Explain(ctx context.Context, name, qtype string) (*admin.Explanation, error) {
	canon, t, err := explainParams(name, qtype)
	if err != nil {
		return nil, err
	}
	ex, err := b.answer.ExplainQuery(ctx, b.snap, canon, t)
	if err != nil {
		return nil, err
	}
	return explanation(ex), nil
}

// fakeExchange answers explanations: CNAMEs to a listed name for "cname*",
// a listed address for "ip*", an error for "err*", else an address.
func fakeExchange(_ context.Context, q *dns.Msg) (*dns.Msg, error) {
	name := q.Question[0].Name
	m := new(dns.Msg)
	m.SetReply(q)
	add := func(s string) {
		if rr, err := dns.NewRR(s); err == nil {
			m.Answer = append(m.Answer, rr)
		}
	}
	switch {
	case strings.HasPrefix(name, "cname"):
		add(name + " 60 IN CNAME www.binance.com.")
	case strings.HasPrefix(name, "ip"):
		add(name + " 60 IN A 203.0.113.9")
	case strings.HasPrefix(name, "err"):
		return nil, errors.New("upstream timed out")
	default:
		add(name + " 60 IN A 192.0.2.1")
		add(name + " 60 IN AAAA 2001:db8::1")
	}
	return m, nil
}

func fuzzAdminHandler(tb testing.TB, dir string) http.Handler {
	quiet := slog.New(slog.DiscardHandler)
	if err := os.WriteFile(filepath.Join(dir, "list.txt"), []byte(exchangeList+"203.0.113.0/24\n# action: log\nmonitor.test\n"), 0o644); err != nil {
		tb.Fatal(err)
	}
	store := blocklist.NewStore(blocklist.Options{Dirs: []string{dir}, Logger: quiet})
	if _, err := store.Reload(context.Background(), "test"); err != nil {
		tb.Fatal(err)
	}
	blocker := &policy.Blocker{Default: blocklist.ActionNXDomain, SinkholeV4: netip.MustParseAddr("0.0.0.0"), SinkholeV6: netip.MustParseAddr("::"), TTL: 300}
	answer := &policy.Answer{Block: blocker, Next: query.HandlerFunc(func(ctx context.Context, req *query.Request) (*dns.Msg, error) {
		return fakeExchange(ctx, req.Msg)
	})}
	b := &fuzzBackend{answer: answer, snap: store.Current()}
	srv, err := admin.Listen(admin.Config{Addr: "127.0.0.1:0", Backend: b, Logger: quiet})
	if err != nil {
		tb.Fatal(err)
	}
	if c, ok := tb.(interface{ Cleanup(func()) }); ok {
		c.Cleanup(func() { srv.Close(context.Background()) })
	}
	return srv.Handler()
}

// FuzzAdminQuery sends arbitrary name and type parameters, and arbitrary
// raw query strings, to the admin API's /v1/query. Bad input is a 400
// with a JSON error, never a 5xx; every body is JSON.
func FuzzAdminQuery(f *testing.F) {
	for _, s := range [][3]string{
		{"www.binance.com", "A", "name=www.binance.com"},
		{"WWW.Binance.COM.", "aaaa", "name=safe.binance.com&type=MX"},
		{"cname.example", "A", "name=cname.example&type=A&type=B"},
		{"ip.example", "TXT", "name=ip.example&x=1"},
		{"err.example", "A", "type=A"},
		{"a..b", "BOGUS", "name=%zz"},
		{"bücher.de", "AXFR", "name=b%C3%BCcher.de&type=ANY"},
		{"*.x", "TYPE65535", ";;;&&&="},
		{strings.Repeat("a", 64) + ".com", "", "name=" + strings.Repeat("a.", 600)},
		{"monitor.test", "A", "name=monitor.test"},
		{"", "", ""},
		{"\x00\xff", "\n", "name=%00"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	h := fuzzAdminHandler(f, f.TempDir())
	f.Fuzz(func(t *testing.T, name, qtype, raw string) {
		for _, rq := range []string{url.Values{"name": {name}, "type": {qtype}}.Encode(), raw} {
			req := &http.Request{Method: http.MethodGet, URL: &url.URL{Path: "/v1/query", RawQuery: rq}, Header: http.Header{}}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			body := rec.Body.Bytes()
			if rec.Code != http.StatusOK && rec.Code != http.StatusBadRequest {
				t.Fatalf("query %q: status %d: %s", rq, rec.Code, body)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" || !json.Valid(body) {
				t.Fatalf("query %q: %s body %q", rq, ct, body)
			}
			if rec.Code == http.StatusBadRequest {
				var e admin.Error
				if json.Unmarshal(body, &e) != nil || e.Error == "" {
					t.Fatalf("query %q: 400 without an error message: %s", rq, body)
				}
			}
		}
	})
}
