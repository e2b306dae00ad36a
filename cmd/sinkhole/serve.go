package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/sinkhole-dns/sinkhole/blocklist"
	"github.com/sinkhole-dns/sinkhole/geo"
	"github.com/sinkhole-dns/sinkhole/internal/admin"
	"github.com/sinkhole-dns/sinkhole/internal/dirwatch"
	"github.com/sinkhole-dns/sinkhole/resolver"
	"github.com/sinkhole-dns/sinkhole/resolver/cache"
	"github.com/sinkhole-dns/sinkhole/resolver/metrics"
	"github.com/sinkhole-dns/sinkhole/resolver/policy"
	"github.com/sinkhole-dns/sinkhole/resolver/querylog"
	"github.com/sinkhole-dns/sinkhole/resolver/upstream"
)

func serveFlags() []cli.Flag {
	return withEnv(append([]cli.Flag{
		&cli.PathFlag{Name: "config", Usage: "YAML file of options (keys are the long flag names)"},
		&cli.StringSliceFlag{Name: "listen", Value: cli.NewStringSlice("127.0.0.1:5353"), Usage: "serve DNS over UDP and TCP on `ADDR` (repeatable)"},
		&cli.StringSliceFlag{Name: "upstream", Usage: "forward to `ADDR`, host or host:port (repeatable, tried in order; default: nameservers in /etc/resolv.conf)"},
		&cli.DurationFlag{Name: "upstream-timeout", Value: upstream.DefaultTimeout, Usage: "per-try upstream timeout"},
		&cli.StringFlag{Name: "lists", Value: "./lists", Usage: "load every *.txt, *.list, *.rpz and *.zone file in `DIR`"},
		&cli.StringFlag{Name: "block-action", Value: "nxdomain", Usage: "answer to blocked names: nxdomain, nodata, refused or sinkhole"},
		&cli.StringFlag{Name: "sinkhole-ipv4", Value: "0.0.0.0", Usage: "A answer under the sinkhole action"},
		&cli.StringFlag{Name: "sinkhole-ipv6", Value: "::", Usage: "AAAA answer under the sinkhole action"},
		&cli.DurationFlag{Name: "block-ttl", Value: 300 * time.Second, Usage: "TTL of block answers and their SOA"},
		&cli.IntFlag{Name: "cache-size", Value: cache.DefaultSize, Usage: "answers kept in the cache (0 disables the cache)"},
		&cli.DurationFlag{Name: "cache-min-ttl", Value: 0, Usage: "raise shorter record TTLs to this"},
		&cli.DurationFlag{Name: "cache-max-ttl", Value: cache.DefaultMaxTTL, Usage: "cap longer record TTLs to this"},
		&cli.DurationFlag{Name: "serve-stale", Value: 0, Usage: "answer from entries expired up to `DURATION` ago (TTL 30, EDE 3) when every upstream fails (RFC 8767; 0 disables)"},
		&cli.BoolFlag{Name: "prefetch", Value: true, Usage: "refresh popular cache entries shortly before they expire"},
		&cli.DurationFlag{Name: "reload-debounce", Value: 250 * time.Millisecond, Usage: "quiet time after a list file change before reloading"},
		&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error"},
		&cli.StringFlag{Name: "log-format", Value: "text", Usage: "text or json"},
		&cli.StringFlag{Name: "admin", Value: defaultAdmin, Usage: "admin API (HTTP) on `ADDR`"},
		&cli.BoolFlag{Name: "pprof", Usage: "serve Go's profiler on the admin API under /debug/pprof/"},
		&cli.PathFlag{Name: "admin-token-file", Usage: "require \"Authorization: Bearer <token>\" with the token in `FILE` (needed when --admin is not loopback)"},
		&cli.StringFlag{Name: "audit-log", Value: defaultAuditLog, Usage: "write a JSON line per blocked or monitored query to `FILE` (\"-\": standard output)"},
		&cli.IntFlag{Name: "audit-log-max-size", Value: querylog.DefaultMaxSizeMB, Usage: "rotate the audit log at `MB` megabytes"},
		&cli.IntFlag{Name: "audit-log-max-backups", Value: querylog.DefaultMaxBackups, Usage: "keep `N` rotated audit logs (0: keep all)"},
		&cli.StringFlag{Name: "query-log", Usage: "write a JSON line per query to `FILE` (\"-\": standard output; default off)"},
		&cli.IntFlag{Name: "query-log-max-size", Value: querylog.DefaultMaxSizeMB, Usage: "rotate the query log at `MB` megabytes"},
		&cli.IntFlag{Name: "query-log-max-backups", Value: querylog.DefaultMaxBackups, Usage: "keep `N` rotated query logs (0: keep all)"},
		&cli.IntFlag{Name: "log-buffer", Value: querylog.DefaultBuffer, Usage: "each of the audit and query logs queues up to `N` lines for its writer; past it lines are dropped (and counted), never queries"},
		&cli.BoolFlag{Name: "dry-run", Usage: "enforce no rule: every rule acts as action log (answer normally, audit the would-be block)"},
	}, append(geoFlags(), feedFlags()...)...))
}

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:      "serve",
		Usage:     "serve DNS, forwarding to upstreams and enforcing the lists",
		ArgsUsage: " ",
		Flags:     serveFlags(),
		Before: func(c *cli.Context) error {
			if p := c.Path("config"); p != "" {
				return applyConfigFile(c, p)
			}
			return nil
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef("serve takes no arguments, got %q", c.Args().First())
			}
			cfg, err := serveConfigFrom(c)
			if err != nil {
				return err
			}
			cfg.logOut = c.App.ErrWriter
			cfg.stdout = c.App.Writer
			return serve(c.Context, cfg)
		},
	}
}

