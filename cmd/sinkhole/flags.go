package main

import (
	"fmt"
	"reflect"
	"regexp"
	"strings"

	"github.com/urfave/cli/v2"
)

// envVar is the environment variable for a flag: SINKHOLE_ and the flag
// name in upper case with dashes as underscores.
func envVar(flag string) []string {
	return []string{"SINKHOLE_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))}
}

// withEnv gives every flag its SINKHOLE_ environment variable. Every
// urfave/cli flag type holds its variables in an EnvVars field; setting it
// by reflection covers every type, so a flag of a new type cannot be left
// without one (TestEveryFlagHasEnv checks).
func withEnv(flags []cli.Flag) []cli.Flag {
	for _, f := range flags {
		if v := reflect.ValueOf(f); v.Kind() == reflect.Pointer {
			if field := v.Elem().FieldByName("EnvVars"); field.IsValid() && field.CanSet() {
				field.Set(reflect.ValueOf(envVar(f.Names()[0])))
			}
		}
	}
	return flags
}

// flagCategories groups the serve flags in "sinkhole serve --help" (and in
// the man page). It is the one place a flag's category is written: a new
// serve flag needs a line here, or it lands in uncategorized, which
// TestEveryServeFlagHasCategory rejects.
var flagCategories = map[string]string{
	"config":       catConfig,
	"check-config": catConfig,

	"listen":                   catService,
	"allow":                    catService,
	"refuse-action":            catService,
	"client-qps":               catService,
	"client-burst":             catService,
	"rrl-rate":                 catService,
	"rrl-slip":                 catService,
	"max-inflight":             catService,
	"udp-batch":                catService,
	"tcp-max-conns":            catService,
	"tcp-max-conns-per-client": catService,
	"tcp-idle-timeout":         catService,
	"listen-tls":               catService,
	"listen-https":             catService,
	"listen-h3":                catService,
	"listen-quic":              catService,
	"tls-cert":                 catService,
	"tls-key":                  catService,
	"trusted-proxy":            catService,
	"block-doh-canary":         catLists,
	"block-private-relay":      catLists,
	"identity":                 catService,
	"version-string":           catService,

	"upstream":                catUpstream,
	"upstream-timeout":        catUpstream,
	"upstream-fail-threshold": catUpstream,
	"upstream-probe-interval": catUpstream,
	"upstream-bootstrap":      catUpstream,
	"upstream-ca":             catUpstream,
	"upstream-spki-pin":       catUpstream,

	"lists":               catLists,
	"block-action":        catLists,
	"sinkhole-ipv4":       catLists,
	"sinkhole-ipv6":       catLists,
	"block-ttl":           catLists,
	"reload-debounce":     catLists,
	"dry-run":             catLists,
	"trusted-key":         catLists,
	"max-shrink":          catLists,
	"start-strategy":      catLists,
	"start-timeout":       catLists,
	"max-list-mb":         catLists,
	"block-page":          catLists,
	"block-page-tls":      catLists,
	"block-page-template": catLists,
	"operator":            catLists,

	"cache-size":    catCache,
	"cache-min-ttl": catCache,
	"cache-max-ttl": catCache,
	"serve-stale":   catCache,
	"prefetch":      catCache,

	"geoip-country": catGeo,
	"geoip-asn":     catGeo,
	"home-country":  catGeo,

	"rpz-feed":           catFeeds,
	"rpz-tsig":           catFeeds,
	"rpz-require-zonemd": catFeeds,
	"rpz-export":         catFeeds,
	"rpz-allow-transfer": catFeeds,
	"rpz-notify":         catFeeds,
	"rpz-export-zonemd":  catFeeds,
	"list-url":           catFeeds,
	"list-url-interval":  catFeeds,
	"state-dir":          catFeeds,

	"admin":            catAdmin,
	"admin-token-file": catAdmin,
	"pprof":            catAdmin,

	"log-level":             catLogs,
	"log-format":            catLogs,
	"audit-log":             catLogs,
	"audit-log-max-size":    catLogs,
	"audit-log-max-backups": catLogs,
	"query-log":             catLogs,
	"query-log-max-size":    catLogs,
	"query-log-max-backups": catLogs,
	"log-buffer":            catLogs,
	"dnstap":                catLogs,
	"dnstap-identity":       catLogs,
	"dnstap-upstream":       catLogs,
	"dnstap-queue":          catLogs,
}

// The categories, in the order help shows them (urfave/cli sorts them by
// name, hence the numbers).
const (
	catConfig     = "1. Configuration"
	catService    = "2. Serving DNS: listeners, clients, limits"
	catUpstream   = "3. Upstreams"
	catLists      = "4. Lists and block answers"
	catCache      = "5. Cache"
	catGeo        = "6. Answer policy: GeoIP"
	catFeeds      = "7. RPZ feeds, RPZ export, list URLs"
	catAdmin      = "8. Admin API"
	catLogs       = "9. Logs and dnstap"
	uncategorized = "UNCATEGORIZED (add the flag to flagCategories in cmd/sinkhole/flags.go)"
)

// withCategories sets each flag's help category from flagCategories, by
// reflection (every urfave/cli flag type has a Category field), so flag
// definitions stay free of it.
func withCategories(flags []cli.Flag) []cli.Flag {
	for _, f := range flags {
		cat, ok := flagCategories[f.Names()[0]]
		if !ok {
			cat = uncategorized
		}
		if v := reflect.ValueOf(f); v.Kind() == reflect.Pointer {
			if field := v.Elem().FieldByName("Category"); field.IsValid() && field.CanSet() {
				field.SetString(cat)
			}
		}
	}
	return flags
}

// placeholders name a flag's value in help when its usage text has no
// `PLACEHOLDER` of its own (urfave/cli would print "value").
var placeholders = map[string]string{
	"*cli.DurationFlag":    "DURATION",
	"*cli.IntFlag":         "N",
	"*cli.PathFlag":        "FILE",
	"*cli.StringFlag":      "VALUE",
	"*cli.StringSliceFlag": "VALUE",
}

func init() {
	defaultStringer := cli.FlagStringer
	cli.FlagStringer = func(f cli.Flag) string {
		s := defaultStringer(f)
		if p, ok := placeholders[reflect.TypeOf(f).String()]; ok {
			for _, n := range f.Names() {
				dash := "--"
				if len(n) == 1 {
					dash = "-"
				}
				s = strings.Replace(s, dash+n+" value", dash+n+" "+p, 1)
			}
		}
		return s
	}
}

// flagValueError rewrites urfave/cli's complaint about a flag's value
// ("invalid value \"5\" for flag -block-ttl: parse error", or the same from
// an environment variable) as one line that names the flag with its dashes
// and says what is wanted. ok is false when msg is not such a complaint.
func flagValueError(flags []cli.Flag, msg string) (string, bool) {
	if m := invalidValue.FindStringSubmatch(msg); m != nil {
		return fmt.Sprintf("--%s %q: %s", m[2], m[1], badValue(flags, m[2], m[3])), true
	}
	if m := invalidEnv.FindStringSubmatch(msg); m != nil {
		return fmt.Sprintf("%s %q (--%s): %s", m[2], m[1], m[3], badValue(flags, m[3], m[4])), true
	}
	return "", false
}

var (
	invalidValue = regexp.MustCompile(`^invalid value "(.*)" for flag -{1,2}([a-z0-9-]+): (.*)$`)
	invalidEnv   = regexp.MustCompile(`^could not parse "(.*)" as .* from (?:environment variable )?"?([A-Z0-9_]+)"? for flag ([a-z0-9-]+): (.*)$`)
)

// badValue says what the flag name wants; how is the parser's complaint,
// used for types without a better explanation.
func badValue(flags []cli.Flag, name, how string) string {
	for _, f := range flags {
		for _, n := range f.Names() {
			if n != name {
				continue
			}
			switch f.(type) {
			case *cli.DurationFlag:
				return "not a duration; use a unit, e.g. 300s or 5m"
			case *cli.IntFlag, *cli.Int64Flag, *cli.UintFlag, *cli.Uint64Flag:
				return "want a whole number"
			case *cli.BoolFlag:
				return "want true or false"
			}
		}
	}
	return how
}
