package main

// The feed measurements: real "sinkhole serve" processes (and BIND's
// named) on loopback. A sinkhole primary exports a generated list as an
// RPZ zone (--rpz-export); sinkhole secondaries follow it (--rpz-feed).
// "Blocks" is always seen from outside: a DNS query to the secondary
// answered with EDE 16 (Censored), polled every 10 ms until a deadline.

import (
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/internal/admin"
	"github.com/sinkhole-dns/sinkhole/internal/scalenames"
)

// feedConfig is what the feed measurements need from the command line.
type feedConfig struct {
	names       int
	secondaries int
	changes     int
	primaries   []string // sinkhole, bind
	modes       []string // axfr, ixfr
	sinkhole    string   // bin/sinkhole
	named       string   // BIND's named ("" when not installed)
	timeout     time.Duration
	loadTimeout time.Duration
	reserveMB   float64 // memory left to the machine when starting secondaries
	work        string
}

// pollEvery is the interval between two queries to a secondary.
const pollEvery = 10 * time.Millisecond

// feedZone is the zone the primaries serve.
const feedZone = "rpz.bench"

// axfrResult is the first AXFR of the zone by one secondary.
type axfrResult struct {
	Names, Records           int
	PrimaryLoadMS            float64 // primary start until its export serves the zone
	PrimaryPeakMB            float64 // primary VmHWM over its life before the AXFR
	WallMS, CPUMS            float64 // secondary start until it blocks; its CPU by then
	PeakMB, SteadyMB         float64 // secondary VmHWM by then; VmRSS 3 s later
	PrimaryCPUMS             float64 // primary CPU over the AXFR
	PrimaryAXFRPeakMB        float64 // primary VmHWM over the AXFR (reset before it)
	TransferType             string
	Error                    string
	Uptime                   string
	PrimaryCmd, SecondaryCmd string
}

// changeResult is one one-name change at the primary.
type changeResult struct {
	Name string
	// LatMS is, per secondary, the time from the change until it blocks
	// the name; negative when it did not within the deadline.
	LatMS []float64
	// FromPrimaryMS is, per secondary, the time from the primary's change
	// in service until it blocks the name (the propagation: for
	// sinkhole the reload's new generation, the one its "lists reloaded"
	// log line reports, for BIND the UPDATE's answer); negative as LatMS.
	FromPrimaryMS []float64
	// ReloadMS and ExportMS (sinkhole primary): the change until the
	// primary's reload was in service, and until its export's new serial.
	ReloadMS, ExportMS float64
	// UpdateMS (BIND primary): the round trip of the DNS UPDATE.
	UpdateMS     float64
	PrimaryCPUMS float64
	Uptime       string
}

// secondaryResult is one secondary over an IXFR measurement.
type secondaryResult struct {
	InitialMS     float64 // its start until it blocked with the first AXFR; negative: not within the deadline
	InitialPeakMB float64 // VmHWM by the end of the first AXFRs
	ChangePeakMB  float64 // VmHWM over the changes (reset before them)
	SteadyMB      float64 // VmRSS after the changes
	ChangeCPUMS   float64 // CPU over all the changes
}

// ixfrResult is the propagation of one-name changes from one primary to
// the secondaries.
type ixfrResult struct {
	Primary        string // "sinkhole" or "BIND"
	NoZonemd       bool   // sinkhole with --rpz-export-zonemd=false
	Zonemd         string // sinkhole's --rpz-export-zonemd otherwise ("" for its default, simple,merkle3)
	Names, Records int
	Wanted         int    // secondaries asked for
	Limit          string // why fewer ran
	PrimaryLoadMS  float64
	PrimaryPeakMB  float64 // VmHWM before the changes
	PrimaryChgMB   float64 // VmHWM over the changes
	PrimarySteady  float64
	InitialAllMS   float64 // the first secondary's start until all blocked
	Wave           int     // secondaries started at once
	Secondaries    []secondaryResult
	Changes        []changeResult
	Error          string
	Uptime         string
	Commands       []string
}

// label names the primary in the report.
func (ix *ixfrResult) label() string {
	switch {
	case ix.NoZonemd:
		return "sinkhole (--rpz-export-zonemd=false)"
	case ix.Zonemd != "":
		return "sinkhole (--rpz-export-zonemd=" + ix.Zonemd + ")"
	}
	return ix.Primary
}

