// Command sinkhole is a forwarding DNS resolver that enforces a regulator's
// blocklist. See the README for the tour; "sinkhole help" for the commands.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/urfave/cli/v2"
)

// Exit statuses shared by every command.
const (
	exitOK          = 0
	exitFailure     = 1 // the command ran and found a problem (or serve failed)
	exitUsage       = 2 // bad flags, arguments or configuration
	exitUnreachable = 3 // the running server could not be reached
)

// version is set by the linker (-X main.version=...).
var version = "dev"

func main() {
	os.Exit(run(context.Background(), os.Args, os.Stdout, os.Stderr))
}

// run executes the CLI and returns the exit status. It never calls os.Exit,
// so tests can run it in-process; ctx ends a running server.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	app := newApp(stdout, stderr)
	args = flagsFirst(app, args)
	app.Metadata = map[string]any{argsKey: args}
	err := app.RunContext(ctx, args)
	if err == nil {
		return exitOK
	}
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		if msg := err.Error(); msg != "" {
			fmt.Fprintln(stderr, "sinkhole: "+msg)
		}
		return ec.ExitCode()
	}
	if len(args) > 1 {
		if cmd := app.Command(args[1]); cmd != nil {
			// A bad value in a SINKHOLE_ variable is a usage error too.
			if msg, ok := flagValueError(cmd.Flags, err.Error()); ok {
				fmt.Fprintln(stderr, "sinkhole: "+msg)
				return exitUsage
			}
		}
	}
	fmt.Fprintln(stderr, "sinkhole: "+err.Error())
	return exitFailure
}

// argsKey is the App.Metadata key of the command line run was given (after
// flagsFirst), for "sinkhole config" to tell flags from the environment.
const argsKey = "args"

func newApp(stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:        "sinkhole",
		Usage:       "a forwarding DNS resolver that enforces a regulator's blocklist",
		Description: appDescription,
		Version:     buildInfo().Version,
		Writer:      stdout, ErrWriter: stderr,
		Commands: []*cli.Command{
			serveCommand(),
			reloadCommand(),
			statusCommand(),
			checkCommand(),
			queryCommand(),
			keygenCommand(),
			signCommand(),
			verifyCommand(),
			reportCommand(),
			configCommand(),
			versionCommand(),
			completionCommand(),
			manCommand(),
		},
		OnUsageError:    usageError,
		CommandNotFound: func(c *cli.Context, name string) {},
		// Errors are printed once by run, not by the library.
		ExitErrHandler: func(*cli.Context, error) {},
	}
	app.CommandNotFound = nil
	app.Before = func(c *cli.Context) error {
		if name := c.Args().First(); c.NArg() > 0 && app.Command(name) == nil {
			return cli.Exit(fmt.Sprintf("unknown command %q (try \"sinkhole help\")", name), exitUsage)
		}
		return nil
	}
	for _, cmd := range app.Commands {
		cmd.OnUsageError = usageError
		if cmd.Name == "serve" || cmd.Name == "config" {
			withCategories(cmd.Flags)
		}
	}
	return app
}

// flagsFirst moves a command's flags ahead of its arguments, so that
// "sinkhole query NAME --type AAAA" works like "sinkhole query --type AAAA
// NAME" (urfave/cli stops parsing flags at the first argument). A "--"
// ends the flags.
func flagsFirst(app *cli.App, args []string) []string {
	if len(args) < 3 {
		return args
	}
	cmd := app.Command(args[1])
	if cmd == nil {
		return args
	}
	takesValue := map[string]bool{}
	for _, f := range cmd.Flags {
		_, isBool := f.(*cli.BoolFlag)
		for _, n := range f.Names() {
			takesValue[n] = !isBool
		}
	}
	var flags, rest []string
	for i := 2; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			rest = append(rest, args[i+1:]...)
			break
		}
		name := strings.TrimLeft(a, "-")
		if !strings.HasPrefix(a, "-") || a == "-" || name == "" {
			rest = append(rest, a)
			continue
		}
		flags = append(flags, a)
		if n, _, hasValue := strings.Cut(name, "="); !hasValue && takesValue[n] && i+1 < len(args) {
			i++
			flags = append(flags, args[i])
		}
	}
	out := append([]string{args[0], args[1]}, flags...)
	if len(rest) > 0 {
		out = append(append(out, "--"), rest...)
	}
	return out
}

// usageError turns a flag parse error into one line and exit status 2.
func usageError(c *cli.Context, err error, _ bool) error {
	msg := err.Error()
	if m, ok := flagValueError(c.Command.Flags, msg); ok {
		msg = m
	} else if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		msg = fmt.Sprintf("unknown flag --%s (see \"sinkhole %s --help\")", strings.TrimPrefix(name, "-"), c.Command.Name)
	}
	return cli.Exit(msg, exitUsage)
}

// usagef reports a bad flag value or argument: one line, exit status 2.
func usagef(format string, args ...any) error {
	return cli.Exit(fmt.Sprintf(format, args...), exitUsage)
}
