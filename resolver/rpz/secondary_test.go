package rpz

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/blocklist"
	"github.com/sinkhole-dns/sinkhole/resolver"
	"github.com/sinkhole-dns/sinkhole/resolver/query"
)

// secondarySide is a feed set with a DNS server receiving its NOTIFYs.
type secondarySide struct {
	feeds   atomic.Pointer[Feeds]
	srv     *resolver.Server
	addr    string
	dir     string
	updates atomic.Int64
	cancel  context.CancelFunc
}

// startNotifyServer starts the DNS server a secondary receives NOTIFY on;
// startFeeds fills in the feeds afterwards.
func startNotifyServer(t testing.TB) *secondarySide {
	t.Helper()
	s := &secondarySide{dir: t.TempDir()}
	refuse := query.HandlerFunc(func(_ context.Context, req *query.Request) (*dns.Msg, error) {
		return query.Reply(req.Msg, dns.RcodeRefused), nil
	})
	var err error
	s.srv, err = resolver.NewServer(resolver.ServerConfig{
		Listen: []string{"127.0.0.1:0"}, Handler: refuse, Snapshot: blocklist.Empty, Logger: quietLogger(), UDPSockets: 1,
		Notify: func(pkt []byte, m *dns.Msg, from netip.AddrPort) *dns.Msg {
			f := s.feeds.Load()
			if f == nil {
				return nil
			}
			return f.Notify(pkt, m, from)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.srv.Start(); err != nil {
		t.Fatal(err)
	}
	s.addr = s.srv.Addrs()[0]
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.srv.Shutdown(ctx)
	})
	return s
}

func (s *secondarySide) startFeeds(t testing.TB, primary string, key *TSIGKey) {
	t.Helper()
	f, err := NewFeeds([]FeedConfig{{
		Name: "regulator", Zone: "rpz.test", Primary: addrPort(t, primary), Key: key, Dir: s.dir,
		OnUpdate: func() { s.updates.Add(1) },
	}}, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.feeds.Store(f)
	f.Start(ctx)
	t.Cleanup(func() { cancel(); f.Wait() })
}

func (s *secondarySide) stopFeeds() {
	s.cancel()
	s.feeds.Load().Wait()
}

func (s *secondarySide) status() FeedStatus { return s.feeds.Load().Status()[0] }

func (s *secondarySide) zoneFile(t testing.TB) blocklist.FileStatus {
	t.Helper()
	fs, errs := blocklist.CheckFile(filepath.Join(s.dir, "regulator.rpz"), 0)
	if len(errs) > 0 {
		t.Fatalf("zone file does not load: %v", errs)
	}
	return fs
}

func TestSecondaryFollowsPrimary(t *testing.T) {
	sec := startNotifyServer(t)
	p := startPrimary(t, "", map[string]string{"a.txt": "binance.com\n=exact.test\n"}, ExportConfig{Notify: []string{sec.addr}})
	sec.startFeeds(t, p.addr, nil)

	waitFor(t, "the first AXFR", 5*time.Second, func() bool { return sec.status().Serial == p.export.Serial() })
	st := sec.status()
	// Records: NS, the ZONEMD records (SIMPLE, MERKLE3) and three policy
	// records.
	if !st.Loaded || st.LastTransferType != "AXFR" || st.LastError != "" || st.Records != 4+len(DefaultExportZonemd) || sec.updates.Load() != 1 {
		t.Fatalf("after AXFR: %+v, updates %d", st, sec.updates.Load())
	}
	if fs := sec.zoneFile(t); fs.Domains != 3 {
		t.Fatalf("zone file rules: %+v", fs)
	}

	// A change at the primary arrives by NOTIFY and IXFR, well before the
	// 60 s SOA refresh.
	writeFile(t, p.dir, "a.txt", "binance.com\n=new.test\n")
	start := time.Now()
	p.reload(t)
	waitFor(t, "the NOTIFY-triggered IXFR", 3*time.Second, func() bool { return sec.status().Serial == p.export.Serial() })
	t.Logf("change reached the secondary in %s", time.Since(start).Round(time.Millisecond))
	st = sec.status()
	if st.LastTransferType != "IXFR" || sec.updates.Load() != 2 {
		t.Fatalf("after IXFR: %+v, updates %d", st, sec.updates.Load())
	}
	data, _ := os.ReadFile(filepath.Join(sec.dir, "regulator.rpz"))
	if !strings.Contains(string(data), "new.test.rpz.test.") || strings.Contains(string(data), "exact.test") {
		t.Fatalf("zone file after IXFR:\n%s", data)
	}

	// Cold start with the primary down: the zone on disk serves.
	serial := p.export.Serial()
	sec.stopFeeds()
	p.stop()
	sec.startFeeds(t, p.addr, nil)
	waitFor(t, "a failed first contact", 10*time.Second, func() bool { return sec.status().LastResult == "failed" })
	st = sec.status()
	if !st.Loaded || st.Serial != serial || st.LastError == "" {
		t.Fatalf("cold start: %+v", st)
	}
	if fs := sec.zoneFile(t); fs.Domains != 3 {
		t.Fatalf("zone file after a failed start: %+v", fs)
	}
}

// rawPrimary serves AXFR of fixed records (in zone-file syntax), whatever
// they are, over TCP.
func rawPrimary(t *testing.T, records ...string) string {
	t.Helper()
	var rrs []dns.RR
	for _, r := range records {
		rr, err := dns.NewRR(r)
		if err != nil {
			t.Fatal(err)
		}
		rrs = append(rrs, rr)
	}
	p := startSwapPrimary(t)
	p.zone.Store(&rrs)
	return p.addr
}

func TestSecondaryKeepsLastGoodZone(t *testing.T) {
	// A zone sinkhole cannot load (a CNAME beside other data): the
	// transfer is rejected and nothing is written.
	bad := rawPrimary(t, "rpz.test. 60 IN SOA ns. admin. 5 60 60 600 60", "x.rpz.test. 60 IN CNAME .", "x.rpz.test. 60 IN A 192.0.2.1")
	sec := startNotifyServer(t)
	sec.startFeeds(t, bad, nil)
	waitFor(t, "the rejected transfer", 5*time.Second, func() bool { return sec.status().LastResult == "failed" })
	st := sec.status()
	if st.Loaded || !strings.Contains(st.LastError, "regulator.rpz:3: a CNAME cannot share its name with other records") {
		t.Fatalf("bad zone status: %+v", st)
	}
	if _, err := os.Stat(filepath.Join(sec.dir, "regulator.rpz")); !os.IsNotExist(err) {
		t.Fatalf("bad zone written: %v", err)
	}
	ents, _ := os.ReadDir(sec.dir)
	if len(ents) != 0 {
		t.Fatalf("temporary files left: %v", ents)
	}
}

func TestNotifyAuthorization(t *testing.T) {
	key := &TSIGKey{Name: "feed-key.", Algorithm: dns.HmacSHA256, Secret: "c2VjcmV0IHNlY3JldCBzZWNyZXQgc2VjcmV0IDMyYg=="}
	wrong := &TSIGKey{Name: "feed-key.", Algorithm: dns.HmacSHA256, Secret: "d3Jvbmcgd3Jvbmcgd3Jvbmcgd3Jvbmcgd3Jvbmcg"}
	f, err := NewFeeds([]FeedConfig{{Name: "r", Zone: "rpz.test", Primary: addrPort(t, "127.0.0.2:53"), Key: key, Dir: t.TempDir()}}, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	notify := func(zone string, k *TSIGKey, from string) *dns.Msg {
		m := new(dns.Msg)
		m.SetNotify(zone)
		var pkt []byte
		if k != nil {
			m.SetTsig(k.Name, k.Algorithm, 300, time.Now().Unix())
			pkt, _, err = dns.TsigGenerate(m, k.Secret, "", false)
		} else {
			pkt, err = m.Pack()
		}
		if err != nil {
			t.Fatal(err)
		}
		in := new(dns.Msg)
		if err := in.Unpack(pkt); err != nil {
			t.Fatal(err)
		}
		return f.Notify(pkt, in, addrPort(t, from))
	}
	if r := notify("rpz.test.", nil, "127.0.0.2:4000"); r.Rcode != dns.RcodeSuccess || !r.Authoritative || r.Opcode != dns.OpcodeNotify {
		t.Fatalf("from the primary: %v", r)
	}
	if r := notify("rpz.test.", nil, "127.0.0.1:4000"); r.Rcode != dns.RcodeRefused {
		t.Fatalf("from elsewhere, unsigned: %v", r)
	}
	if r := notify("rpz.test.", wrong, "127.0.0.1:4000"); r.Rcode != dns.RcodeRefused {
		t.Fatalf("from elsewhere, wrong key: %v", r)
	}
	r := notify("rpz.test.", key, "127.0.0.1:4000")
	if r.Rcode != dns.RcodeSuccess || r.IsTsig() == nil {
		t.Fatalf("from elsewhere, signed: %v", r)
	}
	if r := notify("other.test.", nil, "127.0.0.2:4000"); r.Rcode != dns.RcodeNotAuth {
		t.Fatalf("unknown zone: %v", r)
	}
	if got := len(f.list[0].kick); got != 1 {
		t.Fatalf("accepted NOTIFYs did not queue a check: %d", got)
	}
}

func TestParseTSIGKey(t *testing.T) {
	k, err := ParseTSIGKey(`# made by tsig-keygen
key "Feed-Key" {
	algorithm hmac-sha256;
	secret "c2VjcmV0";  // the secret
};
`)
	if err != nil || k.Name != "feed-key." || k.Algorithm != dns.HmacSHA256 || k.Secret != "c2VjcmV0" {
		t.Fatalf("%+v %v", k, err)
	}
	for in, want := range map[string]string{
		``: `want key "NAME"`,
		`key "k" { algorithm hmac-md5; secret "c2VjcmV0"; };`:       `unsupported algorithm "hmac-md5"`,
		`key "k" { algorithm hmac-sha256; secret "not base64!"; };`: `secret is not base64`,
		`key "k" { algorithm hmac-sha256; };`:                       `needs an algorithm and a secret`,
		`key "k" { algorithm hmac-sha256 secret "x"; };`:            `want "option value;"`,
		`key "k" { color blue; };`:                                  `unknown option "color"`,
	} {
		if _, err := ParseTSIGKey(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", in, err, want)
		}
	}
}
