package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/sinkhole-dns/sinkhole/blocklist"
	"github.com/sinkhole-dns/sinkhole/blocklist/history"
	"github.com/sinkhole-dns/sinkhole/internal/admin"
)

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:      "status",
		Usage:     "show what the running server is doing: lists, errors, upstreams, counters",
		ArgsUsage: " ",
		Description: "Exit status (for monitoring checks): 0 when everything serves as configured; 1 when a\n" +
			"list file is broken, held or refused, a list source has no version in service, the server\n" +
			"is not ready, an upstream is unhealthy, or the token was refused; 3 when the server cannot\n" +
			"be reached.",
		Flags: append(clientFlags(), &cli.BoolFlag{Name: "json", Usage: "print the raw JSON status"},
			&cli.BoolFlag{Name: "history", Usage: "show the last list versions instead: when, file, SHA-256, rules added and removed, trigger and who"}),
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef("status takes no arguments")
			}
			cl, err := adminClient(c)
			if err != nil {
				return err
			}
			if c.Bool("history") {
				h, err := cl.History(c.Context)
				if err != nil {
					return clientError(c, err)
				}
				if c.Bool("json") {
					return printJSON(c.App.Writer, h)
				}
				printHistory(c.App.Writer, h.Versions)
				return nil
			}
			st, err := cl.Status(c.Context)
			if err != nil {
				return clientError(c, err)
			}
			if c.Bool("json") {
				if err := printJSON(c.App.Writer, st); err != nil {
					return err
				}
			} else {
				printStatus(c.App.Writer, st)
			}
			if problems := statusProblems(st); len(problems) > 0 {
				return cli.Exit(strings.Join(problems, "; "), exitFailure)
			}
			return nil
		},
	}
}

// statusProblems lists what makes "sinkhole status" exit 1: anything not
// serving as configured.
func statusProblems(st *admin.Status) []string {
	var out []string
	for _, m := range st.Missing {
		name := m.Kind
		if m.Name != "" {
			name += " " + m.Name
		}
		out = append(out, "not ready: "+name+": "+m.Reason)
	}
	for _, f := range st.Files {
		switch {
		case f.Withheld != nil && f.Withheld.State != blocklist.StateSettling:
			out = append(out, fmt.Sprintf("list file %s %s", f.Name, f.Withheld.State))
		case f.Refused != nil && f.SHA256 != "":
			out = append(out, "list file "+f.Name+" refused ("+f.Refused.Reason+")")
		case f.Stale && f.SHA256 != "":
			out = append(out, "list file "+f.Name+" broken")
		}
	}
	for _, u := range st.Upstreams {
		if !u.Healthy {
			out = append(out, "upstream "+u.Addr+" unhealthy")
		}
	}
	return out
}

// printJSON writes v as indented JSON (the --json output of the commands).
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return time.Since(t).Round(time.Second).String() + " ago"
}

func short(hash string) string {
	if len(hash) > 12 {
		return hash[:12]
	}
	if hash == "" {
		return "-"
	}
	return hash
}

