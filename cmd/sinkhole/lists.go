package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/sinkhole-dns/sinkhole/blocklist"
	"github.com/sinkhole-dns/sinkhole/internal/admin"
	"github.com/sinkhole-dns/sinkhole/internal/dirwatch"
)

// The safety of the lists in service: the shrink guard, the start
// strategy, the watch that follows the --lists path, and the store's
// options that make only whole, verified versions go into service.

// Start strategies (--start-strategy).
const (
	startFail     = "fail"
	startBlocking = "blocking"
	startFast     = "fast"
)

func listSafetyFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "max-shrink", Value: "50%", Usage: "hold a list file's new version that drops more than `PERCENT` of its rules (or all of them, or deletes the file) until \"sinkhole reload --accept\"; 100% turns the guard off"},
		&cli.StringFlag{Name: "start-strategy", Value: startFail, Usage: "when a list source has no version at start: fail (wait up to --start-timeout, then exit 1), blocking (wait), or fast (serve at once, not ready)"},
		&cli.DurationFlag{Name: "start-timeout", Value: 60 * time.Second, Usage: "how long --start-strategy fail waits for every list source"},
		maxListFlag(),
	}
}

// maxListFlag is --max-list-mb, shared by serve and check so that a file
// check accepts is one serve reads.
func maxListFlag() cli.Flag {
	return &cli.IntFlag{Name: "max-list-mb", Value: blocklist.DefaultMaxFileSize >> 20, Usage: "refuse a list file (or a list URL's download) over `MIB` mebibytes; a 10M-name RPZ zone is about 750"}
}

// maxListBytes reads --max-list-mb in bytes.
func maxListBytes(c *cli.Context) (int64, error) {
	mb := c.Int("max-list-mb")
	if mb < 1 || mb > maxListMB {
		return 0, usagef("--max-list-mb %d: want between 1 and %d", mb, maxListMB)
	}
	return int64(mb) << 20, nil
}

// listSafety is the validated configuration of the flags above.
type listSafety struct {
	maxShrink    float64 // 0 < x <= 1
	strategy     string
	startTimeout time.Duration
	maxFileSize  int64 // bytes
}

func listSafetyFrom(c *cli.Context, cfg *serveConfig) error {
	p, err := parsePercent(c.String("max-shrink"))
	if err != nil || p <= 0 || p > 100 {
		return usagef("--max-shrink %q: want a percentage above 0%% and up to 100%% (100%% turns the guard off)", c.String("max-shrink"))
	}
	cfg.safety.maxShrink = p / 100
	switch s := c.String("start-strategy"); s {
	case startFail, startBlocking, startFast:
		cfg.safety.strategy = s
	default:
		return usagef("--start-strategy %q: want fail, blocking or fast", s)
	}
	size, err := maxListBytes(c)
	if err != nil {
		return err
	}
	cfg.safety.maxFileSize = size
	cfg.safety.startTimeout = c.Duration("start-timeout")
	if cfg.safety.startTimeout < 100*time.Millisecond || cfg.safety.startTimeout > 24*time.Hour {
		return usagef("--start-timeout %s: want between 100ms and 24h", cfg.safety.startTimeout)
	}
	return nil
}

// maxListMB bounds --max-list-mb: 64 GiB.
const maxListMB = 64 << 10

// parsePercent reads "50%", "50" or "12.5%".
func parsePercent(s string) (float64, error) {
	return strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(s), "%"), 64)
}

// The settle time (how long a changed file must be unchanged before it is
// read) is the debounce, within these bounds: at least a few of the
// kernel's coarse timestamp ticks and some scheduling delay, at most a
// second.
const (
	minSettle = 50 * time.Millisecond
	maxSettle = time.Second
)

// storeOptions configures the list store: files are read once settled
// (and not while a writer holds them open), copies sinkhole writes into
// the state directory are checked against their recorded SHA-256, and the
// shrink guard holds versions that would drop rules.
func (in *instance) storeOptions(dirs []string) blocklist.Options {
	o := blocklist.Options{
		Dirs:        dirs,
		Logger:      in.log,
		Settle:      min(max(in.cfg.debounce, minSettle), maxSettle),
		Writing:     func(path string) bool { return in.watch.Load().Writing(path) },
		MaxShrink:   in.cfg.safety.maxShrink,
		MaxFileSize: in.cfg.safety.maxFileSize,
		Verify:      in.cfg.listVerifier(),
	}
	if sd := in.cfg.feeds.StateDir; sd != "" {
		// The last good version of each --lists file, so that a restart
		// holds what a reload would (README: Safety of the lists).
		o.LastGood = filepath.Join(sd, lastGoodDir)
	}
	if state := dirs[1:]; len(state) > 0 {
		o.Verified = state
		o.Checks = append(o.Checks, blocklist.ChecksumCheck(state...))
	}
	return o
}

