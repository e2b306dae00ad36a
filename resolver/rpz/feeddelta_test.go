package rpz

import (
	"context"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/blocklist"
)

// versionPrimary is a real primary (TCP, loopback) serving AXFR of its
// newest version and IXFR from any version it published, as a chain of
// one difference sequence per version (RFC 1995).
type versionPrimary struct {
	mu       sync.Mutex
	versions []zoneVersion
	addr     string
	skew     uint32         // added to the starting serial of every difference (a broken primary)
	requests map[uint16]int // transfer requests by type (AXFR, IXFR)
}

type zoneVersion struct {
	serial uint32
	rrs    []dns.RR // SOA first
}

func startVersionPrimary(t *testing.T) *versionPrimary {
	t.Helper()
	p := &versionPrimary{}
	srv := &dns.Server{Addr: "127.0.0.1:0", Net: "tcp", Handler: dns.HandlerFunc(func(w dns.ResponseWriter, m *dns.Msg) {
		defer w.Close()
		if len(m.Question) != 1 {
			return
		}
		p.mu.Lock()
		vs := slices.Clone(p.versions)
		if q := m.Question[0].Qtype; q == dns.TypeAXFR || q == dns.TypeIXFR {
			if p.requests == nil {
				p.requests = map[uint16]int{}
			}
			p.requests[q]++
		}
		p.mu.Unlock()
		cur := vs[len(vs)-1]
		var out []dns.RR
		switch m.Question[0].Qtype {
		case dns.TypeAXFR:
			out = append(append(out, cur.rrs...), cur.rrs[0])
		case dns.TypeIXFR:
			from := uint32(0)
			if len(m.Ns) > 0 {
				if soa, ok := m.Ns[0].(*dns.SOA); ok {
					from = soa.Serial
				}
			}
			k := slices.IndexFunc(vs, func(v zoneVersion) bool { return v.serial == from })
			switch {
			case k < 0:
				out = append(append(out, cur.rrs...), cur.rrs[0]) // AXFR-style
			case k == len(vs)-1:
				out = []dns.RR{cur.rrs[0]}
			default:
				out = append(out, cur.rrs[0])
				for ; k < len(vs)-1; k++ {
					del, add := diffRRs(vs[k].rrs[1:], vs[k+1].rrs[1:])
					from := dns.Copy(vs[k].rrs[0]).(*dns.SOA)
					p.mu.Lock()
					from.Serial += p.skew
					p.mu.Unlock()
					out = append(out, from)
					out = append(out, del...)
					out = append(out, vs[k+1].rrs[0])
					out = append(out, add...)
				}
				out = append(out, cur.rrs[0])
			}
		default:
			r := new(dns.Msg)
			r.SetReply(m)
			r.Answer = []dns.RR{cur.rrs[0]}
			w.WriteMsg(r)
			return
		}
		ch := make(chan *dns.Envelope, 1)
		ch <- &dns.Envelope{RR: out}
		close(ch)
		new(dns.Transfer).Out(w, m, ch)
	})}
	udp := &dns.Server{Addr: "", Net: "udp", Handler: srv.Handler}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go srv.ListenAndServe()
	<-started
	p.addr = srv.Listener.Addr().String()
	udp.Addr = p.addr
	ustarted := make(chan struct{})
	udp.NotifyStartedFunc = func() { close(ustarted) }
	go udp.ListenAndServe()
	<-ustarted
	t.Cleanup(func() { srv.Shutdown(); udp.Shutdown() })
	return p
}

func diffRRs(a, b []dns.RR) (del, add []dns.RR) {
	key := func(rr dns.RR) string { return strings.ToLower(rr.String()) }
	in := func(l []dns.RR) map[string]bool {
		m := map[string]bool{}
		for _, rr := range l {
			m[key(rr)] = true
		}
		return m
	}
	ia, ib := in(a), in(b)
	for _, rr := range a {
		if !ib[key(rr)] {
			del = append(del, rr)
		}
	}
	for _, rr := range b {
		if !ia[key(rr)] {
			add = append(add, rr)
		}
	}
	return del, add
}

