package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/miekg/dns"
	"github.com/urfave/cli/v2"

	"github.com/sinkhole-dns/sinkhole/blocklist"
	"github.com/sinkhole-dns/sinkhole/internal/admin"
	"github.com/sinkhole-dns/sinkhole/resolver/policy"
)

func queryCommand() *cli.Command {
	return &cli.Command{
		Name:      "query",
		Usage:     "explain the decision for a name: blocked or allowed, by which rule, and why",
		ArgsUsage: "NAME",
		Description: "Asks the running server (which resolves the name to check answer-based rules),\n" +
			"or with --lists DIR decides offline from the files.",
		Flags: append(clientFlags(),
			&cli.StringFlag{Name: "type", Value: "A", Usage: "query `TYPE`"},
			&cli.StringFlag{Name: "lists", Usage: "decide offline from the list files in `DIR`"},
			&cli.StringFlag{Name: "block-action", Value: "nxdomain", Usage: "with --lists: the server's --block-action"},
			&cli.BoolFlag{Name: "json", Usage: "print the raw JSON explanation"},
		),
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usagef("query takes exactly one NAME")
			}
			name := c.Args().First()
			var ex *admin.Explanation
			var err error
			if dir := c.String("lists"); dir != "" {
				ex, err = explainOffline(c.Context, dir, name, c.String("type"), c.String("block-action"))
				if err != nil {
					return err
				}
			} else {
				cl, err := adminClient(c)
				if err != nil {
					return err
				}
				if ex, err = cl.Explain(c.Context, name, c.String("type")); err != nil {
					return clientError(c, err)
				}
			}
			if c.Bool("json") {
				return printJSON(c.App.Writer, ex)
			}
			printExplanation(c.App.Writer, ex)
			return nil
		},
	}
}

// explainOffline loads dir and decides the name without resolving it.
func explainOffline(ctx context.Context, dir, name, qtype, action string) (*admin.Explanation, error) {
	act, err := blocklist.ParseAction(action)
	if err != nil || act == blocklist.ActionLog {
		return nil, usagef("--block-action %q: want nxdomain, nodata, refused or sinkhole", action)
	}
	canon, t, err := explainParams(name, qtype)
	if err != nil {
		return nil, cli.Exit(err.Error(), exitFailure)
	}
	st := blocklist.NewStore(blocklist.Options{Dirs: []string{dir}, Logger: slog.New(slog.DiscardHandler)})
	rep, err := st.Reload(ctx, "query")
	if err != nil {
		return nil, cli.Exit(err.Error(), exitFailure)
	}
	for _, le := range rep.Errors() {
		fmt.Fprintf(os.Stderr, "warning: file not loaded: %s\n", le.Error())
	}
	ex := (&policy.Answer{Block: &policy.Blocker{Default: act}}).Explain(st.Current(), canon, nil)
	ex.Qtype = dns.TypeToString[t]
	return explanation(ex), nil
}

// ruleLine describes a rule on one line; under dryRun its action is
// marked as the server's --dry-run.
func ruleLine(r *admin.Rule, dryRun bool) string {
	s := fmt.Sprintf("%s  (%s:%d", r.Text, r.File, r.Line)
	if r.Platform != "" {
		s += ", platform " + r.Platform
	}
	act := r.Action
	if dryRun {
		act += " (dry-run)"
	}
	return s + ", action " + act + ", scope " + r.Scope + ")"
}

// printWhy writes a rule's authority, order and contact, one per line.
func printWhy(w io.Writer, r *admin.Rule) {
	for _, f := range [][2]string{{"authority", r.Authority}, {"order", r.Order}, {"contact", r.Contact}} {
		if f[1] != "" {
			fmt.Fprintf(w, "  %-10s %s\n", f[0]+":", f[1])
		}
	}
}

// printExplanation writes an explanation for people.
func printExplanation(w io.Writer, ex *admin.Explanation) {
	switch ex.Verdict {
	case "blocked":
		fmt.Fprintf(w, "%s %s: BLOCKED (%s) by %s\n", ex.Name, ex.Type, ex.Action, ex.Trigger)
	case "logged":
		if ex.DryRun {
			fmt.Fprintf(w, "%s %s: ALLOWED, but monitored: a rule matched (%s) and the server runs --dry-run (every rule acts as log)\n", ex.Name, ex.Type, ex.Trigger)
		} else {
			fmt.Fprintf(w, "%s %s: ALLOWED, but monitored: a rule with action log matched (%s)\n", ex.Name, ex.Type, ex.Trigger)
		}
	default:
		fmt.Fprintf(w, "%s %s: ALLOWED\n", ex.Name, ex.Type)
	}
	switch {
	case ex.Rule != nil:
		fmt.Fprintf(w, "  rule:      %s\n", ruleLine(ex.Rule, ex.DryRun))
		printWhy(w, ex.Rule)
	case ex.Question != nil && !ex.Question.Exception:
		fmt.Fprintf(w, "  rule:      %s\n", ruleLine(ex.Question, ex.DryRun))
		printWhy(w, ex.Question)
	}
	if ex.Exception != nil {
		fmt.Fprintf(w, "  exception: %s overrides the rule above\n", ruleLine(ex.Exception, ex.DryRun))
	} else if ex.Question != nil && ex.Question.Exception {
		fmt.Fprintf(w, "  exception: %s\n", ruleLine(ex.Question, ex.DryRun))
	}
	if ex.Overseas != nil && ex.Verdict != "blocked" {
		fmt.Fprintf(w, "  overseas:  %s applies only to answers outside %s\n", ruleLine(ex.Overseas, ex.DryRun), orDash(ex.Home))
	}
	if ex.Reason != "" {
		fmt.Fprintf(w, "  EDE text:  %s\n", ex.Reason)
	}
	if ex.Resolved {
		fmt.Fprintf(w, "  answer from upstream %s: %s, %s\n", orDash(ex.Upstream), ex.Rcode, plural(len(ex.Answer), "record"))
		for _, r := range ex.Answer {
			line := fmt.Sprintf("    %s %s %s", r.Owner, r.Type, r.Data)
			if r.Type == "A" || r.Type == "AAAA" {
				line += "  country " + orDash(r.Country)
				if r.ASN != 0 {
					line += fmt.Sprintf(", AS%d %s", r.ASN, r.ASOrg)
				}
				if r.Foreign != nil && *r.Foreign {
					line += " (foreign)"
				}
			}
			fmt.Fprintln(w, line)
			for i := range r.Matches {
				m := &r.Matches[i]
				state := "overridden"
				switch {
				case m.Exception:
					state = "exception"
				case m.Fires:
					state = "fires"
				}
				fmt.Fprintf(w, "      %s rule (%s): %s\n", m.Trigger, state, ruleLine(m, ex.DryRun))
			}
		}
	} else if ex.ResolveError != "" {
		fmt.Fprintf(w, "  not resolved: %s (answer-based rules unchecked)\n", ex.ResolveError)
	} else if ex.Verdict == "blocked" && ex.Trigger == "qname" {
		fmt.Fprintln(w, "  not resolved: blocked by name before the upstream is asked")
	}
	fmt.Fprintf(w, "  generation %d\n", ex.Generation)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
