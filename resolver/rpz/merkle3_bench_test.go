package rpz

import (
	"fmt"
	"runtime"
	"testing"
)

// benchCopy is a secondary's zone copy of n names, name and wildcard
// "CNAME ." each, in canonical order as a sinkhole primary sends them.
func benchCopy(b *testing.B, n int) *zoneCopy {
	b.Helper()
	z := newZoneCopy("rpz.test.", benchSOA(1))
	var scratch []byte
	for i := range n {
		for _, rr := range benchCNAMEs(benchFeedName(i)) {
			var err error
			if scratch, err = z.encode(rr, scratch); err != nil {
				b.Fatal(err)
			}
			z.add(scratch)
		}
	}
	return z
}

// BenchmarkMerkle3Build measures building a secondary's MERKLE3 state
// (SHA-384) from scratch, as after a full transfer: every RRset hashed
// twice (for its node, then for its node's hash) on two goroutines.
// cpu-ns/op is user+system time of every thread; state-MB the heap the
// state keeps.
func BenchmarkMerkle3Build(b *testing.B) {
	for _, n := range []int{1000, 1000000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			z := benchCopy(b, n)
			var before, after runtime.MemStats
			cpu := startCPU()
			for b.Loop() {
				z.m3 = nil
				runtime.GC()
				runtime.ReadMemStats(&before)
				if _, err := z.merkle3(ZonemdHashSHA384); err != nil {
					b.Fatal(err)
				}
			}
			cpu.report(b)
			runtime.GC()
			runtime.ReadMemStats(&after)
			runtime.KeepAlive(z)
			b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/1e6, "state-MB")
		})
	}
}

// BenchmarkMerkle3Update measures a secondary's MERKLE3 digest after a
// one-name IXFR at 1M names: the name and its wildcard added, a new SOA
// (every version has one), the digest; then the two taken out, another
// SOA, the digest. One op is both versions.
func BenchmarkMerkle3Update(b *testing.B) {
	z := benchCopy(b, benchFeedNames)
	if _, err := z.merkle3(ZonemdHashSHA384); err != nil {
		b.Fatal(err)
	}
	serial := uint32(1)
	next := 0
	cpu := startCPU()
	for b.Loop() {
		var idx []int
		for _, rr := range benchCNAMEs(fmt.Sprintf("added-%07d.example-lbl.tld", next)) {
			r, err := z.encode(rr, nil)
			if err != nil {
				b.Fatal(err)
			}
			idx = append(idx, z.add(r))
		}
		next++
		serial++
		z.soa = benchSOA(serial)
		if _, err := z.merkle3(ZonemdHashSHA384); err != nil {
			b.Fatal(err)
		}
		for _, i := range idx {
			z.kill(i, true)
		}
		serial++
		z.soa = benchSOA(serial)
		if _, err := z.merkle3(ZonemdHashSHA384); err != nil {
			b.Fatal(err)
		}
	}
	cpu.report(b)
}
