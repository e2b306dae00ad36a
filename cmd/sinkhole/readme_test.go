package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The console examples of the documentation are run and their output
// compared, so the docs cannot drift from the program.
//
// Every ```console block of a document is a transcript: a line starting
// with "$ " is a command (a trailing backslash continues it on the next
// line), the lines up to the next command are its output (stdout and
// stderr together, as on a terminal). The blocks of one document run in
// order, in one working directory holding a fresh copy of the repository's
// lists/, with a sinkhole serving those lists (default settings, so files
// the commands write are reloaded as "make run" would) on a loopback port,
// forwarding to a test upstream that holds docUpstreamRecords. Commands run
// under bash with the built sinkhole first on PATH and SINKHOLE_ADMIN set,
// and "-p 5353", "127.0.0.1:5353" and "127.0.0.1:8053" pointed at the test
// server's DNS and admin ports.
//
// Compared: every line, after collapsing runs of blanks and dropping
// trailing blank lines. Allowed to differ: message IDs, times and
// durations, dig's version and timestamps; the test server's ports are
// printed as 5353 (DNS) and 8053 (admin), its upstream as 192.0.2.53:53.
// Use a ```sh block for commands that are not meant to be run.
var consoleDocs = []string{"../../README.md", "../../lists/README.md"}

// docUpstreamRecords are the names the test upstream answers for the
// examples (every other name gets NXDOMAIN).
var docUpstreamRecords = []string{
	"academy.binance.com. 60 IN A 192.0.2.7",
	"example.com. 60 IN A 192.0.2.1",
	"example.com. 60 IN AAAA 2001:db8::1",
}

// consoleCmd is one command of a console block and its expected output.
type consoleCmd struct {
	line int    // line of the "$ " in the document
	cmd  string // the command, continuations joined
	want []string
}

// consoleBlock is one ```console block.
type consoleBlock struct {
	n    int // 1-based among the document's console blocks
	line int // line of the opening fence
	cmds []consoleCmd
}

// parseConsoleBlocks finds the console blocks of a Markdown document.
func parseConsoleBlocks(doc string) ([]consoleBlock, error) {
	var blocks []consoleBlock
	var cur *consoleBlock
	lines := strings.Split(doc, "\n")
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		trim := strings.TrimSpace(l)
		if cur == nil {
			if trim == "```console" {
				blocks = append(blocks, consoleBlock{n: len(blocks) + 1, line: i + 1})
				cur = &blocks[len(blocks)-1]
			}
			continue
		}
		if trim == "```" {
			if len(cur.cmds) == 0 {
				return nil, fmt.Errorf("line %d: console block without a \"$ \" command", cur.line)
			}
			cur = nil
			continue
		}
		if cmd, ok := strings.CutPrefix(l, "$ "); ok {
			c := consoleCmd{line: i + 1, cmd: cmd}
			for strings.HasSuffix(c.cmd, "\\") && i+1 < len(lines) {
				i++
				c.cmd = strings.TrimSuffix(c.cmd, "\\") + "\n" + lines[i]
			}
			cur.cmds = append(cur.cmds, c)
			continue
		}
		if len(cur.cmds) == 0 {
			return nil, fmt.Errorf("line %d: console block output before its first \"$ \" command", i+1)
		}
		c := &cur.cmds[len(cur.cmds)-1]
		c.want = append(c.want, l)
	}
	if cur != nil {
		return nil, fmt.Errorf("line %d: console block not closed", cur.line)
	}
	return blocks, nil
}

