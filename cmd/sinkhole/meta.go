package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"

	"github.com/urfave/cli/v2"
)

// Build information. make sets them with -ldflags "-X main.version=...":
// version from git describe, commit and date from git. A plain go build
// leaves them empty and buildInfo falls back to the VCS information Go
// embeds (the module version when installed with go install).
var (
	commit string // full commit hash
	date   string // commit or build time, RFC 3339
)

// appDescription is the description of "sinkhole help" and of the manual
// page (sinkhole man), in the Markdown urfave/cli turns into roff.
const appDescription = `sinkhole forwards ordinary DNS queries to upstream resolvers and answers
every name on its lists (with subdomains and CNAME targets), and every answer
pointing at a listed IP, prefix, ASN or overseas country, with a block answer
carrying EDE 16 (Censored) that names the list file, line and platform. Lists
reload atomically when a file changes, on SIGHUP and on "sinkhole reload";
a broken file never replaces its last good version.

Every serve option is a flag, an environment variable (SINKHOLE_BLOCK_TTL for
--block-ttl) and a
key of the YAML file given by --config (flags win over the environment, the
environment over the file). "sinkhole serve --help" groups them by category.

Exit status: 0 success; 1 the command found a problem (a list error, a
refused token, a start failure); 2 bad flags, arguments or configuration;
3 the running server could not be reached.

Files: /etc/sinkhole/sinkhole.yaml (configuration), /etc/sinkhole/lists/
(list files), /etc/sinkhole/credentials/ (secrets passed by systemd's
LoadCredential=), /var/log/sinkhole/ (audit log), /var/lib/sinkhole/ (state).
The README, every option commented and the list format are in
/usr/share/doc/sinkhole/.`

// The version everything reports (status, metrics, --version) is the one
// "sinkhole version" prints.
func init() { version = buildInfo().Version }

// build describes this binary.
type build struct {
	Version, Commit, Date, Go, Platform string
	Modified                            bool
}

// buildInfo returns the version, commit, date and Go version of this
// binary, from the linker flags or else from Go's embedded build info.
func buildInfo() build {
	b := build{Version: version, Commit: commit, Date: date, Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	if b.Version == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		b.Version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			if b.Commit == "" {
				b.Commit = s.Value
			}
		case "vcs.time":
			if b.Date == "" {
				b.Date = s.Value
			}
		case "vcs.modified":
			b.Modified = s.Value == "true" && commit == ""
		}
	}
	if b.Version == "dev" && b.Commit != "" {
		short := b.Commit
		if len(short) > 12 {
			short = short[:12]
		}
		b.Version = "dev-" + short
		if b.Modified {
			b.Version += "-dirty"
		}
	}
	return b
}

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:      "version",
		Usage:     "print the version, commit, build date and Go version",
		ArgsUsage: " ",
		Flags:     []cli.Flag{&cli.BoolFlag{Name: "short", Usage: "print the version only"}},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef("version takes no arguments")
			}
			b := buildInfo()
			w := c.App.Writer
			if c.Bool("short") {
				fmt.Fprintln(w, b.Version)
				return nil
			}
			fmt.Fprintf(w, "sinkhole %s\n", b.Version)
			commit := orDash(b.Commit)
			if b.Modified {
				commit += " (modified)"
			}
			fmt.Fprintf(w, "  commit:  %s\n", commit)
			fmt.Fprintf(w, "  built:   %s\n", orDash(b.Date))
			fmt.Fprintf(w, "  go:      %s %s\n", b.Go, b.Platform)
			return nil
		},
	}
}

func completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script: bash, zsh or fish",
		ArgsUsage: "bash|zsh|fish",
		Description: "bash:  sinkhole completion bash > /etc/bash_completion.d/sinkhole\n" +
			"zsh:   sinkhole completion zsh > \"${fpath[1]}/_sinkhole\"\n" +
			"fish:  sinkhole completion fish > ~/.config/fish/completions/sinkhole.fish",
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usagef("completion takes one shell: bash, zsh or fish")
			}
			app := c.App
			var out string
			switch c.Args().First() {
			case "bash":
				out = bashCompletion(app)
			case "zsh":
				out = zshCompletion(app)
			case "fish":
				var err error
				if out, err = app.ToFishCompletion(); err != nil {
					return err
				}
			default:
				return usagef("completion: unknown shell %q: want bash, zsh or fish", c.Args().First())
			}
			_, err := io.WriteString(c.App.Writer, out)
			return err
		},
	}
}

func manCommand() *cli.Command {
	return &cli.Command{
		Name:      "man",
		Usage:     "print the manual page (roff): sinkhole man | man -l -",
		ArgsUsage: " ",
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef("man takes no arguments")
			}
			page, err := c.App.ToManWithSection(8)
			if err != nil {
				return err
			}
			_, err = io.WriteString(c.App.Writer, page)
			return err
		},
	}
}

