package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/sinkhole-dns/sinkhole/blocklist"
	"github.com/sinkhole-dns/sinkhole/blocklist/urlfeed"
	"github.com/sinkhole-dns/sinkhole/internal/admin"
	"github.com/sinkhole-dns/sinkhole/resolver"
	"github.com/sinkhole-dns/sinkhole/resolver/rpz"
)

// feedFlags are the serve flags of RPZ feeds, the RPZ export and list URLs.
func feedFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "rpz-feed", Usage: "be a secondary for an RPZ zone: `NAME=ZONE@PRIMARY[:PORT]` (repeatable)"},
		&cli.StringSliceFlag{Name: "rpz-tsig", Usage: "sign the transfers of feed NAME with the TSIG key in FILE (tsig-keygen format): `NAME=FILE` (repeatable)"},
		&cli.StringFlag{Name: "state-dir", Value: "./state", Usage: "keep RPZ feed zones, list URL copies and the export serial in `DIR`"},
		&cli.StringFlag{Name: "rpz-export", Usage: "serve the loaded lists as the RPZ zone `ZONE` over AXFR and IXFR"},
		&cli.StringSliceFlag{Name: "rpz-allow-transfer", Usage: "networks that may transfer the exported zone, `CIDR` (repeatable; default loopback)"},
		&cli.StringSliceFlag{Name: "rpz-notify", Usage: "send NOTIFY for the exported zone to `ADDR`, IP or IP:port (repeatable)"},
		&cli.StringSliceFlag{Name: "list-url", Usage: "fetch a list over HTTP(S): `NAME=URL` (repeatable)"},
		&cli.DurationFlag{Name: "list-url-interval", Value: 5 * time.Minute, Usage: "time between fetches of each --list-url"},
	}
}

// feedsConfig is the validated configuration of feeds, export and URLs.
type feedsConfig struct {
	stateDir    string
	feeds       []rpz.FeedConfig // Dir, OnUpdate and Logger are set at start
	export      string
	allowXfr    []netip.Prefix
	notify      []string
	urls        []urlfeed.Source
	urlInterval time.Duration
}

// feedNameRE is what a feed or list URL name may hold: it becomes a file name.
var feedNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

func (fc *feedsConfig) from(c *cli.Context, lists string) error {
	fc.stateDir = c.String("state-dir")
	fc.urlInterval = c.Duration("list-url-interval")
	names := map[string]string{} // file base name -> flag
	claim := func(flag, name, file string) error {
		if !feedNameRE.MatchString(name) {
			return usagef("--%s %q: NAME must be letters, digits, '-', '_' or '.'", flag, name)
		}
		key := strings.ToLower(strings.TrimSuffix(file, filepath.Ext(file)))
		if prev, ok := names[key]; ok {
			return usagef("--%s %s: the name is already used by --%s", flag, name, prev)
		}
		names[key] = flag
		return nil
	}
	for _, v := range c.StringSlice("rpz-feed") {
		f, err := parseFeed(v)
		if err != nil {
			return usagef("--rpz-feed %q: %v", v, err)
		}
		if err := claim("rpz-feed", f.Name, f.Name+".rpz"); err != nil {
			return err
		}
		for _, prev := range fc.feeds {
			if strings.EqualFold(prev.Zone, f.Zone) {
				return usagef("--rpz-feed %s: zone %s is already fed by %s", f.Name, f.Zone, prev.Name)
			}
		}
		fc.feeds = append(fc.feeds, f)
	}
	for _, v := range c.StringSlice("rpz-tsig") {
		name, file, ok := strings.Cut(v, "=")
		if !ok || file == "" {
			return usagef("--rpz-tsig %q: want FEED=KEYFILE", v)
		}
		i := feedIndex(fc.feeds, name)
		if i < 0 {
			return usagef("--rpz-tsig %s: no --rpz-feed named %s", v, name)
		}
		key, err := rpz.LoadTSIGKey(file)
		if err != nil {
			return usagef("--rpz-tsig %s: %v", name, err)
		}
		fc.feeds[i].Key = key
	}
	if z := c.String("rpz-export"); z != "" {
		n, err := blocklist.NormalizeName(z)
		if err != nil {
			return usagef("--rpz-export %q: want a zone name such as rpz.regulator.example", z)
		}
		fc.export = n
	}
	for _, v := range c.StringSlice("rpz-allow-transfer") {
		p, err := parsePrefix(v)
		if err != nil {
			return usagef("--rpz-allow-transfer %q: want a CIDR prefix or an IP address", v)
		}
		fc.allowXfr = append(fc.allowXfr, p)
	}
	for _, v := range c.StringSlice("rpz-notify") {
		ap, err := parseAddrPort(v, 53)
		if err != nil {
			return usagef("--rpz-notify %q: want IP or IP:port", v)
		}
		fc.notify = append(fc.notify, ap.String())
	}
	if fc.export == "" && (len(fc.allowXfr) > 0 || len(fc.notify) > 0) {
		return usagef("--rpz-allow-transfer and --rpz-notify need --rpz-export")
	}
	for _, v := range c.StringSlice("list-url") {
		name, raw, ok := strings.Cut(v, "=")
		if !ok {
			return usagef("--list-url %q: want NAME=URL", v)
		}
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return usagef("--list-url %s: %q is not an http or https URL", name, raw)
		}
		file := listURLFile(name, u)
		if err := claim("list-url", name, file); err != nil {
			return err
		}
		fc.urls = append(fc.urls, urlfeed.Source{Name: name, URL: raw, File: file})
	}
	if fc.urlInterval < 100*time.Millisecond || fc.urlInterval > 24*time.Hour {
		return usagef("--list-url-interval %s: want between 100ms and 24h", fc.urlInterval)
	}
	if fc.enabled() {
		if fc.stateDir == "" {
			return usagef("--state-dir: a directory is needed for --rpz-feed, --rpz-export and --list-url")
		}
		a, _ := filepath.Abs(fc.stateDir)
		b, _ := filepath.Abs(lists)
		if a == b {
			return usagef("--state-dir %s: must not be the --lists directory (sinkhole owns the files in it)", fc.stateDir)
		}
	}
	return nil
}

