package main

import (
	"context"
	"html/template"
	"net"

	"github.com/urfave/cli/v2"

	"github.com/sinkhole-dns/sinkhole/blocklist"
	"github.com/sinkhole-dns/sinkhole/blockpage"
	"github.com/sinkhole-dns/sinkhole/resolver/policy"
)

// blockPageFlags are the serve flags of the block page.
func blockPageFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "block-page", Usage: "serve the page blocked browsers land on over HTTP on `ADDR` (the --sinkhole-ipv4/-ipv6 address, port 80) (repeatable)"},
		&cli.StringSliceFlag{Name: "block-page-tls", Usage: "close TLS connections on `ADDR` at once (port 443 of the sinkhole address), so browsers fail fast instead of timing out (repeatable)"},
		&cli.PathFlag{Name: "block-page-template", Usage: "replace the block page with the html/template in `FILE` (checked at start)"},
		&cli.StringFlag{Name: "operator", Usage: "name the resolver's operator (`NAME`, e.g. the ISP) on the block page and as \"o\" in structured DNS errors"},
	}
}

// blockPageConfig is the validated block page configuration.
type blockPageConfig struct {
	addrs, tlsAddrs []string
	tmpl            *template.Template // nil: the built-in page
	operator        string
}

func blockPageConfigFrom(c *cli.Context, cfg *serveConfig) error {
	bp := &cfg.blockPage
	for _, f := range []struct {
		flag string
		dst  *[]string
	}{{"block-page", &bp.addrs}, {"block-page-tls", &bp.tlsAddrs}} {
		for _, a := range c.StringSlice(f.flag) {
			if _, _, err := net.SplitHostPort(a); err != nil {
				return usagef("--%s %q: want host:port", f.flag, a)
			}
			*f.dst = append(*f.dst, a)
		}
	}
	if p := c.Path("block-page-template"); p != "" {
		if len(bp.addrs) == 0 {
			return usagef("--block-page-template needs --block-page")
		}
		t, err := blockpage.Parse(p)
		if err != nil {
			return usagef("--block-page-template: %v", err)
		}
		bp.tmpl = t
	}
	bp.operator = c.String("operator")
	return nil
}

// startBlockPage serves the block page when configured.
func (in *instance) startBlockPage(blocker *policy.Blocker) error {
	bp := in.cfg.blockPage
	if len(bp.addrs) == 0 && len(bp.tlsAddrs) == 0 {
		return nil
	}
	if in.cfg.blockAction != blocklist.ActionSinkhole {
		in.log.Warn("--block-page is set but --block-action is not sinkhole: only rules with \"# action: sinkhole\" send browsers to it")
	}
	srv, err := blockpage.Listen(blockpage.Config{Addrs: bp.addrs, TLSAddrs: bp.tlsAddrs, Template: bp.tmpl,
		Operator: bp.operator, Logger: in.log, Lookup: in.blockPageLookup(blocker)})
	if err != nil {
		return err
	}
	in.blockPage = srv
	in.stop.push(func(ctx context.Context) { srv.Close(ctx) })
	return nil
}

// blockPageLookup finds the enforced rule on a host name in the lists in
// service (monitor-only rules and dry runs block nothing, so they show
// the plain page).
func (in *instance) blockPageLookup(blocker *policy.Blocker) blockpage.Lookup {
	return func(host string) (blockpage.Rule, bool) {
		name, err := blocklist.NormalizeName(host)
		if err != nil {
			return blockpage.Rule{}, false
		}
		snap := in.store.Current()
		m := snap.MatchName(name)
		if !m.Blocked() || !blocker.Resolve(snap.Section(m.Rule).Action).Enforced() {
			return blockpage.Rule{}, false
		}
		r := snap.Rule(m.Rule)
		return blockpage.Rule{Rule: r.Text, File: r.File, Line: r.Line, Platform: r.Platform,
			Authority: r.Authority, Order: r.Order, Contact: r.Contact}, true
	}
}
