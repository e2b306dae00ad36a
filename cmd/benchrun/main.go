// Command benchrun is make bench: it runs sinkhole, Unbound (the list as an
// RPZ zone) and dnsmasq (the list as address=/name/) one after the other on
// the same CPU, against the same local upstream and the same generated
// list, drives each with dnsperf from another CPU, and writes a side-by-side
// table of throughput, latency, CPU per query, memory and list load time.
//
// Everything listens on 127.0.0.1; every wait is bounded; every process it
// starts is stopped when it returns, on an error or on SIGINT/SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// Config is the command line.
type Config struct {
	Domains      int
	NameLen      int
	Seed         uint64
	Duration     time.Duration
	Rate         int
	Clients      int
	Outstanding  int
	LoadTimeout  time.Duration
	Servers      []string
	ServerCPU    int
	PerfCPU      int
	Out          string
	Sinkhole     string
	Upstream     string // benchupstream binary
	DnsmasqCache int
	Keep         bool
	QuietWait    time.Duration
	Patience     time.Duration
	Attempts     int
	MaxNoise     float64
	// Profile, when set, is a directory for a CPU profile of sinkhole
	// during each workload's max run (make profile).
	Profile string
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "doh-client" {
		return dohClient(ctx, args[1:], stdout, stderr) // the cached-doh workload's load generator
	}
	fs := flag.NewFlagSet("benchrun", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c Config
	var servers string
	fs.IntVar(&c.Domains, "domains", 1_000_000, "listed domains to generate")
	fs.Uint64Var(&c.Seed, "seed", 1, "seed of the generated list and queries")
	fs.IntVar(&c.NameLen, "name-len", 0, "listed names of about `N` characters (0: random labels of 3 to 18 characters)")
	fs.DurationVar(&c.Duration, "duration", 10*time.Second, "length of each dnsperf run")
	fs.IntVar(&c.Rate, "rate", 5000, "queries per second of the fixed-rate latency run")
	fs.IntVar(&c.Clients, "clients", 10, "dnsperf -c of the max-throughput run")
	fs.IntVar(&c.Outstanding, "outstanding", 100, "dnsperf -q of the max-throughput run")
	fs.DurationVar(&c.LoadTimeout, "load-timeout", 120*time.Second, "give up on a server that has not loaded the list by then")
	fs.StringVar(&servers, "servers", "sinkhole,unbound,dnsmasq", "servers to run, comma-separated")
	fs.IntVar(&c.ServerCPU, "server-cpu", 1, "CPU the server under test is pinned to")
	fs.IntVar(&c.PerfCPU, "perf-cpu", 0, "CPU dnsperf and the upstream are pinned to")
	fs.StringVar(&c.Out, "out", "docs/benchmarks.md", "markdown file to write the section into (empty: stdout only)")
	fs.StringVar(&c.Sinkhole, "sinkhole", "bin/sinkhole", "sinkhole binary")
	fs.StringVar(&c.Upstream, "upstream", "bin/benchupstream", "benchupstream binary")
	fs.IntVar(&c.DnsmasqCache, "dnsmasq-cache", 10000, "dnsmasq --cache-size")
	fs.DurationVar(&c.QuietWait, "quiet-wait", time.Minute, "before each server and rerun, wait up to this long for other processes to leave the CPUs idle (0: do not wait)")
	fs.DurationVar(&c.Patience, "patience", 5*time.Minute, "most time spent in all on waiting for a quiet machine and rerunning noisy workloads")
	fs.IntVar(&c.Attempts, "attempts", 3, "runs of a workload at most, while other processes take more than -max-noise")
	fs.Float64Var(&c.MaxNoise, "max-noise", 20, "CPU other processes may take during a workload, in % of one core, before it is run again")
	fs.StringVar(&c.Profile, "profile", "", "write a CPU profile of sinkhole during each workload's max run into `DIR` and print its top functions")
	fs.BoolVar(&c.Keep, "keep", false, "keep the work directory (lists, configs, logs, dnsperf output)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	c.Servers = strings.Split(servers, ",")
	if err := c.validate(); err != nil {
		fmt.Fprintf(stderr, "benchrun: %v\n", err)
		return 2
	}
	b := &bench{cfg: c, stdout: stdout, stderr: stderr}
	if err := b.run(ctx, args); err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(stderr, "benchrun: interrupted; every process it started is stopped")
			return 130
		}
		fmt.Fprintf(stderr, "benchrun: %v\n", err)
		return 1
	}
	return 0
}

