package main

import (
	"context"
	"path/filepath"
	"time"

	"github.com/miekg/dns"
	"github.com/urfave/cli/v2"

	"github.com/sinkhole-dns/sinkhole/blocklist/history"
	"github.com/sinkhole-dns/sinkhole/internal/admin"
	"github.com/sinkhole-dns/sinkhole/resolver/metrics"
	"github.com/sinkhole-dns/sinkhole/resolver/query"
	"github.com/sinkhole-dns/sinkhole/resolver/querylog"
)

// defaultAuditLog is the audit log's file, in the working directory.
const defaultAuditLog = "sinkhole-audit.log"

// logConfig is where one JSON-lines log goes and how it rotates.
type logConfig struct {
	path       string // querylog.Stdout for standard output
	maxSizeMB  int
	maxBackups int
}

// observability is what watches the running server: the Prometheus
// metrics, the audit log (always on) and the query log (optional).
type observability struct {
	metrics *metrics.Metrics
	audit   *querylog.Log
	queries *querylog.Log // nil when --query-log is not set
	tap     *tap          // nil when --dnstap is not set
	history *history.History
}

// observeConfigFrom validates the metrics, log and dry-run flags.
func observeConfigFrom(c *cli.Context, cfg *serveConfig) error {
	var err error
	if cfg.auditLog, err = logConfigFrom(c, "audit-log"); err != nil {
		return err
	}
	if cfg.auditLog.path == "" {
		return usagef("--audit-log: the audit log is always on; give a file or \"-\" for standard output")
	}
	if cfg.queryLog, err = logConfigFrom(c, "query-log"); err != nil {
		return err
	}
	if q := cfg.queryLog.path; q != "" && q != querylog.Stdout && samePath(q, cfg.auditLog.path) {
		return usagef("--query-log %s is the audit log's file: give each log its own", q)
	}
	cfg.logBuffer = c.Int("log-buffer")
	if cfg.logBuffer < 16 || cfg.logBuffer > 1<<22 {
		return usagef("--log-buffer %d: want between 16 and %d lines", cfg.logBuffer, 1<<22)
	}
	cfg.dryRun = c.Bool("dry-run")
	return dnstapConfigFrom(c, cfg)
}

func logConfigFrom(c *cli.Context, flag string) (logConfig, error) {
	lc := logConfig{path: c.String(flag), maxSizeMB: c.Int(flag + "-max-size"), maxBackups: c.Int(flag + "-max-backups")}
	if lc.maxSizeMB < 1 || lc.maxSizeMB > 1<<20 {
		return lc, usagef("--%s-max-size %d: want between 1 and %d megabytes", flag, lc.maxSizeMB, 1<<20)
	}
	if lc.maxBackups < 0 || lc.maxBackups > 100000 {
		return lc, usagef("--%s-max-backups %d: want between 0 (keep all) and 100000", flag, lc.maxBackups)
	}
	return lc, nil
}

// samePath reports whether two paths name the same file.
func samePath(a, b string) bool {
	aa, err1 := filepath.Abs(a)
	bb, err2 := filepath.Abs(b)
	return err1 == nil && err2 == nil && aa == bb
}

// startObservability creates the metrics, hooks them to list reloads (so
// it runs before the first reload) and opens the logs. A log that cannot
// be opened is an error naming its file.
func (in *instance) startObservability() error {
	cfg := in.cfg
	o := &in.obs
	o.metrics = metrics.New(metrics.Options{Version: version, Upstreams: cfg.upstreams})
	in.store.OnReload(o.metrics.ObserveReload)
	o.history = history.New(history.DefaultSize, in.log)
	in.store.OnReload(o.history.Observe)
	open := func(name string, lc logConfig) (*querylog.Log, error) {
		l, err := querylog.Open(querylog.Options{Name: name, Path: lc.path, Stdout: cfg.stdout,
			MaxSizeMB: lc.maxSizeMB, MaxBackups: lc.maxBackups, Buffer: cfg.logBuffer, Logger: in.log})
		if err != nil {
			return nil, err
		}
		o.metrics.AddLog(name, l.Lines, l.Dropped)
		in.log.Info(name+" log", "path", lc.path, "max_size_mb", lc.maxSizeMB, "max_backups", lc.maxBackups)
		return l, nil
	}
	var err error
	if o.audit, err = open("audit", cfg.auditLog); err != nil {
		return err
	}
	if cfg.queryLog.path != "" {
		if o.queries, err = open("query", cfg.queryLog); err != nil {
			in.closeObservability(context.Background())
			return err
		}
	}
	if cfg.dnstap.target != "" {
		if o.tap, err = startTap(cfg.dnstap, in); err != nil {
			in.closeObservability(context.Background())
			return err
		}
	}
	if cfg.dryRun {
		in.log.Warn("dry run: no rule is enforced; would-be blocks are only audited and counted")
	}
	return nil
}

// observe is the server's Observer: status counters, metrics, the audit
// log for every query a rule fired on, and the query log.
func (in *instance) observe(req *query.Request, resp *dns.Msg) {
	in.stats.Observe(req, resp)
	in.obs.metrics.Observe(req, resp)
	if req.Info.Decision != nil {
		in.obs.audit.Audit(req)
	}
	if in.obs.queries != nil {
		in.obs.queries.Query(req, resp)
	}
	if in.obs.tap != nil {
		in.obs.tap.observe(req, resp)
	}
}

// forwarderTap is the upstream pool's Tap: nil unless --dnstap-upstream.
func (in *instance) forwarderTap() func(addr, proto string, sent time.Time, q, resp *dns.Msg) {
	if in.obs.tap == nil || !in.cfg.dnstap.upstream {
		return nil
	}
	return in.obs.tap.forward
}

// logStatus describes the logs for the status route.
func (in *instance) logStatus() []admin.Log {
	var out []admin.Log
	for _, l := range []struct {
		name string
		log  *querylog.Log
	}{{"audit", in.obs.audit}, {"query", in.obs.queries}} {
		if l.log != nil {
			out = append(out, admin.Log{Name: l.name, Path: l.log.Path(), Lines: l.log.Lines(), Dropped: l.log.Dropped()})
		}
	}
	if t := in.obs.tap; t != nil {
		out = append(out, admin.Log{Name: "dnstap", Path: t.w.Target(), Lines: t.w.Sent(), Dropped: t.w.Dropped()})
	}
	return out
}

// closeObservability writes out the logs' buffered lines and closes them.
func (in *instance) closeObservability(ctx context.Context) {
	if in.obs.tap != nil {
		if err := in.obs.tap.close(ctx); err != nil {
			in.log.Warn("closing dnstap", "err", err)
		}
	}
	for _, l := range []*querylog.Log{in.obs.audit, in.obs.queries} {
		if l == nil {
			continue
		}
		if err := l.Close(ctx); err != nil {
			in.log.Warn("closing log", "err", err)
		}
	}
}
