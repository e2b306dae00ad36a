package blocklist

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sinkhole-dns/sinkhole/internal/scalenames"
)

var benchTLDs = []string{"com", "net", "org", "io", "co", "info", "xyz", "app", "exchange", "me", "cc", "co.uk", "com.sg"}

// genNames returns n distinct, deterministic, realistic domain names: one
// or two random labels of 4 to 14 characters under a common TLD.
func genNames(n int, seed uint64) []string {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	const alpha = "abcdefghijklmnopqrstuvwxyz0123456789"
	label := func() string {
		b := make([]byte, 4+rng.IntN(11))
		for i := range b {
			b[i] = alpha[rng.IntN(26)]
			if i > 0 && rng.IntN(8) == 0 {
				b[i] = alpha[rng.IntN(len(alpha))]
			}
		}
		return string(b)
	}
	seen := make(map[string]struct{}, n)
	out := make([]string, 0, n)
	for len(out) < n {
		name := label() + "." + benchTLDs[rng.IntN(len(benchTLDs))]
		if rng.IntN(5) == 0 {
			name = label() + "." + name
		}
		if _, dup := seen[name]; dup {
			continue
		}
		seen[name] = struct{}{}
		out = append(out, name)
	}
	return out
}

// writeNames writes a list file of names under a few platform sections.
func writeNames(tb testing.TB, dir, file string, names []string) string {
	tb.Helper()
	p := filepath.Join(dir, file)
	f, err := os.Create(p)
	if err != nil {
		tb.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	for i, n := range names {
		if i%10000 == 0 {
			fmt.Fprintf(w, "# platform: P%d\n", i/10000)
		}
		w.WriteString(n)
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		tb.Fatal(err)
	}
	f.Close()
	return p
}

const million = 1_000_000

// BenchmarkLoad1M parses and compiles a 1,000,000-domain list file from
// scratch (the cold-start load) and reports the heap the compiled snapshot
// holds per domain, measured with runtime.MemStats after GC.
func BenchmarkLoad1M(b *testing.B) {
	dir := b.TempDir()
	names := genNames(million, 1)
	path := writeNames(b, dir, "big.txt", names)
	st, _ := os.Stat(path)
	nameBytes := 0
	for _, n := range names {
		nameBytes += len(n)
	}
	names = nil
	b.ReportMetric(float64(nameBytes)/million, "name-bytes/domain")
	b.ReportMetric(float64(st.Size())/1e6, "file-MB")
	b.ReportMetric(benchLoad(b, dir, million)/million, "heap-bytes/domain")
}

// benchLoad loads dir from scratch in each round, checks it holds rules
// rules and returns the heap the last load kept (runtime.MemStats after GC).
func benchLoad(b *testing.B, dir string, rules int) float64 {
	var heap float64
	for b.Loop() {
		b.StopTimer()
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		b.StartTimer()
		s := NewStore(Options{Dirs: []string{dir}, Logger: discardLogger()})
		if _, err := s.Reload(context.Background(), "bench"); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if s.Current().RuleCount() != rules {
			b.Fatalf("%d rules", s.Current().RuleCount())
		}
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		heap = float64(after.HeapAlloc - before.HeapAlloc)
		runtime.KeepAlive(s)
		b.StartTimer()
	}
	return heap
}

// BenchmarkCompile1M measures compiling the matcher alone (the hash index
// over 1,000,000 parsed names).
func BenchmarkCompile1M(b *testing.B) {
	names := genNames(million, 1)
	bl := newBuilder(million, 20*million)
	bl.beginSection(Section{File: "big.txt"})
	for i, n := range names {
		bl.addDomain([]byte(n), MatchSubtree, false, i+1)
	}
	c0 := cpuTime()
	for b.Loop() {
		bl.s.dom.build()
	}
	b.ReportMetric(float64((cpuTime()-c0).Nanoseconds())/float64(b.N)/million, "cpu-ns/name")
}

// BenchmarkReload1M measures a reload after the 1,000,000-domain file
// changed (one line appended): read and hash the file, find the changed
// lines, parse them and apply them as a delta, publish (the merge into a
// new base runs later, in the background: BenchmarkCompact1M).
func BenchmarkReload1M(b *testing.B) {
	dir := b.TempDir()
	benchAppendReload(b, dir, writeNames(b, dir, "big.txt", genNames(million, 1)), "extra%d.example\n")
}

// matchBenchStore is a 1,000,000-domain snapshot shared by the match
// benchmarks, with the names it holds.
var matchBench struct {
	snap  *Snapshot
	names []string
}

func matchSnapshot(b *testing.B) (*Snapshot, []string) {
	if matchBench.snap == nil {
		dir := b.TempDir()
		names := genNames(million, 1)
		writeNames(b, dir, "big.txt", names)
		s := NewStore(Options{Dirs: []string{dir}, Logger: discardLogger()})
		if _, err := s.Reload(context.Background(), "bench"); err != nil {
			b.Fatal(err)
		}
		matchBench.snap, matchBench.names = s.Current(), names
	}
	return matchBench.snap, matchBench.names
}

// BenchmarkMatchName5Labels matches 5-label subdomains of listed names
// against 1,000,000 domains (a hit), rotating over 4096 distinct queries.
func BenchmarkMatchName5Labels(b *testing.B) {
	snap, names := matchSnapshot(b)
	queries := fiveLabelQueries(names)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if !snap.MatchName(queries[i&4095]).Blocked() {
			b.Fatalf("%s not blocked", queries[i&4095])
		}
		i++
	}
}

