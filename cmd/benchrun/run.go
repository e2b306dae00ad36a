package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// upstreamReadyTimeout bounds the wait for the upstream to answer.
const upstreamReadyTimeout = 10 * time.Second

func (b *bench) startUpstream(ctx context.Context) error {
	port, err := FreePort()
	if err != nil {
		return err
	}
	stats, err := FreePort()
	if err != nil {
		return err
	}
	b.upstreamAddr = fmt.Sprintf("127.0.0.1:%d", port)
	b.statsAddr = fmt.Sprintf("127.0.0.1:%d", stats)
	p, err := b.procs.Start("benchupstream", b.cfg.PerfCPU, filepath.Join(b.dir, "upstream.log"),
		b.cfg.Upstream, "-listen", b.upstreamAddr, "-stats", b.statsAddr)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(upstreamReadyTimeout)
	for {
		if rc, err := Ask(ctx, b.upstreamAddr, "ready.bench.test", 200*time.Millisecond); err == nil && rc == rcodeNoError {
			if _, err := b.upstreamQueries(ctx); err == nil {
				b.logf("upstream answering on %s (pid %d)", b.upstreamAddr, p.PID())
				b.upstreamProc = p
				return nil
			}
		}
		if ok, werr := p.Exited(); ok {
			return fmt.Errorf("benchupstream exited: %v: %s", werr, p.Tail())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("benchupstream not answering on %s after %s: %s", b.upstreamAddr, upstreamReadyTimeout, p.Tail())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(probeInterval):
		}
	}
}

// upstreamQueries is how many queries the upstream has answered.
func (b *bench) upstreamQueries(ctx context.Context) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+b.statsAddr+"/queries", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64))
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(body)), 10, 64)
}

// runServer starts one server, times its list load, runs every workload
// against it and stops it. An error is returned only for failures of the
// benchmark itself; a server that does not load or dies is recorded in its
// result.
func (b *bench) runServer(ctx context.Context, name string, env *ServerEnv) (*ServerResult, error) {
	b.waitQuiet(ctx)
	srv, err := NewServer(name, env)
	if err != nil {
		return nil, err
	}
	res := &ServerResult{Name: name, Argv: append([]string{"taskset", "-c", strconv.Itoa(b.cfg.ServerCPU)}, srv.Argv...), Work: map[string]*Measurement{}}
	b.logf("%s: starting on %s (CPU %d): %s", name, srv.Addr(), b.cfg.ServerCPU, strings.Join(srv.Argv, " "))
	p, err := b.procs.Start(name, b.cfg.ServerCPU, filepath.Join(b.dir, name+".log"), srv.Argv...)
	if err != nil {
		return nil, err
	}
	defer p.Stop()
	alive := func() error {
		if ok, werr := p.Exited(); ok {
			return fmt.Errorf("exited (%v): %s", werr, p.Tail())
		}
		return nil
	}
	loaded, err := WaitNXDomain(ctx, srv.Addr(), b.corpus.Probe, b.cfg.LoadTimeout, alive)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		res.LoadErr = fmt.Sprintf("no blocked answer within %s", b.cfg.LoadTimeout)
		if aerr := alive(); aerr != nil {
			res.LoadErr = "exited before answering"
		}
		b.logf("%s: %v", name, err)
		return res, nil
	}
	res.Load = loaded.Sub(p.Started)
	b.logf("%s: list loaded in %.2f s", name, res.Load.Seconds())

	for _, w := range workloads {
		if why := srv.skips(w); why != "" {
			res.Work[w.Name] = &Measurement{Err: why, Skip: why}
			continue
		}
		m, err := b.measure(ctx, srv, p, w)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err != nil {
			b.logf("%s/%s: %v", name, w.Name, err)
			m.Err = err.Error()
			if aerr := alive(); aerr != nil {
				m.Err = "server " + aerr.Error()
			}
		}
		res.Work[w.Name] = m
		if alive() != nil {
			break
		}
	}
	return res, nil
}

