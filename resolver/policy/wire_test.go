package policy_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/blocklist"
	"github.com/sinkhole-dns/sinkhole/resolver/policy"
	"github.com/sinkhole-dns/sinkhole/resolver/query"
)

const wireList = `# platform: Sub
binance.com
# platform: Wild
*.wild.test
# platform: Exact
=exact.test
# action: refused
refused.test
# action: nodata
nodata.test
# action: sinkhole
sink.test
# action: log
logged.test
# action: default
# scope: overseas
overseas.test
# scope: any
@@safe.binance.com
`

func wireSnapshot(t *testing.T) *blocklist.Snapshot {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "w.txt"), []byte(wireList), 0o644); err != nil {
		t.Fatal(err)
	}
	st := blocklist.NewStore(blocklist.Options{Dirs: []string{dir}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if _, err := st.Reload(context.Background(), "test"); err != nil {
		t.Fatal(err)
	}
	return st.Current()
}

// TestWireMatchesChain checks that the wire path answers blocked names
// exactly as the Question stage and Blocker.Response do, and declines what
// it must leave to the chain.
func TestWireMatchesChain(t *testing.T) {
	snap := wireSnapshot(t)
	for _, def := range []blocklist.Action{blocklist.ActionNXDomain, blocklist.ActionNoData, blocklist.ActionRefused, blocklist.ActionSinkhole} {
		block := &policy.Blocker{Default: def, SinkholeV4: netip.MustParseAddr("192.0.2.99"), SinkholeV6: netip.MustParseAddr("2001:db8::99"), TTL: 300}
		wire := &policy.Wire{Block: block}
		chain := &policy.Question{Block: block, Next: query.HandlerFunc(func(context.Context, *query.Request) (*dns.Msg, error) {
			return nil, fmt.Errorf("passed on")
		})}
		names := []string{"binance.com", "WWW.Binance.COM", "a.b.c.binance.com", "x.wild.test", "exact.test", "refused.test",
			"nodata.test", "sink.test", "www.sink.test", "overseas.test"}
		for _, name := range names {
			for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeMX} {
				for _, edns := range []int{0, 1, 2} { // none, EDNS, EDNS+DO
					q := new(dns.Msg)
					q.SetQuestion(dns.Fqdn(name), qtype)
					q.Id = 777
					q.CheckingDisabled = qtype == dns.TypeMX
					if edns > 0 {
						q.SetEdns0(1232, edns == 2)
					}
					want, err := chain.ServeDNS(context.Background(), query.NewRequest(q, netip.AddrPort{}, "udp", snap))
					if err != nil {
						t.Fatalf("%s: chain passed a blocked name on", name)
					}
					want.Id = q.Id
					pkt, _ := q.Pack()
					var wq query.WireQuery
					if err := query.ParseWireQuery(pkt, make([]byte, 0, 262), &wq); err != nil {
						t.Fatal(err)
					}
					out := make([]byte, 70000)
					var d query.Decision
					n, ok := wire.BlockWire(&wq, query.CanonicalName(name), snap, out, &d)
					if !ok || !d.Enforced {
						t.Fatalf("%s: wire declined", name)
					}
					got := new(dns.Msg)
					if err := got.Unpack(out[:n]); err != nil {
						t.Fatalf("%s: unpack: %v", name, err)
					}
					if a, b := normalize(got), normalize(want); a != b {
						t.Fatalf("%s %s edns=%d default=%s:\nwire:\n%s\nchain:\n%s", name, dns.TypeToString[qtype], edns, def, a, b)
					}
				}
			}
		}
		// Declined: not listed, exceptions, monitor-only, overseas with a
		// country database (the answer decides).
		wire.CountryKnown = func() bool { return true }
		for _, name := range []string{"example.org", "safe.binance.com", "logged.test", "overseas.test"} {
			q := new(dns.Msg)
			q.SetQuestion(name+".", dns.TypeA)
			pkt, _ := q.Pack()
			var wq query.WireQuery
			query.ParseWireQuery(pkt, make([]byte, 0, 262), &wq)
			if _, ok := wire.BlockWire(&wq, name, snap, make([]byte, 70000), new(query.Decision)); ok {
				t.Fatalf("%s: wire answered what the chain must decide", name)
			}
		}
	}
}

// normalize renders a message for comparison: names in lower case, EDNS
// and header flags included.
func normalize(m *dns.Msg) string {
	m.Compress = false
	return strings.ToLower(m.String())
}

func BenchmarkBlockWire(b *testing.B) {
	dir := b.TempDir()
	os.WriteFile(filepath.Join(dir, "w.txt"), []byte(wireList), 0o644)
	st := blocklist.NewStore(blocklist.Options{Dirs: []string{dir}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	st.Reload(context.Background(), "bench")
	snap := st.Current()
	wire := &policy.Wire{Block: &policy.Blocker{Default: blocklist.ActionNXDomain, TTL: 300}}
	q := new(dns.Msg)
	q.SetQuestion("www.binance.com.", dns.TypeA)
	q.SetEdns0(1232, false)
	pkt, _ := q.Pack()
	var wq query.WireQuery
	query.ParseWireQuery(pkt, make([]byte, 0, 262), &wq)
	out := make([]byte, 70000)
	var d query.Decision
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := wire.BlockWire(&wq, "www.binance.com", snap, out, &d); !ok {
			b.Fatal("declined")
		}
	}
}

// TestWireFitsServerBuffer guards against a bound that makes the wire path
// decline everything: a 64 KiB buffer (the server's) must be enough.
func TestWireFitsServerBuffer(t *testing.T) {
	snap := wireSnapshot(t)
	wire := &policy.Wire{Block: &policy.Blocker{Default: blocklist.ActionNXDomain, TTL: 300}}
	q := new(dns.Msg)
	q.SetQuestion("www.binance.com.", dns.TypeA)
	pkt, _ := q.Pack()
	var wq query.WireQuery
	query.ParseWireQuery(pkt, make([]byte, 0, 262), &wq)
	if _, ok := wire.BlockWire(&wq, "www.binance.com", snap, make([]byte, dns.MaxMsgSize), new(query.Decision)); !ok {
		t.Fatal("wire path declined with a 64 KiB buffer")
	}
}
