package main

import (
	"fmt"
	"io"
	"net/url"
	"path"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/sinkhole-dns/sinkhole/blocklist"
	"github.com/sinkhole-dns/sinkhole/blocklist/listsig"
	"github.com/sinkhole-dns/sinkhole/internal/admin"
)

// trustFlags are the serve flags of signed lists and verified zones.
func trustFlags() []cli.Flag {
	return []cli.Flag{
		trustedKeyFlag(),
		&cli.StringSliceFlag{Name: "rpz-require-zonemd", Usage: "refuse versions of feed `NAME`'s zone without a ZONEMD record (RFC 8976; a ZONEMD that does not match is always refused) (repeatable)"},
	}
}

// trustConfigFrom reads --trusted-key and --rpz-require-zonemd (after the
// feed flags). With keys, every list file must be signed by one of them:
// list URLs fetch URL.minisig, and a feed zone, which carries no minisign
// signature, must be authenticated by TSIG and verified whole by ZONEMD.
func trustConfigFrom(c *cli.Context, cfg *serveConfig) error {
	for _, name := range c.StringSlice("rpz-require-zonemd") {
		found := false
		for i := range cfg.feeds.Feeds {
			if cfg.feeds.Feeds[i].Name == name {
				cfg.feeds.Feeds[i].RequireZonemd, found = true, true
			}
		}
		if !found {
			return usagef("--rpz-require-zonemd %s: no --rpz-feed named %s", name, name)
		}
	}
	specs := c.StringSlice("trusted-key")
	if len(specs) == 0 {
		return nil
	}
	ring, err := listsig.NewKeyring(specs)
	if err != nil {
		return usagef("--trusted-key: %v", err)
	}
	cfg.trust = ring
	if cfg.trustSeen, err = listsig.OpenSeenTimes(filepath.Join(cfg.feeds.StateDir, signedTimesFile)); err != nil {
		return usagef("--trusted-key: %v (delete it to start afresh)", err)
	}
	cfg.trustExempt, cfg.trustNames = map[string]bool{}, map[string]string{}
	for _, f := range cfg.feeds.Feeds {
		if f.Key == nil || !f.RequireZonemd {
			return usagef("--trusted-key with --rpz-feed %s: a zone transfer carries no minisign signature; authenticate the feed with --rpz-tsig %s=FILE and give --rpz-require-zonemd %s (the zone is then checked whole), or publish the list as a signed --list-url", f.Name, f.Name, f.Name)
		}
		cfg.trustExempt[filepath.Clean(filepath.Join(cfg.feeds.StateDir, f.Name+".rpz"))] = true
	}
	for i := range cfg.feeds.URLs {
		s := &cfg.feeds.URLs[i]
		signed := signedNameOf(s.URL)
		cfg.trustNames[filepath.Clean(filepath.Join(cfg.feeds.StateDir, s.File))] = signed
		s.Verify = func(data, sig, prev []byte) error {
			_, err := ring.VerifyVersion(signed, data, sig, prev)
			return err
		}
	}
	return nil
}

// signedNameOf is the file name a list URL's signature carries: the last
// element of the URL's path.
func signedNameOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return path.Base(u.Path)
}

// listVerifier is the list store's signature check, nil without keys.
func (cfg *serveConfig) listVerifier() blocklist.Verifier {
	if cfg.trust == nil {
		return nil
	}
	return &listsig.Verifier{
		Keys:       cfg.trust,
		Exempt:     func(p string) bool { return cfg.trustExempt[filepath.Clean(p)] },
		SignedName: func(p string) string { return cfg.trustNames[filepath.Clean(p)] },
		Seen:       cfg.trustSeen,
	}
}

// signedTimesFile, in --state-dir, keeps the newest signing time accepted
// for each list file, so a rollback is refused across restarts too.
const signedTimesFile = "signed-times.json"

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