// commandWords lists, per command, the words completion offers after it:
// its flags, and for completion itself the shells.
func commandWords(app *cli.App) (commands []string, words map[string][]string) {
	words = map[string][]string{}
	for _, cmd := range app.VisibleCommands() {
		commands = append(commands, cmd.Name)
		var w []string
		for _, f := range cmd.VisibleFlags() {
			for _, n := range f.Names() {
				if len(n) == 1 {
					w = append(w, "-"+n)
				} else {
					w = append(w, "--"+n)
				}
			}
		}
		w = append(w, "--help")
		if cmd.Name == "completion" {
			w = append(w, "bash", "zsh", "fish")
		}
		sort.Strings(w)
		words[cmd.Name] = w
	}
	sort.Strings(commands)
	return commands, words
}

// bashCompletion writes a bash completion script from the app's commands
// and flags (completed without running sinkhole).
func bashCompletion(app *cli.App) string {
	commands, words := commandWords(app)
	var b strings.Builder
	b.WriteString("# bash completion for sinkhole (generated by \"sinkhole completion bash\")\n")
	b.WriteString("_sinkhole() {\n\tlocal cur=${COMP_WORDS[COMP_CWORD]} cmd=\n\tlocal i\n")
	b.WriteString("\tfor ((i = 1; i < COMP_CWORD; i++)); do\n\t\tcase ${COMP_WORDS[i]} in -*) ;; *) cmd=${COMP_WORDS[i]}; break ;; esac\n\tdone\n")
	b.WriteString("\tcase $cmd in\n")
	fmt.Fprintf(&b, "\t'') COMPREPLY=($(compgen -W '%s --help --version' -- \"$cur\")) ;;\n", strings.Join(commands, " "))
	for _, c := range commands {
		fmt.Fprintf(&b, "\t%s) COMPREPLY=($(compgen -W '%s' -- \"$cur\")) ;;\n", c, strings.Join(words[c], " "))
	}
	fmt.Fprintf(&b, "\tesac\n\tif [[ $cur != -* && ${COMP_WORDS[COMP_CWORD-1]} == --@(%s) ]]; then\n", strings.Join(pathFlags(app), "|"))
	b.WriteString("\t\tCOMPREPLY=($(compgen -f -- \"$cur\"))\n\tfi\n}\n")
	b.WriteString("complete -F _sinkhole sinkhole\n")
	return b.String()
}

// pathFlags are the flags whose value is a file or directory: path flags,
// and those whose placeholder says FILE or DIR.
func pathFlags(app *cli.App) []string {
	seen := map[string]bool{}
	var out []string
	for _, cmd := range app.Commands {
		for _, f := range cmd.Flags {
			_, isPath := f.(*cli.PathFlag)
			usage := ""
			if u, ok := f.(cli.DocGenerationFlag); ok {
				usage = u.GetUsage()
			}
			if name := f.Names()[0]; !seen[name] && (isPath || strings.Contains(usage, "`FILE`") || strings.Contains(usage, "`DIR`")) {
				seen[name] = true
				out = append(out, name)
			}
		}
	}
	sort.Strings(out)
	return out
}

// zshCompletion writes a zsh completion script (#compdef) from the app's
// commands and flags.
func zshCompletion(app *cli.App) string {
	commands, words := commandWords(app)
	var b strings.Builder
	b.WriteString("#compdef sinkhole\n# zsh completion for sinkhole (generated by \"sinkhole completion zsh\")\n")
	b.WriteString("_sinkhole() {\n\tlocal -a cmds\n\tcmds=(\n")
	for _, c := range commands {
		fmt.Fprintf(&b, "\t\t%s:%s\n", c, zshQuote(app.Command(c).Usage))
	}
	b.WriteString("\t)\n\tif (( CURRENT == 2 )); then\n\t\t_describe 'command' cmds\n\t\treturn\n\tfi\n")
	b.WriteString("\tcase ${words[2]} in\n")
	for _, c := range commands {
		fmt.Fprintf(&b, "\t%s) compadd -- %s; _files ;;\n", c, strings.Join(words[c], " "))
	}
	b.WriteString("\tesac\n}\n")
	b.WriteString("if [[ $zsh_eval_context[-1] == loadautofunc ]]; then\n\t_sinkhole \"$@\"\nelse\n\tcompdef _sinkhole sinkhole\nfi\n")
	return b.String()
}

func zshQuote(s string) string {
	return "'" + strings.ReplaceAll(strings.ReplaceAll(s, "'", `'\''`), ":", `\:`) + "'"
}
