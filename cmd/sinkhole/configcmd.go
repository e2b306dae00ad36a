package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"go.yaml.in/yaml/v3"
	"golang.org/x/sys/unix"

	"github.com/sinkhole-dns/sinkhole/blocklist"
	"github.com/sinkhole-dns/sinkhole/blocklist/listsig"
	"github.com/sinkhole-dns/sinkhole/geo"
	"github.com/sinkhole-dns/sinkhole/internal/tlscert"
)

// configCommand is "sinkhole config [serve flags]": the configuration serve
// would run with, as YAML, each value with where it came from.
func configCommand() *cli.Command {
	return &cli.Command{
		Name:      "config",
		Usage:     "print the configuration serve would run with (YAML), and where each value came from",
		ArgsUsage: "[serve options]",
		Description: "Takes the options of serve (flags, SINKHOLE_ variables, --config FILE) and prints the\n" +
			"effective value of every option, commented default, file, env or flag. The output is a\n" +
			"valid --config file. Exit status 2 when an option is bad.",
		Flags: serveFlags(),
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef("config takes no arguments, got %q", c.Args().First())
			}
			sources, err := optionSources(c)
			if err != nil {
				return err
			}
			cfg, err := serveConfigFrom(c)
			if err != nil {
				return err
			}
			return printEffectiveConfig(c, cfg, sources)
		},
	}
}

// optionSources applies --config and tells, for every option, where its
// value comes from: "flag", "env SINKHOLE_...", "file PATH" or "default".
func optionSources(c *cli.Context) (map[string]string, error) {
	before := map[string]bool{}
	for _, f := range c.Command.Flags {
		if n := f.Names()[0]; c.IsSet(n) {
			before[n] = true
		}
	}
	path := c.Path("config")
	if path != "" {
		if err := applyConfigFile(c, path); err != nil {
			return nil, err
		}
	}
	args, _ := c.App.Metadata[argsKey].([]string)
	onLine := map[string]bool{}
	for _, a := range args {
		if a == "--" {
			break
		}
		if name, ok := strings.CutPrefix(a, "-"); ok {
			name, _, _ = strings.Cut(strings.TrimPrefix(name, "-"), "=")
			onLine[name] = true
		}
	}
	out := map[string]string{}
	for _, f := range c.Command.Flags {
		n := f.Names()[0]
		switch {
		case onLine[n]:
			out[n] = "flag"
		case before[n]:
			out[n] = "env " + envVar(n)[0]
		case c.IsSet(n):
			out[n] = "file " + path
		default:
			out[n] = "default"
		}
	}
	return out, nil
}

func printEffectiveConfig(c *cli.Context, cfg *serveConfig, sources map[string]string) error {
	doc := &yaml.Node{Kind: yaml.MappingNode}
	for _, f := range c.Command.Flags {
		name := f.Names()[0]
		if name == "config" || name == "check-config" {
			continue
		}
		src := sources[name]
		var val *yaml.Node
		switch f.(type) {
		case *cli.StringSliceFlag:
			vals := c.StringSlice(name)
			if name == "upstream" && len(vals) == 0 {
				vals, src = cfg.upstreams, "default: the nameservers in /etc/resolv.conf"
			}
			val = &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
			for _, v := range vals {
				val.Content = append(val.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: v, Style: yaml.DoubleQuotedStyle})
			}
		case *cli.DurationFlag:
			val = &yaml.Node{Kind: yaml.ScalarNode, Value: c.Duration(name).String()}
		case *cli.IntFlag:
			val = &yaml.Node{Kind: yaml.ScalarNode, Value: fmt.Sprint(c.Int(name))}
		case *cli.BoolFlag:
			val = &yaml.Node{Kind: yaml.ScalarNode, Value: fmt.Sprint(c.Bool(name))}
		case *cli.StringFlag, *cli.PathFlag:
			val = &yaml.Node{Kind: yaml.ScalarNode, Value: c.String(name), Style: yaml.DoubleQuotedStyle}
		default:
			val = &yaml.Node{Kind: yaml.ScalarNode, Value: fmt.Sprint(c.Value(name)), Style: yaml.DoubleQuotedStyle}
		}
		key := &yaml.Node{Kind: yaml.ScalarNode, Value: name}
		val.LineComment = src
		doc.Content = append(doc.Content, key, val)
	}
	w := c.App.Writer
	fmt.Fprintln(w, "# The configuration \"sinkhole serve\" runs with, given these options.")
	if p := c.Path("config"); p != "" {
		fmt.Fprintf(w, "# Configuration file: %s (%s)\n", p, sources["config"])
	}
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return err
	}
	return enc.Close()
}

// configChecks are further checks "serve --check-config" runs, for
// subsystems that load files of their own (certificates, keys): each
// returns its problems, one line each.
var configChecks []func(*serveConfig) []string