func feedIndex(feeds []rpz.FeedConfig, name string) int {
	for i, f := range feeds {
		if f.Name == name {
			return i
		}
	}
	return -1
}

// parseFeed reads NAME=ZONE@PRIMARY[:PORT].
func parseFeed(v string) (rpz.FeedConfig, error) {
	name, rest, ok := strings.Cut(v, "=")
	zone, primary, ok2 := strings.Cut(rest, "@")
	if !ok || !ok2 || name == "" || zone == "" || primary == "" {
		return rpz.FeedConfig{}, fmt.Errorf("want NAME=ZONE@PRIMARY[:PORT]")
	}
	z, err := blocklist.NormalizeName(zone)
	if err != nil {
		return rpz.FeedConfig{}, fmt.Errorf("zone %q is not a domain name", zone)
	}
	ap, err := parseAddrPort(primary, 53)
	if err != nil {
		return rpz.FeedConfig{}, fmt.Errorf("primary %q: want an IP address, optionally with :port", primary)
	}
	return rpz.FeedConfig{Name: name, Zone: z, Primary: ap}, nil
}

// parseAddrPort reads "IP", "IP:port", "[IPv6]:port" or a bare IPv6.
func parseAddrPort(s string, defPort uint16) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap, nil
	}
	a, err := netip.ParseAddr(strings.Trim(s, "[]"))
	if err != nil {
		return netip.AddrPort{}, err
	}
	return netip.AddrPortFrom(a, defPort), nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// listURLFile names the local copy of a list URL: NAME when it has a list
// extension, else NAME with the URL path's list extension, else NAME.txt.
func listURLFile(name string, u *url.URL) string {
	if blocklist.IsListFile(name) {
		return name
	}
	if ext := path.Ext(u.Path); ext != "" && blocklist.IsListFile("x"+ext) {
		return name + strings.ToLower(ext)
	}
	return name + ".txt"
}

// enabled reports whether anything needs the state directory.
func (fc *feedsConfig) enabled() bool {
	return len(fc.feeds) > 0 || fc.export != "" || len(fc.urls) > 0
}

