package rpz

import (
	"context"
	"crypto/sha512"
	"fmt"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/blocklist"
)

// Benchmarks of a secondary at regulator scale: a zone of 1,000,000 names
// of about 28 characters, "name CNAME ." and "*.name CNAME ." each (2M
// records), as in make bench-scale.

const benchFeedNames = 1_000_000

func benchFeedName(i int) string { return fmt.Sprintf("label-%07d.example-lbl.tld", i) }

func benchSOA(serial uint32) *dns.SOA {
	return &dns.SOA{Hdr: dns.RR_Header{Name: "rpz.test.", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 60},
		Ns: "ns.rpz.test.", Mbox: "hostmaster.rpz.test.", Serial: serial, Refresh: 3600, Retry: 600, Expire: 86400, Minttl: 60}
}

func benchCNAMEs(name string) []dns.RR {
	return []dns.RR{
		&dns.CNAME{Hdr: dns.RR_Header{Name: name + ".rpz.test.", Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: 60}, Target: "."},
		&dns.CNAME{Hdr: dns.RR_Header{Name: "*." + name + ".rpz.test.", Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: 60}, Target: "."},
	}
}

// benchFeedSecondary is a secondary holding the benchmark zone, with the
// list store loading its file (a sinkhole restarted with the zone).
func benchFeedSecondary(b *testing.B) *Secondary {
	b.Helper()
	dir := b.TempDir()
	z := newZoneCopy("rpz.test.", benchSOA(1))
	var scratch []byte
	for i := range benchFeedNames {
		for _, rr := range benchCNAMEs(benchFeedName(i)) {
			var err error
			if scratch, err = z.encode(rr, scratch); err != nil {
				b.Fatal(err)
			}
			z.add(scratch)
		}
	}
	path := filepath.Join(dir, "regulator.rpz")
	if _, err := writeZoneFile(path, z.view(), stateHeader("regulator", "rpz.test.", "bench", 1), nil, nil); err != nil {
		b.Fatal(err)
	}
	st := blocklist.NewStore(blocklist.Options{Dirs: []string{b.TempDir(), dir}, Logger: quietLogger(), Verified: []string{dir}})
	if _, err := st.Reload(context.Background(), "bench"); err != nil {
		b.Fatal(err)
	}
	if n := st.Current().RuleCount(); n != 2*benchFeedNames {
		b.Fatalf("%d rules", n)
	}
	s, err := NewSecondary(FeedConfig{Name: "regulator", Zone: "rpz.test", Dir: dir, Store: st, Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	s.zone = z
	return s
}

// BenchmarkFeedIXFRApply1M measures applying an IXFR of k records (k/2
// names added, name and wildcard) to a secondary holding a 1M-name zone:
// the zone copy and the lists in service (Store.ApplyFeed), the
// background write of the zone file left out (it is asked for, not
// waited for). The merge of the layer into a new base follows in the
// background, as in service.
func BenchmarkFeedIXFRApply1M(b *testing.B) {
	s := benchFeedSecondary(b)
	st := s.cfg.Store.(*blocklist.Store)
	for _, k := range []int{2, 200, 20000} {
		b.Run(fmt.Sprintf("records=%d", k), func(b *testing.B) {
			next := 0
			for b.Loop() {
				serial := s.zone.soa.Serial
				d := &ixfrDiff{final: benchSOA(serial + 1)}
				d.rrs = append(d.rrs, benchSOA(serial), benchSOA(serial+1))
				for range k / 2 {
					d.rrs = append(d.rrs, benchCNAMEs(fmt.Sprintf("added-%07d.example-lbl.tld", next))...)
					next++
				}
				d.rrs = append(d.rrs, benchSOA(serial+1))
				if err := s.applyIXFR(context.Background(), d); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if !st.Current().MatchName(fmt.Sprintf("www.added-%07d.example-lbl.tld", next-1)).Blocked() {
				b.Fatal("the last name added is not blocked")
			}
			st.WaitCompacted()
			b.StartTimer()
		})
	}
}

// BenchmarkZoneCopyDigest2M measures the ZONEMD digest (SHA-384) of the
// 2M-record zone copy, as a version carrying ZONEMD is verified, beside
// SHA-384 alone over the same bytes (the canonical wire form of the zone
// in one buffer, written in the digest's batches): the floor of any
// SIMPLE-scheme digest. cpu-ns/op is the process's user+system time per
// operation (getrusage), which a loaded machine does not inflate as it
// does wall time.
func BenchmarkZoneCopyDigest2M(b *testing.B) {
	s := benchFeedSecondary(b)
	z := s.zone
	b.Logf("zone copy: %d records, sorted prefix %d (unsorted %v), %d shapes", z.records(), z.sorted, z.unsorted, len(z.shapes))
	b.Run("copy", func(b *testing.B) {
		cpu := startCPU()
		for b.Loop() {
			if _, err := z.digest(ZonemdHashSHA384); err != nil {
				b.Fatal(err)
			}
		}
		cpu.report(b)
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(z.records()), "ns/record")
	})
	b.Run("after-ixfr", func(b *testing.B) {
		// A version with one name added at the end (not in canonical
		// order): the digest merges it into the order of the rest.
		m := z.mark()
		for _, rr := range benchCNAMEs("added-0000000.example-lbl.tld") {
			r, err := z.encode(rr, nil)
			if err != nil {
				b.Fatal(err)
			}
			z.add(r)
		}
		cpu := startCPU()
		for b.Loop() {
			if _, err := z.digest(ZonemdHashSHA384); err != nil {
				b.Fatal(err)
			}
		}
		cpu.report(b)
		z.undo(m, nil)
	})
	b.Run("raw-sha384", func(b *testing.B) {
		var all []byte
		soa, _ := z.encode(z.soa, nil)
		all = z.appendWire(all, partsOf(soa))
		for i := range z.records() {
			all = z.appendWire(all, z.at(i))
		}
		b.SetBytes(int64(len(all)))
		cpu := startCPU()
		for b.Loop() {
			h := sha512.New384()
			for off := 0; off < len(all); off += digestBatch {
				h.Write(all[off:min(off+digestBatch, len(all))])
			}
			h.Sum(nil)
		}
		cpu.report(b)
	})
}

// cpuClock measures the process's CPU time (user+system) over a
// benchmark loop.
type cpuClock struct{ start time.Duration }

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func startCPU() cpuClock { return cpuClock{processCPU()} }

func (c cpuClock) report(b *testing.B) {
	b.ReportMetric(float64(processCPU()-c.start)/float64(b.N), "cpu-ns/op")
}

// BenchmarkFeedAXFRIngest1M measures a first AXFR of the 2M-record zone
// from a real primary on loopback into the zone copy (the records stream
// in; none are collected), then the zone file written and loaded by the
// list store: the whole of "first AXFR served".
func BenchmarkFeedAXFRIngest1M(b *testing.B) {
	addr := startStreamPrimary(b, benchFeedNames)
	for b.Loop() {
		dir := b.TempDir()
		st := blocklist.NewStore(blocklist.Options{Dirs: []string{b.TempDir(), dir}, Logger: quietLogger(), Verified: []string{dir}})
		if _, err := st.Reload(context.Background(), "start"); err != nil {
			b.Fatal(err)
		}
		s, err := NewSecondary(FeedConfig{Name: "regulator", Zone: "rpz.test", Primary: addrPort(b, addr), Dir: dir, Store: st, Logger: quietLogger()})
		if err != nil {
			b.Fatal(err)
		}
		z, err := s.axfr(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		if err := s.installFull(context.Background(), z, "AXFR"); err != nil {
			b.Fatal(err)
		}
		if n := st.Current().RuleCount(); n != 2*benchFeedNames {
			b.Fatalf("%d rules", n)
		}
		b.ReportMetric(float64(z.heapBytes())/float64(z.live), "copy-bytes/record")
		runtime.KeepAlive(s)
	}
}

// heapBytes is the memory the copy holds.
func (z *zoneCopy) heapBytes() int {
	n := 4*cap(z.offs) + 8*cap(z.dead) + 4*cap(z.slots)
	for _, c := range z.chunks {
		n += cap(c)
	}
	for _, t := range z.shapes {
		n += len(t)
	}
	return n
}

// startStreamPrimary serves AXFR of the benchmark zone of n names over
// TCP, generating the records as it sends them.
func startStreamPrimary(b *testing.B, n int) string {
	b.Helper()
	srv := &dns.Server{Addr: "127.0.0.1:0", Net: "tcp", Handler: dns.HandlerFunc(func(w dns.ResponseWriter, m *dns.Msg) {
		defer w.Close()
		ch := make(chan *dns.Envelope, 4)
		go func() {
			defer close(ch)
			env := &dns.Envelope{RR: []dns.RR{benchSOA(1)}}
			for i := range n {
				env.RR = append(env.RR, benchCNAMEs(benchFeedName(i))...)
				if len(env.RR) >= 1000 {
					ch <- env
					env = &dns.Envelope{}
				}
			}
			env.RR = append(env.RR, benchSOA(1))
			ch <- env
		}()
		new(dns.Transfer).Out(w, m, ch)
		for range ch {
		}
	})}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go srv.ListenAndServe()
	<-started
	b.Cleanup(func() { srv.Shutdown() })
	return srv.Listener.Addr().String()
}

// BenchmarkFeedReadZoneFile1M measures a restarted secondary reading its
// zone file (2M records, 1M names) back into its copy: streamed, hashed
// as it is read, the CNAME lines taken without miekg/dns.
func BenchmarkFeedReadZoneFile1M(b *testing.B) {
	s := benchFeedSecondary(b)
	cpu := startCPU()
	for b.Loop() {
		z, err := readZoneFile(s.path, s.apex)
		if err != nil {
			b.Fatal(err)
		}
		if z.live != 2*benchFeedNames {
			b.Fatalf("%d records", z.live)
		}
	}
	cpu.report(b)
}

// BenchmarkFeedWriteZoneFile1M measures the zone file written from the
// copy (2M records), as the background writer does after each IXFR and a
// full transfer does before its reload.
func BenchmarkFeedWriteZoneFile1M(b *testing.B) {
	s := benchFeedSecondary(b)
	path := filepath.Join(b.TempDir(), "regulator.rpz")
	cpu := startCPU()
	for b.Loop() {
		if _, err := writeZoneFile(path, s.zone.view(), stateHeader("regulator", s.apex, "bench", s.zone.soa.Serial), nil, nil); err != nil {
			b.Fatal(err)
		}
	}
	cpu.report(b)
}

// BenchmarkFeedCompact1M measures the rebuild of a secondary's 1M-name
// copy (2M records) once a quarter of its records were taken out (and
// the lists follow: they were reloaded from the file with its blank
// lines): the copy rebuilt without them, the zone file written, the lists
// reloaded whole (what the secondary does after such an IXFR).
// cpu-ns/op counts the rebuild only.
func BenchmarkFeedCompact1M(b *testing.B) {
	s := benchFeedSecondary(b)
	s.cfg.CompactMin = 1
	var cpu time.Duration
	for b.Loop() {
		b.StopTimer()
		z := s.zone
		for i := 0; i < z.records(); i += 4 {
			if !z.isDead(i) {
				z.kill(i, true)
			}
		}
		if err := s.writeAndReload(context.Background(), z, nil); err != nil {
			b.Fatal(err)
		}
		s.cfg.Store.(*blocklist.Store).WaitCompacted()
		b.StartTimer()
		start := processCPU()
		s.compactIfWorth(context.Background())
		cpu += processCPU() - start
		if s.zone == z || s.zone.records() != s.zone.live {
			b.Fatal("the copy was not rebuilt")
		}
	}
	b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/op")
}
