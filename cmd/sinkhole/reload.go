package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/sinkhole-dns/sinkhole/blocklist"
	"github.com/sinkhole-dns/sinkhole/blocklist/history"
	"github.com/sinkhole-dns/sinkhole/internal/admin"
)

func reloadCommand() *cli.Command {
	return &cli.Command{
		Name:      "reload",
		Usage:     "make the running server reread its lists now, and show what changed",
		ArgsUsage: " ",
		Description: "Exit status: 0 when every file loaded, 1 when a file failed, was held by the shrink guard\n" +
			"or refused (its last good version stays in service; the errors are printed as file:line),\n" +
			"3 when the server cannot be reached. --accept applies the versions the shrink guard holds.",
		Flags: append(clientFlags(), &cli.BoolFlag{Name: "accept", Usage: "apply the new versions the shrink guard holds (files that would lose their rules, most of them, or were deleted)"}),
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef("reload takes no arguments")
			}
			cl, err := adminClient(c)
			if err != nil {
				return err
			}
			res, err := cl.Reload(c.Context, admin.ReloadOptions{Accept: c.Bool("accept")})
			if res == nil && err != nil {
				return clientError(c, err)
			}
			printReload(c.App.Writer, res)
			if res.Error != "" {
				return cli.Exit("reload failed: "+res.Error, exitFailure)
			}
			if !res.OK {
				return cli.Exit("", exitFailure)
			}
			return nil
		},
	}
}

// printReload writes a reload result as a table of files.
func printReload(w io.Writer, r *admin.ReloadResult) {
	state := "unchanged"
	if r.Changed {
		state = "new"
	}
	fmt.Fprintf(w, "generation %d (%s), %s, %s\n", r.Generation, state, plural(r.Rules, "rule"), time.Duration(r.Duration).Round(time.Microsecond))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, f := range r.Files {
		rules := plural(f.Rules, "rule")
		switch f.Change {
		case blocklist.ChangeUpdated, blocklist.ChangeRemoved:
			rules += fmt.Sprintf(" (was %d)", f.PreviousRules)
		case blocklist.ChangeFailed, blocklist.ChangeHeld, blocklist.ChangeSettling:
			if f.Rules > 0 || (f.Withheld != nil && f.PreviousRules > 0) {
				rules += " (last good version kept)"
			} else {
				rules += " (not loaded)"
			}
		}
		if f.Accepted {
			rules += ", accepted"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", f.Change, f.Name, rules)
	}
	tw.Flush()
	held := false
	for _, f := range r.Files {
		for _, e := range f.Errors {
			fmt.Fprintf(w, "  %s\n", e.Error())
		}
		if f.Withheld != nil {
			fmt.Fprintf(w, "  %s: %s: %s\n", f.Name, f.Withheld.State, f.Withheld.Reason)
			held = held || f.Change == blocklist.ChangeHeld
		}
	}
	if held {
		fmt.Fprintln(w, "held versions are not in service; \"sinkhole reload --accept\" applies them")
	}
	printDiffs(w, r.Diffs)
}

// printDiffs writes the rules each file gained (+) and lost (-).
func printDiffs(w io.Writer, diffs []history.Diff) {
	for _, d := range diffs {
		fmt.Fprintf(w, "%s: %d added, %d removed\n", d.File, d.AddedCount, d.RemovedCount)
		for _, side := range []struct {
			sign  string
			rules []string
			count int
		}{{"+", d.Added, d.AddedCount}, {"-", d.Removed, d.RemovedCount}} {
			for _, r := range side.rules {
				fmt.Fprintf(w, "  %s %s\n", side.sign, r)
			}
			if more := side.count - len(side.rules); more > 0 {
				fmt.Fprintf(w, "  %s ... and %d more\n", side.sign, more)
			}
		}
	}
}