// checkConfig is "serve --check-config": everything serve would load at
// start is loaded (lists, databases, log directories, certificates), every
// problem printed, and nothing started. Exit status 0 when all is well, 1
// when something would fail or be missing (flag and config errors exit 2
// before this runs).
func checkConfig(w io.Writer, cfg *serveConfig) error {
	problems, warnings := 0, 0
	bad := func(what, msg string) { problems++; fmt.Fprintf(w, "ERROR    %s: %s\n", what, msg) }
	warn := func(what, msg string) { warnings++; fmt.Fprintf(w, "WARNING  %s: %s\n", what, msg) }
	ok := func(what, msg string) { fmt.Fprintf(w, "ok       %s: %s\n", what, msg) }
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))

	ok("options", fmt.Sprintf("valid; listen %s, upstreams %s", strings.Join(cfg.listen, ","), strings.Join(cfg.upstreams, ",")))

	var snap *blocklist.Snapshot
	if st, err := os.Stat(cfg.lists); err != nil {
		bad("lists", err.Error())
	} else if !st.IsDir() {
		bad("lists", cfg.lists+": not a directory")
	} else {
		// As serve loads them: signatures checked against --trusted-key
		// (but the signing times seen are not recorded: a check writes
		// nothing to the state directory).
		verify := cfg.listVerifier()
		if v, isSig := verify.(*listsig.Verifier); isSig {
			readOnly := *v
			readOnly.Seen = nil
			verify = &readOnly
		}
		store := blocklist.NewStore(blocklist.Options{Dirs: []string{cfg.lists}, Logger: quiet, Verify: verify})
		rep, err := store.Reload(context.Background(), "check-config")
		if err != nil {
			bad("lists", err.Error())
		} else {
			snap = store.Current()
			for _, e := range rep.Errors() {
				if e.File != "" && !filepath.IsAbs(e.File) {
					e.File = filepath.Join(cfg.lists, e.File)
				}
				bad("lists", e.Error())
			}
			for _, f := range rep.Files {
				for _, wr := range f.Warnings {
					warn("lists", wr.Error())
				}
			}
			if len(rep.Files) == 0 {
				warn("lists", cfg.lists+": no list files; nothing would be blocked")
			} else if !rep.Failed() {
				ok("lists", fmt.Sprintf("%s: %s, %s", cfg.lists, plural(len(rep.Files), "file"), plural(rep.Rules, "rule")))
			}
		}
	}

	db, err := geo.Open(geo.Options{CountryPath: cfg.geoCountry, ASNPath: cfg.geoASN, Logger: quiet})
	if err != nil {
		bad("geoip", err.Error())
	} else {
		if cfg.geoCountry != "" || cfg.geoASN != "" {
			ok("geoip", strings.TrimSpace(cfg.geoCountry+" "+cfg.geoASN))
		}
		if snap != nil {
			for _, msg := range geoRuleWarnings(snap, db) {
				warn("geoip", msg)
			}
		}
		db.Close()
	}

	if cfg.enc.certFile != "" {
		if cert, err := tlscert.Load(tlscert.Options{CertFile: cfg.enc.certFile, KeyFile: cfg.enc.keyFile, Logger: quiet}); err != nil {
			bad("certificate", err.Error())
		} else {
			st := cert.Status()
			msg := fmt.Sprintf("%s: %s, expires %s", cfg.enc.certFile, strings.Join(st.Names, ","), st.NotAfter.UTC().Format(time.RFC3339))
			switch left := time.Until(st.NotAfter); {
			case left <= 0:
				bad("certificate", msg+" (expired)")
			case left < 14*24*time.Hour:
				warn("certificate", msg+" (in less than two weeks)")
			default:
				ok("certificate", msg)
			}
			cert.Close()
		}
	}

	for _, l := range []logConfig{cfg.auditLog, cfg.queryLog} {
		if l.path == "" || l.path == "-" {
			continue
		}
		dir := filepath.Dir(l.path)
		if err := unix.Access(dir, unix.W_OK|unix.X_OK); err != nil {
			bad("logs", fmt.Sprintf("%s: directory %s is not writable: %v", l.path, dir, err))
		} else {
			ok("logs", l.path)
		}
	}

	for _, check := range configChecks {
		for _, msg := range check(cfg) {
			bad("config", msg)
		}
	}

	if problems > 0 {
		return cli.Exit(fmt.Sprintf("check-config: %s, %s", plural(problems, "problem"), plural(warnings, "warning")), exitFailure)
	}
	fmt.Fprintf(w, "configuration ok (%s)\n", plural(warnings, "warning"))
	return nil
}

// checkListsDir refuses a --lists that is not a directory: a usage error
// (exit 2), like any bad option.
func checkListsDir(dir string) error {
	st, err := os.Stat(dir)
	if err != nil {
		return usagef("--lists %s: %v", dir, errors.Unwrap(err))
	}
	if !st.IsDir() {
		return usagef("--lists %s: not a directory", dir)
	}
	return nil
}