// publish makes records (owner relative to rpz.test, then the record) the
// zone's newest version.
func (p *versionPrimary) publish(t *testing.T, serial uint32, withMD bool, records []string) {
	t.Helper()
	soa, _ := dns.NewRR("rpz.test. 60 IN SOA ns. admin. " + strconv.FormatUint(uint64(serial), 10) + " 60 60 600 60")
	rrs := []dns.RR{soa}
	ns, _ := dns.NewRR("rpz.test. 60 IN NS ns.")
	rrs = append(rrs, ns)
	for _, r := range records {
		rr, err := dns.NewRR("$ORIGIN rpz.test.\n" + r)
		if err != nil {
			t.Fatalf("%s: %v", r, err)
		}
		rrs = append(rrs, rr)
	}
	if withMD {
		// SIMPLE and MERKLE3, as sinkhole's export publishes them.
		md, err := NewZonemd("rpz.test.", serial, 60, rrs)
		if err != nil {
			t.Fatal(err)
		}
		d, err := ZoneDigestMerkle3("rpz.test.", rrs, ZonemdHashSHA384)
		if err != nil {
			t.Fatal(err)
		}
		m3 := *md
		m3.Scheme, m3.Digest = ZonemdSchemeMerkle3, hex.EncodeToString(d)
		rrs = append(rrs, md, &m3)
	}
	p.mu.Lock()
	p.versions = append(p.versions, zoneVersion{serial: serial, rrs: rrs})
	p.mu.Unlock()
}

// servingRandomZone starts a primary serving serial 1 of a random zone
// (randomZone.mutate(r, size, k)); the zone is returned for the changes
// that follow.
func servingRandomZone(t *testing.T, r *rand.Rand, size, k int, withMD bool) (*versionPrimary, randomZone) {
	t.Helper()
	p := startVersionPrimary(t)
	zone := randomZone{}
	zone.mutate(r, size, k)
	p.publish(t, 1, withMD, zone.records())
	return p, zone
}

// feedSide is a list store loading a state directory and a secondary
// feeding it, as sinkhole serve runs them.
type feedSide struct {
	dir    string
	store  *blocklist.Store
	sec    *Secondary
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	deltas int // reloads applied as deltas
}

