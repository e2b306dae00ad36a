package rpz

import (
	"fmt"
	"strings"
	"testing"

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
	for _, n := range []int{10000, 100000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			snap := benchSnapshot(b, n)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				w := fullBuild(snap, BuildOptions{TTL: 300})
				if w.zone.records != 2*n {
					b.Fatalf("%d records", w.zone.records)
				}
			}
		})
	}
}

// BenchmarkZonemd measures the ZONEMD of an export zone of n domain rules
// (2n records): computed once per exported version.
func BenchmarkZonemd(b *testing.B) {
	for _, n := range []int{10000, 100000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			w := fullBuild(benchSnapshot(b, n), BuildOptions{TTL: 300})
			e, err := NewExporter(ExportConfig{Zone: "rpz.test", Logger: quietLogger()})
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if e.zonemdOf(w.zone, 1) == nil {
					b.Fatal("no ZONEMD")
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(w.zone.records), "ns/record")
		})
	}
}
