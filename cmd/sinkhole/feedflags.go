package main

import (
	"time"

	"github.com/urfave/cli/v2"

	"github.com/sinkhole-dns/sinkhole/feeds"
)

// feedFlags are the serve flags of RPZ feeds, the RPZ export and list URLs
// (package feeds parses and runs them).
func feedFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "rpz-feed", Usage: "be a secondary for an RPZ zone: `NAME=ZONE@PRIMARY[:PORT]` (repeatable)"},
		&cli.StringSliceFlag{Name: "rpz-tsig", Usage: "sign the transfers of feed NAME with the TSIG key in FILE (tsig-keygen format): `NAME=FILE` (repeatable)"},
		&cli.StringFlag{Name: "state-dir", Value: "./state", Usage: "keep the last good version of each --lists file, RPZ feed zones, list URL copies and the export serial in `DIR`"},
		&cli.StringFlag{Name: "rpz-export", Usage: "serve the loaded lists as the RPZ zone `ZONE` over AXFR and IXFR"},
		&cli.StringSliceFlag{Name: "rpz-allow-transfer", Usage: "networks that may transfer the exported zone, `CIDR` (repeatable; default loopback)"},
		&cli.StringSliceFlag{Name: "rpz-notify", Usage: "send NOTIFY for the exported zone to `ADDR`, IP or IP:port (repeatable)"},
		&cli.StringFlag{Name: "rpz-export-zonemd", Value: "simple,merkle3", Usage: "the ZONEMD (RFC 8976) records of every version of the exported zone: `SCHEMES` simple, merkle3 or simple,merkle3; false (or none) for none. SIMPLE (which every verifier knows) hashes the whole zone per change at the primary and at each secondary checking it; MERKLE3 (draft-aklpdw-dnsop-zonemd-incremental, scheme 240, which sinkhole secondaries check first) costs what changed; merkle3 alone spares the primary SIMPLE's pass but leaves other verifiers (Unbound, ldns) nothing to check; false sends changes soonest but secondaries can no longer check that their copy is whole, and a secondary with --rpz-require-zonemd refuses the zone (true: the default)"},
		&cli.StringSliceFlag{Name: "list-url", Usage: "fetch a list over HTTP(S): `NAME=URL` (repeatable)"},
		&cli.DurationFlag{Name: "list-url-interval", Value: 5 * time.Minute, Usage: "time between fetches of each --list-url"},
	}
}

// feedsConfigFrom maps the feed flags to the feeds package's options and
// validates them.
func feedsConfigFrom(c *cli.Context, lists string) (feeds.Config, error) {
	tsig, err := credentialValues(c.StringSlice("rpz-tsig"))
	if err != nil {
		return feeds.Config{}, usagef("--rpz-tsig %v", err)
	}
	fc, err := feeds.Parse(feeds.Options{
		StateDir:      c.String("state-dir"),
		Feeds:         c.StringSlice("rpz-feed"),
		TSIG:          tsig,
		Export:        c.String("rpz-export"),
		AllowTransfer: c.StringSlice("rpz-allow-transfer"),
		Notify:        c.StringSlice("rpz-notify"),
		Zonemd:        zonemdFlag(c),
		URLs:          c.StringSlice("list-url"),
		URLInterval:   c.Duration("list-url-interval"),
		MaxListSize:   int64(c.Int("max-list-mb")) << 20,
	}, lists)
	if err != nil {
		return fc, usagef("%v", err)
	}
	return fc, nil
}

// zonemdFlag is --rpz-export-zonemd as given ("" when it was not: the
// default, which needs no --rpz-export).
func zonemdFlag(c *cli.Context) string {
	if !c.IsSet("rpz-export-zonemd") {
		return ""
	}
	return c.String("rpz-export-zonemd")
}
