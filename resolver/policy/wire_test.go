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
					o, v := offer(t, chain, q, snap)
					if v != query.Answered || !o.Decision.Enforced || o.Name != query.CanonicalName(name) {
						t.Fatalf("%s: wire declined", name)
					}
					got := new(dns.Msg)
					if err := got.Unpack(o.Out[:o.N]); err != nil {
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
		chain.CountryKnown = func() bool { return true }
		for _, name := range []string{"example.org", "safe.binance.com", "logged.test", "overseas.test"} {
			q := new(dns.Msg)
			q.SetQuestion(name+".", dns.TypeA)
			if _, v := offer(t, chain, q, snap); v != query.Decline {
				t.Fatalf("%s: wire answered what the chain must decide", name)
			}
		}
	}
}

// offer runs the question stage's fast path on q.
func offer(t testing.TB, qs *policy.Question, q *dns.Msg, snap *blocklist.Snapshot) (*query.Offered, query.Verdict) {
	pkt, err := q.Pack()
	if err != nil {
		t.Fatal(err)
	}
	var wq query.WireQuery
	if err := query.ParseWireQuery(pkt, make([]byte, 0, 262), &wq); err != nil {
		t.Fatal(err)
	}
	wq.Limit = wq.UDPSize
	o := &query.Offered{Snapshot: snap, Out: make([]byte, 70000)}
	return o, qs.Offer(&wq, o)
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
	qs := &policy.Question{Block: &policy.Blocker{Default: blocklist.ActionNXDomain, TTL: 300}}
	q := new(dns.Msg)
	q.SetQuestion("www.binance.com.", dns.TypeA)
	q.SetEdns0(1232, false)
	pkt, _ := q.Pack()
	var wq query.WireQuery
	query.ParseWireQuery(pkt, make([]byte, 0, 262), &wq)
	wq.Limit = wq.UDPSize
	o := &query.Offered{Snapshot: snap, Out: make([]byte, 70000)}
	b.ReportAllocs()
	for b.Loop() {
		if qs.Offer(&wq, o) != query.Answered {
			b.Fatal("declined")
		}
	}
}

// TestWireFitsServerBuffer guards against a bound that makes the wire path
// decline everything: a 64 KiB buffer (the server's) must be enough.
func TestWireFitsServerBuffer(t *testing.T) {
	snap := wireSnapshot(t)
	qs := &policy.Question{Block: &policy.Blocker{Default: blocklist.ActionNXDomain, TTL: 300}}
	q := new(dns.Msg)
	q.SetQuestion("www.binance.com.", dns.TypeA)
	pkt, _ := q.Pack()
	var wq query.WireQuery
	query.ParseWireQuery(pkt, make([]byte, 0, 262), &wq)
	wq.Limit = wq.UDPSize
	if qs.Offer(&wq, &query.Offered{Snapshot: snap, Out: make([]byte, dns.MaxMsgSize)}) != query.Answered {
		t.Fatal("wire path declined with a 64 KiB buffer")
	}
}
