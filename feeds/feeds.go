// Package feeds runs what brings lists in from other servers and sends
// them out: RPZ feeds (sinkhole as a secondary, resolver/rpz), list URLs
// (blocklist/urlfeed) and the RPZ export (sinkhole as the primary). It owns
// their configuration (Options, Parse), the state directory they keep
// their files in, and their lifecycle (New, Attach, Start, Stop); the
// server reaches the export through a chain stage and two hooks.
package feeds

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/sinkhole-dns/sinkhole/blocklist"
	"github.com/sinkhole-dns/sinkhole/blocklist/urlfeed"
	"github.com/sinkhole-dns/sinkhole/internal/admin"
	"github.com/sinkhole-dns/sinkhole/resolver"
	"github.com/sinkhole-dns/sinkhole/resolver/rpz"
)

// Set is the running feeds, export and list URLs of one server. A nil
// *Set (nothing configured) is valid: every method does nothing.
type Set struct {
	cfg    Config
	log    *slog.Logger
	export *rpz.Exporter
	feeds  *rpz.Feeds
	urls   *urlfeed.Fetcher
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New prepares the state directory (removing list files no configured
// feed or list URL owns) and builds every part; nothing runs until Start.
// build says how the export writes rules. It returns nil when nothing is
// configured.
func New(cfg Config, build rpz.BuildOptions, log *slog.Logger) (*Set, error) {
	if !cfg.Enabled() {
		return nil, nil
	}
	if log == nil {
		log = slog.Default()
	}
	if err := os.MkdirAll(cfg.StateDir, 0o755); err != nil {
		return nil, fmt.Errorf("--state-dir: %w", err)
	}
	fs := &Set{cfg: cfg, log: log}
	if err := fs.removeOrphans(); err != nil {
		return nil, err
	}
	if cfg.Export != "" {
		var err error
		fs.export, err = rpz.NewExporter(rpz.ExportConfig{
			Zone:          cfg.Export,
			AllowTransfer: cfg.AllowTransfer,
			Notify:        cfg.Notify,
			NoZonemd:      cfg.NoZonemd,
			ZonemdSchemes: cfg.ZonemdSchemes,
			SerialFile:    filepath.Join(cfg.StateDir, "export."+cfg.Export+".serial"),
			Build:         build,
			Logger:        log,
		})
		if err != nil {
			return nil, err
		}
	}
	return fs, nil
}

// removeOrphans deletes list files in the state directory that no
// configured feed or list URL owns (a feed removed from the configuration
// must stop blocking).
func (fs *Set) removeOrphans() error {
	owned := map[string]bool{}
	for _, f := range fs.cfg.Feeds {
		owned[f.Name+".rpz"] = true
	}
	for _, u := range fs.cfg.URLs {
		owned[u.File] = true
	}
	ents, err := os.ReadDir(fs.cfg.StateDir)
	if err != nil {
		return fmt.Errorf("--state-dir: %w", err)
	}
	for _, e := range ents {
		if e.IsDir() || !blocklist.IsListFile(e.Name()) || owned[e.Name()] {
			continue
		}
		p := filepath.Join(fs.cfg.StateDir, e.Name())
		if err := os.Remove(p); err != nil {
			return fmt.Errorf("--state-dir: removing %s, which no feed owns: %w", p, err)
		}
		fs.log.Warn("removed a state file no configured feed or list URL owns", "file", p)
	}
	return nil
}

// Dirs returns the directories the list store must load besides --lists.
func (fs *Set) Dirs() []string {
	if fs == nil || (len(fs.cfg.Feeds) == 0 && len(fs.cfg.URLs) == 0) {
		return nil
	}
	return []string{fs.cfg.StateDir}
}

// Attach connects the parts to the store: the export follows every
// reload; feeds and URLs reload the store when their files change. Call
// before the store's first Reload.
func (fs *Set) Attach(store *blocklist.Store) error {
	if fs == nil {
		return nil
	}
	if fs.export != nil {
		store.OnReload(fs.export.Observe)
	}
	if len(fs.cfg.Feeds) > 0 {
		cfgs := make([]rpz.FeedConfig, len(fs.cfg.Feeds))
		for i, f := range fs.cfg.Feeds {
			f.Dir, f.Logger = fs.cfg.StateDir, fs.log
			trigger := "rpz-feed " + f.Name
			f.OnUpdate = func() { store.Reload(context.Background(), trigger) }
			f.Store = store // IXFRs applied as deltas; full transfers reloaded
			cfgs[i] = f
		}
		var err error
		if fs.feeds, err = rpz.NewFeeds(cfgs, fs.log); err != nil {
			return err
		}
	}
	if len(fs.cfg.URLs) > 0 {
		var err error
		fs.urls, err = urlfeed.New(urlfeed.Config{
			Sources: fs.cfg.URLs, Dir: fs.cfg.StateDir, Interval: fs.cfg.URLInterval, MaxSize: fs.cfg.MaxListSize, Logger: fs.log,
			OnChange: func() { store.Reload(context.Background(), "list-url") },
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// ExportStage returns the chain stage of the RPZ export (nil without
// --rpz-export): the zone's authoritative answers.
func (fs *Set) ExportStage() *rpz.ExportStage {
	if fs == nil || fs.export == nil {
		return nil
	}
	return fs.export.Stage()
}

// Exporter returns the RPZ export (nil without --rpz-export).
func (fs *Set) Exporter() *rpz.Exporter {
	if fs == nil {
		return nil
	}
	return fs.export
}

// NotifyHandler and TransferHandler are the server hooks (nil when unused).
func (fs *Set) NotifyHandler() resolver.NotifyHandler {
	if fs == nil || fs.feeds == nil {
		return nil
	}
	return fs.feeds.Notify
}

// TransferHandler serves AXFR and IXFR of the export (nil without one).
func (fs *Set) TransferHandler() resolver.TransferHandler {
	if fs == nil || fs.export == nil {
		return nil
	}
	return fs.export.ServeTransfer
}

// Start runs feeds, URL fetches and NOTIFY sending (the DNS server must be
// serving: secondaries answer a NOTIFY by querying it).
func (fs *Set) Start() {
	if fs == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	fs.cancel = cancel
	if fs.export != nil {
		fs.export.Start(ctx)
	}
	if fs.feeds != nil {
		fs.feeds.Start(ctx)
	}
	if fs.urls != nil {
		fs.wg.Add(1)
		go func() {
			defer fs.wg.Done()
			fs.urls.Run(ctx)
		}()
	}
}

// Stop ends everything Start began and waits for it.
func (fs *Set) Stop() {
	if fs == nil || fs.cancel == nil {
		return
	}
	fs.cancel()
	if fs.feeds != nil {
		fs.feeds.Wait()
	}
	fs.wg.Wait()
}

// Status is what "status" shows about RPZ feeds, the RPZ export and list
// URLs.
type Status struct {
	Feeds  []rpz.FeedStatus  `json:"rpz_feeds,omitempty"`
	Export *rpz.ExportStatus `json:"rpz_export,omitempty"`
	URLs   []urlfeed.Status  `json:"list_urls,omitempty"`
}

// Status reports every feed, the export and every list URL.
func (fs *Set) Status() Status {
	var st Status
	if fs == nil {
		return st
	}
	if fs.feeds != nil {
		st.Feeds = fs.feeds.Status()
	}
	if fs.export != nil {
		e := fs.export.Status()
		st.Export = &e
	}
	if fs.urls != nil {
		st.URLs = fs.urls.Status()
	}
	return st
}

// Admin converts the status for the admin API.
func (fs *Set) Admin() ([]admin.Feed, *admin.Export) {
	st := fs.Status()
	var feeds []admin.Feed
	for _, f := range st.Feeds {
		res := f.LastResult
		if f.LastTransferType != "" && res == "transferred" {
			res += " (" + f.LastTransferType + ")"
		}
		feeds = append(feeds, admin.Feed{Name: f.Name, Kind: "rpz", Source: f.Zone + "@" + f.Primary, Serial: f.Serial,
			Records: f.Records, Removed: f.Removed, LastChange: f.LastTransfer, LastCheck: f.LastCheck, LastResult: res, LastError: f.LastError, Zonemd: f.Zonemd, ZonemdScheme: f.ZonemdScheme})
	}
	for _, u := range st.URLs {
		res := u.LastResult
		if u.LastHTTPStatus != 0 {
			res += fmt.Sprintf(" (HTTP %d)", u.LastHTTPStatus)
		}
		feeds = append(feeds, admin.Feed{Name: u.Name, Kind: "url", Source: u.URL, LastChange: u.LastChange,
			LastCheck: u.LastFetch, LastResult: res, LastError: u.LastError})
	}
	var exp *admin.Export
	if e := st.Export; e != nil {
		exp = &admin.Export{Zone: e.Zone, Serial: e.Serial, Records: e.Records, Changed: e.Changed, IXFRFrom: e.IXFRFrom, Notify: e.Notify, Zonemd: e.Zonemd, ZonemdSchemes: e.ZonemdSchemes,
			Skipped: map[string]int{"monitor": e.Skipped.Monitor, "overseas": e.Skipped.Overseas, "asn": e.Skipped.ASN}}
	}
	return feeds, exp
}