// lastGoodDir, in --state-dir, keeps the last good version of each
// --lists file.
const lastGoodDir = "last-good"

// watchLists starts the watch of the --lists directory (by path: a
// directory or symlink replaced under it is followed).
func (in *instance) watchLists() error {
	w, err := dirwatch.Start(dirwatch.Options{
		Dirs:     []string{in.cfg.lists},
		Match:    in.cfg.watchedListFile(),
		Debounce: in.cfg.debounce,
		OnChange: func() { in.store.Reload(context.Background(), "fsnotify") },
		Logger:   in.log,
	})
	if err != nil {
		return err
	}
	in.watch.Store(w)
	return nil
}

// stopWatchingLists ends the watch (if it started), then waits for the
// copy of a last good version being written.
func (in *instance) stopWatchingLists() {
	if w := in.watch.Swap(nil); w != nil {
		w.Close()
	}
	if in.store != nil {
		in.store.WaitLastGood()
	}
}

// reloadLists is the reload of SIGHUP and the admin API: the --lists path
// is resolved again first (the watch follows a replaced directory), then
// every file is read; accept applies what the shrink guard would hold.
func (in *instance) reloadLists(ctx context.Context, trigger string, accept bool) (*blocklist.ReloadReport, error) {
	if w := in.watch.Load(); w != nil && w.Rearm() {
		in.log.Warn("the --lists path leads to another directory now; watching it", "lists", in.cfg.lists)
	}
	return in.store.ReloadWith(ctx, blocklist.ReloadOptions{Trigger: trigger, Accept: accept})
}

// watchPointer holds the lists watch; reloads read it from any goroutine.
type watchPointer = atomic.Pointer[dirwatch.Watcher]

// expectedSource is a list source whose file the store must have: an RPZ
// feed's zone or a list URL's copy in the state directory.
type expectedSource struct {
	kind, name, reason string
}

// expectedSources maps the store's file names of the feed zones and list
// URL copies to their sources.
func (in *instance) expectedSources() map[string]expectedSource {
	fc := &in.cfg.feeds
	out := map[string]expectedSource{}
	for _, f := range fc.Feeds {
		out[in.store.FileName(fc.StateDir, f.Name+".rpz")] = expectedSource{"rpz-feed", f.Name,
			fmt.Sprintf("no verified copy of zone %s yet: waiting for a transfer from %s", f.Zone, f.Primary)}
	}
	for _, u := range fc.URLs {
		out[in.store.FileName(fc.StateDir, u.File)] = expectedSource{"list-url", u.Name,
			"no verified copy yet: waiting for a fetch of " + u.URL}
	}
	return out
}

// Readiness reports what keeps the server from being ready: a source or
// file with no version in service, lists that add up to no rules, DNS not
// listening; and the files whose version on disk is withheld while their
// last good version serves.
func (in *instance) Readiness() *admin.Readiness {
	rd := &admin.Readiness{}
	snap := in.store.Current()
	expected := in.expectedSources()
	for _, f := range snap.Files {
		src, isSource := expected[f.Name]
		delete(expected, f.Name)
		if f.SHA256 != "" {
			switch {
			case f.Withheld != nil:
				rd.Withheld = append(rd.Withheld, admin.WithheldFile{File: f.Name, Withheld: *f.Withheld, ServingRules: f.Rules()})
			case f.Refused != nil:
				rd.Withheld = append(rd.Withheld, admin.WithheldFile{File: f.Name, ServingRules: f.Rules(),
					Withheld: blocklist.Withheld{State: "refused", Reason: f.Refused.Reason + ": " + f.Refused.Error, Rules: -1}})
			}
			continue
		}
		reason := "no version in service"
		switch {
		case len(f.Errors) > 0:
			reason = "does not load: " + f.Errors[0].Error()
		case f.Withheld != nil:
			reason = f.Withheld.State + ": " + f.Withheld.Reason
		}
		if isSource {
			rd.Missing = append(rd.Missing, admin.Missing{Kind: src.kind, Name: src.name, Reason: src.reason + " (" + f.Name + " " + reason + ")"})
			continue
		}
		rd.Missing = append(rd.Missing, admin.Missing{Kind: "file", Name: f.Name, Reason: reason})
	}
	for _, name := range slices.Sorted(maps.Keys(expected)) {
		src := expected[name]
		rd.Missing = append(rd.Missing, admin.Missing{Kind: src.kind, Name: src.name, Reason: src.reason})
	}
	if !in.store.Loaded() {
		rd.Missing = append(rd.Missing, admin.Missing{Kind: "lists", Name: in.cfg.lists, Reason: "not read yet"})
	} else if snap.RuleCount() == 0 {
		rd.Missing = append(rd.Missing, admin.Missing{Kind: "lists", Name: in.cfg.lists, Reason: "the lists add up to 0 rules"})
	}
	if in.dns == nil || len(in.dns.Addrs()) == 0 {
		rd.Missing = append(rd.Missing, admin.Missing{Kind: "dns", Reason: "DNS is not listening yet"})
	}
	rd.Ready = len(rd.Missing) == 0
	return rd
}

