package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// describe fills the report's machine, versions, setup and commands.
func (b *bench) describe(ctx context.Context, tools map[string]string, args []string) {
	r := &b.report
	r.Machine = []string{
		fmt.Sprintf("%d CPUs (`nproc`), %s", runtime.NumCPU(), cpuModel()),
		"memory " + memTotal() + ", Linux " + firstLine(readFile("/proc/sys/kernel/osrelease")),
		"load average before the run (1, 5, 15 min; other work on the machine skews the figures): " + b.loadBefore,
	}
	r.Versions = []string{
		firstLine(output(ctx, b.cfg.Sinkhole, "--version")) + " (`git describe --tags --always --dirty`: " + firstLine(output(ctx, "git", "describe", "--tags", "--always", "--dirty")) + ")",
		"Unbound " + strings.TrimPrefix(firstLine(output(ctx, tools["unbound"], "-V")), "Version "),
		"dnsmasq " + strings.TrimPrefix(strings.Fields(firstLine(output(ctx, tools["dnsmasq"], "-v")) + " ? ? ?")[2], "version "),
		"dnsperf " + strings.TrimPrefix(lineWith(output(ctx, tools["dnsperf"], "-h"), "Version"), "Version "),
		runtime.Version() + " (benchrun, benchupstream)",
	}
	c := b.corpus
	r.Setup = []string{
		fmt.Sprintf("List: %s generated domains (seed %d): %s under %d common TLDs, one in ten with a second label. "+
			"The same names are given to sinkhole as a list file (a name blocks itself and its subdomains), to Unbound as an RPZ zone "+
			"(`name CNAME .` and `*.name CNAME .`, NXDOMAIN) and to dnsmasq as `address=/name/` (NXDOMAIN for the name and its subdomains).",
			thousands(float64(len(c.Listed))), b.cfg.Seed, b.nameShape(), distinct(tlds)),
		fmt.Sprintf("Workloads, all type A without EDNS, over UDP but for *cached-tcp*, *cached-dot* and *cached-doh*: *cached* loops over %s allowed names, asked twice before the runs so every server has them cached; "+
			"*blocked* loops over %s blocked names, half of them listed names and half subdomains of listed names; "+
			"*mix* loops over %s queries, %d %% the cached allowed names and %d %% blocked names, shuffled; "+
			"*cached-tcp* asks the cached names over TCP (`dnsperf -m tcp`: each client keeps its connection open and pipelines its queries); "+
			"*cached-dot* asks them over TLS the same way (`dnsperf -m dot`), *cached-doh* over HTTPS (HTTP/2 POST, each client's connection kept open with `-q` streams in flight) "+
			"with `benchrun doh-client`, which takes dnsperf's options and prints its statistics (dnsperf 2.10's DoH client loses answers that share a TLS record, so it cannot load a server that multiplexes streams); "+
			"a self-signed certificate serves both.",
			thousands(float64(len(c.Allowed))), thousands(float64(len(c.Blocked))), thousands(float64(len(c.Mix))), 100-mixBlockedPct, mixBlockedPct),
		fmt.Sprintf("Each server runs alone, pinned to CPU %d (`taskset`); dnsperf and the upstream (cmd/benchupstream, which answers A and AAAA for every name) are pinned to CPU %d. "+
			"Every server forwards to that upstream on 127.0.0.1.", b.cfg.ServerCPU, b.cfg.PerfCPU),
		fmt.Sprintf("Per workload: a max-throughput run (`-c %d -q %d`, %s) gives QPS, latency, lost queries and the server's CPU; "+
			"a second max-throughput run with dnsperf's per-query output (`-v`, which costs dnsperf CPU, so its QPS is not reported) gives p99 latency; "+
			"a fixed-rate run at %s qps (%s, `-v`) gives p50 and p99 latency.",
			b.cfg.Clients, b.cfg.Outstanding, b.cfg.Duration, thousands(float64(b.cfg.Rate)), b.cfg.Duration),
		"Server CPU is utime + stime of the server's process (`/proc/PID/stat`) over the max run, in % of one core; CPU µs/query divides it by the queries completed. " +
			"Upstream queries are those that reached the upstream during the max run (not answered from cache or the list). " +
			"Peak RSS is `VmHWM` (`/proc/PID/status`) after the workload. " +
			fmt.Sprintf("List load is the time from starting the server to its first NXDOMAIN for the last listed name (asked every %s, up to %s).", probeInterval, b.cfg.LoadTimeout),
		"Ratio rows divide sinkhole's figure by the other server's: above 1 means more QPS, latency, CPU or memory than that server.",
		fmt.Sprintf("Before each server the run waits (up to %s) for the machine to be idle. The noise line under each table is the CPU that other processes "+
			"(neither the server, dnsperf nor the upstream) took during the workload's three runs, plus time stolen by the hypervisor; "+
			"a workload with more than %.0f %% is run again, up to %d times in all (waits and reruns within %s), and the quietest attempt is reported. "+
			"dnsperf on one core is the ceiling of the QPS column; near that ceiling, CPU µs/query is the figure that separates the servers. "+
			"The generator line under each table is dnsperf's own CPU (utime + stime) over the max run in %% of its core: at about 100 %% the QPS is the generator's ceiling, "+
			"and a server below 100 %% of its core in that run was not what limited it.",
			b.cfg.QuietWait, b.cfg.MaxNoise, b.cfg.Attempts, b.cfg.Patience),
	}
	r.Commands = append(r.Commands, "# make bench runs (the list and query files are generated into $WORK, a temporary directory)",
		shellJoin(append([]string{"bin/benchrun"}, args...)),
		"# upstream",
		fmt.Sprintf("taskset -c %d %s -listen %s -stats %s", b.cfg.PerfCPU, b.cfg.Upstream, b.upstreamAddr, b.statsAddr))
	for _, s := range r.Servers {
		r.Commands = append(r.Commands, "# "+s.Name, strings.ReplaceAll(shellJoin(s.Argv), b.dir, "$WORK"))
	}
	r.Commands = append(r.Commands, "# dnsperf, for each server ($PORT) and each workload ($WORKLOAD: cached, blocked, mix; cached-tcp and cached-dot ask the cached file with -m tcp and -m dot, cached-doh with benchrun doh-client on the DoH port)")
	r.Commands = append(r.Commands, b.perfCommands...)
	if conf := readFile(b.dir + "/unbound.conf"); conf != "" {
		r.Commands = append(r.Commands, "# $WORK/unbound.conf")
		for l := range strings.SplitSeq(strings.TrimSpace(strings.ReplaceAll(conf, b.dir, "$WORK")), "\n") {
			r.Commands = append(r.Commands, "#   "+strings.ReplaceAll(l, "\t", "    "))
		}
	}
}

