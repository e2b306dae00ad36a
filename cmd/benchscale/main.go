// Command benchscale is make bench-scale: it measures what regulator-scale
// lists cost sinkhole (load, one-line change, repeated reloads, feeds) and
// prints a table with the exact commands; with -out it writes its section
// of docs/benchmarks.md.
//
// Every list measurement runs in a fresh child process (benchscale
// -child MODE ...) so its peak RSS (VmHWM) and CPU time (getrusage) are its
// own; wall time is reported too but is only as good as the machine is
// quiet.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	var (
		child   = flag.String("child", "", "internal: run one measurement (load, change, reloads) in this process")
		dir     = flag.String("dir", "", "internal: the list directory of -child")
		format  = flag.String("format", "native", "internal: the list format of -child")
		names   = flag.String("names", "1000000,10000000", "list sizes to measure, comma-separated")
		formats = flag.String("formats", "native,rpz", "list formats to measure: native, rpz")
		runs    = flag.Int("runs", 3, "runs of each measurement (the median is reported)")
		reloads = flag.Int("reloads", 40, "reloads of the repeated-reload measurement")
		maxRPZ  = flag.Int("max-rpz", 10000000, "largest list measured as RPZ")
		once    = flag.Int("once-above", 1000000, "lists larger than this are measured once, not -runs times")
		maxRel  = flag.Int("max-reloads", 1000000, "largest list measured by the repeated-reload measurement")
		modes   = flag.String("modes", "load,change,reloads,axfr,ixfr", "measurements to run: load, change, reloads (lists); axfr, ixfr (feeds)")
		feedN   = flag.Int("feed-names", 0, "names of the feed measurements' list (default: the smallest -names size)")
		secs    = flag.Int("secondaries", 10, "sinkhole secondaries of the ixfr measurement")
		prims   = flag.String("primaries", "sinkhole,sinkhole-merkle3,sinkhole-nozonemd,bind", "primaries of the ixfr measurement: sinkhole (its default ZONEMD, SIMPLE and MERKLE3), sinkhole-merkle3 (--rpz-export-zonemd=merkle3), sinkhole-nozonemd (--rpz-export-zonemd=false), bind")
		changes = flag.Int("changes", 0, "one-name changes of the ixfr measurement (default: -runs)")
		feedTO  = flag.Duration("feed-timeout", 60*time.Second, "how long the secondaries may take to block a changed name")
		loadTO  = flag.Duration("load-timeout", 5*time.Minute, "how long a primary may take to serve the zone, and a secondary to block with its first AXFR")
		reserve = flag.Float64("reserve-mb", 3000, "memory (MB) left free when starting secondaries: fewer run when each costs too much")
		shBin   = flag.String("sinkhole", "bin/sinkhole", "the sinkhole binary of the feed measurements")
		named   = flag.String("named", "", "BIND's named (default: found in PATH or /usr/sbin)")
		out     = flag.String("out", "", "markdown file to write the section into (empty: print only)")
		work    = flag.String("work", "", "work directory (default: a temporary one, removed at the end)")
	)
	flag.Parse()
	if *child != "" {
		writeResult(runChild(*child, *dir, *format, *reloads))
		return
	}
	cfg := config{runs: *runs, reloads: *reloads, maxRPZ: *maxRPZ, maxReloads: *maxRel, onceAbove: *once}
	for _, m := range strings.Split(*modes, ",") {
		m = strings.TrimSpace(m)
		if !slices.Contains([]string{"load", "change", "reloads", "axfr", "ixfr"}, m) {
			fatalf("-modes: unknown measurement %q", m)
		}
		cfg.modes = append(cfg.modes, m)
	}
	for _, s := range strings.Split(*names, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			fatalf("-names: bad size %q", s)
		}
		cfg.sizes = append(cfg.sizes, n)
	}
	for _, f := range strings.Split(*formats, ",") {
		f = strings.TrimSpace(f)
		if f != "native" && f != "rpz" {
			fatalf("-formats: unknown format %q", f)
		}
		cfg.formats = append(cfg.formats, f)
	}
	for _, p := range strings.Split(*prims, ",") {
		p = strings.TrimSpace(p)
		if p != "sinkhole" && p != "sinkhole-merkle3" && p != "sinkhole-nozonemd" && p != "bind" {
			fatalf("-primaries: unknown primary %q", p)
		}
		cfg.feed.primaries = append(cfg.feed.primaries, p)
	}
	cfg.feed.names = *feedN
	if cfg.feed.names == 0 {
		cfg.feed.names = slices.Min(cfg.sizes)
	}
	if *secs < 1 {
		fatalf("-secondaries: at least 1")
	}
	cfg.feed.secondaries, cfg.feed.changes = *secs, *changes
	if cfg.feed.changes == 0 {
		cfg.feed.changes = *runs
	}
	cfg.feed.timeout, cfg.feed.loadTimeout, cfg.feed.reserveMB = *feedTO, *loadTO, *reserve
	cfg.feed.named = *named
	if cfg.feed.named == "" {
		cfg.feed.named = findNamed()
	}
	cfg.feed.modes = cfg.modes
	if slices.Contains(cfg.modes, "axfr") || slices.Contains(cfg.modes, "ixfr") {
		p, err := filepath.Abs(*shBin)
		if err == nil {
			_, err = os.Stat(p)
		}
		if err != nil {
			fatalf("-sinkhole: %v (make build first, or -modes without axfr and ixfr)", err)
		}
		cfg.feed.sinkhole = p
	}
	cfg.work = *work
	if cfg.work == "" {
		d, err := os.MkdirTemp("", "benchscale-")
		if err != nil {
			fatalf("%v", err)
		}
		defer os.RemoveAll(d)
		cfg.work = d
	}
	cfg.feed.work = filepath.Join(cfg.work, "feeds")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		fmt.Fprintln(os.Stderr, "benchscale: interrupted: stopping the servers it started")
		stopAll()
		if *work == "" {
			os.RemoveAll(cfg.work)
		}
		os.Exit(1)
	}()
	self, err := os.Executable()
	if err != nil {
		fatalf("%v", err)
	}
	cfg.self = self
	rep := run(cfg)
	text := rep.markdown()
	fmt.Print(text)
	if *out != "" {
		if err := writeSection(*out, text); err != nil {
			fatalf("%v", err)
		}
		fmt.Fprintf(os.Stderr, "benchscale: wrote its section of %s\n", *out)
	}
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "benchscale: "+format+"\n", args...)
	os.Exit(1)
}