func (c *Config) validate() error {
	switch {
	case c.Domains < 1:
		return fmt.Errorf("-domains %d: want at least 1", c.Domains)
	case c.NameLen != 0 && (c.NameLen < 8 || c.NameLen > 200):
		return fmt.Errorf("-name-len %d: want 0 or between 8 and 200", c.NameLen)
	case c.Duration < time.Second || c.Duration > 5*time.Minute:
		return fmt.Errorf("-duration %s: want between 1s and 5m", c.Duration)
	case c.Rate < 1 || c.Clients < 1 || c.Outstanding < 1:
		return errors.New("-rate, -clients and -outstanding must be positive")
	case c.LoadTimeout < time.Second || c.LoadTimeout > 30*time.Minute:
		return fmt.Errorf("-load-timeout %s: want between 1s and 30m", c.LoadTimeout)
	case c.QuietWait < 0 || c.QuietWait > 30*time.Minute:
		return fmt.Errorf("-quiet-wait %s: want between 0 and 30m", c.QuietWait)
	case c.Patience < 0 || c.Patience > 2*time.Hour:
		return fmt.Errorf("-patience %s: want between 0 and 2h", c.Patience)
	case c.Attempts < 1 || c.Attempts > 10:
		return fmt.Errorf("-attempts %d: want between 1 and 10", c.Attempts)
	case c.MaxNoise < 0:
		return fmt.Errorf("-max-noise %v: want 0 or more", c.MaxNoise)
	case c.ServerCPU == c.PerfCPU:
		return errors.New("-server-cpu and -perf-cpu must differ")
	case max(c.ServerCPU, c.PerfCPU) >= runtime.NumCPU() || min(c.ServerCPU, c.PerfCPU) < 0:
		return fmt.Errorf("CPUs %d and %d: this machine has CPUs 0-%d", c.ServerCPU, c.PerfCPU, runtime.NumCPU()-1)
	}
	for _, s := range c.Servers {
		switch s {
		case "sinkhole", "unbound", "dnsmasq":
		default:
			return fmt.Errorf("-servers: unknown server %q (want sinkhole, unbound, dnsmasq)", s)
		}
	}
	return nil
}

// bench is one run of the benchmark.
type bench struct {
	cfg            Config
	stdout, stderr io.Writer
	dir            string
	procs          Procs
	files          *Files
	corpus         *Corpus
	dnsperf        string
	upstreamAddr   string
	upstreamProc   *Proc
	statsAddr      string
	report         Report
	perfCommands   []string
	perfSeen       map[string]bool
	loadBefore     string
	extra          time.Duration // spent waiting for quiet and rerunning
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.stderr, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func (b *bench) run(ctx context.Context, args []string) (err error) {
	tools, err := findTools()
	if err != nil {
		return err
	}
	b.dnsperf = tools["dnsperf"]
	for _, p := range []string{b.cfg.Sinkhole, b.cfg.Upstream} {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("%w (run make build, or make bench, first)", err)
		}
	}
	b.dir, err = os.MkdirTemp("", "sinkhole-bench-")
	if err != nil {
		return err
	}
	defer func() {
		b.procs.StopAll()
		if b.cfg.Keep || (err != nil && ctx.Err() == nil) {
			fmt.Fprintf(b.stderr, "benchrun: work directory kept: %s\n", b.dir)
			return
		}
		os.RemoveAll(b.dir)
	}()
	start := time.Now()
	b.report.Date = start
	b.report.Rate = b.cfg.Rate
	var load1 float64
	b.loadBefore, load1 = loadAvg()
	if load1 > 0.5 {
		b.logf("warning: load average %s before starting: other work on this machine will skew the figures", b.loadBefore)
	}

	b.logf("generating %d listed domains (seed %d) in %s", b.cfg.Domains, b.cfg.Seed, b.dir)
	if b.corpus, err = Generate(b.cfg.Domains, b.cfg.Seed, b.cfg.NameLen); err != nil {
		return err
	}
	if b.files, err = b.corpus.Write(b.dir); err != nil {
		return err
	}
	if err := b.startUpstream(ctx); err != nil {
		return err
	}
	env := &ServerEnv{Dir: b.dir, Files: b.files, Upstream: b.upstreamAddr, Sinkhole: b.cfg.Sinkhole,
		Unbound: tools["unbound"], Dnsmasq: tools["dnsmasq"], DnsmasqCache: b.cfg.DnsmasqCache, Profile: b.cfg.Profile != ""}
	if env.CertFile, env.KeyFile, err = writeBenchCert(b.dir); err != nil {
		return err
	}
	for _, name := range b.cfg.Servers {
		if err := ctx.Err(); err != nil {
			return err
		}
		res, err := b.runServer(ctx, name, env)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		b.report.Servers = append(b.report.Servers, res)
	}
	b.describe(ctx, tools, args)
	md := b.report.Markdown()
	fmt.Fprint(b.stdout, md)
	if b.cfg.Out != "" {
		if err := UpdateDoc(b.cfg.Out, md); err != nil {
			return err
		}
		b.logf("wrote %s", b.cfg.Out)
	}
	b.logf("done in %s", time.Since(start).Round(time.Second))
	return nil
}

// findTools locates the programs the benchmark runs; Debian installs the
// servers in /usr/sbin, which may not be on a user's PATH.
func findTools() (map[string]string, error) {
	out := map[string]string{}
	var missing []string
	for _, t := range []string{"taskset", "dnsperf", "unbound", "dnsmasq"} {
		p, err := exec.LookPath(t)
		if err != nil {
			for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
				if st, serr := os.Stat(filepath.Join(dir, t)); serr == nil && !st.IsDir() {
					p, err = filepath.Join(dir, t), nil
					break
				}
			}
		}
		if err != nil {
			missing = append(missing, t)
			continue
		}
		out[t] = p
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("not installed: %s (make bench installs them with apt-get)", strings.Join(missing, ", "))
	}
	return out, nil
}