// startFeedSide starts a feed side; its zone file follows IXFRs after
// 50 ms unless a config function says otherwise.
func startFeedSide(t *testing.T, dir, primary string, requireMD bool, config ...func(*FeedConfig)) *feedSide {
	t.Helper()
	lists := t.TempDir()
	f := &feedSide{dir: dir, done: make(chan struct{})}
	f.store = blocklist.NewStore(blocklist.Options{Dirs: []string{lists, dir}, Logger: quietLogger(), Verified: []string{dir},
		Checks: []blocklist.Check{blocklist.ChecksumCheck(dir)}})
	f.store.OnReload(func(_ *blocklist.Snapshot, rep *blocklist.ReloadReport) {
		if rep.Delta {
			f.mu.Lock()
			f.deltas++
			f.mu.Unlock()
		}
	})
	if _, err := f.store.Reload(context.Background(), "start"); err != nil {
		t.Fatal(err)
	}
	cfg := FeedConfig{Name: "regulator", Zone: "rpz.test", Primary: addrPort(t, primary), Dir: dir,
		Store: f.store, RequireZonemd: requireMD, Logger: quietLogger(), WriteDelay: 50 * time.Millisecond}
	for _, c := range config {
		c(&cfg)
	}
	var err error
	f.sec, err = NewSecondary(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	go func() { defer close(f.done); f.sec.Run(ctx) }()
	t.Cleanup(f.stop)
	return f
}

func (f *feedSide) stop() {
	f.cancel()
	<-f.done
}

func (f *feedSide) waitSerial(t *testing.T, serial uint32) {
	t.Helper()
	f.sec.Notified()
	waitFor(t, fmt.Sprintf("serial %d", serial), 10*time.Second, func() bool {
		st := f.sec.Status()
		if st.Serial != serial && st.LastResult == "failed" {
			t.Fatalf("feed failed: %+v", st)
		}
		return st.Serial == serial
	})
}

// decisions describes what the store decides for every name asked, with
// the rule's place when withLines.
func decisions(s *blocklist.Snapshot, names []string, withLines bool) string {
	var b strings.Builder
	for _, n := range names {
		m := s.MatchName(n)
		fmt.Fprintf(&b, "%s:", n)
		if m.HasRule {
			r := s.Rule(m.Rule)
			fmt.Fprintf(&b, " block %s %v", r.Text, r.Action)
			if withLines {
				fmt.Fprintf(&b, " %s:%d", r.File, r.Line)
			}
			var local []string
			for _, rr := range s.LocalData(m.Rule) {
				// Owner names of shared local data are the first owner's.
				local = append(local, strings.TrimPrefix(rr.String(), rr.Header().Name))
			}
			sort.Strings(local)
			fmt.Fprintf(&b, " %v", local)
		}
		if m.HasAllow {
			r := s.Rule(m.Allow)
			fmt.Fprintf(&b, " allow %s", r.Text)
			if withLines {
				fmt.Fprintf(&b, " %s:%d", r.File, r.Line)
			}
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// randomZone is a policy zone over names n0..n(size-1).test: each name
// and its wildcard independently absent or one of the RPZ policies.
type randomZone map[string]string // owner (relative) -> policy

var policies = []string{"CNAME .", "CNAME *.", "CNAME rpz-passthru.", "CNAME rpz-drop.", "A 192.0.2.7", "A 192.0.2.8|AAAA 2001:db8::8"}

func (z randomZone) records() []string {
	var out []string
	keys := mapsKeys(z)
	slices.Sort(keys)
	for _, o := range keys {
		for _, p := range strings.Split(z[o], "|") {
			out = append(out, o+" 60 IN "+p)
		}
	}
	return out
}

func mapsKeys(m randomZone) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func (z randomZone) mutate(r *rand.Rand, size, k int) {
	for range k {
		o := fmt.Sprintf("n%d.test", r.IntN(size))
		if r.IntN(2) == 0 {
			o = "*." + o
		}
		if _, ok := z[o]; ok && r.IntN(3) > 0 {
			delete(z, o)
			continue
		}
		z[o] = policies[r.IntN(len(policies))]
	}
}

func queryNames(size int) []string {
	var out []string
	for i := range size {
		out = append(out, fmt.Sprintf("n%d.test", i), fmt.Sprintf("www.n%d.test", i))
	}
	return out
}

// An IXFR applied as a delta gives exactly the decisions a full AXFR of
// the same zone gives, over random sequences of additions, removals and
// policy changes (passthru exceptions, drop, NODATA, local data), with
// and without ZONEMD; the zone file written in the background reloads to
// the same decisions, rules on the same lines, after a restart.
func TestFeedIXFRDeltaMatchesAXFR(t *testing.T) {
	for _, withMD := range []bool{false, true} {
		t.Run(fmt.Sprintf("zonemd=%v", withMD), func(t *testing.T) {
			const size = 150
			r := rand.New(rand.NewPCG(1, uint64(len(fmt.Sprint(withMD)))))
			p := startVersionPrimary(t)
			zone := randomZone{}
			zone.mutate(r, size, 200)
			serial := uint32(100)
			p.publish(t, serial, withMD, zone.records())
			dir := t.TempDir()
			sec := startFeedSide(t, dir, p.addr, withMD)
			sec.waitSerial(t, serial)
			names := queryNames(size)
			for step := 1; step <= 24; step++ {
				zone.mutate(r, size, 1+r.IntN(6))
				serial++
				p.publish(t, serial, withMD, zone.records())
				if step%3 == 0 {
					// Two versions in one IXFR now and then.
					zone.mutate(r, size, 2)
					serial++
					p.publish(t, serial, withMD, zone.records())
				}
				sec.waitSerial(t, serial)
				if st := sec.sec.Status(); st.LastTransferType != "IXFR" {
					t.Fatalf("step %d: transferred by %s", step, st.LastTransferType)
				}
				// Checked with MERKLE3 (had it not matched, SIMPLE would
				// have taken the version, and said so here).
				if st := sec.sec.Status(); withMD && (st.Zonemd != "verified" || st.ZonemdScheme != "MERKLE3") {
					t.Fatalf("step %d: ZONEMD %s (%s)", step, st.Zonemd, st.ZonemdScheme)
				}
				if step%6 != 0 {
					continue
				}
				full := startFeedSide(t, t.TempDir(), p.addr, withMD)
				full.waitSerial(t, serial)
				got, want := decisions(sec.store.Current(), names, false), decisions(full.store.Current(), names, false)
				if got != want {
					t.Fatalf("step %d: delta and AXFR decide differently:\n%s", step, diffLines(got, want))
				}
				full.stop()
			}
			sec.mu.Lock()
			deltas := sec.deltas
			sec.mu.Unlock()
			if deltas < 20 {
				t.Errorf("%d of the IXFRs applied as deltas, want nearly all", deltas)
			}
			sec.store.WaitCompacted()
			before := decisions(sec.store.Current(), names, true)
			// Restart: the zone file written in the background serves.
			sec.stop()
			again := startFeedSide(t, dir, "127.0.0.1:1", withMD) // primary unreachable
			waitFor(t, "the zone from disk", 5*time.Second, func() bool { return again.sec.Status().Loaded })
			again.store.Reload(context.Background(), "restart")
			if st := again.sec.Status(); st.Serial != serial {
				t.Fatalf("after restart serial %d, want %d", st.Serial, serial)
			}
			if after := decisions(again.store.Current(), names, true); after != before {
				t.Fatalf("the zone file reloads to other decisions:\n%s", diffLines(after, before))
			}
		})
	}
}

func diffLines(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	var b strings.Builder
	for i := range min(len(g), len(w)) {
		if g[i] != w[i] {
			fmt.Fprintf(&b, "got  %s\nwant %s\n", g[i], w[i])
		}
	}
	return b.String()
}

// A reload of the lists while the zone file is being rewritten in the
// background does not parse it: the rules in service stay.
func TestFeedFileNotReparsed(t *testing.T) {
	p, zone := servingRandomZone(t, rand.New(rand.NewPCG(7, 7)), 50, 60, false)
	dir := t.TempDir()
	sec := startFeedSide(t, dir, p.addr, false)
	sec.waitSerial(t, 1)
	zone["added.test"] = "CNAME ."
	p.publish(t, 2, false, zone.records())
	sec.waitSerial(t, 2)
	waitFor(t, "the background write", 5*time.Second, func() bool {
		b, _ := os.ReadFile(filepath.Join(dir, "regulator.rpz"))
		return strings.Contains(string(b), "added.test.rpz.test.")
	})
	rep, err := sec.store.Reload(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	for _, fc := range rep.Files {
		if strings.HasSuffix(fc.Name, "regulator.rpz") && fc.Change != blocklist.ChangeUnchanged {
			t.Fatalf("the feed's file was loaded again: %+v", fc)
		}
	}
	if !sec.store.Current().MatchName("added.test").Blocked() {
		t.Fatal("added.test not blocked")
	}
}

// Differences that do not start at the serial held are not applied: the
// zone is transferred whole instead.
func TestFeedBadIXFRFallsBackToAXFR(t *testing.T) {
	p := startVersionPrimary(t)
	zone := randomZone{"a.test": "CNAME ."}
	p.publish(t, 1, false, zone.records())
	sec := startFeedSide(t, t.TempDir(), p.addr, false)
	sec.waitSerial(t, 1)
	p.mu.Lock()
	p.skew = 1000
	p.mu.Unlock()
	zone["b.test"] = "CNAME ."
	p.publish(t, 2, false, zone.records())
	sec.waitSerial(t, 2)
	// The last transfer is the AXFR that replaced the bad IXFR (a NOTIFY
	// that arrives after it may already have found the serial up to date).
	if st := sec.sec.Status(); st.LastTransferType != "AXFR" || (st.LastResult != "transferred" && st.LastResult != "up-to-date") {
		t.Fatalf("after a bad IXFR: %+v", st)
	}
	if axfr, ixfr := p.transfers(); axfr < 2 || ixfr < 1 {
		t.Fatalf("%d AXFR and %d IXFR requests, want the first AXFR, an IXFR and the AXFR after it", axfr, ixfr)
	}
	if !sec.store.Current().MatchName("b.test").Blocked() || !sec.store.Current().MatchName("a.test").Blocked() {
		t.Fatal("the zone transferred whole does not block both names")
	}
}

func (p *versionPrimary) transfers() (axfr, ixfr int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.requests[dns.TypeAXFR], p.requests[dns.TypeIXFR]
}

// A restarted secondary serves the zone file it kept and asks the primary
// for the differences since that file's serial: an IXFR, never an AXFR,
// applied as a delta to the rules the store loaded from the same file;
// its decisions are those of a secondary that transferred the new version
// whole.
func TestFeedRestartAsksForIXFR(t *testing.T) {
	for _, withMD := range []bool{false, true} {
		t.Run(fmt.Sprintf("zonemd=%v", withMD), func(t *testing.T) {
			r := rand.New(rand.NewPCG(11, 12))
			p, zone := servingRandomZone(t, r, 200, 300, withMD)
			dir := t.TempDir()
			first := startFeedSide(t, dir, p.addr, withMD)
			first.waitSerial(t, 1)
			first.stop()
			if a, _ := p.transfers(); a != 1 {
				t.Fatalf("%d AXFRs for the first transfer", a)
			}
			zone.mutate(r, 200, 20)
			zone["restart.test"] = "CNAME ."
			p.publish(t, 2, withMD, zone.records())

			p.mu.Lock()
			p.requests = nil
			p.mu.Unlock()
			again := startFeedSide(t, dir, p.addr, withMD)
			again.waitSerial(t, 2)
			axfr, ixfr := p.transfers()
			if axfr != 0 || ixfr != 1 {
				t.Fatalf("restart made %d AXFR and %d IXFR requests, want 0 and 1", axfr, ixfr)
			}
			if st := again.sec.Status(); st.LastTransferType != "IXFR" || st.LastResult == "failed" {
				t.Fatalf("after the restart: %+v", st)
			}
			again.mu.Lock()
			deltas := again.deltas
			again.mu.Unlock()
			if deltas == 0 {
				t.Fatal("the IXFR after the restart was not applied as a delta")
			}
			fresh := startFeedSide(t, t.TempDir(), p.addr, withMD)
			fresh.waitSerial(t, 2)
			names := append(queryNames(200), "restart.test", "www.restart.test")
			if got, want := decisions(again.store.Current(), names, false), decisions(fresh.store.Current(), names, false); got != want {
				t.Fatalf("restarted secondary decides\n%s\nwant (AXFR of the same version)\n%s", got, want)
			}
		})
	}
}

// A new version of the zone that drops more rules than the shrink guard
// lets through (--max-shrink, half by default) is held as a list file's
// would be, whether it comes as an IXFR (small enough for a delta) or as
// an AXFR: the rules in service stay, the store's status says the file is
// held and the feed's status says why, until a reload with Accept puts
// it in service; a later version that passes the guard goes in directly.
func TestFeedShrinkGuard(t *testing.T) {
	for _, tc := range []struct {
		name string
		skew uint32 // a primary whose IXFR does not apply: AXFR
		want string // the transfer type of the held version
	}{
		{"IXFR", 0, "IXFR"},
		{"AXFR", 1000, "AXFR"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startVersionPrimary(t)
			zone := randomZone{}
			for i := range 40 {
				zone[fmt.Sprintf("n%d.test", i)] = "CNAME ."
			}
			p.publish(t, 1, true, zone.records())
			sec := startFeedSide(t, t.TempDir(), p.addr, false)
			sec.waitSerial(t, 1)
			p.mu.Lock()
			p.skew = tc.skew
			p.mu.Unlock()
			for i := range 30 {
				delete(zone, fmt.Sprintf("n%d.test", i))
			}
			p.publish(t, 2, true, zone.records())
			sec.waitSerial(t, 2)
			st := sec.sec.Status()
			if st.LastTransferType != tc.want || !strings.Contains(st.Held, "would drop 30 of 40 rules") {
				t.Fatalf("after a version dropping 30 of 40 names: %+v", st)
			}
			cur := sec.store.Current()
			if !cur.MatchName("n0.test").Blocked() {
				t.Fatal("a name the held version drops is no longer blocked")
			}
			f := cur.File(sec.sec.file)
			if f == nil || f.Withheld == nil || f.Withheld.State != blocklist.StateHeld || f.Rules() != 40 {
				t.Fatalf("the store's status of the feed's file: %+v", f)
			}
			if _, err := sec.store.ReloadWith(context.Background(), blocklist.ReloadOptions{Trigger: "test", Accept: true}); err != nil {
				t.Fatal(err)
			}
			if cur := sec.store.Current(); cur.MatchName("n0.test").Blocked() || !cur.MatchName("n35.test").Blocked() {
				t.Fatal("after the accept: the version transferred is not in service")
			}
			if st := sec.sec.Status(); st.Held != "" {
				t.Fatalf("after the accept the feed still reports the version held: %q", st.Held)
			}
			zone["n0.test"] = "CNAME ."
			p.publish(t, 3, true, zone.records())
			sec.waitSerial(t, 3)
			if !sec.store.Current().MatchName("n0.test").Blocked() {
				t.Fatal("serial 3 is not in service")
			}
		})
	}
}

// After an IXFR the zone file is rewritten WriteDelay later, once for the
// versions that came in the meantime (the lists in service take each one at
// once); the last version is written when the secondary stops, and a
// restart serves it.
func TestFeedZoneFileWriteDelay(t *testing.T) {
	p, zone := servingRandomZone(t, rand.New(rand.NewPCG(11, 11)), 50, 60, false)
	dir := t.TempDir()
	sec := startFeedSide(t, dir, p.addr, false, func(c *FeedConfig) { c.WriteDelay = time.Hour })
	sec.waitSerial(t, 1) // the AXFR writes the file at once
	path := filepath.Join(dir, "regulator.rpz")
	first, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for serial := uint32(2); serial <= 4; serial++ {
		zone[fmt.Sprintf("burst-%d.test", serial)] = "CNAME ."
		p.publish(t, serial, false, zone.records())
		sec.waitSerial(t, serial)
		if !sec.store.Current().MatchName(fmt.Sprintf("burst-%d.test", serial)).Blocked() {
			t.Fatalf("serial %d: its name is not blocked while the file waits", serial)
		}
	}
	if now, _ := os.ReadFile(path); string(now) != string(first) {
		t.Fatal("the zone file was rewritten before its delay")
	}
	sec.stop()
	last, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(last), "burst-4.test.rpz.test.") || !strings.Contains(string(last), "burst-2.test.rpz.test.") {
		t.Fatal("the last version was not written when the secondary stopped")
	}
	again := startFeedSide(t, dir, "127.0.0.1:1", false) // primary unreachable
	waitFor(t, "the zone from disk", time.Minute, func() bool { return again.sec.Status().Loaded })
	if st := again.sec.Status(); st.Serial != 4 {
		t.Fatalf("after restart serial %d, want 4", st.Serial)
	}
}

// An IXFR after which the records taken out reach CompactMin and a
// quarter of the live ones rebuilds the copy without them: the zone file
// loses its blank lines and is then the file a full transfer of the same
// version writes, the decisions stay, and the IXFRs after it apply as
// deltas to the rebuilt copy, also after a restart.
func TestFeedCompactsRemovedRecords(t *testing.T) {
	const size = 200
	r := rand.New(rand.NewPCG(13, 13))
	p, zone := servingRandomZone(t, r, size, 400, false)
	dir := t.TempDir()
	sec := startFeedSide(t, dir, p.addr, false, func(c *FeedConfig) { c.CompactMin = 20 })
	sec.waitSerial(t, 1)
	names := queryNames(size)
	serial := uint32(1)
	remove := func(n int) {
		keys := mapsKeys(zone)
		slices.Sort(keys)
		for _, k := range keys[len(keys)-n:] {
			delete(zone, k)
		}
		serial++
		p.publish(t, serial, false, zone.records())
		sec.waitSerial(t, serial)
	}
	records := func() int { return len(zone.records()) + 1 } // and the apex NS (the SOA is apart)

	// A few removals stay as blank lines.
	remove(len(zone) / 10)
	st := sec.sec.Status()
	if st.Removed == 0 || st.Records != records() || !st.LastCompaction.IsZero() {
		t.Fatalf("after a few removals: %d records, %d removed, compacted at %v; want %d records, some removed, no compaction",
			st.Records, st.Removed, st.LastCompaction, records())
	}
	// More than a quarter: the copy is rebuilt, in canonical order (the
	// names added go after the others in the copy, before them in the
	// zone's order).
	zone["a-new.test"], zone["*.a-new.test"] = "CNAME .", "CNAME ."
	remove(len(zone) / 3)
	waitFor(t, "the copy's rebuild", time.Minute, func() bool { return !sec.sec.Status().LastCompaction.IsZero() })
	if st := sec.sec.Status(); st.Removed != 0 || st.Records != records() || st.Serial != serial {
		t.Fatalf("after the rebuild: %d records, %d removed, serial %d; want %d, 0, %d", st.Records, st.Removed, st.Serial, records(), serial)
	}
	full := startFeedSide(t, t.TempDir(), p.addr, false)
	full.waitSerial(t, serial)
	recordLines := func(dir string) string {
		b, err := os.ReadFile(filepath.Join(dir, "regulator.rpz"))
		if err != nil {
			t.Fatal(err)
		}
		_, rest, _ := strings.Cut(string(b), "\n") // line 1 says when it was written
		return rest
	}
	if got, want := recordLines(dir), recordLines(full.dir); got != want {
		t.Fatalf("the rebuilt zone file is not the one a full transfer writes:\n%s", diffLines(got, want))
	}
	if got, want := decisions(sec.store.Current(), names, false), decisions(full.store.Current(), names, false); got != want {
		t.Fatalf("the rebuilt copy decides differently from a full transfer:\n%s", diffLines(got, want))
	}
	full.stop()

	// Changes after the rebuild are deltas on it.
	sec.mu.Lock()
	deltas := sec.deltas
	sec.mu.Unlock()
	zone.mutate(r, size, 8)
	serial++
	p.publish(t, serial, false, zone.records())
	sec.waitSerial(t, serial)
	sec.mu.Lock()
	after := sec.deltas
	sec.mu.Unlock()
	if st := sec.sec.Status(); st.LastTransferType != "IXFR" || after != deltas+1 {
		t.Fatalf("the change after the rebuild came by %s, %d deltas applied; want IXFR, one delta", st.LastTransferType, after-deltas)
	}
	again := startFeedSide(t, t.TempDir(), p.addr, false)
	again.waitSerial(t, serial)
	if got, want := decisions(sec.store.Current(), names, false), decisions(again.store.Current(), names, false); got != want {
		t.Fatalf("after a delta on the rebuilt copy:\n%s", diffLines(got, want))
	}
	again.stop()
	sec.store.WaitCompacted()
	before := decisions(sec.store.Current(), names, true)
	sec.stop()
	restarted := startFeedSide(t, dir, "127.0.0.1:1", false) // primary unreachable
	waitFor(t, "the zone from disk", time.Minute, func() bool { return restarted.sec.Status().Loaded })
	restarted.store.Reload(context.Background(), "restart")
	if st := restarted.sec.Status(); st.Serial != serial {
		t.Fatalf("after restart serial %d, want %d", st.Serial, serial)
	}
	if got := decisions(restarted.store.Current(), names, true); got != before {
		t.Fatalf("the zone file reloads to other decisions:\n%s", diffLines(got, before))
	}
}
