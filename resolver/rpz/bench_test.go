package rpz

import (
	"fmt"
	"strings"
	"testing"

	"github.com/sinkhole-dns/sinkhole/blocklist"
)

// BenchmarkBuildRecords measures turning a snapshot of n domain rules into
// the export zone (done on every reload at the primary).
func BenchmarkBuildRecords(b *testing.B) {
	for _, n := range []int{10000, 100000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
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
			snap := st.Current()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				recs, _ := buildRecords(snap, BuildOptions{TTL: 300})
				if len(recs) != 2*n {
					b.Fatalf("%d records", len(recs))
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
			recs, _ := buildRecords(st.Current(), BuildOptions{TTL: 300})
			e, err := NewExporter(ExportConfig{Zone: "rpz.test", Logger: quietLogger()})
			if err != nil {
				b.Fatal(err)
			}
			v := &version{serial: 1, records: recs}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if e.zonemd(v) == nil {
					b.Fatal("no ZONEMD")
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(recs)), "ns/record")
		})
	}
}