// serveConfig is the validated configuration of "sinkhole serve".
type serveConfig struct {
	listen          []string
	upstreams       []string
	upstreamTimeout time.Duration
	lists           string
	blockAction     blocklist.Action
	sinkV4, sinkV6  netip.Addr
	blockTTL        time.Duration
	debounce        time.Duration
	logLevel        slog.Level
	logJSON         bool
	logOut          io.Writer
	admin           string
	adminToken      string
	pprof           bool
	cacheSize       int
	cacheMinTTL     time.Duration
	cacheMaxTTL     time.Duration
	serveStale      time.Duration
	prefetch        bool
	geoCountry      string    // --geoip-country file
	geoASN          string    // --geoip-asn file
	homeCountry     string    // upper case
	stdout          io.Writer // for logs written to "-"
	auditLog        logConfig
	queryLog        logConfig // path "" when off
	logBuffer       int
	dryRun          bool
	feeds           feedsConfig // RPZ feeds, RPZ export, list URLs (feeds.go)
}

func serveConfigFrom(c *cli.Context) (*serveConfig, error) {
	cfg := &serveConfig{
		lists:           c.String("lists"),
		upstreamTimeout: c.Duration("upstream-timeout"),
		blockTTL:        c.Duration("block-ttl"),
		debounce:        c.Duration("reload-debounce"),
		admin:           c.String("admin"),
		pprof:           c.Bool("pprof"),
		cacheSize:       c.Int("cache-size"),
		cacheMinTTL:     c.Duration("cache-min-ttl"),
		cacheMaxTTL:     c.Duration("cache-max-ttl"),
		serveStale:      c.Duration("serve-stale"),
		prefetch:        c.Bool("prefetch"),
	}
	for _, l := range c.StringSlice("listen") {
		if _, _, err := net.SplitHostPort(l); err != nil {
			return nil, usagef("--listen %q: want host:port", l)
		}
		cfg.listen = append(cfg.listen, l)
	}
	if len(cfg.listen) == 0 {
		return nil, usagef("--listen: at least one address is needed")
	}
	ups := c.StringSlice("upstream")
	if len(ups) == 0 {
		var err error
		if ups, err = upstream.SystemResolvers("/etc/resolv.conf"); err != nil {
			return nil, usagef("no --upstream given and %v", err)
		}
	}
	for _, u := range ups {
		n, err := upstream.NormalizeAddr(u)
		if err != nil {
			return nil, usagef("--upstream: %v", err)
		}
		for _, l := range cfg.listen {
			if sameAddr(n, l) {
				return nil, usagef("--upstream %s is this server's own --listen address (a forwarding loop)", n)
			}
		}
		cfg.upstreams = append(cfg.upstreams, n)
	}
	if cfg.upstreamTimeout <= 0 || cfg.upstreamTimeout > time.Minute {
		return nil, usagef("--upstream-timeout %s: want between 1ms and 1m", cfg.upstreamTimeout)
	}
	var err error
	if cfg.blockAction, err = blocklist.ParseAction(c.String("block-action")); err != nil || cfg.blockAction == blocklist.ActionLog {
		return nil, usagef("--block-action %q: want nxdomain, nodata, refused or sinkhole", c.String("block-action"))
	}
	if cfg.sinkV4, err = netip.ParseAddr(c.String("sinkhole-ipv4")); err != nil || !cfg.sinkV4.Is4() {
		return nil, usagef("--sinkhole-ipv4 %q: want an IPv4 address", c.String("sinkhole-ipv4"))
	}
	if cfg.sinkV6, err = netip.ParseAddr(c.String("sinkhole-ipv6")); err != nil || !cfg.sinkV6.Is6() || cfg.sinkV6.Is4In6() {
		return nil, usagef("--sinkhole-ipv6 %q: want an IPv6 address", c.String("sinkhole-ipv6"))
	}
	if cfg.blockTTL < 0 || cfg.blockTTL > 7*24*time.Hour {
		return nil, usagef("--block-ttl %s: want between 0s and 168h", cfg.blockTTL)
	}
	if cfg.debounce < 0 || cfg.debounce > time.Minute {
		return nil, usagef("--reload-debounce %s: want between 0s and 1m", cfg.debounce)
	}
	if cfg.cacheSize < 0 || cfg.cacheSize > 100_000_000 {
		return nil, usagef("--cache-size %d: want between 0 and 100000000", cfg.cacheSize)
	}
	if cfg.cacheMinTTL < 0 || cfg.cacheMaxTTL < time.Second || cfg.cacheMinTTL > cfg.cacheMaxTTL {
		return nil, usagef("--cache-min-ttl %s / --cache-max-ttl %s: want 0 <= min <= max and max >= 1s", cfg.cacheMinTTL, cfg.cacheMaxTTL)
	}
	if cfg.serveStale < 0 || cfg.serveStale > 7*24*time.Hour {
		return nil, usagef("--serve-stale %s: want between 0s and 168h", cfg.serveStale)
	}
	if err := cfg.logLevel.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return nil, usagef("--log-level %q: want debug, info, warn or error", c.String("log-level"))
	}
	switch c.String("log-format") {
	case "text":
	case "json":
		cfg.logJSON = true
	default:
		return nil, usagef("--log-format %q: want text or json", c.String("log-format"))
	}
	if _, _, err := net.SplitHostPort(cfg.admin); err != nil {
		return nil, usagef("--admin %q: want host:port", cfg.admin)
	}
	if p := c.Path("admin-token-file"); p != "" {
		if cfg.adminToken, err = readToken(p); err != nil {
			return nil, usagef("--admin-token-file: %v", err)
		}
	}
	if !admin.IsLoopback(cfg.admin) && cfg.adminToken == "" {
		return nil, usagef("--admin %s is not a loopback address: set --admin-token-file so the API is not open to the network", cfg.admin)
	}
	if err := geoConfigFrom(c, cfg); err != nil {
		return nil, err
	}
	if err := cfg.feeds.from(c, cfg.lists); err != nil {
		return nil, err
	}
	if err := observeConfigFrom(c, cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

func sameAddr(a, b string) bool {
	ah, ap, err1 := net.SplitHostPort(a)
	bh, bp, err2 := net.SplitHostPort(b)
	if err1 != nil || err2 != nil || ap != bp {
		return false
	}
	aa, e1 := netip.ParseAddr(ah)
	ba, e2 := netip.ParseAddr(bh)
	if e1 != nil || e2 != nil {
		return strings.EqualFold(ah, bh)
	}
	return aa == ba || (aa.IsUnspecified() && ba.IsLoopback()) || (ba.IsUnspecified() && aa.IsLoopback())
}

func newLogger(cfg *serveConfig) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.logLevel}
	w := cfg.logOut
	if w == nil {
		w = os.Stderr
	}
	if cfg.logJSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// instance is one running server with everything it is built from.
