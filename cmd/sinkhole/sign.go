package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/sinkhole-dns/sinkhole/blocklist/listsig"
)

// keygenCommand writes a minisign-compatible Ed25519 key pair.
func keygenCommand() *cli.Command {
	return &cli.Command{
		Name:      "keygen",
		Usage:     "make an Ed25519 key pair for signing lists (minisign-compatible files)",
		ArgsUsage: " ",
		Description: "Writes the public key (give it to every server with --trusted-key) and the\n" +
			"secret key (keep it with whoever publishes the lists). The files are\n" +
			"minisign's: \"minisign -S -s KEY\" signs with the secret key too.",
		Flags: withEnv([]cli.Flag{
			&cli.PathFlag{Name: "public-key", Aliases: []string{"p"}, Value: "sinkhole.pub", Usage: "write the public key to `FILE`"},
			&cli.PathFlag{Name: "secret-key", Aliases: []string{"s"}, Value: "sinkhole.key", Usage: "write the secret key to `FILE` (mode 0600, not encrypted)"},
			&cli.BoolFlag{Name: "force", Usage: "overwrite existing key files"},
		}),
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef("keygen takes no arguments")
			}
			pubPath, secPath := c.Path("public-key"), c.Path("secret-key")
			pub, pubText, secText, err := listsig.GenerateKey()
			if err != nil {
				return cli.Exit(err.Error(), exitFailure)
			}
			flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
			if c.Bool("force") {
				flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
			}
			if err := writeKeyFile(secPath, secText, 0o600, flags); err != nil {
				return cli.Exit(err.Error(), exitFailure)
			}
			if err := writeKeyFile(pubPath, pubText, 0o644, flags); err != nil {
				return cli.Exit(err.Error(), exitFailure)
			}
			fmt.Fprintf(c.App.Writer, "key id %s\npublic key %s: %s\nsecret key %s (keep it secret)\nservers: sinkhole serve --trusted-key %s\n",
				listsig.KeyID(pub.ID()), pubPath, pub.String(), secPath, pub.String())
			return nil
		},
	}
}

func writeKeyFile(path string, b []byte, mode os.FileMode, flags int) error {
	f, err := os.OpenFile(path, flags, mode)
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("%s exists (give --force to overwrite it)", path)
	}
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// signCommand writes FILE.minisig for each file.
func signCommand() *cli.Command {
	return &cli.Command{
		Name:      "sign",
		Usage:     "sign list files: writes FILE.minisig beside each FILE",
		ArgsUsage: "FILE...",
		Description: "The signature is minisign's (prehashed Ed25519); its trusted comment holds the\n" +
			"signing time and the file's name, so a server refuses the file under another\n" +
			"name and any version signed before the one it serves. Publish FILE.minisig\n" +
			"with FILE (write the signature first, then move the list into place).\n" +
			"An encrypted minisign secret key is decrypted with SINKHOLE_KEY_PASSWORD.",
		Flags: withEnv([]cli.Flag{
			&cli.PathFlag{Name: "secret-key", Aliases: []string{"s"}, Value: "sinkhole.key", Usage: "sign with the secret key in `FILE`"},
		}),
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return usagef("sign needs at least one FILE")
			}
			priv, err := listsig.ReadSecretKey(c.Path("secret-key"), os.Getenv("SINKHOLE_KEY_PASSWORD"))
			if err != nil {
				return cli.Exit("secret key: "+err.Error(), exitFailure)
			}
			now := time.Now()
			for _, f := range c.Args().Slice() {
				sig, err := listsig.Sign(priv, f, now)
				if err != nil {
					return cli.Exit(err.Error(), exitFailure)
				}
				if err := writeAtomic(f+listsig.Suffix, sig); err != nil {
					return cli.Exit(err.Error(), exitFailure)
				}
				fmt.Fprintf(c.App.Writer, "%s: signed by key %s at %s\n", f+listsig.Suffix, listsig.KeyID(priv.ID()), now.UTC().Format(time.RFC3339))
			}
			return nil
		},
	}
}

// writeAtomic writes b to path through a temporary file and a rename, so a
// watching server never reads half a signature.
func writeAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// trustedKeyFlag is --trusted-key, shared by serve, check and verify.
func trustedKeyFlag() cli.Flag {
	return &cli.StringSliceFlag{Name: "trusted-key", Usage: "accept only list files signed by this minisign public key, a `FILE` or its base64 line (repeatable)"}
}

// verifyCommand checks signatures offline.
func verifyCommand() *cli.Command {
	return &cli.Command{
		Name:      "verify",
		Usage:     "check list files' signatures (FILE.minisig) against trusted keys",
		ArgsUsage: "FILE...",
		Flags:     withEnv([]cli.Flag{trustedKeyFlag()}),
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return usagef("verify needs at least one FILE")
			}
			if len(c.StringSlice("trusted-key")) == 0 {
				return usagef("verify needs --trusted-key")
			}
			ring, err := listsig.NewKeyring(c.StringSlice("trusted-key"))
			if err != nil {
				return usagef("--trusted-key: %v", err)
			}
			bad := 0
			for _, f := range c.Args().Slice() {
				s, err := ring.VerifyFile(f)
				if err != nil {
					bad++
					fmt.Fprintf(c.App.Writer, "%s: REFUSED: %v\n", f, err)
					continue
				}
				fmt.Fprintf(c.App.Writer, "%s: ok, signed by key %s at %s\n", f, s.KeyID, formatSignedAt(s.SignedAt))
			}
			if bad > 0 {
				return cli.Exit(fmt.Sprintf("%d of %d files refused", bad, c.NArg()), exitFailure)
			}
			return nil
		},
	}
}

func formatSignedAt(t time.Time) string {
	if t.IsZero() {
		return "(no timestamp)"
	}
	return t.UTC().Format(time.RFC3339)
}