func distinct(s []string) int {
	m := map[string]bool{}
	for _, x := range s {
		m[x] = true
	}
	return len(m)
}

// output runs a command for its version text (stdout and stderr), bounded.
func output(ctx context.Context, argv ...string) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	if len(out) == 0 && err != nil {
		return "unknown (" + err.Error() + ")"
	}
	return string(out)
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(l)
}

func lineWith(s, prefix string) string {
	for l := range strings.SplitSeq(s, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), prefix) {
			return strings.TrimSpace(l)
		}
	}
	return "unknown"
}

func readFile(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return string(b)
}

func cpuModel() string {
	sc := bufio.NewScanner(bytes.NewReader([]byte(readFile("/proc/cpuinfo"))))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func memTotal() string {
	for l := range strings.SplitSeq(readFile("/proc/meminfo"), "\n") {
		if rest, ok := strings.CutPrefix(l, "MemTotal:"); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				if kb, err := strconv.ParseInt(f[0], 10, 64); err == nil {
					return fmt.Sprintf("%.1f GB", float64(kb)*1024/1e9)
				}
			}
		}
	}
	return "unknown"
}

// loadAvg returns the 1, 5 and 15 minute load averages as text, and the
// first as a number.
func loadAvg() (string, float64) {
	f := strings.Fields(readFile("/proc/loadavg"))
	if len(f) < 3 {
		return "unknown", 0
	}
	l1, _ := strconv.ParseFloat(f[0], 64)
	return strings.Join(f[:3], ", "), l1
}

// shellJoin joins argv for a shell, quoting empty arguments and those with
// characters a shell would interpret.
func shellJoin(argv []string) string {
	out := make([]string, len(argv))
	for i, a := range argv {
		out[i] = a
		if a == "" || strings.ContainsFunc(a, func(r rune) bool { return !strings.ContainsRune(shellSafe, r) }) {
			out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return strings.Join(out, " ")
}

const shellSafe = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./:=,@%+-#"

// nameShape describes the listed names.
func (b *bench) nameShape() string {
	if b.cfg.NameLen > 0 {
		return fmt.Sprintf("names of about %d characters (`-name-len %d`)", b.cfg.NameLen, b.cfg.NameLen)
	}
	return "random labels of 3 to 18 characters"
}