var (
	blanks       = regexp.MustCompile(`[ \t]+`)
	normalizeRes = []struct {
		re   *regexp.Regexp
		with string
	}{
		{regexp.MustCompile(`\bid: \d+`), "id: ID"},
		{regexp.MustCompile(`<<>> DiG \S+ <<>>`), "<<>> DiG VERSION <<>>"},
		{regexp.MustCompile(`;; Query time: \d+ msec`), ";; Query time: T msec"},
		{regexp.MustCompile(`;; WHEN: .*`), ";; WHEN: TIME"},
		// Durations as Go prints them (1.2ms, 850µs, 2m30s).
		{regexp.MustCompile(`\b\d+(\.\d+)?(ns|µs|us|ms|s|m|h)(\d+(\.\d+)?(ms|s|m))*\b`), "DURATION"},
		{regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)`), "TIMESTAMP"},
	}
)

// normalizeConsole makes a transcript's lines comparable.
func normalizeConsole(lines []string) []string {
	var out []string
	for _, l := range lines {
		l = strings.TrimSpace(blanks.ReplaceAllString(l, " "))
		for _, n := range normalizeRes {
			l = n.re.ReplaceAllString(l, n.with)
		}
		out = append(out, l)
	}
	for len(out) > 0 && out[len(out)-1] == "" {
		out = out[:len(out)-1]
	}
	for len(out) > 0 && out[0] == "" {
		out = out[1:]
	}
	return out
}

// docServer is the server and environment the examples of one document run
// against.
type docServer struct {
	ts                    *testServer
	dir                   string // working directory; lists/ in it
	dnsPort, adminPort    string
	upstream              string
	env                   []string
	reloadsBeforeCommand  uint64
	listsBeforeCommand    string
	reloadWaitAfterChange time.Duration
}

func startDocServer(t *testing.T) *docServer {
	t.Helper()
	bin := sinkholeBin(t)
	dir := t.TempDir()
	lists := filepath.Join(dir, "lists")
	if err := os.MkdirAll(lists, 0o755); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir("../../lists")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		data, err := os.ReadFile(filepath.Join("../../lists", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(lists, e.Name()), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	up := startUpstream(t, docUpstreamRecords...)
	ts := startSinkholeWith(t, "127.0.0.1:0", io.Discard, lists, "--upstream", up.Addr, "--audit-log", filepath.Join(dir, "audit.log"))
	_, dnsPort, _ := strings.Cut(ts.addr, ":")
	_, adminPort, _ := strings.Cut(ts.in.admin.Addr(), ":")
	return &docServer{
		ts: ts, dir: dir, dnsPort: dnsPort, adminPort: adminPort, upstream: up.Addr,
		env: []string{
			"PATH=" + filepath.Dir(bin) + string(os.PathListSeparator) + os.Getenv("PATH"),
			"HOME=" + dir, "LC_ALL=C", "TERM=dumb",
			"SINKHOLE_ADMIN=" + ts.in.admin.Addr(),
		},
		reloadWaitAfterChange: 10 * time.Second,
	}
}

// listsState is a fingerprint of the lists directory (names, sizes, times).
func (d *docServer) listsState() string {
	var b strings.Builder
	ents, _ := os.ReadDir(filepath.Join(d.dir, "lists"))
	for _, e := range ents {
		if fi, err := e.Info(); err == nil {
			fmt.Fprintf(&b, "%s %d %d\n", e.Name(), fi.Size(), fi.ModTime().UnixNano())
		}
	}
	return b.String()
}

// run runs one command of an example and returns its output, with the test
// server's ports and upstream written as the docs write them.
func (d *docServer) run(t *testing.T, command string) string {
	t.Helper()
	cmd := command
	cmd = strings.ReplaceAll(cmd, "-p 5353", "-p "+d.dnsPort)
	cmd = strings.ReplaceAll(cmd, "127.0.0.1:5353", "127.0.0.1:"+d.dnsPort)
	cmd = strings.ReplaceAll(cmd, "127.0.0.1:8053", "127.0.0.1:"+d.adminPort)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	before, reloads := d.listsState(), d.ts.in.store.Reloads()
	c := exec.CommandContext(ctx, "bash", "-c", cmd)
	c.Dir = d.dir
	c.Env = d.env
	var out bytes.Buffer
	c.Stdout, c.Stderr = &out, &out
	err := c.Run()
	if ctx.Err() != nil {
		t.Fatalf("%q did not finish in 30s (output so far:\n%s)", command, out.String())
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("%q: %v", command, err)
	}
	// A command that changed a list file: wait for the server to reload it,
	// as it would before the user types the next command.
	if d.listsState() != before {
		deadline := time.Now().Add(d.reloadWaitAfterChange)
		for d.ts.in.store.Reloads() == reloads && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if d.ts.in.store.Reloads() == reloads {
			t.Fatalf("%q changed the lists but the server did not reload within %s", command, d.reloadWaitAfterChange)
		}
		// Let a reload that is already under way finish.
		time.Sleep(400 * time.Millisecond)
	}
	s := out.String()
	s = regexp.MustCompile(`([#:]|-p )`+d.dnsPort+`\b`).ReplaceAllString(s, "${1}5353")
	s = regexp.MustCompile(`([#:]|-p )`+d.adminPort+`\b`).ReplaceAllString(s, "${1}8053")
	s = strings.ReplaceAll(s, d.upstream, "192.0.2.53:53")
	return s
}

// diffConsole explains the first difference between want and got.
func diffConsole(want, got []string) string {
	w, g := normalizeConsole(want), normalizeConsole(got)
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if i >= len(w) {
			return fmt.Sprintf("output line %d: the docs end here; the program goes on with:\n\t%q", i+1, gl)
		}
		if i >= len(g) {
			return fmt.Sprintf("output line %d: the program's output ends here; the docs go on with:\n\t%q", i+1, wl)
		}
		if wl != gl {
			return fmt.Sprintf("output line %d differs (compared after normalizing):\n\tdocs:    %q\n\tprogram: %q", i+1, wl, gl)
		}
	}
	return ""
}

func TestDocsConsoleExamples(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash is not installed")
	}
	for _, doc := range consoleDocs {
		name := strings.TrimPrefix(doc, "../../")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(doc)
			if err != nil {
				t.Fatal(err)
			}
			blocks, err := parseConsoleBlocks(string(data))
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if len(blocks) == 0 {
				t.Fatalf("%s has no console examples", name)
			}
			for _, b := range blocks {
				for _, c := range b.cmds {
					tool := strings.Fields(c.cmd)[0]
					if _, err := exec.LookPath(tool); err != nil && tool != "sinkhole" && os.Getenv("CI") == "" {
						t.Skipf("%s:%d needs %s, which is not installed (CI installs it)", name, c.line, tool)
					}
				}
			}
			d := startDocServer(t)
			for _, b := range blocks {
				for _, c := range b.cmds {
					got := d.run(t, c.cmd)
					if diff := diffConsole(c.want, strings.Split(got, "\n")); diff != "" {
						t.Errorf("%s, console block %d (line %d), command at line %d:\n\t$ %s\n%s\nthe program printed:\n%s",
							name, b.n, b.line, c.line, c.cmd, diff, indent(got))
					}
				}
			}
		})
	}
}