// feedSet is the running feeds, export and list URLs of one instance.
type feedSet struct {
	cfg    *feedsConfig
	log    *slog.Logger
	export *rpz.Exporter
	feeds  *rpz.Feeds
	urls   *urlfeed.Fetcher
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// newFeedSet prepares the state directory and builds every part; nothing
// runs until start. A nil feedSet (nothing configured) is valid.
func newFeedSet(sc *serveConfig, log *slog.Logger) (*feedSet, error) {
	fc := &sc.feeds
	if !fc.enabled() {
		return nil, nil
	}
	if err := os.MkdirAll(fc.stateDir, 0o755); err != nil {
		return nil, fmt.Errorf("--state-dir: %w", err)
	}
	fs := &feedSet{cfg: fc, log: log}
	if err := fs.removeOrphans(); err != nil {
		return nil, err
	}
	if fc.export != "" {
		var err error
		fs.export, err = rpz.NewExporter(rpz.ExportConfig{
			Zone:          fc.export,
			AllowTransfer: fc.allowXfr,
			Notify:        fc.notify,
			SerialFile:    filepath.Join(fc.stateDir, "export."+fc.export+".serial"),
			Build: rpz.BuildOptions{
				Default: sc.blockAction, SinkholeV4: sc.sinkV4, SinkholeV6: sc.sinkV6,
				TTL: uint32(max(sc.blockTTL/time.Second, 1)),
			},
			Logger: log,
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
func (fs *feedSet) removeOrphans() error {
	owned := map[string]bool{}
	for _, f := range fs.cfg.feeds {
		owned[f.Name+".rpz"] = true
	}
	for _, u := range fs.cfg.urls {
		owned[u.File] = true
	}
	ents, err := os.ReadDir(fs.cfg.stateDir)
	if err != nil {
		return fmt.Errorf("--state-dir: %w", err)
	}
	for _, e := range ents {
		if e.IsDir() || !blocklist.IsListFile(e.Name()) || owned[e.Name()] {
			continue
		}
		p := filepath.Join(fs.cfg.stateDir, e.Name())
		if err := os.Remove(p); err != nil {
			return fmt.Errorf("--state-dir: removing %s, which no feed owns: %w", p, err)
		}
		fs.log.Warn("removed a state file no configured feed or list URL owns", "file", p)
	}
	return nil
}

// dirs returns the directories the list store must load besides --lists.
func (fs *feedSet) dirs() []string {
	if fs == nil || (len(fs.cfg.feeds) == 0 && len(fs.cfg.urls) == 0) {
		return nil
	}
	return []string{fs.cfg.stateDir}
}

// attach connects the parts to the store: the export follows every
// reload; feeds and URLs reload the store when their files change. Call
// before the first Reload.
func (fs *feedSet) attach(store *blocklist.Store) error {
	if fs == nil {
		return nil
	}
	if fs.export != nil {
		store.OnReload(func(s *blocklist.Snapshot, _ *blocklist.ReloadReport) { fs.export.Update(s) })
	}
	if len(fs.cfg.feeds) > 0 {
		cfgs := make([]rpz.FeedConfig, len(fs.cfg.feeds))
		for i, f := range fs.cfg.feeds {
			f.Dir, f.Logger = fs.cfg.stateDir, fs.log
			trigger := "rpz-feed " + f.Name
			f.OnUpdate = func() { store.Reload(context.Background(), trigger) }
			cfgs[i] = f
		}
		var err error
		if fs.feeds, err = rpz.NewFeeds(cfgs, fs.log); err != nil {
			return err
		}
	}
	if len(fs.cfg.urls) > 0 {
		var err error
		fs.urls, err = urlfeed.New(urlfeed.Config{
			Sources: fs.cfg.urls, Dir: fs.cfg.stateDir, Interval: fs.cfg.urlInterval, Logger: fs.log,
			OnChange: func() { store.Reload(context.Background(), "list-url") },
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// wrap puts the export's zone answers in front of the chain.
func (fs *feedSet) wrap(h resolver.Handler) resolver.Handler {
	if fs == nil || fs.export == nil {
		return h
	}
	return fs.export.Stage(h)
}

// notifyHandler and transferHandler are the server hooks (nil when unused).
func (fs *feedSet) notifyHandler() resolver.NotifyHandler {
	if fs == nil || fs.feeds == nil {
		return nil
	}
	return fs.feeds.Notify
}

func (fs *feedSet) transferHandler() resolver.TransferHandler {
	if fs == nil || fs.export == nil {
		return nil
	}
	return fs.export.ServeTransfer
}

// start runs feeds, URL fetches and NOTIFY sending (the DNS server must be
// serving: secondaries answer a NOTIFY by querying it).
func (fs *feedSet) start() {
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

// stop ends everything start began.
func (fs *feedSet) stop() {
	if fs == nil || fs.cancel == nil {
		return
	}
	fs.cancel()
	if fs.feeds != nil {
		fs.feeds.Wait()
	}
	fs.wg.Wait()
}

// FeedsStatus is what "status" shows about RPZ feeds, the RPZ export and
// list URLs.
type FeedsStatus struct {
	Feeds  []rpz.FeedStatus  `json:"rpz_feeds,omitempty"`
	Export *rpz.ExportStatus `json:"rpz_export,omitempty"`
	URLs   []urlfeed.Status  `json:"list_urls,omitempty"`
}

// status reports every feed, the export and every list URL (for the admin
// API's status).
func (fs *feedSet) status() FeedsStatus {
	var st FeedsStatus
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

// adminFeeds converts the feeds' status for the admin API.
func (fs *feedSet) adminFeeds() ([]admin.Feed, *admin.Export) {
	st := fs.status()
	var feeds []admin.Feed
	for _, f := range st.Feeds {
		res := f.LastResult
		if f.LastTransferType != "" && res == "transferred" {
			res += " (" + f.LastTransferType + ")"
		}
		feeds = append(feeds, admin.Feed{Name: f.Name, Kind: "rpz", Source: f.Zone + "@" + f.Primary, Serial: f.Serial,
			LastChange: f.LastTransfer, LastCheck: f.LastCheck, LastResult: res, LastError: f.LastError})
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
		exp = &admin.Export{Zone: e.Zone, Serial: e.Serial, Records: e.Records, Changed: e.Changed, IXFRFrom: e.IXFRFrom, Notify: e.Notify,
			Skipped: map[string]int{"monitor": e.Skipped.Monitor, "overseas": e.Skipped.Overseas, "asn": e.Skipped.ASN}}
	}
	return feeds, exp
}