// BenchmarkMatchName5LabelsHot matches one 5-label subdomain of a listed
// name again and again: the matcher's own cost with its data in cache (a
// popular name), against the 1,000,000-domain snapshot.
func BenchmarkMatchName5LabelsHot(b *testing.B) {
	snap, names := matchSnapshot(b)
	q := "l3.l2.l1." + names[12345]
	for strings.Count(q, ".") > 4 {
		q = q[strings.IndexByte(q, '.')+1:]
	}
	for strings.Count(q, ".") < 4 {
		q = "x." + q
	}
	b.ReportAllocs()
	for b.Loop() {
		if !snap.MatchName(q).Blocked() {
			b.Fatalf("%s not blocked", q)
		}
	}
}

// BenchmarkMatchNameMiss matches 5-label names under no listed domain.
func BenchmarkMatchNameMiss(b *testing.B) {
	snap, _ := matchSnapshot(b)
	queries := make([]string, 4096)
	for i := range queries {
		queries[i] = fmt.Sprintf("a%d.b.c.notlisted%d.com", i, i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if snap.MatchName(queries[i&4095]).HasRule {
			b.Fatal("unexpected match")
		}
		i++
	}
}

// TestGenNamesRealistic guards the benchmark fixture: distinct names of a
// realistic average length that all parse.
func TestGenNamesRealistic(t *testing.T) {
	names := genNames(20000, 7)
	total := 0
	for _, n := range names {
		total += len(n)
		if _, err := NormalizeName(n); err != nil {
			t.Fatal(err)
		}
	}
	if avg := float64(total) / float64(len(names)); avg < 12 || avg > 20 {
		t.Fatalf("average name length %.1f", avg)
	}
	_ = time.Second
}

// writeRPZNames writes names as an RPZ zone: name CNAME . and *.name
// CNAME . for each (two records per name, as regulators publish them).
func writeRPZNames(tb testing.TB, dir, file string, names []string) string {
	tb.Helper()
	p := filepath.Join(dir, file)
	f, err := os.Create(p)
	if err != nil {
		tb.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	w.WriteString("$ORIGIN rpz.bench.\n$TTL 300\n@ SOA localhost. hostmaster.localhost. 1 3600 600 86400 300\n@ NS localhost.\n")
	for _, n := range names {
		w.WriteString(n + " CNAME .\n*." + n + " CNAME .\n")
	}
	if err := w.Flush(); err != nil {
		tb.Fatal(err)
	}
	f.Close()
	return p
}

// BenchmarkLoadRPZ1M loads a 1,000,000-name RPZ zone (2,000,000 records)
// from scratch and reports the heap the compiled snapshot holds per name.
func BenchmarkLoadRPZ1M(b *testing.B) {
	dir := b.TempDir()
	path := writeRPZNames(b, dir, "big.rpz", genNames(million, 1))
	st, _ := os.Stat(path)
	b.ReportMetric(float64(st.Size())/1e6, "file-MB")
	b.ReportMetric(benchLoad(b, dir, 2*million)/million, "heap-bytes/name")
}

// BenchmarkReloadRPZ1M measures a reload after the 1,000,000-name RPZ
// zone (2,000,000 records) changed, one record appended: read and hash
// the file, find the changed lines, scan the zone for directives and
// owners, parse the owners around the change and apply them as a delta,
// publish (the merge runs later, in the background).
func BenchmarkReloadRPZ1M(b *testing.B) {
	dir := b.TempDir()
	benchAppendReload(b, dir, writeRPZNames(b, dir, "big.rpz", genNames(million, 1)), "extra%d.example CNAME .\n")
}

// benchAppendReload loads the list at path in dir, then, per iteration,
// appends one line (format with the iteration's number) and times the
// reload, which must be applied as a delta.
func benchAppendReload(b *testing.B, dir, path, format string) {
	s := NewStore(Options{Dirs: []string{dir}, Logger: discardLogger()})
	if _, err := s.Reload(context.Background(), "bench"); err != nil {
		b.Fatal(err)
	}
	i := 0
	for b.Loop() {
		b.StopTimer()
		f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
		fmt.Fprintf(f, format, i)
		f.Close()
		i++
		b.StartTimer()
		rep, err := s.Reload(context.Background(), "bench")
		if err != nil || !rep.Changed || !rep.Delta {
			b.Fatalf("reload: %v %+v", err, rep)
		}
	}
}

// layeredSnapshot returns a store over a 1,000,000-name list with one line
// appended and reloaded as a delta (its layer not merged), and the names.
func layeredSnapshot(b *testing.B) (*Store, []string) {
	dir := b.TempDir()
	names := genNames(million, 1)
	path := writeNames(b, dir, "big.txt", names)
	s := NewStore(Options{Dirs: []string{dir}, Logger: discardLogger()})
	if _, err := s.Reload(context.Background(), "bench"); err != nil {
		b.Fatal(err)
	}
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	fmt.Fprintf(f, "extra.example\n")
	f.Close()
	rep, err := s.Reload(context.Background(), "bench")
	if err != nil || !rep.Delta || s.Current().layer == nil {
		b.Fatalf("no delta: %v %+v", err, rep)
	}
	return s, names
}

// BenchmarkCompact1M merges a one-rule delta into a new base of 1,000,000
// rules (the background work after a change); see benchCompact.
func BenchmarkCompact1M(b *testing.B) {
	s, _ := layeredSnapshot(b)
	benchCompact(b, s, million+1)
}

// BenchmarkCompactScale1M is BenchmarkCompact1M over make bench-scale's
// 1,000,000 names of about 28 characters.
func BenchmarkCompactScale1M(b *testing.B) { benchCompactScale(b, "native", million) }

// BenchmarkCompactScaleRPZ1M is BenchmarkCompactScale1M over the RPZ form
// of those names (2,000,000 rules: "name" and "*.name").
func BenchmarkCompactScaleRPZ1M(b *testing.B) { benchCompactScale(b, "rpz", million) }

// BenchmarkCompactScale10M is BenchmarkCompactScale1M over 10,000,000 names.
func BenchmarkCompactScale10M(b *testing.B) { benchCompactScale(b, "native", 10*million) }

// benchCompactScale loads make bench-scale's list of n names in format,
// appends one line, reloads it as a delta and runs benchCompact.
func benchCompactScale(b *testing.B, format string, n int) {
	dir := scaleList(b, format, n)
	path := filepath.Join(dir, listFileName(format))
	st, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	defer os.Truncate(path, st.Size()) // the fixture as it was, for the other benchmarks
	s := NewStore(Options{Dirs: []string{dir}, Logger: discardLogger(), MaxFileSize: 4 << 30})
	if _, err := s.Reload(context.Background(), "bench"); err != nil {
		b.Fatal(err)
	}
	rules := s.Current().RuleCount() + 1
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	line := "extra.example\n"
	if format == "rpz" {
		line = "extra.example CNAME .\n"
	}
	f.WriteString(line)
	f.Close()
	if rep, err := s.Reload(context.Background(), "bench"); err != nil || !rep.Delta {
		b.Fatalf("no delta: %v %+v", err, rep)
	}
	benchCompact(b, s, rules)
}

// benchCompact merges the layer of s's snapshot into a new base in each
// round, with the collector set as sinkhole serve sets it (GOGC 25). It
// reports the CPU time per merge and the heap the merge adds at its peak
// (runtime/metrics' heap objects, sampled every millisecond) over the heap
// the layered snapshot holds alone: what a merge costs in memory beside
// the snapshot in service.
func benchCompact(b *testing.B, s *Store, rules int) {
	snap := s.Current()
	s.WaitCompacted() // the store's own merge, then the store, out of the way
	s = nil
	defer debug.SetGCPercent(debug.SetGCPercent(25))
	runtime.GC()
	held := heapObjects()
	var extra, kept uint64
	c0 := cpuTime()
	for b.Loop() {
		// The merge before was not put in service: the base's arrays
		// may be extended in place again (see compactAppend).
		snap.dom.claim.n.Store(int64(snap.dom.len()))
		stop := samplePeakHeap()
		next, err := compact(snap)
		extra = max(extra, stop()-held)
		if err != nil || next.RuleCount() != rules {
			b.Fatalf("compact: %v", err)
		}
		b.StopTimer()
		runtime.GC()
		kept = heapObjects() - held
		runtime.KeepAlive(next)
		next = nil
		runtime.GC()
		b.StartTimer()
	}
	b.ReportMetric(float64((cpuTime()-c0).Nanoseconds())/float64(b.N)/1e6, "cpu-ms/op")
	b.ReportMetric(float64(held)/float64(rules), "held-B/rule")
	b.ReportMetric(float64(extra)/float64(held), "peak-extra/held")
	b.ReportMetric(float64(kept)/float64(held), "kept-extra/held")
}

// BenchmarkMatchName5LabelsLayered is BenchmarkMatchName5Labels against a
// snapshot with a delta not yet merged (each suffix is looked up in the
// base and in the layer).
func BenchmarkMatchName5LabelsLayered(b *testing.B) {
	s, names := layeredSnapshot(b)
	snap := s.Current()
	queries := fiveLabelQueries(names)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if !snap.MatchName(queries[i&4095]).Blocked() {
			b.Fatalf("%s not blocked", queries[i&4095])
		}
		i++
	}
}

// fiveLabelQueries returns 4,096 five-label subdomains of listed names.
func fiveLabelQueries(names []string) []string {
	queries := make([]string, 4096)
	for i := range queries {
		q := names[(i*7919)%len(names)]
		for strings.Count(q, ".") < 4 {
			q = fmt.Sprintf("l%d.%s", strings.Count(q, "."), q)
		}
		queries[i] = q
	}
	return queries
}

// scaleFixtures caches the generated scale lists of one test binary run
// (10M names take tens of seconds to write).
var scaleFixtures = map[string]string{}

// scaleList writes (once per run) a list of n scale names in format
// "native" (under a "# platform:" line every 10,000 names) or "rpz"
// (name CNAME . and *.name CNAME .) into a directory of its own and
// returns that directory.
func scaleList(b *testing.B, format string, n int) string {
	key := fmt.Sprintf("%s-%d", format, n)
	if dir, ok := scaleFixtures[key]; ok {
		return dir
	}
	dir, err := os.MkdirTemp("", "sinkhole-bench-"+key)
	if err != nil {
		b.Fatal(err)
	}
	file := "bench.txt"
	if format == "rpz" {
		file = "bench.rpz"
	}
	f, err := os.Create(filepath.Join(dir, file))
	if err != nil {
		b.Fatal(err)
	}
	if err := scalenames.Write(f, n, 1, format == "rpz"); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	scaleFixtures[key] = dir
	return dir
}

// TestMain removes the scale benchmarks' fixtures.
func TestMain(m *testing.M) {
	code := m.Run()
	for _, dir := range scaleFixtures {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

// cpuTime is the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchScaleLoad loads a scale list of n names from scratch in each round
// with the collector set as sinkhole serve sets it (GOGC 25), and reports
// per name: the CPU time of the load (user+system, every goroutine:
// wall-clock ns/op is only as good as the machine is quiet), the heap the
// snapshot keeps, and the peak heap during the load (runtime/metrics'
// heap objects, sampled every millisecond).
func benchScaleLoad(b *testing.B, format string, n int) {
	dir := scaleList(b, format, n)
	rules := n
	if format == "rpz" {
		rules = 2 * n
	}
	defer debug.SetGCPercent(debug.SetGCPercent(25))
	var cpu time.Duration
	var kept, peak uint64
	rounds := 0
	for b.Loop() {
		b.StopTimer()
		runtime.GC()
		base := heapObjects()
		stop := samplePeakHeap()
		c0 := cpuTime()
		b.StartTimer()
		s := NewStore(Options{Dirs: []string{dir}, Logger: discardLogger(), MaxFileSize: 4 << 30})
		rep, err := s.Reload(context.Background(), "bench")
		b.StopTimer()
		cpu += cpuTime() - c0
		peak = max(peak, stop()-base)
		if err != nil || rep.Failed() {
			b.Fatalf("load: %v %v", err, rep.Errors())
		}
		if got := s.Current().RuleCount(); got != rules {
			b.Fatalf("%d rules, want %d", got, rules)
		}
		runtime.GC()
		kept = heapObjects() - base
		runtime.KeepAlive(s)
		rounds++
		b.StartTimer()
	}
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(rounds)/float64(n), "cpu-ns/name")
	b.ReportMetric(float64(kept)/float64(n), "heap-B/name")
	b.ReportMetric(float64(peak)/float64(n), "peak-heap-B/name")
}

// heapObjects is the bytes of live and unswept heap objects.
func heapObjects() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// samplePeakHeap samples heapObjects every millisecond until the returned
// function is called, which returns the highest value seen.
func samplePeakHeap() func() uint64 {
	var peak atomic.Uint64
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			if h := heapObjects(); h > peak.Load() {
				peak.Store(h)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 {
		close(done)
		<-stopped
		if h := heapObjects(); h > peak.Load() {
			peak.Store(h)
		}
		return peak.Load()
	}
}

// BenchmarkLoadScale1M loads 1,000,000 names of about 28 characters (the
// names of make bench-scale and make bench BENCH_NAME_LEN=28).
func BenchmarkLoadScale1M(b *testing.B) { benchScaleLoad(b, "native", million) }

// BenchmarkLoadScale10M loads 10,000,000 names of about 28 characters.
func BenchmarkLoadScale10M(b *testing.B) { benchScaleLoad(b, "native", 10*million) }

// BenchmarkLoadScaleRPZ1M loads a 1,000,000-name RPZ zone (2,000,000
// records, name CNAME . and *.name CNAME .) of make bench-scale's names.
func BenchmarkLoadScaleRPZ1M(b *testing.B) { benchScaleLoad(b, "rpz", million) }

// BenchmarkLoadScaleRPZ10M loads a 10,000,000-name RPZ zone (20,000,000
// records).
func BenchmarkLoadScaleRPZ10M(b *testing.B) { benchScaleLoad(b, "rpz", 10*million) }

// BenchmarkEncodedLabels is the label count a blocked answer asks of its
// rule (Snapshot.SubtreeLabels), on a 28-character name.
func BenchmarkEncodedLabels(b *testing.B) {
	e := appendEncoded(nil, []byte("w7lvhdsnc-uzhsnt.yvlhsaqm6.net"))
	b.ReportAllocs()
	n := 0
	for i := 0; i < b.N; i++ {
		n += encodedLabels(e)
	}
	if n != 3*b.N {
		b.Fatalf("%d labels per name, want 3", n/b.N)
	}
}
