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
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/sinkhole-dns/sinkhole/blocklist"
	"github.com/sinkhole-dns/sinkhole/blocklist/listsig"
	"github.com/sinkhole-dns/sinkhole/blocklist/urlfeed"
	"github.com/sinkhole-dns/sinkhole/blockpage"
	"github.com/sinkhole-dns/sinkhole/feeds"
	"github.com/sinkhole-dns/sinkhole/geo"
	"github.com/sinkhole-dns/sinkhole/internal/admin"
	"github.com/sinkhole-dns/sinkhole/internal/exepages"
	"github.com/sinkhole-dns/sinkhole/resolver"
	"github.com/sinkhole-dns/sinkhole/resolver/acl"
	"github.com/sinkhole-dns/sinkhole/resolver/cache"
	"github.com/sinkhole-dns/sinkhole/resolver/guard"
	"github.com/sinkhole-dns/sinkhole/resolver/metrics"
	"github.com/sinkhole-dns/sinkhole/resolver/policy"
	"github.com/sinkhole-dns/sinkhole/resolver/querylog"
	"github.com/sinkhole-dns/sinkhole/resolver/rpz"
	"github.com/sinkhole-dns/sinkhole/resolver/upstream"
)

func serveFlags() []cli.Flag {
	return withEnv(append([]cli.Flag{
		&cli.PathFlag{Name: "config", Usage: "YAML file of options (keys are the long flag names)"},
		&cli.BoolFlag{Name: "check-config", Usage: "load the configuration, lists, databases and certificates, print every problem and exit: 0 ok, 1 problems, 2 bad options"},
		&cli.StringSliceFlag{Name: "listen", Value: cli.NewStringSlice("127.0.0.1:5353"), Usage: "serve DNS over UDP and TCP on `ADDR` (repeatable)"},
		&cli.StringSliceFlag{Name: "upstream", Usage: "forward to `ADDR`, IP or IP:port, or encrypted: tls://IP[:853]#NAME, https://HOST[:443]/PATH, quic://IP[:853]#NAME (repeatable, tried in order; default: nameservers in /etc/resolv.conf)"},
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
		&cli.StringSliceFlag{Name: "allow", Value: cli.NewStringSlice(acl.DefaultAllow...), Usage: "serve clients in `CIDR` (repeatable; replaces the default loopback and private ranges)"},
		&cli.StringFlag{Name: "refuse-action", Value: "refused", Usage: "answer `A` to clients outside --allow: refused or drop"},
		&cli.IntFlag{Name: "client-qps", Value: 0, Usage: "`N` queries per second one client (IPv4 address, IPv6 /56) may send; 0 = no limit"},
		&cli.IntFlag{Name: "client-burst", Value: 0, Usage: "`N` queries a client may send at once (0 = twice --client-qps)"},
		&cli.IntFlag{Name: "rrl-rate", Value: 0, Usage: "`N` identical UDP responses per second to one network (IPv4 /24, IPv6 /56); 0 = off"},
		&cli.IntFlag{Name: "rrl-slip", Value: 2, Usage: "send every `N`th rate-limited response truncated (TC) instead of dropping it; 0 = never"},
		&cli.IntFlag{Name: "max-inflight", Value: 10000, Usage: "`N` queries being resolved at once; more are dropped (overload)"},
		&cli.IntFlag{Name: "udp-batch", Value: resolver.DefaultUDPBatch, Usage: "read and write up to `N` UDP datagrams per system call (recvmmsg/sendmmsg); 1 = one per call"},
		&cli.IntFlag{Name: "tcp-max-conns", Value: 1024, Usage: "`N` concurrent TCP connections"},
		&cli.IntFlag{Name: "tcp-max-conns-per-client", Value: 64, Usage: "`N` concurrent TCP connections from one client address"},
		&cli.DurationFlag{Name: "tcp-idle-timeout", Value: 10 * time.Second, Usage: "close a TCP connection idle (or sending a query slowly) for this long"},
		&cli.StringFlag{Name: "identity", Usage: "answer CHAOS id.server and hostname.bind queries with `TEXT` (default: REFUSED)"},
		&cli.StringFlag{Name: "version-string", Usage: "answer CHAOS version.bind and version.server queries with `TEXT` (default: REFUSED)"},
		&cli.IntFlag{Name: "upstream-fail-threshold", Value: upstream.DefaultFailThreshold, Usage: "`N` consecutive failures mark an upstream unhealthy"},
		&cli.DurationFlag{Name: "upstream-probe-interval", Value: upstream.DefaultProbeInterval, Usage: "how often an unhealthy upstream is probed"},
	}, append(append(append(append(append(append(geoFlags(), feedFlags()...), trustFlags()...), dnstapFlags()...), listSafetyFlags()...), encryptedFlags()...), blockPageFlags()...)...))
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
			if err := checkListsDir(cfg.lists); err != nil {
				return err
			}
			if c.Bool("check-config") {
				return checkConfig(c.App.Writer, cfg)
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
	feeds           feeds.Config // RPZ feeds, RPZ export, list URLs
	safety          listSafety   // shrink guard, start strategy (lists.go)
	dnstap          dnstapConfig
	enc             encryptedConfig // DoT, DoH, DoQ listeners (encrypted.go)
	allow           *acl.Set
	refuseDrop      bool
	clientQPS       int
	clientBurst     int
	rrlRate         int
	rrlSlip         int
	maxInflight     int
	udpBatch        int
	tcpMaxConns     int
	tcpPerClient    int
	tcpIdle         time.Duration
	failThreshold   int
	probeInterval   time.Duration
	trust           *listsig.Keyring   // --trusted-key (trust.go); nil: lists need no signature
	trustExempt     map[string]bool    // feed zones, checked by TSIG and ZONEMD instead (trust.go)
	trustNames      map[string]string  // list URL copies: the name their signature carries
	trustSeen       *listsig.SeenTimes // newest signing times accepted, kept in --state-dir
	identity        string             // --identity: CHAOS id.server, hostname.bind
	versionString   string             // --version-string: CHAOS version.bind
	blockPage       blockPageConfig    // --block-page* (blockpage.go)
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
		identity:        c.String("identity"),
		versionString:   c.String("version-string"),
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
	if p := adminTokenFile(c.Path("admin-token-file")); p != "" {
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
	if cfg.feeds, err = feedsConfigFrom(c, cfg.lists); err != nil {
		return nil, err
	}
	if err := cfg.enc.from(c); err != nil {
		return nil, err
	}
	if err := hardeningFrom(c, cfg); err != nil {
		return nil, err
	}
	if err := observeConfigFrom(c, cfg); err != nil {
		return nil, err
	}
	if err := listSafetyFrom(c, cfg); err != nil {
		return nil, err
	}
	if err := trustConfigFrom(c, cfg); err != nil {
		return nil, err
	}
	if err := blockPageConfigFrom(c, cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

// hardeningFrom validates the client ACL, rate limit, TCP and upstream
// health flags, and applies the open-resolver rule.
func hardeningFrom(c *cli.Context, cfg *serveConfig) error {
	var err error
	if cfg.allow, err = acl.Parse(c.StringSlice("allow")); err != nil {
		return usagef("--allow %v", err)
	}
	if len(cfg.allow.Prefixes()) == 0 {
		return usagef("--allow: at least one prefix is needed")
	}
	if err := acl.CheckOpen(append(slices.Clone(cfg.listen), cfg.enc.addrs()...), cfg.allow); err != nil {
		var oe *acl.OpenError
		if errors.As(err, &oe) {
			return usagef("--allow: %v; list your clients' prefixes, or give --allow %s to run one deliberately", err, oe.Any)
		}
		return usagef("--allow: %v", err)
	}
	switch c.String("refuse-action") {
	case "refused":
	case "drop":
		cfg.refuseDrop = true
	default:
		return usagef("--refuse-action %q: want refused or drop", c.String("refuse-action"))
	}
	ints := []struct {
		name     string
		dst      *int
		min, max int
	}{
		{"client-qps", &cfg.clientQPS, 0, 1_000_000},
		{"client-burst", &cfg.clientBurst, 0, 10_000_000},
		{"rrl-rate", &cfg.rrlRate, 0, 1_000_000},
		{"rrl-slip", &cfg.rrlSlip, 0, 10},
		{"max-inflight", &cfg.maxInflight, 1, 10_000_000},
		{"udp-batch", &cfg.udpBatch, 1, 1024},
		{"tcp-max-conns", &cfg.tcpMaxConns, 1, 1_000_000},
		{"tcp-max-conns-per-client", &cfg.tcpPerClient, 1, 1_000_000},
		{"upstream-fail-threshold", &cfg.failThreshold, 1, 1000},
	}
	for _, f := range ints {
		v := c.Int(f.name)
		if v < f.min || v > f.max {
			return usagef("--%s %d: want between %d and %d", f.name, v, f.min, f.max)
		}
		*f.dst = v
	}
	durs := []struct {
		name     string
		dst      *time.Duration
		min, max time.Duration
	}{
		{"tcp-idle-timeout", &cfg.tcpIdle, 100 * time.Millisecond, 10 * time.Minute},
		{"upstream-probe-interval", &cfg.probeInterval, 10 * time.Millisecond, time.Hour},
	}
	for _, f := range durs {
		v := c.Duration(f.name)
		if v < f.min || v > f.max {
			return usagef("--%s %s: want between %s and %s", f.name, v, f.min, f.max)
		}
		*f.dst = v
	}
	return nil
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
	watch   watchPointer // the --lists watch (lists.go); reloads read it at any time
	admin   *admin.Server
	stats   resolver.Stats
	geo     *geo.DB
	geoWarn geoWarner
	answer  *policy.Answer // the answer stage, for explanations (policy.Answer.ExplainQuery)
	obs     observability
	feeds   *feeds.Set // nil without feeds, export or list URLs
	enc     *encrypted // nil without encrypted listeners
	guard   *guard.Guard
	panics  atomic.Uint64
	started time.Time
	stop    closers // what start started, stopped in reverse by shutdown
	feedsOn bool    // feeds started (early when start waits for them: lists.go)
	// blockPage serves --block-page (blockpage.go); nil without it.
	blockPage *blockpage.Server
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
	sd := notifySystemd(in)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP, syscall.SIGUSR1)
	defer signal.Stop(hup)
	for {
		select {
		case sig := <-hup:
			in.reopenLogs() // logrotate's postrotate: SIGHUP or SIGUSR1
			if sig == syscall.SIGUSR1 {
				continue
			}
			in.reloadLists(context.Background(), "SIGHUP", false)
			in.geo.Reload()
			in.reloadCert()
		case <-ctx.Done():
			sd.stopping()
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

// servingGCPercent is the garbage collector's target once the first list
// load is done and every listener serves, when GOGC is not set. The fast
// paths (cache hits, blocks, the audit line) allocate nothing, so in
// steady service the collector runs only for what misses and reloads
// allocate, and marking is cheap (the lists hold no pointers): a lower
// target costs little CPU and keeps the heap at most 10% over the live
// heap instead of 25% (make bench's 1M-name list: peak RSS about 4 MB
// lower). The first load keeps defaultGCPercent, where collecting more
// often would lengthen the load.
const servingGCPercent = 10

// closers is a stack of what start has started, stopped in reverse order:
// by start itself when a later part fails, and by shutdown.
type closers []func(context.Context)

// push adds the stop of a part that has just started.
func (c *closers) push(f func(context.Context)) { *c = append(*c, f) }

// run stops every part, last started first.
func (c *closers) run(ctx context.Context) {
	for i := len(*c) - 1; i >= 0; i-- {
		(*c)[i](ctx)
	}
	*c = nil
}

// start builds and starts every part of the server. On error, what was
// started is stopped again.
func start(cfg *serveConfig) (_ *instance, err error) {
	log := newLogger(cfg)
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
	in := &instance{cfg: cfg, log: log, started: time.Now()}
	defer func() {
		if err != nil {
			in.stop.run(context.Background())
		}
	}()
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
	in.stop.push(func(context.Context) { in.geo.Close() })
	in.feeds, err = feeds.New(cfg.feeds, rpz.BuildOptions{Default: cfg.blockAction, SinkholeV4: cfg.sinkV4, SinkholeV6: cfg.sinkV6,
		TTL: uint32(max(cfg.blockTTL/time.Second, 1))}, log)
	if err != nil {
		return nil, err
	}
	in.store = blocklist.NewStore(in.storeOptions(append([]string{cfg.lists}, in.feeds.Dirs()...)))
	if err := in.feeds.Attach(in.store); err != nil {
		return nil, err
	}
	in.store.OnReload(func(s *blocklist.Snapshot, _ *blocklist.ReloadReport) { in.geoWarn.onReload(in, s) })
	if err := in.startObservability(); err != nil {
		return nil, err
	}
	in.stop.push(in.closeObservability)
	// Watch before the first read, so that no change is missed.
	if err := in.watchLists(); err != nil {
		return nil, err
	}
	in.stop.push(func(context.Context) { in.stopWatchingLists() })
	releaseExePages(log, "before the first list load")
	rep, err := in.store.Reload(context.Background(), "start")
	if err != nil {
		return nil, err
	}
	if rep.Failed() {
		log.Warn("started with broken list files: they are not enforced until fixed", "errors", len(rep.Errors()))
	}
	if err := in.awaitSources(); err != nil { // --start-strategy
		return nil, err
	}
	in.pool, err = upstream.New(upstream.Config{Addrs: cfg.upstreams, Timeout: cfg.upstreamTimeout, Logger: log,
		Observe: in.obs.metrics.ObserveUpstream, Tap: in.forwarderTap(), FailThreshold: cfg.failThreshold, ProbeInterval: cfg.probeInterval,
		TLS: cfg.enc.upstreamTLS})
	if err != nil {
		return nil, err
	}
	in.stop.push(func(context.Context) { in.pool.Close() })
	scfg, err := in.chain(cfg)
	if err != nil {
		return nil, err
	}
	in.dns, err = resolver.NewServer(scfg)
	if err != nil {
		return nil, err
	}
	in.obs.metrics.SetProtection(in.protection())
	in.obs.metrics.SetUpstreamAnswers(in.pool.Health)
	in.obs.metrics.SetListURLs(func() []urlfeed.Status { return in.feeds.Status().URLs })
	in.obs.metrics.SetUpstreamHealth(in.pool.Health)
	if err := in.dns.Start(); err != nil {
		return nil, err
	}
	in.stop.push(func(ctx context.Context) {
		if err := in.dns.Shutdown(ctx); err != nil {
			in.log.Warn("shutdown: queries still unanswered when the drain time ran out", "err", err)
		}
	})
	if err := in.startEncrypted(); err != nil {
		return nil, err
	}
	in.stop.push(in.stopEncrypted)
	in.admin, err = admin.Listen(admin.Config{Addr: cfg.admin, Token: cfg.adminToken, Backend: in, Pprof: cfg.pprof, Logger: log, Metrics: in.obs.metrics.Handler(), History: in.obs.history.Versions})
	if err != nil {
		return nil, err
	}
	in.stop.push(func(ctx context.Context) { in.admin.Close(ctx) })
	if err := in.startBlockPage(in.answer.Block); err != nil {
		return nil, err
	}
	if err := in.geo.Watch(cfg.debounce); err != nil {
		return nil, err
	}
	in.startFeeds()
	abs, _ := filepath.Abs(cfg.lists)
	refuse := "refused"
	if cfg.refuseDrop {
		refuse = "drop"
	}
	log.Info("sinkhole serving", "listen", strings.Join(in.dns.Addrs(), ","), "upstreams", strings.Join(cfg.upstreams, ","),
		"lists", abs, "rules", in.store.Current().RuleCount(), "generation", in.store.Current().Generation,
		"allow", cfg.allow.String(), "refuse_action", refuse,
		"client_qps", cfg.clientQPS, "rrl_rate", cfg.rrlRate)
	releaseExePages(log, "serving")
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(servingGCPercent)
	}
	return in, nil
}

// releaseExePages gives back the mappings of the executable's pages that
// start-up touched (package initialisation, flag and config parsing, the
// list load, the listeners' setup): the kernel maps about 18 MB of
// sinkhole's binary around the pages start-up runs, and the query path
// uses a few of them, which come back on first use (internal/exepages).
// It is done before the first list load, so that the load's peak does not
// hold them, and again once everything serves.
func releaseExePages(log *slog.Logger, when string) {
	n, err := exepages.Release()
	if err != nil {
		log.Warn("could not release the executable's resident pages", "when", when, "err", err)
		return
	}
	log.Debug("released the executable's resident pages", "when", when, "bytes", n)
}

// protection gives the metrics the counters of what was turned away.
func (in *instance) protection() metrics.Protection {
	g := in.guard
	return metrics.Protection{
		ACLRefused: g.ACLRefused.Load, ACLDropped: g.ACLDropped.Load, RateLimited: g.RateLimited.Load,
		RRLDropped: g.RRLDropped.Load, RRLSlipped: g.RRLSlipped.Load,
		Overloaded: in.dns.Overloaded, TCPRejected: in.dns.TCPRejected, Malformed: in.dns.Malformed, Panics: in.panics.Load,
		Mismatched: func() map[string]uint64 {
			out := map[string]uint64{}
			for _, h := range in.pool.Health() {
				out[h.Addr] = h.Mismatched
			}
			return out
		},
	}
}

// cacheStats reads the cache's counters for the metrics.
func (in *instance) cacheStats() metrics.CacheStats {
	st := in.cache.Stats()
	return metrics.CacheStats{Hits: st.Hits.Load() + st.Stale.Load(), Misses: st.Misses.Load(), Evictions: st.Evictions.Load(),
		Prefetches: st.Prefetches.Load(), Stale: st.Stale.Load(), Entries: in.cache.Len()}
}

// queryTimeout bounds one query: each try can take the full timeout on
// every upstream.
func (cfg *serveConfig) queryTimeout() time.Duration {
	return cfg.upstreamTimeout*time.Duration(len(cfg.upstreams)) + time.Second
}

// shutdown answers the queries already received, bounded by the time one
// query may take, and stops everything in the reverse order of start.
func (in *instance) shutdown() error {
	ctx, cancel := context.WithTimeout(context.Background(), in.cfg.queryTimeout()+time.Second)
	defer cancel()
	in.stop.run(ctx)
	in.log.Info("stopped")
	return nil
}
