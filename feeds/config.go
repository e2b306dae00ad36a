package feeds

import (
	"fmt"
	"net/netip"
	"net/url"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/sinkhole-dns/sinkhole/blocklist"
	"github.com/sinkhole-dns/sinkhole/blocklist/urlfeed"
	"github.com/sinkhole-dns/sinkhole/resolver/rpz"
)

// Options are the settings as the operator gives them (serve's flags or
// the YAML file), one field per option; Parse validates them. Each error
// names the option ("--rpz-feed ...").
type Options struct {
	StateDir      string        // --state-dir
	Feeds         []string      // --rpz-feed NAME=ZONE@PRIMARY[:PORT]
	TSIG          []string      // --rpz-tsig NAME=FILE
	Export        string        // --rpz-export ZONE
	AllowTransfer []string      // --rpz-allow-transfer CIDR
	Notify        []string      // --rpz-notify ADDR
	Zonemd        string        // --rpz-export-zonemd: simple, merkle3, simple,merkle3, false ("" for the default)
	URLs          []string      // --list-url NAME=URL
	URLInterval   time.Duration // --list-url-interval
	MaxListSize   int64         // --max-list-mb, in bytes (the list store's default if 0)
}

// Config is the validated configuration of feeds, the export and list URLs.
type Config struct {
	StateDir      string
	Feeds         []rpz.FeedConfig // Dir, OnUpdate and Logger are set by New
	Export        string           // zone name, "" for none
	AllowTransfer []netip.Prefix
	Notify        []string // host:port
	NoZonemd      bool     // the export publishes no ZONEMD
	ZonemdSchemes []uint8  // the ZONEMD schemes it publishes (rpz.DefaultExportZonemd if empty)
	URLs          []urlfeed.Source
	URLInterval   time.Duration
	MaxListSize   int64 // bytes; a list URL's download is refused above it
}

// feedNameRE is what a feed or list URL name may hold: it becomes a file name.
var feedNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// Parse validates o. lists is the --lists directory, which the state
// directory must not be.
func Parse(o Options, lists string) (Config, error) {
	fc := Config{StateDir: o.StateDir, URLInterval: o.URLInterval, MaxListSize: o.MaxListSize}
	var err error
	if fc.ZonemdSchemes, fc.NoZonemd, err = rpz.ParseZonemdSchemes(o.Zonemd); err != nil {
		return Config{}, fmt.Errorf("--rpz-export-zonemd %q: %w", o.Zonemd, err)
	}
	names := map[string]string{} // file base name -> option
	claim := func(flag, name, file string) error {
		if !feedNameRE.MatchString(name) {
			return fmt.Errorf("--%s %q: NAME must be letters, digits, '-', '_' or '.'", flag, name)
		}
		key := strings.ToLower(strings.TrimSuffix(file, filepath.Ext(file)))
		if prev, ok := names[key]; ok {
			return fmt.Errorf("--%s %s: the name is already used by --%s", flag, name, prev)
		}
		names[key] = flag
		return nil
	}
	for _, v := range o.Feeds {
		f, err := parseFeed(v)
		if err != nil {
			return Config{}, fmt.Errorf("--rpz-feed %q: %w", v, err)
		}
		if err := claim("rpz-feed", f.Name, f.Name+".rpz"); err != nil {
			return Config{}, err
		}
		for _, prev := range fc.Feeds {
			if strings.EqualFold(prev.Zone, f.Zone) {
				return Config{}, fmt.Errorf("--rpz-feed %s: zone %s is already fed by %s", f.Name, f.Zone, prev.Name)
			}
		}
		fc.Feeds = append(fc.Feeds, f)
	}
	for _, v := range o.TSIG {
		name, file, ok := strings.Cut(v, "=")
		if !ok || file == "" {
			return Config{}, fmt.Errorf("--rpz-tsig %q: want FEED=KEYFILE", v)
		}
		i := feedIndex(fc.Feeds, name)
		if i < 0 {
			return Config{}, fmt.Errorf("--rpz-tsig %s: no --rpz-feed named %s", v, name)
		}
		key, err := rpz.LoadTSIGKey(file)
		if err != nil {
			return Config{}, fmt.Errorf("--rpz-tsig %s: %w", name, err)
		}
		fc.Feeds[i].Key = key
	}
	if z := o.Export; z != "" {
		n, err := blocklist.NormalizeName(z)
		if err != nil {
			return Config{}, fmt.Errorf("--rpz-export %q: want a zone name such as rpz.regulator.example", z)
		}
		fc.Export = n
	}
	for _, v := range o.AllowTransfer {
		p, err := parsePrefix(v)
		if err != nil {
			return Config{}, fmt.Errorf("--rpz-allow-transfer %q: want a CIDR prefix or an IP address", v)
		}
		fc.AllowTransfer = append(fc.AllowTransfer, p)
	}
	for _, v := range o.Notify {
		ap, err := parseAddrPort(v, 53)
		if err != nil {
			return Config{}, fmt.Errorf("--rpz-notify %q: want IP or IP:port", v)
		}
		fc.Notify = append(fc.Notify, ap.String())
	}
	if fc.Export == "" && (len(fc.AllowTransfer) > 0 || len(fc.Notify) > 0) {
		return Config{}, fmt.Errorf("--rpz-allow-transfer and --rpz-notify need --rpz-export")
	}
	if fc.Export == "" && (fc.NoZonemd || (len(fc.ZonemdSchemes) > 0 && !slices.Equal(fc.ZonemdSchemes, rpz.DefaultExportZonemd))) {
		return Config{}, fmt.Errorf("--rpz-export-zonemd=%s needs --rpz-export", o.Zonemd)
	}
	for _, v := range o.URLs {
		name, raw, ok := strings.Cut(v, "=")
		if !ok {
			return Config{}, fmt.Errorf("--list-url %q: want NAME=URL", v)
		}
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return Config{}, fmt.Errorf("--list-url %s: %q is not an http or https URL", name, raw)
		}
		file := listURLFile(name, u)
		if err := claim("list-url", name, file); err != nil {
			return Config{}, err
		}
		fc.URLs = append(fc.URLs, urlfeed.Source{Name: name, URL: raw, File: file})
	}
	if fc.URLInterval < 100*time.Millisecond || fc.URLInterval > 24*time.Hour {
		return Config{}, fmt.Errorf("--list-url-interval %s: want between 100ms and 24h", fc.URLInterval)
	}
	if fc.Enabled() {
		if fc.StateDir == "" {
			return Config{}, fmt.Errorf("--state-dir: a directory is needed for --rpz-feed, --rpz-export and --list-url")
		}
		a, _ := filepath.Abs(fc.StateDir)
		b, _ := filepath.Abs(lists)
		if a == b {
			return Config{}, fmt.Errorf("--state-dir %s: must not be the --lists directory (sinkhole owns the files in it)", fc.StateDir)
		}
	}
	return fc, nil
}

// Enabled reports whether anything is configured (and needs the state
// directory).
func (fc *Config) Enabled() bool {
	return len(fc.Feeds) > 0 || fc.Export != "" || len(fc.URLs) > 0
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

// parsePrefix reads a CIDR prefix or a single address.
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
