package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/urfave/cli/v2"

	"github.com/sinkhole-dns/sinkhole/blocklist"
	"github.com/sinkhole-dns/sinkhole/blocklist/listsig"
)

func checkCommand() *cli.Command {
	return &cli.Command{
		Name:      "check",
		Usage:     "parse list files offline and report every error (run before publishing a list)",
		ArgsUsage: "[PATH...]",
		Description: "PATH is a list file or a directory of them (default ./lists). Prints each file's\n" +
			"rule counts and every error as file:line: message. With --trusted-key, each file's\n" +
			"signature (FILE.minisig) must verify too. A file over --max-list-mb is an error, as\n" +
			"it is for serve. Then warnings: duplicate rules, rules a listed\n" +
			"parent already covers, files without rules. Exit status 1 on any error.",
		Flags: withEnv([]cli.Flag{trustedKeyFlag(), maxListFlag()}),
		Action: func(c *cli.Context) error {
			maxSize, err := maxListBytes(c)
			if err != nil {
				return err
			}
			var ring *listsig.Keyring
			if keys := c.StringSlice("trusted-key"); len(keys) > 0 {
				var err error
				if ring, err = listsig.NewKeyring(keys); err != nil {
					return usagef("--trusted-key: %v", err)
				}
			}
			paths := c.Args().Slice()
			if len(paths) == 0 {
				paths = []string{"./lists"}
			}
			var files []string
			for _, p := range paths {
				st, err := os.Stat(p)
				if err != nil {
					return cli.Exit(err.Error(), exitFailure)
				}
				if !st.IsDir() {
					files = append(files, p)
					continue
				}
				ents, err := os.ReadDir(p)
				if err != nil {
					return cli.Exit(err.Error(), exitFailure)
				}
				var found []string
				for _, e := range ents {
					if !e.IsDir() && blocklist.IsListFile(e.Name()) {
						found = append(found, filepath.Join(p, e.Name()))
					}
				}
				sort.Strings(found)
				if len(found) == 0 {
					fmt.Fprintf(c.App.ErrWriter, "%s: no list files (*.txt, *.list, *.rpz, *.zone) in this directory\n", p)
				}
				files = append(files, found...)
			}
			w := c.App.Writer
			bad, total := 0, 0
			for _, f := range files {
				signed := ""
				if ring != nil {
					var err error
					if signed, err = checkSignature(ring, f); err != nil {
						bad++
						fmt.Fprintln(w, err.Error())
						continue
					}
					signed = ", " + signed
				}
				fs, errs := blocklist.CheckFile(f, maxSize)
				if len(errs) > 0 {
					bad++
					for _, e := range errs {
						e.File = f
						fmt.Fprintln(w, e.Error())
					}
					continue
				}
				total += fs.Rules()
				fmt.Fprintf(w, "%s: ok, %s (%s, %s, %s)%s\n", f, plural(fs.Rules(), "rule"), plural(fs.Domains, "domain"), plural(fs.IPs, "IP"), plural(fs.ASNs, "ASN"), signed)
			}
			warnings := blocklist.Lint(files, maxSize) // duplicates, rules a listed parent covers, empty files
			for _, e := range warnings {
				fmt.Fprintln(w, e.Error())
			}
			if bad > 0 {
				return cli.Exit(fmt.Sprintf("%d of %s %s errors", bad, plural(len(files), "file"), map[bool]string{true: "has", false: "have"}[bad == 1]), exitFailure)
			}
			fmt.Fprintf(w, "%s ok, %s", plural(len(files), "file"), plural(total, "rule"))
			if len(warnings) > 0 {
				fmt.Fprintf(w, ", %s", plural(len(warnings), "warning"))
			}
			fmt.Fprintln(w)
			return nil
		},
	}
}

// plural writes a count and its noun, "1 rule", "2 rules".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
