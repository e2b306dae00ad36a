package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/sinkhole-dns/sinkhole/internal/admin"
)

// defaultAdmin is the admin API address of serve and of the client commands.
const defaultAdmin = "127.0.0.1:8053"

// maxTokenSize caps the token file.
const maxTokenSize = 4096

// clientFlags are shared by the commands that talk to a running server.
func clientFlags() []cli.Flag {
	return withEnv([]cli.Flag{
		&cli.StringFlag{Name: "admin", Value: defaultAdmin, Usage: "admin API of the running server, `ADDR`"},
		&cli.PathFlag{Name: "admin-token-file", Usage: "send the bearer token in `FILE`"},
		&cli.DurationFlag{Name: "timeout", Value: 30 * time.Second, Usage: "give up on the admin API after this long"},
	})
}

// readToken reads a token file: one line, surrounding space trimmed.
func readToken(path string) (string, error) {
	path, err := credentialPath(path)
	if err != nil {
		return "", err
	}
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	// Read through a limit, not by the size Stat reports: a FIFO or a
	// device (/dev/zero) reports none.
	b, err := io.ReadAll(io.LimitReader(f, maxTokenSize+1))
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	if len(b) > maxTokenSize {
		return "", fmt.Errorf("%s: larger than %d bytes", path, maxTokenSize)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	if strings.ContainsAny(tok, "\r\n") {
		return "", fmt.Errorf("%s: the token must be one line", path)
	}
	return tok, nil
}

// adminClient builds the client from the shared flags.
func adminClient(c *cli.Context) (*admin.Client, error) {
	tok := ""
	if p := c.Path("admin-token-file"); p != "" {
		var err error
		if tok, err = readToken(p); err != nil {
			return nil, usagef("--admin-token-file: %v", err)
		}
	}
	return admin.NewClient(c.String("admin"), tok, c.Duration("timeout")), nil
}

// clientError maps an admin API failure to an exit status: 3 when the
// server cannot be reached, 1 otherwise.
func clientError(c *cli.Context, err error) error {
	var ue *admin.UnreachableError
	if errors.As(err, &ue) {
		return cli.Exit(fmt.Sprintf("cannot reach the server's admin API at %s: %v (is \"sinkhole serve\" running? see --admin)", c.String("admin"), ue.Err), exitUnreachable)
	}
	var se *admin.StatusError
	if errors.As(err, &se) && se.Code == 401 {
		return cli.Exit(fmt.Sprintf("the admin API at %s refused the request: %s (check --admin-token-file)", c.String("admin"), se.Msg), exitFailure)
	}
	return cli.Exit(err.Error(), exitFailure)
}