// measure runs one workload against the server: again, up to
// cfg.Attempts times, while other processes took more than cfg.MaxNoise of
// a core, keeping the quietest attempt.
func (b *bench) measure(ctx context.Context, srv *Server, p *Proc, w Workload) (*Measurement, error) {
	var best *Measurement
	for attempt := 1; ; attempt++ {
		t0 := time.Now()
		m, err := b.runWorkload(ctx, srv, p, w, attempt == 1)
		if attempt > 1 {
			b.extra += time.Since(t0) // reruns count against -patience
		}
		if err != nil {
			if best != nil && ctx.Err() == nil {
				b.logf("%s/%s: attempt %d: %v; keeping attempt with %.0f %% noise", srv.Name, w.Name, attempt, err, best.OthersPct)
				return best, nil
			}
			return m, err
		}
		b.logf("%s/%s: %s qps, %.0f%% CPU, %.2f µs/query, p99 %s, p99 at %d qps %s, lost %d/%d, noise %.0f%%, generator %.0f%%",
			srv.Name, w.Name, thousands(m.Max.QPS), m.CPUPct(), m.CPUPerQuery(), us(m.Tail.Percentile(99)),
			b.cfg.Rate, us(m.Fixed.Percentile(99)), m.Max.Lost, m.Fixed.Lost, m.OthersPct, m.GenPct())
		if best == nil || m.OthersPct < best.OthersPct {
			best = m
		}
		if best.OthersPct <= b.cfg.MaxNoise || attempt >= b.cfg.Attempts {
			return best, nil
		}
		if b.extra >= b.cfg.Patience {
			b.logf("%s/%s: other processes took %.0f %% of a core, but -patience %s is used up", srv.Name, w.Name, m.OthersPct, b.cfg.Patience)
			return best, nil
		}
		b.logf("%s/%s: other processes took %.0f %% of a core (over -max-noise %.0f); again (attempt %d of %d)",
			srv.Name, w.Name, m.OthersPct, b.cfg.MaxNoise, attempt+1, b.cfg.Attempts)
		b.waitQuiet(ctx)
		if err := ctx.Err(); err != nil {
			return best, err
		}
	}
}

// runWorkload warms the server with one workload (when warm is set), then
// runs dnsperf flat out (measuring the server's CPU and the upstream's
// queries meanwhile), flat out again with per-query output for the latency
// percentiles, and at the fixed rate. The CPU other processes used over
// the three runs is the measurement's noise.
func (b *bench) runWorkload(ctx context.Context, srv *Server, p *Proc, w Workload, warm bool) (*Measurement, error) {
	m := &Measurement{}
	file := b.files.Queries[w.queries()]
	port, modeArgs := srv.perfTarget(w)
	base := []string{"taskset", "-c", strconv.Itoa(b.cfg.PerfCPU), b.perfTool(w)}
	if w.Mode == "doh" {
		base = append(base, "doh-client")
	}
	base = append(base, "-s", "127.0.0.1", "-p", strconv.Itoa(port), "-d", file)
	if w.Mode != "" {
		base = append(append(base, "-m", w.Mode), modeArgs...)
	}
	out := func(kind string) string {
		return filepath.Join(b.dir, fmt.Sprintf("dnsperf-%s-%s-%s.txt", srv.Name, w.Name, kind))
	}
	// Timeouts: the run itself, dnsperf's 5 s wait for stragglers, margin.
	runTimeout := b.cfg.Duration + 30*time.Second

	// Warm: every name once, the cached names twice, few in flight
	// (dnsmasq drops queries beyond its 150 concurrent forwards), so each
	// allowed name is in the cache before the runs.
	passes := "1"
	if w.NXPct == 0 {
		passes = "2"
	}
	warmRun := append(base[:len(base):len(base)], "-n", passes, "-c", "1", "-q", "20")
	b.notePerf("warm-up: $PASSES is 2 for the cached workload (every name asked twice), 1 for the others", warmRun)
	if warm {
		if _, err := RunBounded(ctx, 5*time.Minute, out("warm"), warmRun...); err != nil {
			return m, fmt.Errorf("warm-up: %w", err)
		}
	}

	// The max run has no -v: writing a line per query costs dnsperf CPU,
	// and dnsperf is the bottleneck. Latency percentiles at full load come
	// from a second, verbose run.
	maxRun := append(base[:len(base):len(base)], "-l", secs(b.cfg.Duration), "-c", strconv.Itoa(b.cfg.Clients),
		"-q", strconv.Itoa(b.cfg.Outstanding))
	b.notePerf("max throughput: QPS, mean latency, lost, server CPU", maxRun)
	up0, err := b.upstreamQueries(ctx)
	if err != nil {
		return m, fmt.Errorf("upstream stats: %w", err)
	}
	before, err := b.cpuSample(p)
	if err != nil {
		return m, err
	}
	prof := b.startProfile(ctx, srv, w)
	perfCPU, err := RunBounded(ctx, runTimeout, out("max"), maxRun...)
	if perr := prof(); perr != nil {
		b.logf("%s/%s: profile: %v", srv.Name, w.Name, perr)
	}
	if err != nil {
		return m, err
	}
	afterMax, err := b.cpuSample(p)
	if err != nil {
		return m, err
	}
	m.Wall = afterMax.at.Sub(before.at)
	m.CPU = afterMax.server - before.server
	m.GenCPU = perfCPU
	up1, err := b.upstreamQueries(ctx)
	if err != nil {
		return m, fmt.Errorf("upstream stats: %w", err)
	}
	m.Upstream = up1 - up0
	if m.Max, err = ParsePerfFile(out("max")); err != nil {
		return m, err
	}

	tail := append(maxRun[:len(maxRun):len(maxRun)], "-v")
	b.notePerf("max throughput, verbose: p99 latency", tail)
	tailCPU, err := RunBounded(ctx, runTimeout, out("tail"), tail...)
	if err != nil {
		return m, err
	}
	if m.Tail, err = ParsePerfFile(out("tail")); err != nil {
		return m, err
	}

	fixed := append(base[:len(base):len(base)], "-l", secs(b.cfg.Duration), "-Q", strconv.Itoa(b.cfg.Rate), "-v")
	b.notePerf("fixed rate, verbose: p50 and p99 latency", fixed)
	fixedCPU, err := RunBounded(ctx, runTimeout, out("fixed"), fixed...)
	if err != nil {
		return m, err
	}
	after, err := b.cpuSample(p)
	if err != nil {
		return m, err
	}
	span := after.at.Sub(before.at)
	others := (after.machine - before.machine) - (after.server - before.server) - (after.upstream - before.upstream) -
		perfCPU - tailCPU - fixedCPU
	m.OthersPct = max(0, 100*others.Seconds()/span.Seconds())
	if m.Fixed, err = ParsePerfFile(out("fixed")); err != nil {
		return m, err
	}
	if m.PeakRSS, err = PeakRSS(p.PID()); err != nil {
		return m, err
	}
	return m, nil
}