type config struct {
	sizes      []int
	formats    []string
	runs       int
	reloads    int
	maxRPZ     int
	maxReloads int
	onceAbove  int
	modes      []string
	work       string
	self       string
	feed       feedConfig
}

// row is one line of the table: a measurement with its runs.
type row struct {
	what    string
	command string
	runs    []result
	note    string
}

type report struct {
	started time.Time
	ended   time.Time
	uptime  string // uptime(1) before the run
	rows    []row
	cmdline string
	axfr    *axfrResult
	ixfr    []*ixfrResult
	feeds   *feedConfig
}

func run(cfg config) *report {
	rep := &report{started: time.Now().UTC(), uptime: uptime(), cmdline: "bin/benchscale " + strings.Join(os.Args[1:], " ")}
	logf("%s", rep.uptime)
	if slices.ContainsFunc(cfg.modes, func(m string) bool { return m == "load" || m == "change" || m == "reloads" }) {
		for _, n := range cfg.sizes {
			for _, format := range cfg.formats {
				if format == "rpz" && n > cfg.maxRPZ {
					continue
				}
				rep.rows = append(rep.rows, measureList(cfg, n, format)...)
			}
		}
	}
	if slices.Contains(cfg.modes, "axfr") || slices.Contains(cfg.modes, "ixfr") {
		if err := os.MkdirAll(cfg.feed.work, 0o755); err != nil {
			fatalf("%v", err)
		}
		rep.axfr, rep.ixfr = runFeeds(cfg.feed)
		rep.feeds = &cfg.feed
		os.RemoveAll(cfg.feed.work)
	}
	rep.ended = time.Now().UTC()
	return rep
}

