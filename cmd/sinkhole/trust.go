package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/sinkhole-dns/sinkhole/blocklist"
	"github.com/sinkhole-dns/sinkhole/blocklist/listsig"
	"github.com/sinkhole-dns/sinkhole/internal/admin"
)

// trustFlags are the serve flags of signed lists.
func trustFlags() []cli.Flag {
	return []cli.Flag{trustedKeyFlag()}
}

// trustConfigFrom reads --trusted-key: with keys, every list file must be
// signed by one of them.
func trustConfigFrom(c *cli.Context, cfg *serveConfig) error {
	specs := c.StringSlice("trusted-key")
	if len(specs) == 0 {
		return nil
	}
	ring, err := listsig.NewKeyring(specs)
	if err != nil {
		return usagef("--trusted-key: %v", err)
	}
	cfg.trust = ring
	return nil
}

// listVerifier is the list store's signature check, nil without keys.
func (cfg *serveConfig) listVerifier() blocklist.Verifier {
	if cfg.trust == nil {
		return nil
	}
	return &listsig.Verifier{Keys: cfg.trust}
}

// watchedListFile is what the lists directory watcher reloads on: list
// files, and their signatures when keys are configured.
func (cfg *serveConfig) watchedListFile() func(string) bool {
	if cfg.trust == nil {
		return blocklist.IsListFile
	}
	return listsig.Watched(blocklist.IsListFile)
}

// printSignatures writes the signer of each file when any file is signed
// or refused.
func printSignatures(w io.Writer, files []admin.FileStatus) {
	any := false
	for _, f := range files {
		any = any || f.Signature != nil || f.Refused != nil
	}
	if !any {
		return
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FILE\tSIGNED BY\tSIGNED AT\tREFUSED VERSION")
	for _, f := range files {
		by, at, refused := "-", "-", "-"
		if s := f.Signature; s != nil {
			by, at = s.KeyID, formatSignedAt(s.SignedAt)
		}
		if r := f.Refused; r != nil {
			refused = r.Reason
			if r.KeyID != "" {
				refused += " (key " + r.KeyID
				if !r.SignedAt.IsZero() {
					refused += ", signed " + r.SignedAt.UTC().Format(time.RFC3339)
				}
				refused += ")"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", f.Name, by, at, refused)
	}
	tw.Flush()
}

// checkSignature verifies one file for "sinkhole check --trusted-key".
func checkSignature(ring *listsig.Keyring, path string) (string, error) {
	s, err := ring.VerifyFile(path)
	if err != nil {
		return "", fmt.Errorf("%s: signature refused: %w", path, err)
	}
	return fmt.Sprintf("signed by key %s at %s", s.KeyID, formatSignedAt(s.SignedAt)), nil
}
