package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSpliceSection(t *testing.T) {
	sec := beginMarker + "\nnew\n" + endMarker + "\n"
	for _, tc := range []struct{ name, doc, want string }{
		{"empty", "", sec},
		{"append", "# Benchmarks\n\n## Micro\n\ntext\n", "# Benchmarks\n\n## Micro\n\ntext\n\n" + sec},
		{"replace", "# B\n\n" + beginMarker + "\nold\nold\n" + endMarker + "\n\n## Later\n", "# B\n\n" + sec + "\n## Later\n"},
		{"replace at end", "# B\n\n" + beginMarker + "\nold\n" + endMarker + "\n", "# B\n\n" + sec},
	} {
		if got := string(spliceSection([]byte(tc.doc), sec)); got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, got, tc.want)
		}
	}
}

func TestUpdateDoc(t *testing.T) {
	path := filepath.Join(t.TempDir(), "docs", "benchmarks.md")
	sec := beginMarker + "\nfirst\n" + endMarker + "\n"
	if err := UpdateDoc(path, sec); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if string(b) != "# Benchmarks\n\n"+sec {
		t.Fatalf("created %q", b)
	}
	os.WriteFile(path, append(b, "\n## Other\n\nkept\n"...), 0o644)
	if err := UpdateDoc(path, strings.Replace(sec, "first", "second", 1)); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(path)
	if got := string(b); strings.Contains(got, "first") || !strings.Contains(got, "second") || !strings.HasSuffix(got, "## Other\n\nkept\n") {
		t.Fatalf("updated %q", got)
	}
}

func TestUs(t *testing.T) {
	for in, want := range map[time.Duration]string{0: "0 µs", 85 * time.Microsecond: "85 µs", 9999 * time.Microsecond: "9999 µs", 23638 * time.Microsecond: "23.6 ms"} {
		if got := us(in); got != want {
			t.Errorf("us(%s) = %q, want %q", in, got, want)
		}
	}
}

func TestThousands(t *testing.T) {
	for in, want := range map[float64]string{0: "0", 999: "999", 1000: "1,000", 77123.6: "77,124", 1234567: "1,234,567"} {
		if got := thousands(in); got != want {
			t.Errorf("thousands(%v) = %q, want %q", in, got, want)
		}
	}
}

func perf(qps float64, completed int64, nx int64) *PerfResult {
	return &PerfResult{QPS: qps, Sent: completed, Completed: completed, MeanLatency: time.Millisecond,
		Rcodes: map[string]int64{"NOERROR": completed - nx, "NXDOMAIN": nx}, Latencies: []time.Duration{time.Millisecond}}
}

func TestTable(t *testing.T) {
	m := func(qps float64, cpu time.Duration) *Measurement {
		n := int64(qps)
		return &Measurement{Max: perf(qps, n, n), Tail: perf(qps, n, n), Fixed: perf(5000, 5000, 5000),
			CPU: cpu, Wall: time.Second, PeakRSS: 10e6}
	}
	r := &Report{Rate: 5000, Servers: []*ServerResult{
		{Name: "sinkhole", Load: time.Second, Work: map[string]*Measurement{"blocked": m(80000, 400*time.Millisecond)}},
		{Name: "unbound", LoadErr: "no blocked answer within 2m0s", Work: map[string]*Measurement{}},
		{Name: "knot", Load: time.Second, Work: map[string]*Measurement{"blocked": {Err: "server exited (signal: killed):\nerror | at line 1"}}},
		{Name: "dnsmasq", Load: 2 * time.Second, Work: map[string]*Measurement{"blocked": m(40000, 800*time.Millisecond)}},
	}}
	w := Workload{Name: "blocked", NXPct: 100}
	tab := r.Table(w)
	lines := strings.Split(strings.TrimSpace(tab), "\n")
	if len(lines) != 9 {
		t.Fatalf("%d lines:\n%s", len(lines), tab)
	}
	for _, want := range []string{
		"| p50 @ 5,000 qps | p99 @ 5,000 qps |",
		"| sinkhole | 80,000 | 1000 µs |",
		"| 40 % | 5.00 |",
		"| unbound | not run: no blocked answer within 2m0s | – |",
		"| knot | failed: server exited (signal: killed): error / at line 1 | – |",
		"| *sinkhole / dnsmasq* | 2.00× | 1.00× |",
		"| 0.50× | 0.25× | – | 1.00× | 0.50× |",
	} {
		if !strings.Contains(tab, want) {
			t.Errorf("table lacks %q:\n%s", want, tab)
		}
	}
	if !strings.Contains(lines[6], "| *sinkhole / unbound* | – |") {
		t.Errorf("ratio to a server that did not run: %q", lines[6])
	}
	if got := r.rcodeLine(w); !strings.Contains(got, "sinkhole: NOERROR 0.0 %, NXDOMAIN 100.0 %") || strings.Contains(got, "unexpected") {
		t.Errorf("rcode line %q", got)
	}
	if got := r.noiseLine(w); got != "CPU other processes took during the runs, in % of one core (noise): sinkhole 0 %, dnsmasq 0 %." {
		t.Errorf("noise line %q", got)
	}
	r.Servers[0].Work["blocked"].GenCPU = 990 * time.Millisecond
	if got := r.generatorLine(w); got != "Load generator's CPU during the max run, in % of its core (about 100 %: the QPS is the generator's ceiling): sinkhole 99 %, dnsmasq 0 %." {
		t.Errorf("generator line %q", got)
	}
	if got := r.rcodeLine(Workload{Name: "blocked", NXPct: 20}); !strings.Contains(got, "**unexpected**") {
		t.Errorf("rcode line %q does not flag a mismatch", got)
	}
}

func TestShellJoin(t *testing.T) {
	got := shellJoin([]string{"bin/benchrun", "-out", "", "--server=127.0.0.1#53", "a b", "it's"})
	want := `bin/benchrun -out '' --server=127.0.0.1#53 'a b' 'it'\''s'`
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

func TestNotePerf(t *testing.T) {
	b := &bench{dir: "/tmp/sinkhole-bench-1"}
	b.notePerf("warm", []string{"taskset", "-c", "0", "dnsperf", "-p", "4242", "-d", "/tmp/sinkhole-bench-1/queries-cached.txt", "-n", "2"})
	b.notePerf("warm", []string{"taskset", "-c", "0", "dnsperf", "-p", "4343", "-d", "/tmp/sinkhole-bench-1/queries-mix.txt", "-n", "1"})
	want := []string{"# warm", "taskset -c 0 dnsperf -p $PORT -d $WORK/queries-$WORKLOAD.txt -n $PASSES"}
	if strings.Join(b.perfCommands, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got %q", b.perfCommands)
	}
}
