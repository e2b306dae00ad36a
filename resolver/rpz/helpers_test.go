package rpz

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/blocklist"
	"github.com/sinkhole-dns/sinkhole/resolver"
	"github.com/sinkhole-dns/sinkhole/resolver/query"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// primary is a real DNS server exporting a lists directory as an RPZ zone.
type primary struct {
	dir    string
	store  *blocklist.Store
	export *Exporter
	srv    *resolver.Server
	addr   string
	cancel context.CancelFunc
}

func writeFile(t testing.TB, dir, name, body string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// startPrimary serves files (in a new directory) as zone on listen
// ("127.0.0.1:0" when empty).
func startPrimary(t testing.TB, listen string, files map[string]string, cfg ExportConfig) *primary {
	t.Helper()
	p := &primary{dir: t.TempDir()}
	for n, b := range files {
		writeFile(t, p.dir, n, b)
	}
	if cfg.Zone == "" {
		cfg.Zone = "rpz.test"
	}
	cfg.Logger = quietLogger()
	var err error
	p.export, err = NewExporter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p.store = blocklist.NewStore(blocklist.Options{Dirs: []string{p.dir}, Logger: quietLogger()})
	p.store.OnReload(p.export.Observe)
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	p.export.Start(ctx)
	if _, err := p.store.Reload(ctx, "test"); err != nil {
		t.Fatal(err)
	}
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	refuse := query.HandlerFunc(func(_ context.Context, req *query.Request) (*dns.Msg, error) {
		return query.Reply(req.Msg, dns.RcodeRefused), nil
	})
	chain, err := query.Chain(p.export.Stage(), refuse)
	if err != nil {
		t.Fatal(err)
	}
	p.srv, err = resolver.NewServer(resolver.ServerConfig{
		Listen: []string{listen}, Handler: chain, Snapshot: p.store.Current,
		Transfer: p.export.ServeTransfer, Logger: quietLogger(), UDPSockets: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.srv.Start(); err != nil {
		t.Fatal(err)
	}
	p.addr = p.srv.Addrs()[0]
	t.Cleanup(p.stop)
	return p
}

func (p *primary) stop() {
	p.cancel()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p.srv.Shutdown(ctx)
}

func (p *primary) reload(t testing.TB) {
	t.Helper()
	if _, err := p.store.Reload(context.Background(), "test"); err != nil {
		t.Fatal(err)
	}
	p.export.Wait()
}

// xfr runs a transfer against addr and returns the records as text lines.
func xfr(t testing.TB, addr string, m *dns.Msg) ([]string, error) {
	t.Helper()
	tr := &dns.Transfer{DialTimeout: 5 * time.Second, ReadTimeout: 5 * time.Second}
	ch, err := tr.In(m, addr)
	if err != nil {
		return nil, err
	}
	var out []string
	for env := range ch {
		if env.Error != nil {
			return out, env.Error
		}
		for _, rr := range env.RR {
			out = append(out, strings.ReplaceAll(rr.String(), "\t", " "))
		}
	}
	return out, nil
}

func axfrMsg(zone string) *dns.Msg {
	m := new(dns.Msg)
	m.SetAxfr(dns.Fqdn(zone))
	return m
}

func ixfrMsg(zone string, serial uint32) *dns.Msg {
	m := new(dns.Msg)
	m.SetIxfr(dns.Fqdn(zone), serial, "x.", "y.")
	return m
}

func addrPort(t testing.TB, s string) netip.AddrPort {
	t.Helper()
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		t.Fatal(err)
	}
	return ap
}

// waitFor polls cond every 5ms until it holds or the deadline passes.
func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
