package rpz

import (
	"bufio"
	"crypto/sha512"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/blocklist"
)

func benchSnapshot(b *testing.B, n int) *blocklist.Snapshot {
	var sb strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&sb, "site%d.example\n", i)
	}
	dir := b.TempDir()
	writeFile(b, dir, "big.txt", sb.String())
	st := blocklist.NewStore(blocklist.Options{Dirs: []string{dir}, Logger: quietLogger()})
	if _, err := st.Reload(b.Context(), "bench"); err != nil {
		b.Fatal(err)
	}
	return st.Current()
}

// BenchmarkFullBuild measures building the export zone of n domain rules
// from scratch (a full reload at the primary).
func BenchmarkFullBuild(b *testing.B) {
	for _, n := range []int{10000, benchNames(b)} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			snap := benchSnapshot(b, n)
			b.ResetTimer()
			cpu := cpuTime()
			defer func() { reportCPU(b, cpu) }()
			for i := 0; i < b.N; i++ {
				w := fullBuild(snap, BuildOptions{TTL: 300})
				if w.zone.records != 2*n {
					b.Fatalf("%d records", w.zone.records)
				}
				if i == 0 {
					size := 0
					for _, bl := range w.zone.blocks {
						size += len(bl.data) + len(bl.first) + 64
					}
					b.ReportMetric(float64(size)/1e6, "zone-MB")
				}
			}
		})
	}
}

// BenchmarkZonemd measures the ZONEMD of an export zone of n domain rules
// (2n records), computed once per exported version: simple is the SIMPLE
// digest (the whole zone each time); merkle3-build is a MERKLE3 state
// built whole (the first version, or after a rebuild).
func BenchmarkZonemd(b *testing.B) {
	for _, n := range []int{10000, benchNames(b)} {
		for _, scheme := range []uint8{ZonemdSchemeSimple, ZonemdSchemeMerkle3} {
			name := fmt.Sprint(n)
			if scheme == ZonemdSchemeMerkle3 {
				name = "merkle3-build/" + name
			}
			b.Run(name, func(b *testing.B) {
				w := fullBuild(benchSnapshot(b, n), BuildOptions{TTL: 300})
				e, err := NewExporter(ExportConfig{Zone: "rpz.test", Logger: quietLogger(), ZonemdSchemes: []uint8{scheme}})
				if err != nil {
					b.Fatal(err)
				}
				b.ResetTimer()
				cpu := cpuTime()
				for i := 0; i < b.N; i++ {
					e.m3 = nil
					if len(e.zonemdsOf(w.zone, 1)) != 1 {
						b.Fatal("no ZONEMD")
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(w.zone.records), "ns/record")
				reportCPU(b, cpu)
			})
		}
	}
}

// benchNames is the size of the export benchmarks' list: 1M names (2M
// records) by default, SINKHOLE_BENCH_NAMES to change it.
func benchNames(b *testing.B) int {
	if v := os.Getenv("SINKHOLE_BENCH_NAMES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			b.Fatal(err)
		}
		return n
	}
	return 1_000_000
}

// writeBenchList writes n names of about 28 characters.
func writeBenchList(b *testing.B, dir string, n int, extra string) {
	f, err := os.Create(filepath.Join(dir, "big.txt"))
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriter(f)
	for i := 0; i < n; i++ {
		fmt.Fprintf(w, "host-%08d.regulator-example.id\n", i*7919%100000000)
	}
	w.WriteString(extra)
	if err := errors.Join(w.Flush(), f.Close()); err != nil {
		b.Fatal(err)
	}
}