// stubUpstream answers every query NXDOMAIN at once, so that a name the
// secondaries do not block yet costs no upstream timeout.
type stubUpstream struct {
	addr string
	udp  *dns.Server
	tcp  *dns.Server
}

func startStubUpstream() (*stubUpstream, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeNameError)
		w.WriteMsg(m)
	})
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		pc.Close()
		return nil, err
	}
	s := &stubUpstream{addr: addr, udp: &dns.Server{PacketConn: pc, Handler: h}, tcp: &dns.Server{Listener: ln, Handler: h}}
	go s.udp.ActivateAndServe()
	go s.tcp.ActivateAndServe()
	return s, nil
}

func (s *stubUpstream) close() { s.udp.Shutdown(); s.tcp.Shutdown() }

// blocks reports whether the server at addr blocks name: its answer
// carries EDE 16 (Censored).
func blocks(addr, name string) bool {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeA)
	m.SetEdns0(1232, false)
	c := &dns.Client{Net: "udp", Timeout: 500 * time.Millisecond}
	r, _, err := c.Exchange(m, addr)
	if err != nil || r.Id != m.Id {
		return false
	}
	if opt := r.IsEdns0(); opt != nil {
		for _, o := range opt.Option {
			if e, ok := o.(*dns.EDNS0_EDE); ok && e.InfoCode == dns.ExtendedErrorCodeCensored {
				return true
			}
		}
	}
	return false
}

// waitBlocks polls addr until it blocks every name, the process exits or
// the deadline passes; it returns the time since start and whether it
// blocked.
func waitBlocks(addr string, names []string, start time.Time, deadline time.Time, d *daemon) (time.Duration, bool) {
	for {
		ok := true
		for _, n := range names {
			if !blocks(addr, n) {
				ok = false
				break
			}
		}
		if ok {
			return time.Since(start), true
		}
		if time.Now().After(deadline) || (d != nil && d.exited()) {
			return time.Since(start), false
		}
		time.Sleep(pollEvery)
	}
}

// adminStatus reads sinkhole's GET /v1/status.
func adminStatus(addr string) (*admin.Status, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + "/v1/status")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status: HTTP %d", resp.StatusCode)
	}
	var st admin.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	return &st, nil
}

// sinkholeProc is a running sinkhole serve.
type sinkholeProc struct {
	*daemon
	addr, admin string
	argv        []string
}

// startSinkhole runs bin/sinkhole serve on addr with its own lists and
// state directories under dir/name, and extra flags.
func startSinkhole(cfg feedConfig, name, addr, lists, upstream string, extra ...string) (*sinkholeProc, error) {
	adminAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	state := filepath.Join(cfg.work, name+"-state")
	if err := os.MkdirAll(state, 0o755); err != nil {
		return nil, err
	}
	argv := append([]string{cfg.sinkhole, "serve", "--listen", addr, "--admin", adminAddr, "--lists", lists,
		"--upstream", upstream, "--state-dir", state, "--audit-log", filepath.Join(cfg.work, name+"-audit.log")}, extra...)
	d, err := startDaemon(cfg.work, name, argv)
	if err != nil {
		return nil, err
	}
	return &sinkholeProc{daemon: d, addr: addr, admin: adminAddr, argv: argv}, nil
}