type instance struct {
	cfg     *serveConfig
	log     *slog.Logger
	store   *blocklist.Store
	pool    *upstream.Pool
	cache   *cache.Cache // nil when --cache-size 0
	dns     *resolver.Server
	watcher *dirwatch.Watcher
	admin   *admin.Server
	stats   resolver.Stats
	geo     *geo.DB
	geoWarn geoWarner
	answer  *policy.Answer // the answer stage, for explanations (policy.Answer.ExplainQuery)
	obs     observability
	feeds   *feedSet // nil without feeds, export or list URLs
	started time.Time
}

// readyHookKey is the context key of a func(*instance) that serve calls once
// the server is serving (tests use it to learn the bound addresses).
type readyHookKey struct{}

// serve runs the server until ctx ends or SIGTERM/SIGINT arrives.
func serve(ctx context.Context, cfg *serveConfig) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	in, err := start(cfg)
	if err != nil {
		return cli.Exit(err.Error(), exitFailure)
	}
	if hook, ok := ctx.Value(readyHookKey{}).(func(*instance)); ok {
		hook(in)
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-hup:
			in.store.Reload(context.Background(), "SIGHUP")
			in.geo.Reload()
		case <-ctx.Done():
			in.log.Info("shutting down: draining in-flight queries")
			return in.shutdown()
		}
	}
}