// cpuSample is the CPU used so far by the server, the upstream and the
// whole machine.
type cpuSample struct {
	at                        time.Time
	server, upstream, machine time.Duration
}

func (b *bench) cpuSample(p *Proc) (cpuSample, error) {
	s := cpuSample{at: time.Now()}
	var err1, err2, err3 error
	s.server, err1 = CPUTime(p.PID())
	s.upstream, err2 = CPUTime(b.upstreamProc.PID())
	s.machine, err3 = MachineCPU()
	return s, errors.Join(err1, err2, err3)
}

// quietThreshold is the machine CPU use, in cores, under which waitQuiet
// considers the machine idle.
const quietThreshold = 0.1

// waitQuiet waits, at most cfg.QuietWait and what is left of
// cfg.Patience, until the machine's CPU use over two seconds is under
// quietThreshold, so that other work skews the figures less. It returns
// the last use seen, in percent of one core.
func (b *bench) waitQuiet(ctx context.Context) float64 {
	start := time.Now()
	defer func() { b.extra += time.Since(start) }()
	deadline := start.Add(min(b.cfg.QuietWait, max(0, b.cfg.Patience-b.extra)))
	warned := false
	for {
		c0, err0 := MachineCPU()
		select {
		case <-ctx.Done():
			return 0
		case <-time.After(2 * time.Second):
		}
		c1, err1 := MachineCPU()
		if err := errors.Join(err0, err1); err != nil {
			b.logf("cannot read the machine's CPU use: %v", err)
			return 0
		}
		busy := (c1 - c0).Seconds() / 2
		if busy < quietThreshold {
			return 100 * busy
		}
		if time.Now().After(deadline) {
			b.logf("warning: other processes use %.0f %% of a core; going ahead (-quiet-wait %s, -patience %s)", 100*busy, b.cfg.QuietWait, b.cfg.Patience)
			return 100 * busy
		}
		if !warned {
			b.logf("waiting up to %s for the machine to go quiet (now %.0f %% of a core busy)", deadline.Sub(start).Round(time.Second), 100*busy)
			warned = true
		}
	}
}

func secs(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) }

// notePerf remembers the first dnsperf command of each kind for the
// report, with this run's work directory, port, workload and warm-up
// passes replaced by $WORK, $PORT, $WORKLOAD and $PASSES.
func (b *bench) notePerf(kind string, argv []string) {
	if b.perfSeen == nil {
		b.perfSeen = map[string]bool{}
	}
	if b.perfSeen[kind] {
		return
	}
	b.perfSeen[kind] = true
	shown := make([]string, len(argv))
	for i, a := range argv {
		shown[i] = strings.ReplaceAll(a, b.dir, "$WORK")
		switch {
		case i == 0:
		case argv[i-1] == "-p":
			shown[i] = "$PORT"
		case argv[i-1] == "-d":
			shown[i] = filepath.Join("$WORK", "queries-$WORKLOAD.txt")
		case argv[i-1] == "-n":
			shown[i] = "$PASSES"
		}
	}
	b.perfCommands = append(b.perfCommands, "# "+kind, strings.Join(shown, " "))
}