// printStatus writes the status as readable tables.
func printStatus(w io.Writer, st *admin.Status) {
	ready := "ready"
	if !st.Ready {
		ready = "NOT READY"
	}
	fmt.Fprintf(w, "sinkhole %s, up %s, %s, listening on %s\n", st.Version, time.Duration(st.Uptime), ready, strings.Join(st.Listen, ", "))
	fmt.Fprintf(w, "lists: generation %d built %s, %s\n", st.Generation, ago(st.Reloaded), plural(st.Rules, "rule"))
	printEncrypted(w, st)
	for _, wmsg := range st.Warnings {
		fmt.Fprintf(w, "WARNING: %s\n", wmsg)
	}
	for _, m := range st.Missing {
		name := m.Kind
		if m.Name != "" {
			name += " " + m.Name
		}
		fmt.Fprintf(w, "NOT READY: %s: %s\n", name, m.Reason)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FILE\tRULES\tDOMAINS\tIPS\tASNS\tSHA256\tLOADED\tSTATE")
	for _, f := range st.Files {
		state := "ok"
		serving := "last good version serving"
		if f.SHA256 == "" {
			serving = "not loaded"
		}
		switch {
		case f.Withheld != nil:
			state = strings.ToUpper(f.Withheld.State) + " (" + serving + "): " + f.Withheld.Reason
		case f.Stale:
			state = "BROKEN (" + serving + ")"
		case f.Rules == 0:
			state = "ok (no rules)"
		}
		if r := f.Refused; r != nil {
			state = "REFUSED " + r.Reason + " (last good version serving)"
			if f.Rules == 0 && f.Signature == nil {
				state = "REFUSED " + r.Reason + " (not loaded)"
			}
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\t%s\t%s\n", f.Name, f.Rules, f.Domains, f.IPs, f.ASNs, short(f.SHA256), ago(f.LoadedAt), state)
	}
	tw.Flush()
	printSignatures(w, st.Files)
	for _, e := range st.Errors {
		fmt.Fprintf(w, "  %s\n", e)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(tw, "UPSTREAM\tSTATE\tREQUESTS\tFAILURES\tBAD ANSWERS\tSCRUBBED\tLAST RTT\tLAST ERROR")
	for _, u := range st.Upstreams {
		state := "healthy"
		if !u.Healthy {
			state = "UNHEALTHY"
		}
		if u.NoEDNS {
			state += " (no EDNS)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\n", u.Addr, state, u.Requests, u.Failures, u.BadAnswers, u.Scrubbed,
			time.Duration(u.LastRTT).Round(time.Microsecond), u.LastError)
	}
	tw.Flush()
	c := st.Counters
	fmt.Fprintln(w)
	fmt.Fprintf(w, "queries %d, blocked %d (%s), monitored %d, from cache %d, servfail %d, refused %d, dropped %d\n",
		c.Queries, c.Blocked, percent(c.Blocked, c.Queries), c.Monitored, c.Cached, c.ServFail, c.Refused, c.Dropped)
	fmt.Fprintf(w, "turned away: outside --allow %d refused, %d dropped; rate-limited %d; RRL %d dropped, %d slipped; overloaded %d; TCP connections rejected %d; malformed (FORMERR) %d; panics %d\n",
		c.ACLRefused, c.ACLDropped, c.RateLimited, c.RRLDropped, c.RRLSlipped, c.Overloaded, c.TCPRejected, c.Malformed, c.Panics)
	if len(st.Platforms) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(tw, "TOP PLATFORMS\tBLOCKS")
		for _, p := range st.Platforms {
			fmt.Fprintf(tw, "%s\t%d\n", p.Platform, p.Blocks)
		}
		tw.Flush()
	}
	if len(st.Geo) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(tw, "GEO DATABASE\tTYPE\tPATH\tBUILT\tLOADED\tLAST ERROR")
		for _, g := range st.Geo {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", g.Kind, g.Type, g.Path, g.BuiltAt.Format("2006-01-02"), ago(g.LoadedAt), g.LastError)
		}
		tw.Flush()
	}
	if len(st.Logs) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(tw, "LOG\tPATH\tLINES\tDROPPED")
		for _, l := range st.Logs {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\n", l.Name, l.Path, l.Lines, l.Dropped)
		}
		tw.Flush()
	}
	if len(st.Feeds) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(tw, "FEED\tKIND\tSOURCE\tSERIAL\tRECORDS\tLAST CHANGE\tLAST CHECK\tRESULT\tLAST ERROR")
		for _, f := range st.Feeds {
			res := f.LastResult
			if f.Zonemd != "" {
				res += ", ZONEMD " + f.Zonemd
				if f.ZonemdScheme != "" {
					res += " (" + f.ZonemdScheme + ")"
				}
			}
			records := "-"
			if f.Kind == "rpz" {
				records = strconv.Itoa(f.Records)
				if f.Removed > 0 {
					records += fmt.Sprintf(" (+%d removed)", f.Removed)
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", f.Name, f.Kind, f.Source, f.Serial, records, ago(f.LastChange), ago(f.LastCheck), res, f.LastError)
		}
		tw.Flush()
	}
	if e := st.Export; e != nil {
		fmt.Fprintln(w)
		zonemd := ""
		switch {
		case !e.Zonemd:
			zonemd = ", no ZONEMD (--rpz-export-zonemd=false)"
		case len(e.ZonemdSchemes) > 0:
			zonemd = ", ZONEMD " + strings.Join(e.ZonemdSchemes, "+")
		}
		fmt.Fprintf(w, "RPZ export %s: serial %d, %d records, changed %s, IXFR from serial %d%s; not expressible in RPZ: %d monitor, %d overseas, %d ASN rules\n",
			e.Zone, e.Serial, e.Records, ago(e.Changed), e.IXFRFrom, zonemd, e.Skipped["monitor"], e.Skipped["overseas"], e.Skipped["asn"])
	}
}

func percent(a, b uint64) string {
	if b == 0 {
		return "0%"
	}
	return fmt.Sprintf("%.1f%%", float64(a)*100/float64(b))
}

// printHistory writes the list versions, newest first, as a table.
func printHistory(w io.Writer, vs []history.Version) {
	if len(vs) == 0 {
		fmt.Fprintln(w, "no list version recorded yet")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tGEN\tFILE\tCHANGE\tRULES\tADDED\tREMOVED\tSHA-256\tTRIGGER\tWHO")
	for _, v := range vs {
		who := v.Who
		if who == "" {
			who = "-"
		}
		change := v.Change
		if v.Accepted {
			change += " (accepted)"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%d\t+%d\t-%d\t%s\t%s\t%s\n", v.Time.Format(time.RFC3339), v.Generation, v.File, change,
			v.Rules, v.Added, v.Removed, short(v.SHA256), v.Trigger, who)
	}
	tw.Flush()
	for _, v := range vs {
		if v.Note != "" {
			fmt.Fprintf(w, "%s %s %s: %s\n", v.Time.Format(time.RFC3339), v.File, v.Change, v.Note)
		}
	}
}
