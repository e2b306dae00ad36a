package main

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"
	"go.yaml.in/yaml/v3"

	"github.com/sinkhole-dns/sinkhole/internal/tlscert/certtest"
)

func TestVersion(t *testing.T) {
	out, _, code := runBin(t, "version")
	if code != 0 || !strings.HasPrefix(out, "sinkhole ") || !strings.Contains(out, "go:      "+runtime.Version()) ||
		!strings.Contains(out, "commit:") || !strings.Contains(out, "built:") {
		t.Fatalf("version: exit %d\n%s", code, out)
	}
	if _, errOut, code := runBin(t, "version", "extra"); code != 2 || !strings.Contains(errOut, "no arguments") {
		t.Errorf("version extra: exit %d %s", code, errOut)
	}
	// Linker flags, as make sets them, win.
	bin := filepath.Join(t.TempDir(), "sinkhole")
	ld := "-X main.version=v9.8.7 -X main.commit=0123456789abcdef -X main.date=2026-01-02T03:04:05Z"
	if out, err := exec.Command("go", "build", "-ldflags", ld, "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	got, err := exec.Command(bin, "version").Output()
	want := "sinkhole v9.8.7\n  commit:  0123456789abcdef\n  built:   2026-01-02T03:04:05Z\n  go:      " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + "\n"
	if err != nil || string(got) != want {
		t.Errorf("version with -ldflags: %v\n%s\nwant\n%s", err, got, want)
	}
	if got, _ := exec.Command(bin, "version", "--short").Output(); string(got) != "v9.8.7\n" {
		t.Errorf("version --short: %q", got)
	}
	if got, _ := exec.Command(bin, "--version").Output(); !strings.Contains(string(got), "v9.8.7") {
		t.Errorf("--version: %q", got)
	}
}

// Without linker flags the version comes from Go's embedded VCS stamp.
func TestBuildInfoFallback(t *testing.T) {
	b := buildInfo()
	if b.Go != runtime.Version() || b.Version == "" {
		t.Fatalf("%+v", b)
	}
	if version == "dev" && b.Commit != "" && !strings.HasPrefix(b.Version, "dev-") {
		t.Errorf("a VCS-stamped build without -ldflags reports %q", b.Version)
	}
}

func TestCompletion(t *testing.T) {
	for _, tc := range []struct{ shell, want string }{
		{"bash", "complete -F _sinkhole sinkhole"},
		{"zsh", "#compdef sinkhole"},
		{"fish", "complete -c sinkhole"},
	} {
		out, errOut, code := runBin(t, "completion", tc.shell)
		if code != 0 || !strings.Contains(out, tc.want) || !strings.Contains(out, "block-ttl") {
			t.Errorf("completion %s: exit %d %s\n%s", tc.shell, code, errOut, out)
			continue
		}
		// Each script parses in its shell, where installed.
		if sh, err := exec.LookPath(tc.shell); err == nil {
			if out, err := exec.Command(sh, "-n", "-c", out).CombinedOutput(); err != nil {
				t.Errorf("%s -n: %v\n%s", tc.shell, err, out)
			}
		}
	}
	// bash completes commands and a command's flags.
	script, _, _ := runBin(t, "completion", "bash")
	complete := func(words ...string) string {
		t.Helper()
		prog := script + "\nCOMP_WORDS=(" + strings.Join(words, " ") + ")\nCOMP_CWORD=" + strconv.Itoa(len(words)-1) +
			"\n_sinkhole\necho \"${COMPREPLY[*]}\"\n"
		out, err := exec.Command("bash", "-c", prog).CombinedOutput()
		if err != nil {
			t.Fatalf("bash: %v\n%s", err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if got := complete("sinkhole", "ser"); got != "serve" {
		t.Errorf("sinkhole ser<TAB>: %q", got)
	}
	if got := complete("sinkhole", "serve", "--block-a"); got != "--block-action" {
		t.Errorf("sinkhole serve --block-a<TAB>: %q", got)
	}
	if got := complete("sinkhole", "serve", "--config", "meta"); got != "meta.go meta_test.go" {
		t.Errorf("sinkhole serve --config meta<TAB> (files): %q", got)
	}
	if got := complete("sinkhole", "completion", "z"); got != "zsh" {
		t.Errorf("sinkhole completion z<TAB>: %q", got)
	}
	for _, args := range [][]string{{"completion"}, {"completion", "tcsh"}, {"completion", "bash", "zsh"}} {
		if _, errOut, code := runBin(t, args...); code != 2 {
			t.Errorf("%v: exit %d %s", args, code, errOut)
		}
	}
}

func TestManPage(t *testing.T) {
	out, _, code := runBin(t, "man")
	if code != 0 || !strings.Contains(out, ".TH sinkhole 8") || !strings.Contains(out, ".SH NAME") ||
		!strings.Contains(out, "block-ttl") || !strings.Contains(out, "check-config") {
		t.Fatalf("man: exit %d\n%.400s", code, out)
	}
	if man, err := exec.LookPath("man"); err == nil {
		page := filepath.Join(t.TempDir(), "sinkhole.8")
		os.WriteFile(page, []byte(out), 0o644)
		cmd := exec.Command(man, "-l", page)
		cmd.Env = append(os.Environ(), "MANPAGER=cat", "PAGER=cat", "MANWIDTH=100")
		text, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(text), "serve") {
			t.Errorf("man -l: %v\n%.300s", err, text)
		}
	}
	if _, _, code := runBin(t, "man", "x"); code != 2 {
		t.Errorf("man x: exit %d", code)
	}
}

// Every serve flag has a help category from flagCategories; a flag missing
// from the table lands in uncategorized and fails here.
func TestEveryServeFlagHasCategory(t *testing.T) {
	app := newApp(io.Discard, io.Discard)
	for _, name := range []string{"serve", "config"} {
		for _, f := range app.Command(name).Flags {
			cat := f.(cli.CategorizableFlag).GetCategory()
			if cat == uncategorized || cat == "" {
				t.Errorf("%s --%s has no category: add it to flagCategories in cmd/sinkhole/flags.go", name, f.Names()[0])
			}
		}
	}
	// The default for a flag the table does not know.
	f := withCategories([]cli.Flag{&cli.StringFlag{Name: "brand-new-flag"}})[0]
	if f.(cli.CategorizableFlag).GetCategory() != uncategorized {
		t.Error("an unknown flag was given a category")
	}
	// The table names no flag that does not exist (a renamed flag).
	known := map[string]bool{}
	for _, f := range serveFlags() {
		known[f.Names()[0]] = true
	}
	for name := range flagCategories {
		if !known[name] {
			t.Errorf("flagCategories names --%s, which serve does not have", name)
		}
	}
}

func TestServeHelpGroupedByCategory(t *testing.T) {
	out, _, code := runBin(t, "serve", "--help")
	if code != 0 {
		t.Fatalf("serve --help: exit %d", code)
	}
	last := -1
	for _, cat := range []string{catConfig, catService, catUpstream, catLists, catCache, catGeo, catFeeds, catAdmin, catLogs} {
		i := strings.Index(out, "   "+cat+"\n")
		if i < 0 || i < last {
			t.Errorf("serve --help: category %q missing or out of order", cat)
		}
		last = i
	}
	for _, want := range []string{"--block-ttl DURATION", "--cache-size N", "--upstream ADDR", "IP or IP:port"} {
		if !strings.Contains(out, want) {
			t.Errorf("serve --help has no %q", want)
		}
	}
	if regexp.MustCompile(`--[a-z-]+ value\b`).MatchString(out) {
		t.Errorf("serve --help shows the placeholder \"value\":\n%s", out)
	}
}

// Bad values name the flag with its dashes, from the command line, the
// environment and the config file; all exit 2.
func TestBadValueMessages(t *testing.T) {
	lists := writeLists(t, map[string]string{"a.txt": "a.test\n"})
	cfg := writeConfig(t, "block-ttl: 5\n")
	for _, tc := range []struct {
		args []string
		env  string
		want string
	}{
		{[]string{"--block-ttl", "5"}, "", `sinkhole: --block-ttl "5": not a duration; use a unit, e.g. 300s or 5m`},
		{[]string{"--block-ttl=5"}, "", `sinkhole: --block-ttl "5": not a duration; use a unit, e.g. 300s or 5m`},
		{nil, "SINKHOLE_UPSTREAM_TIMEOUT=5", `sinkhole: SINKHOLE_UPSTREAM_TIMEOUT "5" (--upstream-timeout): not a duration; use a unit, e.g. 300s or 5m`},
		{[]string{"--config", cfg}, "", `sinkhole: config ` + cfg + `:1: option "block-ttl": "5": not a duration; use a unit, e.g. 300s or 5m`},
		{[]string{"--cache-size", "lots"}, "", `sinkhole: --cache-size "lots": want a whole number`},
		{[]string{"--lists", "/nonexistent"}, "", `sinkhole: --lists /nonexistent: no such file or directory`},
	} {
		cmd := exec.Command(sinkholeBin(t), append([]string{"serve", "--lists", lists, "--upstream", "127.0.0.1:1", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"}, tc.args...)...)
		cmd.Env = os.Environ()
		if tc.env != "" {
			cmd.Env = append(cmd.Env, tc.env)
		}
		out, _ := cmd.CombinedOutput()
		if cmd.ProcessState.ExitCode() != 2 || strings.TrimSpace(string(out)) != tc.want {
			t.Errorf("%v %s: exit %d\n%s\nwant\n%s", tc.args, tc.env, cmd.ProcessState.ExitCode(), out, tc.want)
		}
	}
}

func TestCheckConfig(t *testing.T) {
	good := writeLists(t, map[string]string{"a.txt": "a.test\nb.test\n"})
	base := []string{"serve", "--check-config", "--upstream", "127.0.0.1:1", "--audit-log", filepath.Join(t.TempDir(), "audit.log")}
	out, errOut, code := runBin(t, append(base, "--lists", good)...)
	if code != 0 || !strings.Contains(out, "ok       lists: "+good+": 1 file, 2 rules") || !strings.Contains(out, "configuration ok (0 warnings)") {
		t.Fatalf("good: exit %d\n%s%s", code, out, errOut)
	}
	// Nothing was started: no DNS port, no audit line; a broken list and a
	// missing database are problems (exit 1), each printed.
	bad := writeLists(t, map[string]string{"a.txt": "a.test\nhttps://b.test/\n", "c.txt": "AS64500\n"})
	out, errOut, code = runBin(t, append(base, "--lists", bad, "--geoip-asn", "/nonexistent/asn.mmdb")...)
	if code != 1 || !strings.Contains(out, "ERROR    lists: "+filepath.Join(bad, "a.txt")+":2: looks like a URL") ||
		!strings.Contains(out, "ERROR    geoip: ") || !strings.Contains(out, "/nonexistent/asn.mmdb") ||
		!strings.Contains(errOut, "check-config: 2 problems") {
		t.Fatalf("bad: exit %d\n%s%s", code, out, errOut)
	}
	// AS rules without a database: a warning, not a failure.
	asn := writeLists(t, map[string]string{"c.txt": "AS64500\n"})
	out, _, code = runBin(t, append(base, "--lists", asn)...)
	if code != 0 || !strings.Contains(out, "WARNING  geoip: AS rules are loaded but no --geoip-asn") || !strings.Contains(out, "(1 warning)") {
		t.Fatalf("warning: exit %d\n%s", code, out)
	}
	// An unwritable log directory.
	out, _, code = runBin(t, "serve", "--check-config", "--upstream", "127.0.0.1:1", "--lists", good, "--audit-log", "/nonexistent/dir/audit.log")
	if code != 1 || !strings.Contains(out, "ERROR    logs: /nonexistent/dir/audit.log") {
		t.Fatalf("log dir: exit %d\n%s", code, out)
	}
	// Certificates: a good pair is ok, one about to expire a warning, a
	// key that does not match a problem.
	ca := certtest.NewCA(t, "check-config CA")
	dir := t.TempDir()
	cert, key := ca.Issue(t, time.Now().Add(90*24*time.Hour), "dns.example.net").Write(t, dir)
	tlsArgs := append(append([]string{}, base...), "--lists", good, "--listen-tls", "127.0.0.1:0", "--tls-cert", cert, "--tls-key", key)
	out, _, code = runBin(t, tlsArgs...)
	if code != 0 || !strings.Contains(out, "ok       certificate: "+cert+": dns.example.net, expires ") {
		t.Fatalf("certificate: exit %d\n%s", code, out)
	}
	soon, soonKey := ca.Issue(t, time.Now().Add(48*time.Hour), "dns.example.net").Write(t, t.TempDir())
	out, _, code = runBin(t, append(append([]string{}, base...), "--lists", good, "--listen-tls", "127.0.0.1:0", "--tls-cert", soon, "--tls-key", soonKey)...)
	if code != 0 || !strings.Contains(out, "WARNING  certificate: ") || !strings.Contains(out, "(in less than two weeks)") {
		t.Fatalf("expiring certificate: exit %d\n%s", code, out)
	}
	out, _, code = runBin(t, append(append([]string{}, base...), "--lists", good, "--listen-tls", "127.0.0.1:0", "--tls-cert", cert, "--tls-key", soonKey)...)
	if code != 1 || !strings.Contains(out, "ERROR    certificate: ") {
		t.Fatalf("mismatched key: exit %d\n%s", code, out)
	}
	// Signed lists: with --trusted-key an unsigned file is a problem.
	keys := t.TempDir()
	pub, sec := filepath.Join(keys, "k.pub"), filepath.Join(keys, "k.key")
	if _, errOut, code := runBin(t, "keygen", "--public-key", pub, "--secret-key", sec); code != 0 {
		t.Fatalf("keygen: exit %d %s", code, errOut)
	}
	signed := writeLists(t, map[string]string{"a.txt": "a.test\n"})
	out, _, code = runBin(t, append(append([]string{}, base...), "--lists", signed, "--trusted-key", pub)...)
	if code != 1 || !strings.Contains(out, "ERROR    lists: ") || !strings.Contains(out, "unsigned") {
		t.Fatalf("unsigned list with --trusted-key: exit %d\n%s", code, out)
	}
	if _, errOut, code := runBin(t, "sign", "--secret-key", sec, filepath.Join(signed, "a.txt")); code != 0 {
		t.Fatalf("sign: exit %d %s", code, errOut)
	}
	out, _, code = runBin(t, append(append([]string{}, base...), "--lists", signed, "--trusted-key", pub)...)
	if code != 0 || !strings.Contains(out, "configuration ok") {
		t.Fatalf("signed list: exit %d\n%s", code, out)
	}
	// Bad options: exit 2 before anything is loaded.
	if _, errOut, code := runBin(t, "serve", "--check-config", "--upstream", "127.0.0.1:1", "--lists", good, "--block-action", "explode"); code != 2 || !strings.Contains(errOut, "--block-action") {
		t.Fatalf("bad option: exit %d %s", code, errOut)
	}
}

func TestConfigCommand(t *testing.T) {
	lists := writeLists(t, map[string]string{"a.txt": "a.test\n"})
	file := writeConfig(t, "block-ttl: 10m\ncache-size: 500\nupstream: [ \"192.0.2.53\" ]\nlists: "+lists+"\n")
	cmd := exec.Command(sinkholeBin(t), "config", "--config", file, "--cache-size", "700", "--listen", "127.0.0.1:5300")
	cmd.Env = append(os.Environ(), "SINKHOLE_LOG_LEVEL=debug", "SINKHOLE_CACHE_SIZE=600")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("config: %v\n%s", err, out)
	}
	text := string(out)
	for _, want := range []string{
		`block-ttl: 10m0s # file ` + file,
		`cache-size: 700 # flag`,
		`listen: ["127.0.0.1:5300"] # flag`,
		`log-level: "debug" # env SINKHOLE_LOG_LEVEL`,
		`upstream: ["192.0.2.53"] # file ` + file,
		`block-action: "nxdomain" # default`,
		`prefetch: true # default`,
		"# Configuration file: " + file + " (flag)",
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("config output has no line %q:\n%s", want, text)
		}
	}
	// The output is a config file serve accepts, with the same values.
	var m map[string]any
	if err := yaml.Unmarshal(out, &m); err != nil || m["cache-size"] != 700 {
		t.Fatalf("output is not YAML of the options: %v %v", err, m)
	}
	again := writeConfig(t, text)
	cfg, err := loadServeConfig(t, "--config", again)
	if err != nil || cfg.cacheSize != 700 || !slices.Equal(cfg.listen, []string{"127.0.0.1:5300"}) || cfg.lists != lists {
		t.Fatalf("output as --config: %v %+v", err, cfg)
	}
	// A bad option is exit 2, like serve.
	if _, errOut, code := runBin(t, "config", "--block-ttl", "5"); code != 2 || !strings.Contains(errOut, "--block-ttl") {
		t.Errorf("config --block-ttl 5: exit %d %s", code, errOut)
	}
}

// The configurations the package and the image install are valid as
// shipped (the upstream given, as resolv.conf differs between machines).
func TestPackagedConfigs(t *testing.T) {
	cfg, err := loadServeConfig(t, "--config", "../../packaging/sinkhole.yaml", "--upstream", "192.0.2.53")
	if err != nil || !slices.Equal(cfg.listen, []string{"127.0.0.1:53"}) || cfg.lists != "/etc/sinkhole/lists" ||
		cfg.auditLog.path != "/var/log/sinkhole/audit.log" || !cfg.logJSON {
		t.Errorf("packaging/sinkhole.yaml: %v %+v", err, cfg)
	}
	cfg, err = loadServeConfig(t, "--config", "../../packaging/container.yaml", "--upstream", "192.0.2.53")
	if err != nil || !slices.Equal(cfg.listen, []string{"0.0.0.0:5353", "[::]:5353"}) || cfg.lists != "/etc/sinkhole/lists" ||
		cfg.admin != "127.0.0.1:8053" || cfg.auditLog.path != "/var/lib/sinkhole/audit.log" {
		t.Errorf("packaging/container.yaml: %v %+v", err, cfg)
	}
}

// A file broken at a cold start has no last good version: the log says it
// is not loaded, not that an earlier version serves.
func TestColdStartBrokenFileMessage(t *testing.T) {
	up := startUpstream(t)
	lists := writeLists(t, map[string]string{"good.txt": "a.test\n", "bad.txt": "b.test\nhttps://c.test/\n"})
	ts := startSinkhole(t, lists, "--upstream", up.Addr)
	ts.stop()
	log := ts.stderr.String()
	if strings.Contains(log, "last good version stays in service") || !strings.Contains(log, "not loaded (there is no earlier good version)") {
		t.Errorf("cold start with a broken file:\n%s", log)
	}
}
