package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/sinkhole-dns/sinkhole/internal/compliance"
)

func reportCommand() *cli.Command {
	return &cli.Command{
		Name:      "report",
		Usage:     "summarise audit logs for a regulator: blocks per platform and list file, first and last, distinct clients",
		ArgsUsage: "[AUDIT-LOG...]",
		Description: "Reads each AUDIT-LOG (default " + defaultAuditLog + ") and its rotated copies beside it\n" +
			"(NAME-TIMESTAMP.EXT, gzip'd or not: gzip is recognised by content). Lines that are not\n" +
			"audit lines are counted and the first of them named as file:line. Exit status 1 when a\n" +
			"file cannot be read.",
		Flags: withEnv([]cli.Flag{
			&cli.StringFlag{Name: "since", Usage: "count only lines from `WHEN` on: a duration back from now (36h, 7d), a date (2026-01-02, UTC) or an RFC 3339 time"},
			&cli.StringFlag{Name: "format", Value: "table", Usage: "table, csv or json"},
		}),
		Action: func(c *cli.Context) error {
			format := c.String("format")
			if !slices.Contains(compliance.Formats, format) {
				return usagef("--format %q: want table, csv or json", format)
			}
			var since time.Time
			if s := c.String("since"); s != "" {
				var err error
				if since, err = compliance.ParseSince(s, time.Now()); err != nil {
					return usagef("%v", err)
				}
			}
			args := c.Args().Slice()
			if len(args) == 0 {
				args = []string{defaultAuditLog}
			}
			files, err := withRotated(args)
			if err != nil {
				return cli.Exit(err.Error(), exitFailure)
			}
			r := compliance.NewReport(since)
			for _, f := range files {
				if err := r.AddFile(f); err != nil {
					return cli.Exit(err.Error(), exitFailure)
				}
			}
			r.Finish()
			return r.Write(c.App.Writer, format)
		},
	}
}

// withRotated returns the files named and the rotated copies the audit log
// writes beside each (lumberjack: NAME-2006-01-02T15-04-05.000.EXT, with
// .gz when compressed), oldest first, each once. A named file must exist.
func withRotated(paths []string) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			return nil, err
		}
		ext := filepath.Ext(p)
		base := strings.TrimSuffix(p, ext)
		var rotated []string
		for _, pattern := range []string{base + "-*" + ext, base + "-*" + ext + ".gz"} {
			m, _ := filepath.Glob(pattern)
			rotated = append(rotated, m...)
		}
		slices.Sort(rotated) // the timestamp sorts oldest first
		for _, f := range append(rotated, p) {
			abs, err := filepath.Abs(f)
			if err != nil || seen[abs] {
				continue
			}
			seen[abs] = true
			out = append(out, f)
		}
	}
	return out, nil
}
