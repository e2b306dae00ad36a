package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/urfave/cli/v2"

	"github.com/sinkhole-dns/sinkhole/blocklist"
)

func checkCommand() *cli.Command {
	return &cli.Command{
		Name:      "check",
		Usage:     "parse list files offline and report every error (run before publishing a list)",
		ArgsUsage: "[PATH...]",
		Description: "PATH is a list file or a directory of them (default ./lists). Prints each file's\n" +
			"rule counts and every error as file:line: message. Exit status 1 on any error.",
		Action: func(c *cli.Context) error {
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
					fmt.Fprintf(c.App.ErrWriter, "%s: no list files (*.txt, *.list) in this directory\n", p)
				}
				files = append(files, found...)
			}
			w := c.App.Writer
			bad, total := 0, 0
			for _, f := range files {
				fs, errs := blocklist.CheckFile(f, 0)
				if len(errs) > 0 {
					bad++
					for _, e := range errs {
						e.File = f
						fmt.Fprintln(w, e.Error())
					}
					continue
				}
				total += fs.Rules()
				fmt.Fprintf(w, "%s: ok, %d rules (%d domains, %d IPs, %d ASNs)\n", f, fs.Rules(), fs.Domains, fs.IPs, fs.ASNs)
			}
			if bad > 0 {
				return cli.Exit(fmt.Sprintf("%d of %d files have errors", bad, len(files)), exitFailure)
			}
			fmt.Fprintf(w, "%d files ok, %d rules\n", len(files), total)
			return nil
		},
	}
}