// defaultGCPercent is the garbage collector's target when GOGC is not set:
// the compiled lists are a large, long-lived, pointer-free part of the heap,
// so Go's default (grow the heap by 100% of the live heap between
// collections) would double the memory a big list costs; the answer paths
// allocate little, so collecting more often is cheap.
const defaultGCPercent = 25

// start builds and starts every part of the server.
func start(cfg *serveConfig) (_ *instance, err error) {
	log := newLogger(cfg)
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
	in := &instance{cfg: cfg, log: log, started: time.Now()}
	st, err := os.Stat(cfg.lists)
	if err != nil {
		return nil, fmt.Errorf("--lists: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("--lists %s: not a directory", cfg.lists)
	}
	if err := in.openGeo(); err != nil {
		return nil, err
	}
	if in.feeds, err = newFeedSet(cfg, log); err != nil {
		return nil, err
	}
	in.store = blocklist.NewStore(blocklist.Options{Dirs: append([]string{cfg.lists}, in.feeds.dirs()...), Logger: log})
	if err := in.feeds.attach(in.store); err != nil {
		return nil, err
	}
	in.store.OnReload(func(s *blocklist.Snapshot, _ *blocklist.ReloadReport) { in.geoWarn.onReload(in, s) })
	if err := in.startObservability(); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			in.closeObservability(context.Background())
		}
	}()
	rep, err := in.store.Reload(context.Background(), "start")
	if err != nil {
		return nil, err
	}
	if rep.Failed() {
		log.Warn("started with broken list files: they are not enforced until fixed", "errors", len(rep.Errors()))
	}
	in.pool, err = upstream.New(upstream.Config{Addrs: cfg.upstreams, Timeout: cfg.upstreamTimeout, Logger: log, Observe: in.obs.metrics.ObserveUpstream})
	if err != nil {
		return nil, err
	}
	blocker := &policy.Blocker{Default: cfg.blockAction, SinkholeV4: cfg.sinkV4, SinkholeV6: cfg.sinkV6, TTL: uint32(cfg.blockTTL / time.Second), DryRun: cfg.dryRun}
	in.answer = &policy.Answer{Block: blocker, Next: in.pool, Geo: in.obs.metrics.CountGeo(in.geo), Home: cfg.homeCountry}
	question := &policy.Question{Block: blocker, CountryKnown: in.answer.CountryKnown, Next: in.answer}
	var head resolver.Handler = question
	var wire resolver.WireCache
	if cfg.cacheSize > 0 {
		in.cache = cache.New(cache.Config{Size: cfg.cacheSize, MinTTL: cfg.cacheMinTTL, MaxTTL: cfg.cacheMaxTTL,
			ServeStale: cfg.serveStale, Prefetch: cfg.prefetch, Next: question, Snapshot: in.store.Current, Epoch: in.geo.Version, Logger: log})
		head, wire = in.cache, in.cache
		in.obs.metrics.SetCache(in.cacheStats)
	}
	// The export's zone answers (SOA, transfers' serial checks) go in front
	// of the cache: they depend on the asker and must never be cached.
	head = in.feeds.wrap(head)
	in.dns, err = resolver.NewServer(resolver.ServerConfig{
		Listen:   cfg.listen,
		Handler:  head,
		Cache:    wire,
		Blocker:  &policy.Wire{Block: blocker, CountryKnown: in.answer.CountryKnown},
		Snapshot: in.store.Current,
		Observe:  in.observe,
		Logger:   log,
		Notify:   in.feeds.notifyHandler(),
		Transfer: in.feeds.transferHandler(),
		// Each try can take the full timeout on every upstream.
		QueryTimeout: cfg.upstreamTimeout*time.Duration(len(cfg.upstreams)) + time.Second,
	})
	if err != nil {
		return nil, err
	}
	if err := in.dns.Start(); err != nil {
		return nil, err
	}
	in.admin, err = admin.Listen(admin.Config{Addr: cfg.admin, Token: cfg.adminToken, Backend: in, Pprof: cfg.pprof, Logger: log, Metrics: in.obs.metrics.Handler()})
	if err != nil {
		in.dns.Shutdown(context.Background())
		return nil, err
	}
	in.watcher, err = dirwatch.Start(dirwatch.Options{
		Dirs:     []string{cfg.lists},
		Match:    blocklist.IsListFile,
		Debounce: cfg.debounce,
		OnChange: func() { in.store.Reload(context.Background(), "fsnotify") },
		Logger:   log,
	})
	if err == nil {
		err = in.geo.Watch(cfg.debounce)
	}
	if err != nil {
		if in.watcher != nil {
			in.watcher.Close()
		}
		in.admin.Close(context.Background())
		in.dns.Shutdown(context.Background())
		return nil, err
	}
	in.feeds.start()
	abs, _ := filepath.Abs(cfg.lists)
	log.Info("sinkhole serving", "listen", strings.Join(in.dns.Addrs(), ","), "upstreams", strings.Join(cfg.upstreams, ","),
		"lists", abs, "rules", in.store.Current().RuleCount(), "generation", in.store.Current().Generation)
	return in, nil
}

// cacheStats reads the cache's counters for the metrics.
func (in *instance) cacheStats() metrics.CacheStats {
	st := in.cache.Stats()
	return metrics.CacheStats{Hits: st.Hits.Load() + st.Stale.Load(), Misses: st.Misses.Load(), Evictions: st.Evictions.Load(),
		Prefetches: st.Prefetches.Load(), Stale: st.Stale.Load(), Entries: in.cache.Len()}
}

// shutdown drains in-flight queries (bounded) and stops everything.
func (in *instance) shutdown() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	in.watcher.Close()
	in.admin.Close(ctx)
	in.geo.Close()
	in.feeds.stop()
	if err := in.dns.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		in.log.Warn("shutdown", "err", err)
	}
	in.closeObservability(ctx)
	return nil
}
