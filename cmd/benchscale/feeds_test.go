package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestFeedsSmoke runs the axfr and ixfr measurements with tiny sizes
// against a freshly built bin/sinkhole (and BIND when installed): every
// secondary must follow every change, and the section must say so.
func TestFeedsSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts sinkhole servers")
	}
	work := t.TempDir()
	bin := filepath.Join(work, "sinkhole")
	build := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", bin, "github.com/sinkhole-dns/sinkhole/cmd/sinkhole")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build sinkhole: %v\n%s", err, out)
	}
	cfg := feedConfig{
		names: 2000, secondaries: 2, changes: 2, primaries: []string{"sinkhole", "sinkhole-merkle3", "sinkhole-nozonemd", "bind"}, modes: []string{"axfr", "ixfr"},
		sinkhole: bin, named: findNamed(), timeout: 20 * time.Second, loadTimeout: 30 * time.Second, work: filepath.Join(work, "feeds"),
	}
	if cfg.named == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("named not installed (apt-get install bind9)")
		}
		cfg.primaries = cfg.primaries[:3]
	}
	if err := os.MkdirAll(cfg.work, 0o755); err != nil {
		t.Fatal(err)
	}
	ax, ix := runFeeds(cfg)
	if ax == nil || ax.Error != "" || ax.WallMS <= 0 || ax.PeakMB <= 0 || ax.CPUMS <= 0 {
		t.Fatalf("AXFR: %+v", ax)
	}
	if len(ix) != len(cfg.primaries) {
		t.Fatalf("%d IXFR results for %v", len(ix), cfg.primaries)
	}
	for _, r := range ix {
		if r.Error != "" || r.Limit != "" || len(r.Secondaries) != cfg.secondaries || len(r.Changes) != cfg.changes {
			t.Fatalf("%s: %+v", r.Primary, r)
		}
		for _, c := range r.Changes {
			if len(c.FromPrimaryMS) != len(c.LatMS) {
				t.Fatalf("%s primary: %d latencies from the primary, %d from the change", r.Primary, len(c.FromPrimaryMS), len(c.LatMS))
			}
			for i, l := range c.LatMS {
				if l < 0 {
					t.Errorf("%s primary: secondary %d did not block %s", r.Primary, i, c.Name)
				}
				// The sinkhole primary's reload follows the edit; a
				// secondary blocks after it.
				if r.Primary == "sinkhole" && (c.ReloadMS <= 0 || c.FromPrimaryMS[i] < 0 || c.FromPrimaryMS[i] > l) {
					t.Errorf("sinkhole primary: secondary %d: %.1f ms from the edit, %.1f ms from the reload (%.1f ms after the edit)", i, l, c.FromPrimaryMS[i], c.ReloadMS)
				}
			}
		}
		for i, s := range r.Secondaries {
			if s.InitialMS < 0 || s.InitialPeakMB <= 0 || s.ChangePeakMB <= 0 {
				t.Errorf("%s primary: secondary %d: %+v", r.Primary, i, s)
			}
		}
	}
	rep := &report{started: time.Now(), ended: time.Now(), feeds: &cfg, axfr: ax, ixfr: ix, cmdline: "bin/benchscale -modes axfr,ixfr"}
	md := rep.markdown()
	for _, want := range []string{"first AXFR of a 2k-name zone", "| sinkhole, ZONEMD SIMPLE and MERKLE3 (the default), 2k names (4k records) | 2 |",
		"| sinkhole, MERKLE3 only (`--rpz-export-zonemd=merkle3`), 2k names (4k records) | 2 |", "--rpz-export-zonemd=merkle3", "bin/sinkhole serve --listen $PRIMARY", "--rpz-feed bench=rpz.bench@$PRIMARY", "From the primary: slowest, per change", "| sinkhole without ZONEMD (`--rpz-export-zonemd=false`), 2k names (4k records) | 2 |", "--rpz-export-zonemd=false"} {
		if !strings.Contains(md, want) {
			t.Errorf("section lacks %q:\n%s", want, md)
		}
	}
	for _, bad := range []string{work, "not within 20s"} {
		if strings.Contains(md, bad) {
			t.Errorf("section holds %q:\n%s", bad, md)
		}
	}
}

func TestLatStats(t *testing.T) {
	fc := &feedConfig{timeout: 5 * time.Second}
	for _, tc := range []struct {
		lat      []float64
		max, med string
	}{
		{[]float64{100, 300, 200}, "300 ms", "200 ms"},
		{[]float64{100, -1, 200}, "not within 5s (1 of 3)", "200 ms"},
		{[]float64{-1, -1, 200}, "not within 5s (2 of 3)", "not within 5s"},
		{[]float64{1500}, "1.50 s", "1.50 s"},
	} {
		mx, md := latStats(tc.lat, fc)
		if mx != tc.max || md != tc.med {
			t.Errorf("latStats(%v) = %q, %q; want %q, %q", tc.lat, mx, md, tc.max, tc.med)
		}
	}
}

func TestWriteSection(t *testing.T) {
	p := filepath.Join(t.TempDir(), "b.md")
	os.WriteFile(p, []byte("# head\n\n"+beginMarker+"\nold\n"+endMarker+"\n\n## after\n"), 0o644)
	if err := writeSection(p, beginMarker+"\nnew\n"+endMarker+"\n"); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(p)
	if want := "# head\n\n" + beginMarker + "\nnew\n" + endMarker + "\n\n## after\n"; string(got) != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// The addresses given to the primary and its secondaries are distinct:
// two servers on one address would share its UDP port (SO_REUSEPORT)
// without an error, and one of them would miss the NOTIFYs.
func TestFreeAddrsDistinct(t *testing.T) {
	addrs, err := freeAddrs(64)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, a := range addrs {
		if seen[a] {
			t.Fatalf("%s handed out twice in %v", a, addrs)
		}
		seen[a] = true
	}
}