// measureList generates one list and measures its load, a one-line
// change and repeated reloads, each cfg.runs times in fresh processes.
func measureList(cfg config, n int, format string) []row {
	dir := filepath.Join(cfg.work, fmt.Sprintf("%s-%d", format, n))
	os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		fatalf("%v", err)
	}
	path := filepath.Join(dir, listFileName(format))
	master := path + ".orig"
	size, err := writeList(master, format, n, 1)
	if err != nil {
		fatalf("generate %s: %v", master, err)
	}
	fmt.Fprintf(os.Stderr, "benchscale: %s list of %d names, %.1f MB\n", format, n, float64(size)/1e6)
	label := fmt.Sprintf("%s, %s names", format, humanCount(n))
	if format == "rpz" {
		label = fmt.Sprintf("RPZ, %s names (%s records)", humanCount(n), humanCount(2*n))
	}
	var rows []row
	for _, m := range []struct{ mode, what string }{
		{"load", "cold load"},
		{"change", "one line appended, reload"},
		{"reloads", fmt.Sprintf("%d reloads (a line appended before each)", cfg.reloads)},
	} {
		if !slices.Contains(cfg.modes, m.mode) || (m.mode == "reloads" && n > cfg.maxReloads) {
			continue
		}
		r := row{what: label + ": " + m.what}
		args := []string{"-child", m.mode, "-dir", "$DIR", "-format", format, "-reloads", strconv.Itoa(cfg.reloads)}
		r.command = "bin/benchscale " + strings.Join(args, " ")
		runs := cfg.runs
		if n > cfg.onceAbove || m.mode == "reloads" {
			runs = 1 // 40 reloads are measured once: they are 40 measurements already
		}
		for range runs {
			if err := copyFile(master, path); err != nil {
				fatalf("%v", err)
			}
			args[3] = dir
			res := runChildProc(cfg.self, args)
			r.runs = append(r.runs, res)
			fmt.Fprintf(os.Stderr, "benchscale:   %s: %+v\n", r.what, res)
		}
		rows = append(rows, r)
	}
	os.RemoveAll(dir)
	return rows
}

func runChildProc(self string, args []string) result {
	cmd := exec.Command(self, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return result{Error: fmt.Sprintf("%v: %s", err, strings.TrimSpace(stderr.String()))}
	}
	var r result
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		return result{Error: fmt.Sprintf("bad child output %q: %v", stdout.String(), err)}
	}
	return r
}

func copyFile(from, to string) error {
	data, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, data, 0o644)
}

func humanCount(n int) string {
	switch {
	case n%1_000_000 == 0:
		return strconv.Itoa(n/1_000_000) + "M"
	case n%1000 == 0:
		return strconv.Itoa(n/1000) + "k"
	}
	return strconv.Itoa(n)
}

// median returns the median of the runs' values (ignoring failed runs).
func median(rs []result, f func(result) float64) (float64, bool) {
	var v []float64
	for _, r := range rs {
		if r.Error == "" {
			v = append(v, f(r))
		}
	}
	if len(v) == 0 {
		return 0, false
	}
	slices.Sort(v)
	return v[len(v)/2], true
}

func all(rs []result, f func(result) float64, unit string) string {
	var parts []string
	for _, r := range rs {
		if r.Error != "" {
			parts = append(parts, "failed")
			continue
		}
		parts = append(parts, strconv.FormatFloat(f(r), 'f', fmtPrec(f(r)), 64))
	}
	return strings.Join(parts, ", ") + unit
}

func fmtPrec(v float64) int {
	if v >= 100 {
		return 0
	}
	return 1
}