// benchExporter loads a list of n names from a new directory (returned)
// into a store and has a new exporter follow it.
func benchExporter(b *testing.B, n int) (string, *blocklist.Store, *Exporter) {
	dir := b.TempDir()
	writeBenchList(b, dir, n, "")
	st := blocklist.NewStore(blocklist.Options{Dirs: []string{dir}, Logger: quietLogger()})
	if _, err := st.Reload(b.Context(), "bench"); err != nil {
		b.Fatal(err)
	}
	e, err := NewExporter(ExportConfig{Zone: "rpz.test", Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	e.Observe(st.Current(), nil)
	return dir, st, e
}

// BenchmarkExportDelta measures the export following a one-rule delta of
// a big list (one name added, then removed again): the change of the
// compact zone and its IXFR difference (apply), and the whole update
// until the version is in service (publish: apply, then the ZONEMD
// records, SIMPLE over the whole zone and MERKLE3 over what changed;
// publish-simple and publish-merkle3: one of them; publish-nozonemd:
// none).
func BenchmarkExportDelta(b *testing.B) {
	n := benchNames(b)
	dir, st, e := benchExporter(b, n)
	// Two deltas: one name added, and removed again.
	var jobs [2]exportJob
	for i, extra := range []string{"added-by-the-delta.example\n", ""} {
		writeBenchList(b, dir, n, extra)
		rep, err := st.Reload(b.Context(), "bench")
		if err != nil || !rep.Delta {
			b.Fatalf("reload %d: not a delta (%v)", i, err)
		}
		jobs[i] = exportJob{snap: st.Current(), rep: rep}
	}
	// The zone alternates between the two versions, whatever b.N is.
	turn := 0
	apply := func(b *testing.B) {
		j := jobs[turn%2]
		turn++
		d := newDeltaChange()
		if !d.add(j.rep) {
			b.Fatal("not a delta")
		}
		next := e.work.applyDelta(j.snap, e.cfg.Build, d)
		del, add := diffZones(e.work.zone, next.zone)
		if len(del)+len(add) != 2 {
			b.Fatalf("%d deleted, %d added", len(del), len(add))
		}
		e.work = next
	}
	b.Run("apply", func(b *testing.B) {
		b.ReportAllocs()
		cpu := cpuTime()
		defer func() { reportCPU(b, cpu) }()
		for i := 0; i < b.N; i++ {
			apply(b)
		}
	})
	// publish starts from the version in service (without the name).
	if turn%2 == 1 {
		apply(b)
	}
	publish := func(b *testing.B) {
		b.ReportAllocs()
		cpu := cpuTime()
		defer func() { reportCPU(b, cpu) }()
		for i := 0; i < b.N; i++ {
			e.wmu.Lock()
			changed := e.follow([]exportJob{jobs[turn%2]})
			turn++
			e.wmu.Unlock()
			if !changed {
				b.Fatal("no change")
			}
		}
	}
	b.Run("publish", publish) // the default schemes: SIMPLE and MERKLE3
	for _, sc := range []uint8{ZonemdSchemeSimple, ZonemdSchemeMerkle3} {
		b.Run("publish-"+strings.ToLower(ZonemdSchemeName(sc)), func(b *testing.B) {
			e.cfg.ZonemdSchemes = []uint8{sc}
			defer func() { e.cfg.ZonemdSchemes = nil }()
			publish(b)
		})
	}
	// The same without ZONEMD (--rpz-export-zonemd=false).
	b.Run("publish-nozonemd", func(b *testing.B) {
		e.cfg.NoZonemd = true
		defer func() { e.cfg.NoZonemd = false }()
		publish(b)
	})
	if e.followed.rebuilt.Load() != 1 {
		b.Fatalf("%d rebuilds", e.followed.rebuilt.Load())
	}
}

// BenchmarkExportAXFR measures streaming the whole zone (2 records per
// name) as the server sends it: each message packed with compression and
// dropped. peak-heap-MB is the most the heap grew over the zone in
// service during one transfer.
func BenchmarkExportAXFR(b *testing.B) {
	n := benchNames(b)
	_, _, e := benchExporter(b, n)
	req := axfrMsg("rpz.test")
	from := netip.MustParseAddrPort("127.0.0.1:53000")
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	var peak uint64
	b.ReportAllocs()
	b.ResetTimer()
	cpu := cpuTime()
	for i := 0; i < b.N; i++ {
		records, bytes, msgs := 0, 0, 0
		err := e.ServeTransfer(b.Context(), nil, req, from, func(m *dns.Msg) error {
			m.Compress = true
			out, err := m.Pack()
			if err != nil {
				return err
			}
			records += len(m.Answer)
			bytes += len(out)
			if msgs++; msgs%64 == 0 {
				runtime.ReadMemStats(&ms)
				peak = max(peak, ms.HeapAlloc-min(base, ms.HeapAlloc))
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		if records != 2*n+4 {
			b.Fatalf("%d records", records)
		}
		b.ReportMetric(float64(bytes)/1e6, "MB/transfer")
		b.ReportMetric(float64(msgs), "messages")
	}
	reportCPU(b, cpu)
	b.ReportMetric(float64(peak)/1e6, "peak-heap-MB")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(2*n), "ns/record")
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the CPU time per operation since start (all threads,
// the garbage collector's included): unlike ns/op it does not count the
// time other processes of a busy machine take.
func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime()-start)/1e6/float64(b.N), "cpu-ms/op")
}

// BenchmarkZonemdParts splits the ZONEMD of the export zone of n domain
// rules (2n records) into its parts: writing the canonical bytes of every
// block (serialize, as after a rebuild), SHA-384 over the same bytes
// prepared in memory (raw-sha384, the floor of any SIMPLE digest of the
// zone), the digest of a version whose blocks were all serialized before
// (digest, as after a delta, which rewrites a block or two), and of one
// whose blocks were not (digest-cold). kept-MB is what the blocks keep.
func BenchmarkZonemdParts(b *testing.B) {
	n := benchNames(b)
	w := fullBuild(benchSnapshot(b, n), BuildOptions{TTL: 300})
	e, err := NewExporter(ExportConfig{Zone: "rpz.test", Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	var all []byte
	if err := e.writeCanonical(w.zone, 1, func(p []byte) { all = append(all, p...) }); err != nil {
		b.Fatal(err)
	}
	forget := func() {
		for _, blk := range w.zone.blocks {
			blk.canonical.Store(nil)
		}
	}
	b.Run("serialize", func(b *testing.B) {
		cpu := cpuTime()
		for i := 0; i < b.N; i++ {
			forget()
			size := 0
			if err := e.writeCanonical(w.zone, uint32(i), func(p []byte) { size += len(p) }); err != nil {
				b.Fatal(err)
			}
			if size != len(all) {
				b.Fatalf("%d bytes, want %d", size, len(all))
			}
		}
		reportCPU(b, cpu)
		b.ReportMetric(float64(len(all))/1e6, "kept-MB")
	})
	b.Run("raw-sha384", func(b *testing.B) {
		b.SetBytes(int64(len(all)))
		cpu := cpuTime()
		for i := 0; i < b.N; i++ {
			h := sha512.New384()
			h.Write(all)
			h.Sum(nil)
		}
		reportCPU(b, cpu)
	})
	for _, cold := range []bool{false, true} {
		name := "digest"
		if cold {
			name = "digest-cold"
		}
		b.Run(name, func(b *testing.B) {
			cpu := cpuTime()
			for i := 0; i < b.N; i++ {
				if cold {
					forget()
				}
				if _, err := e.exportDigest(w.zone, uint32(i)); err != nil {
					b.Fatal(err)
				}
			}
			reportCPU(b, cpu)
		})
	}
}