// command renders argv for the table, with the run's addresses and
// directories replaced by names.
func command(argv []string, subst map[string]string) string {
	var parts []string
	for _, a := range argv {
		for from, to := range subst {
			a = strings.ReplaceAll(a, from, to)
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

// withAdmin is subst with a secondary's admin address named.
func withAdmin(subst map[string]string, addr string) map[string]string {
	m := map[string]string{addr: "$ADMIN"}
	for k, v := range subst {
		m[k] = v
	}
	return m
}

// feedNames generates the feed list (native, for the sinkhole primary) and
// zone (RPZ, for BIND) once, and returns the names to check: the last
// listed name and a name under the middle one (a wildcard match).
type feedFiles struct {
	listDir  string // holds bench.txt
	zoneFile string // rpz.bench.zone, for BIND
	checks   []string
}

func makeFeedFiles(cfg feedConfig) (*feedFiles, error) {
	ff := &feedFiles{listDir: filepath.Join(cfg.work, "primary-lists")}
	if err := os.MkdirAll(ff.listDir, 0o755); err != nil {
		return nil, err
	}
	if _, err := writeList(filepath.Join(ff.listDir, "bench.txt"), "native", cfg.names, 7); err != nil {
		return nil, err
	}
	if slices.Contains(cfg.primaries, "bind") && slices.Contains(cfg.modes, "ixfr") {
		ff.zoneFile = filepath.Join(cfg.work, "named", feedZone+".zone")
		if err := os.MkdirAll(filepath.Dir(ff.zoneFile), 0o755); err != nil {
			return nil, err
		}
		if _, err := writeList(ff.zoneFile, "rpz", cfg.names, 7); err != nil {
			return nil, err
		}
	}
	g := scalenames.New(7)
	var mid, last string
	for i := range cfg.names {
		n := g.Name(i)
		switch i {
		case cfg.names / 2:
			mid = string(n)
		case cfg.names - 1:
			last = string(n)
		}
	}
	ff.checks = []string{last, "www." + mid}
	return ff, nil
}

// runFeeds runs the axfr and ixfr measurements.
func runFeeds(cfg feedConfig) (*axfrResult, []*ixfrResult) {
	up, err := startStubUpstream()
	if err != nil {
		fatalf("upstream: %v", err)
	}
	defer up.close()
	ff, err := makeFeedFiles(cfg)
	if err != nil {
		fatalf("feed files: %v", err)
	}
	logf("feeds: %d names (%d records), %s", cfg.names, 2*cfg.names, uptime())
	var ax *axfrResult
	var ix []*ixfrResult
	needSinkhole := slices.Contains(cfg.modes, "axfr") || (slices.Contains(cfg.modes, "ixfr") && slices.Contains(cfg.primaries, "sinkhole"))
	var peakHint float64
	if needSinkhole {
		ax, ix = runSinkholePrimary(cfg, ff, up.addr, "")
		if ax != nil && ax.Error == "" {
			peakHint = ax.PeakMB
		}
	}
	for _, kind := range []string{"merkle3", "false"} {
		if slices.Contains(cfg.modes, "ixfr") && slices.Contains(cfg.primaries, primaryKind(kind)) {
			_, nz := runSinkholePrimary(cfg, ff, up.addr, kind)
			ix = append(ix, nz...)
		}
	}
	if slices.Contains(cfg.modes, "ixfr") && slices.Contains(cfg.primaries, "bind") {
		r := &ixfrResult{Primary: "BIND", Names: cfg.names, Records: 2 * cfg.names, Wanted: cfg.secondaries}
		if cfg.named == "" {
			r.Error = "named not installed (apt-get install bind9)"
		} else {
			runBINDPrimary(cfg, ff, up.addr, r, peakHint)
		}
		ix = append(ix, r)
	}
	return ax, ix
}

// primaryKind is the -primaries name of a sinkhole primary with this
// --rpz-export-zonemd ("" for the default).
func primaryKind(zonemd string) string {
	switch zonemd {
	case "":
		return "sinkhole"
	case "false":
		return "sinkhole-nozonemd"
	}
	return "sinkhole-" + zonemd
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "benchscale: "+format+"\n", args...)
}

// runSinkholePrimary starts a sinkhole primary exporting the list, then
// measures one secondary's first AXFR and the propagation of changes to
// cfg.secondaries secondaries.
// zonemd is the primary's --rpz-export-zonemd: "" for its default
// (SIMPLE and MERKLE3), "merkle3" or "false" (no ZONEMD); with either of
// those only the ixfr measurement runs.
func runSinkholePrimary(cfg feedConfig, ff *feedFiles, upstream string, zonemd string) (*axfrResult, []*ixfrResult) {
	noZonemd := zonemd == "false"
	doAXFR := slices.Contains(cfg.modes, "axfr") && zonemd == ""
	doIXFR := slices.Contains(cfg.modes, "ixfr") && slices.Contains(cfg.primaries, primaryKind(zonemd))
	var ax *axfrResult
	if doAXFR {
		ax = &axfrResult{Names: cfg.names, Records: 2 * cfg.names}
	}
	var ix *ixfrResult
	var ixs []*ixfrResult
	if doIXFR {
		ix = &ixfrResult{Primary: "sinkhole", NoZonemd: noZonemd, Names: cfg.names, Records: 2 * cfg.names, Wanted: cfg.secondaries}
		if !noZonemd {
			ix.Zonemd = zonemd
		}
		ixs = append(ixs, ix)
	}
	fail := func(err error) (*axfrResult, []*ixfrResult) {
		if ax != nil && ax.Error == "" && ax.WallMS == 0 {
			ax.Error = err.Error()
		}
		if ix != nil && ix.Error == "" {
			ix.Error = err.Error()
		}
		return ax, ixs
	}
	// Addresses of every secondary, known before the primary starts so
	// that it notifies them all.
	n := 0
	if doIXFR {
		n = cfg.secondaries
	}
	addrs, err := freeAddrs(n + 2) // the secondaries, the AXFR's, the primary
	if err != nil {
		return fail(err)
	}
	secAddrs, primaryAddr := addrs[:n+1], addrs[n+1]
	extra := []string{"--rpz-export", feedZone, "--reload-debounce", "10ms"}
	if zonemd != "" {
		extra = append(extra, "--rpz-export-zonemd="+zonemd)
	}
	for _, a := range secAddrs {
		extra = append(extra, "--rpz-notify", a)
	}
	t0 := time.Now()
	p, err := startSinkhole(cfg, "primary", primaryAddr, ff.listDir, upstream, extra...)
	if err != nil {
		return fail(err)
	}
	defer p.stop()
	subst := map[string]string{cfg.sinkhole: "bin/sinkhole", cfg.work: "$WORK", primaryAddr: "$PRIMARY", upstream: "$UPSTREAM", p.admin: "$ADMIN"}
	for i, a := range secAddrs {
		subst[a] = fmt.Sprintf("$SECONDARY%d", i)
	}
	// Ready: the primary blocks the names and its export has a serial.
	deadline := t0.Add(cfg.loadTimeout)
	if _, ok := waitBlocks(p.addr, ff.checks, t0, deadline, p.daemon); !ok {
		return fail(fmt.Errorf("the sinkhole primary did not block the list within %s: %s", cfg.loadTimeout, p.tail()))
	}
	exportSerial := uint32(0)
	for {
		st, err := adminStatus(p.admin)
		if err == nil && st.Export != nil && st.Export.Serial != 0 && st.Export.Records > 0 {
			exportSerial = st.Export.Serial
			break
		}
		if time.Now().After(deadline) || p.exited() {
			return fail(fmt.Errorf("the sinkhole primary's export had no zone within %s: %v %s", cfg.loadTimeout, err, p.tail()))
		}
		time.Sleep(50 * time.Millisecond)
	}
	loadMS := ms64(time.Since(t0))
	logf("feeds: sinkhole primary exports serial %d after %s, %.0f MB peak", exportSerial, time.Since(t0).Round(time.Millisecond), procMB(p.pid(), "VmHWM"))
	if ix != nil {
		ix.PrimaryLoadMS, ix.PrimaryPeakMB = loadMS, procMB(p.pid(), "VmHWM")
	}
	feed := "bench=" + feedZone + "@" + primaryAddr
	if ax != nil {
		ax.PrimaryLoadMS, ax.PrimaryPeakMB = loadMS, procMB(p.pid(), "VmHWM")
		ax.Uptime = uptime()
		measureAXFR(cfg, ax, p, secAddrs[len(secAddrs)-1], feed, upstream, ff, subst)
		logf("feeds: AXFR: %+v", *ax)
	}
	if ix != nil {
		ix.Commands = append(ix.Commands, "# sinkhole primary: the list in $WORK/primary-lists/bench.txt, exported as "+feedZone, command(p.argv, subst))
		ops := primaryOps{
			d: p.daemon,
			change: func(name string) (time.Time, error) {
				start := time.Now()
				return start, appendLine(filepath.Join(ff.listDir, "bench.txt"), name)
			},
			after: func(c *changeResult, start time.Time) {
				if st, err := adminStatus(p.admin); err == nil {
					c.ReloadMS = ms64(st.Reloaded.Sub(start))
					if st.Export != nil {
						c.ExportMS = ms64(st.Export.Changed.Sub(start))
					}
				}
			},
		}
		peakHint := 0.0
		if ax != nil && ax.Error == "" {
			peakHint = ax.PeakMB
		}
		measureIXFR(cfg, ix, ops, secAddrs[:n], feed, upstream, ff.checks, subst, peakHint)
		ix.PrimarySteady = procMB(p.pid(), "VmRSS")
	}
	return ax, ixs
}

func ms64(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// appendLine appends one line to a file.
func appendLine(path, line string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(line + "\n"); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// secondaryArgs are the flags of a secondary of feed (NAME=ZONE@PRIMARY):
// it serves at once (--start-strategy fast) and blocks once the zone is in.
func secondaryArgs(feed string) []string {
	return []string{"--rpz-feed", feed, "--start-strategy", "fast"}
}

// emptyLists is a lists directory with no list, for the secondaries.
func emptyLists(cfg feedConfig) (string, error) {
	d := filepath.Join(cfg.work, "empty-lists")
	return d, os.MkdirAll(d, 0o755)
}

// measureAXFR starts one secondary of the primary and measures its first
// AXFR: the time until it blocks, its CPU and peak RSS by then.
func measureAXFR(cfg feedConfig, ax *axfrResult, p *sinkholeProc, addr, feed, upstream string, ff *feedFiles, subst map[string]string) {
	lists, err := emptyLists(cfg)
	if err != nil {
		ax.Error = err.Error()
		return
	}
	pc0 := procCPUMS(p.pid())
	resetPeakOf(p.pid())
	start := time.Now()
	s, err := startSinkhole(cfg, "axfr-secondary", addr, lists, upstream, secondaryArgs(feed)...)
	if err != nil {
		ax.Error = err.Error()
		return
	}
	defer s.stop()
	ax.PrimaryCmd, ax.SecondaryCmd = command(p.argv, subst), command(s.argv, withAdmin(subst, s.admin))
	took, ok := waitBlocks(s.addr, ff.checks, start, start.Add(cfg.loadTimeout), s.daemon)
	ax.WallMS, ax.CPUMS, ax.PeakMB = ms64(took), procCPUMS(s.pid()), procMB(s.pid(), "VmHWM")
	ax.PrimaryCPUMS, ax.PrimaryAXFRPeakMB = procCPUMS(p.pid())-pc0, procMB(p.pid(), "VmHWM")
	if !ok {
		if s.exited() {
			ax.Error = "the secondary exited: " + s.tail()
		} else {
			ax.Error = fmt.Sprintf("not within %s", cfg.loadTimeout)
		}
		return
	}
	time.Sleep(3 * time.Second)
	ax.SteadyMB = procMB(s.pid(), "VmRSS")
	if st, err := adminStatus(s.admin); err == nil {
		for _, f := range st.Feeds {
			if f.Kind == "rpz" {
				ax.TransferType = f.LastResult
			}
		}
	}
}

// primaryOps is how measureIXFR drives a primary.
type primaryOps struct {
	d *daemon
	// change makes the one-name change at the primary and returns when it
	// began (the start of the latencies).
	change func(name string) (time.Time, error)
	// after fills the primary's own figures of a change, once the
	// secondaries followed.
	after func(c *changeResult, start time.Time)
}

// measureIXFR starts the secondaries, waits until each blocks with its
// first AXFR, then makes cfg.changes one-name changes at the primary and
// measures, per secondary, the time until it blocks the new name.
func measureIXFR(cfg feedConfig, ix *ixfrResult, ops primaryOps, addrs []string, feed, upstream string, checks []string, subst map[string]string, peakHint float64) {
	ix.Uptime = uptime()
	lists, err := emptyLists(cfg)
	if err != nil {
		ix.Error = err.Error()
		return
	}
	secs := make([]*sinkholeProc, 0, len(addrs))
	defer func() {
		var wg sync.WaitGroup
		for _, s := range secs {
			wg.Add(1)
			go func() { defer wg.Done(); s.stop() }()
		}
		wg.Wait()
	}()
	results := make([]secondaryResult, 0, len(addrs))
	prefix := strings.ToLower(ix.Primary)
	switch {
	case ix.NoZonemd:
		prefix += "-nozonemd"
	case ix.Zonemd != "":
		prefix += "-" + ix.Zonemd
	}
	start1 := func(i int) (*sinkholeProc, time.Time, error) {
		t := time.Now()
		s, err := startSinkhole(cfg, fmt.Sprintf("%s-secondary%d", prefix, i), addrs[i], lists, upstream, secondaryArgs(feed)...)
		if err != nil {
			return nil, t, err
		}
		secs = append(secs, s)
		results = append(results, secondaryResult{})
		return s, t, nil
	}
	waitInitial := func(i int, s *sinkholeProc, t time.Time) {
		took, ok := waitBlocks(s.addr, checks, t, t.Add(cfg.loadTimeout), s.daemon)
		results[i].InitialMS = ms64(took)
		if !ok {
			results[i].InitialMS = -1
		}
	}
	allStart := time.Now()
	if peakHint == 0 && len(addrs) > 0 {
		// No AXFR measured: the first secondary alone tells what each
		// costs before the rest start.
		s, t, err := start1(0)
		if err != nil {
			ix.Error = err.Error()
			return
		}
		waitInitial(0, s, t)
		peakHint = procMB(s.pid(), "VmHWM")
	}
	n := len(addrs)
	if peakHint > 0 {
		avail := memAvailableMB()
		fit := len(secs) + int(math.Floor((avail-cfg.reserveMB)/(peakHint*1.3)))
		if fit < n {
			if fit < 1 {
				fit = 1
			}
			ix.Limit = fmt.Sprintf("%d of %d secondaries ran: each peaked at about %.0f MB on its first AXFR, so %d would need about %.1f GB (1.3x for the IXFR) and %.1f GB was available (%.1f GB kept free)",
				fit, n, peakHint, n, float64(n)*peakHint*1.3/1000, avail/1000, cfg.reserveMB/1000)
			n = fit
		}
	}
	// The rest start in waves of one per CPU, each wave once the one
	// before blocks: concurrent first transfers would only share the
	// cores (and add up their peaks).
	ix.Wave = runtime.NumCPU()
	for w := len(secs); w < n; w += ix.Wave {
		end := min(w+ix.Wave, n)
		var starts []time.Time
		for i := w; i < end; i++ {
			_, t, err := start1(i)
			if err != nil {
				ix.Error = err.Error()
				return
			}
			starts = append(starts, t)
		}
		var wg sync.WaitGroup
		for i := w; i < end; i++ {
			wg.Add(1)
			go func() { defer wg.Done(); waitInitial(i, secs[i], starts[i-w]) }()
		}
		wg.Wait()
		if !slices.ContainsFunc(results[w:end], func(r secondaryResult) bool { return r.InitialMS >= 0 }) {
			ix.Error = fmt.Sprintf("secondaries %d-%d did not block with their first AXFR within %s: %s", w, end-1, cfg.loadTimeout, secs[w].tail())
			ix.Secondaries = results
			return
		}
	}
	ix.InitialAllMS = ms64(time.Since(allStart))
	ix.Commands = append(ix.Commands, fmt.Sprintf("# %d sinkhole secondaries like this one, each with an empty lists directory and its own state directory", n), command(secs[0].argv, withAdmin(subst, secs[0].admin)))
	loaded := 0
	for i, s := range secs {
		results[i].InitialPeakMB = procMB(s.pid(), "VmHWM")
		if results[i].InitialMS >= 0 {
			loaded++
		}
	}
	logf("feeds: %s primary: %d secondaries started, %d block after %s, %s", ix.Primary, n, loaded, time.Since(allStart).Round(time.Millisecond), uptime())
	if loaded == 0 {
		ix.Secondaries = results
		ix.Error = fmt.Sprintf("no secondary blocked with its first AXFR within %s: %s", cfg.loadTimeout, secs[0].tail())
		return
	}
	// The changes, each measured from the moment it is made.
	// Let the first transfers' background work end (each secondary builds
	// its MERKLE3 state after its first version is in service): the
	// changes measure a steady secondary.
	idle := waitIdle(secs, 2*time.Second, 3*time.Minute)
	logf("feeds: %s primary: secondaries idle after %s (%s)", ix.Primary, idle.Round(time.Millisecond), uptime())
	cpu0 := make([]float64, n)
	for i, s := range secs {
		resetPeakOf(s.pid())
		cpu0[i] = procCPUMS(s.pid())
	}
	resetPeakOf(ops.d.pid())
	for k := range cfg.changes {
		name := fmt.Sprintf("ixfr-%d-%d.bench-change.example", k, time.Now().UnixNano()%1e6)
		pcpu := procCPUMS(ops.d.pid())
		c := changeResult{Name: name, LatMS: make([]float64, n), Uptime: uptime()}
		start, err := ops.change(name)
		if err != nil {
			ix.Error = fmt.Sprintf("change at the primary: %v", err)
			break
		}
		var wg sync.WaitGroup
		for i, s := range secs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				took, ok := waitBlocks(s.addr, []string{name}, start, start.Add(cfg.timeout), s.daemon)
				c.LatMS[i] = ms64(took)
				if !ok {
					c.LatMS[i] = -1
				}
			}()
		}
		wg.Wait()
		c.PrimaryCPUMS = procCPUMS(ops.d.pid()) - pcpu
		ops.after(&c, start)
		base := c.ReloadMS
		if ix.Primary != "sinkhole" {
			base = c.UpdateMS
		}
		c.FromPrimaryMS = make([]float64, n)
		for i, v := range c.LatMS {
			c.FromPrimaryMS[i] = v - base
			if v < 0 {
				c.FromPrimaryMS[i] = -1
			}
		}
		ix.Changes = append(ix.Changes, c)
		logf("feeds: %s primary: change %d: %v ms from the change, %v ms from the primary's (reload %.0f ms, export %.0f ms, update %.0f ms)", ix.Primary, k, c.LatMS, c.FromPrimaryMS, c.ReloadMS, c.ExportMS, c.UpdateMS)
		if !slices.ContainsFunc(c.LatMS, func(v float64) bool { return v >= 0 }) {
			break // no secondary followed: the next change would not either
		}
		time.Sleep(2 * time.Second)
	}
	for i, s := range secs {
		results[i].ChangePeakMB = procMB(s.pid(), "VmHWM")
		results[i].ChangeCPUMS = procCPUMS(s.pid()) - cpu0[i]
		results[i].SteadyMB = procMB(s.pid(), "VmRSS")
	}
	ix.PrimaryChgMB = procMB(ops.d.pid(), "VmHWM")
	ix.Secondaries = results
}

// namedConf is BIND's configuration: the zone as a primary on addr,
// dynamic (DNS UPDATE from loopback, kept in its journal, so that it
// serves IXFR), NOTIFY to every secondary at once.
func namedConf(dir, addr string, notify []string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	var also []string
	for _, a := range notify {
		h, p, err := net.SplitHostPort(a)
		if err != nil {
			return "", err
		}
		also = append(also, fmt.Sprintf("%s port %s;", h, p))
	}
	return fmt.Sprintf(`options {
	directory "%[1]s";
	pid-file "%[1]s/named.pid";
	session-keyfile "%[1]s/session.key";
	listen-on port %[3]s { %[2]s; };
	listen-on-v6 { none; };
	recursion no;
	dnssec-validation no;
	notify explicit;
	notify-delay 0;
	also-notify { %[4]s };
	allow-transfer { 127.0.0.0/8; };
	allow-query { any; };
	transfers-out 20;
};
zone "%[5]s" { type primary; file "%[1]s/%[5]s.zone"; allow-update { 127.0.0.0/8; }; };
controls { };
`, dir, host, port, strings.Join(also, " "), feedZone), nil
}

// soaSerial asks addr for the zone's SOA.
func soaSerial(addr string) (uint32, bool) {
	m := new(dns.Msg)
	m.SetQuestion(feedZone+".", dns.TypeSOA)
	c := &dns.Client{Net: "udp", Timeout: time.Second}
	r, _, err := c.Exchange(m, addr)
	if err != nil || r.Rcode != dns.RcodeSuccess {
		return 0, false
	}
	for _, rr := range r.Answer {
		if soa, ok := rr.(*dns.SOA); ok {
			return soa.Serial, true
		}
	}
	return 0, false
}

// runBINDPrimary starts named serving the generated RPZ zone and measures
// the propagation of one-name changes (DNS UPDATEs) to the secondaries.
func runBINDPrimary(cfg feedConfig, ff *feedFiles, upstream string, ix *ixfrResult, peakHint float64) {
	dir := filepath.Dir(ff.zoneFile)
	addrs, err := freeAddrs(cfg.secondaries + 1) // named's, then the secondaries'
	if err != nil {
		ix.Error = err.Error()
		return
	}
	addr, secAddrs := addrs[0], addrs[1:]
	conf, err := namedConf(dir, addr, secAddrs)
	if err != nil {
		ix.Error = err.Error()
		return
	}
	confPath := filepath.Join(dir, "named.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		ix.Error = err.Error()
		return
	}
	t0 := time.Now()
	d, err := startDaemon(cfg.work, "named", []string{cfg.named, "-g", "-c", confPath})
	if err != nil {
		ix.Error = err.Error()
		return
	}
	defer d.stop()
	for {
		if _, ok := soaSerial(addr); ok {
			break
		}
		if time.Since(t0) > cfg.loadTimeout || d.exited() {
			ix.Error = fmt.Sprintf("named did not serve the zone within %s: %s", cfg.loadTimeout, d.tail())
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	ix.PrimaryLoadMS, ix.PrimaryPeakMB = ms64(time.Since(t0)), procMB(d.pid(), "VmHWM")
	logf("feeds: named serves the zone after %s, %.0f MB peak", time.Since(t0).Round(time.Millisecond), ix.PrimaryPeakMB)
	subst := map[string]string{cfg.sinkhole: "bin/sinkhole", cfg.work: "$WORK", addr: "$PRIMARY", upstream: "$UPSTREAM", cfg.named: "named"}
	for i, a := range secAddrs {
		subst[a] = fmt.Sprintf("$SECONDARY%d", i)
	}
	ix.Commands = append(ix.Commands,
		"# BIND primary: the zone in $WORK/named/"+feedZone+".zone ("+strconv.Itoa(2*cfg.names)+" records), named.conf: notify explicit; notify-delay 0; also-notify { every secondary }; allow-transfer and allow-update { 127.0.0.0/8; }",
		command(d.cmd.Args, subst),
		"# each change: a DNS UPDATE over TCP adding NAME."+feedZone+" CNAME . and *.NAME."+feedZone+" CNAME . (BIND journals it and serves it by IXFR)")
	var updateMS float64
	ops := primaryOps{
		d: d,
		change: func(name string) (time.Time, error) {
			m := new(dns.Msg)
			m.SetUpdate(feedZone + ".")
			var rrs []dns.RR
			for _, owner := range []string{name, "*." + name} {
				rr, err := dns.NewRR(owner + "." + feedZone + ". 300 IN CNAME .")
				if err != nil {
					return time.Time{}, err
				}
				rrs = append(rrs, rr)
			}
			m.Insert(rrs)
			c := &dns.Client{Net: "tcp", Timeout: 30 * time.Second}
			start := time.Now()
			r, rtt, err := c.Exchange(m, addr)
			if err != nil {
				return start, fmt.Errorf("UPDATE: %w", err)
			}
			if r.Rcode != dns.RcodeSuccess {
				return start, fmt.Errorf("UPDATE: %s: %s", dns.RcodeToString[r.Rcode], d.tail())
			}
			updateMS = ms64(rtt)
			return start, nil
		},
		after: func(c *changeResult, _ time.Time) { c.UpdateMS = updateMS },
	}
	measureIXFR(cfg, ix, ops, secAddrs, "bench="+feedZone+"@"+addr, upstream, ff.checks, subst, peakHint)
	ix.PrimarySteady = procMB(d.pid(), "VmRSS")
}

// findNamed finds BIND's named ("" when not installed).
func findNamed() string {
	if p, err := exec.LookPath("named"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/named", "/usr/local/sbin/named"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// waitIdle waits atLeast, then until the secondaries together use
// under 5 % of a core over half a second, or atMost has passed; it returns
// how long it waited.
func waitIdle(secs []*sinkholeProc, atLeast, atMost time.Duration) time.Duration {
	start := time.Now()
	time.Sleep(atLeast)
	const step = 500 * time.Millisecond
	total := func() float64 {
		var t float64
		for _, s := range secs {
			t += procCPUMS(s.pid())
		}
		return t
	}
	prev := total()
	for time.Since(start) < atMost {
		time.Sleep(step)
		cur := total()
		if cur-prev < 0.05*float64(step.Milliseconds()) {
			break
		}
		prev = cur
	}
	return time.Since(start)
}