// startFeeds runs the RPZ feeds, the export and the list URL fetches
// (once: early when start waits for them).
func (in *instance) startFeeds() {
	if in.feedsOn {
		return
	}
	in.feedsOn = true
	in.feeds.Start()
	in.stop.push(func(context.Context) { in.feeds.Stop() })
}

// startPending returns the sources start may wait for (feeds and list URLs
// without a version, files still being written) and whether the lists add
// up to no rules. Broken and refused files are not waited for: they keep
// the server not ready.
func (in *instance) startPending() (pending []admin.Missing, noRules bool) {
	for _, m := range in.Readiness().Missing {
		switch {
		case m.Kind == "rpz-feed" || m.Kind == "list-url":
			pending = append(pending, m)
		case m.Kind == "file" && strings.HasPrefix(m.Reason, blocklist.StateSettling):
			pending = append(pending, m)
		case m.Kind == "lists":
			noRules = true
		}
	}
	return pending, noRules
}

// describeMissing joins what is missing for a log line or an error.
func describeMissing(ms []admin.Missing) string {
	parts := make([]string, len(ms))
	for i, m := range ms {
		parts[i] = m.Kind + " " + m.Name + ": " + m.Reason
	}
	return strings.Join(parts, "; ")
}

// awaitSources applies --start-strategy once the lists were first read:
// DNS is served only when every source has a version (fail, blocking),
// or at once with a warning (fast). fail gives up after --start-timeout,
// and at once when the lists add up to no rules with nothing to wait for.
func (in *instance) awaitSources() error {
	for _, w := range in.listWarnings() {
		in.log.Warn(w)
	}
	sf := in.cfg.safety
	pending, noRules := in.startPending()
	if len(pending) == 0 && !noRules {
		return nil
	}
	zeroErr := func() error {
		return fmt.Errorf("the lists add up to 0 rules (%s holds none and no other source is configured): not serving without enforcement (add list files, or give --start-strategy blocking or fast)", in.cfg.lists)
	}
	if sf.strategy == startFail && len(pending) == 0 {
		return zeroErr()
	}
	if sf.strategy == startFast {
		missing := slices.DeleteFunc(in.Readiness().Missing, func(m admin.Missing) bool { return m.Kind == "dns" })
		in.log.Warn("serving before every list source has a version (--start-strategy fast): not ready until they have",
			"missing", describeMissing(missing))
		return nil
	}
	in.startFeeds() // transfers and fetches run while start waits
	in.log.Warn("waiting for every list source to have a version before serving DNS", "strategy", sf.strategy,
		"missing", describeMissing(pending), "no_rules", noRules, "timeout", sf.startTimeout)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1) // "systemctl reload" while waiting: reread, do not die
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	deadline := time.Now().Add(sf.startTimeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return errors.New("stopped while waiting for the list sources")
		case <-hup:
			in.reloadLists(context.Background(), "SIGHUP", false)
		case <-tick.C:
		}
		pending, noRules = in.startPending()
		switch {
		case len(pending) == 0 && !noRules:
			in.log.Info("every list source has a version; serving", "rules", in.store.Current().RuleCount())
			return nil
		case sf.strategy != startFail:
		case len(pending) == 0:
			return zeroErr()
		case time.Now().After(deadline):
			return fmt.Errorf("no version of every list source after --start-timeout %s: %s", sf.startTimeout, describeMissing(pending))
		}
	}
}

// listWarnings are the status warnings about the lists in service: files
// that serve no rule (a cold start takes an emptied file as it is; the
// shrink guard only holds a change it sees).
func (in *instance) listWarnings() []string {
	var out []string
	for _, f := range in.store.Current().Files {
		if f.SHA256 != "" && f.Rules() == 0 {
			out = append(out, "list file "+f.Name+" has no rules: it enforces nothing")
		}
	}
	return out
}