func indent(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString("\t" + l + "\n")
	}
	return b.String()
}

// The comparison itself: what it allows and what it catches.
func TestConsoleCompare(t *testing.T) {
	doc := "text\n```console\n$ sinkhole reload\ngeneration 2 (new), 3 rules, 1.2ms\n  updated  a.txt  3 rules\n\n$ dig @127.0.0.1 -p 5353 \\\n  x.test\n;; ->>HEADER<<- opcode: QUERY, status: NXDOMAIN, id: 44853\n```\n"
	blocks, err := parseConsoleBlocks(doc)
	if err != nil || len(blocks) != 1 || len(blocks[0].cmds) != 2 {
		t.Fatalf("parse: %v %+v", err, blocks)
	}
	c := blocks[0].cmds
	if c[0].line != 3 || c[1].line != 7 || c[1].cmd != "dig @127.0.0.1 -p 5353 \n  x.test" {
		t.Fatalf("commands: %+v", c)
	}
	cases := []struct {
		want, got []string
		same      bool
	}{
		{c[0].want, []string{"generation 2 (new), 3 rules, 845µs", "  updated\ta.txt    3 rules", ""}, true},
		{c[1].want, []string{";; ->>HEADER<<- opcode: QUERY, status: NXDOMAIN, id: 1"}, true},
		{c[0].want, []string{"generation 2 (new), 3 rules, 845µs"}, false},
		{c[0].want, []string{"generation 2 (new), 4 rules, 1ms", "  updated a.txt 3 rules"}, false},
		{c[1].want, []string{";; ->>HEADER<<- opcode: QUERY, status: NXDOMAIN, id: 1", "extra"}, false},
	}
	for i, tc := range cases {
		if diff := diffConsole(tc.want, tc.got); (diff == "") != tc.same {
			t.Errorf("case %d: diff %q, want same=%v", i, diff, tc.same)
		}
	}
	for _, bad := range []string{"```console\nno command\n```\n", "```console\n$ x\n", "```console\n```\n"} {
		if _, err := parseConsoleBlocks(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	if got := diffConsole([]string{"a", "b"}, []string{"a", "c"}); !strings.Contains(got, "output line 2") {
		t.Errorf("diff does not name the line: %q", got)
	}
}
