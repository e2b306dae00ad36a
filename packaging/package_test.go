// Package packaging holds the tests of what make deb and make image build:
// the Debian package is installed, verified, run and purged; the container
// image is built and, where the machine can run containers, run. Both
// change the machine (a system package, a user, images), so they run only
// when asked: SINKHOLE_PACKAGE_TEST=1 and SINKHOLE_IMAGE_TEST=1 (.ci/run
// sets both).
package packaging

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/internal/dnstest"
)

// repo is the repository root, where make runs.
const repo = ".."

// optIn skips the test unless its variable is set; once set, every tool it
// needs must be there.
func optIn(t *testing.T, env, what string) {
	t.Helper()
	if os.Getenv(env) == "" {
		t.Skipf("%s changes this machine: set %s=1 to run it (.ci/run does)", what, env)
	}
}

// run runs a command with a deadline and returns its combined output.
func run(t *testing.T, timeout time.Duration, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return string(out), fmt.Errorf("%s %s: no result in %s", name, strings.Join(args, " "), timeout)
	}
	return string(out), err
}

func must(t *testing.T, timeout time.Duration, name string, args ...string) string {
	t.Helper()
	out, err := run(t, timeout, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// lockMachine serializes the tests that change this machine across
// processes (other checkouts may run them at the same time).
func lockMachine(t *testing.T, name string) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(os.TempDir(), name+".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() })
}

func freePort(t *testing.T) int {
	t.Helper()
	for range 50 {
		l, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.LocalAddr().(*net.UDPAddr).Port
		l.Close()
		if tl, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			tl.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// server is a sinkhole process the test started.
type server struct {
	cmd    *exec.Cmd
	done   chan error
	stderr *lockedBuffer
	dns    string
}

type lockedBuffer struct {
	ch chan struct{}
	b  bytes.Buffer
}

func newLockedBuffer() *lockedBuffer {
	l := &lockedBuffer{ch: make(chan struct{}, 1)}
	l.ch <- struct{}{}
	return l
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	<-l.ch
	defer func() { l.ch <- struct{}{} }()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	<-l.ch
	defer func() { l.ch <- struct{}{} }()
	return l.b.String()
}

// waitServing waits for the JSON log line "sinkhole serving" and learns the
// DNS address from "dns listening".
func (s *server) waitServing(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-s.done:
			t.Fatalf("sinkhole exited: %v\n%s", err, s.stderr.String())
		default:
		}
		sc := bufio.NewScanner(strings.NewReader(s.stderr.String()))
		serving := false
		for sc.Scan() {
			var rec map[string]any
			if json.Unmarshal(sc.Bytes(), &rec) != nil {
				continue
			}
			switch rec["msg"] {
			case "dns listening":
				s.dns, _ = rec["addr"].(string)
			case "sinkhole serving":
				serving = true
			}
		}
		if serving && s.dns != "" {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("sinkhole did not start serving in 30s:\n%s", s.stderr.String())
}

func (s *server) stop(t *testing.T) {
	t.Helper()
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.done:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v\n%s", err, s.stderr.String())
		}
	case <-time.After(20 * time.Second):
		s.cmd.Process.Kill()
		t.Errorf("no exit 20s after SIGTERM")
	}
}

// ask sends one query and returns the answer.
func ask(t *testing.T, addr, name string) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeA)
	m.SetEdns0(1232, false)
	var r *dns.Msg
	var err error
	for range 3 {
		if r, _, err = (&dns.Client{Timeout: 3 * time.Second}).Exchange(m, addr); err == nil {
			return r
		}
	}
	t.Fatalf("query %s at %s: %v", name, addr, err)
	return nil
}

func edeText(m *dns.Msg) string {
	if opt := m.IsEdns0(); opt != nil {
		for _, o := range opt.Option {
			if e, ok := o.(*dns.EDNS0_EDE); ok {
				return e.ExtraText
			}
		}
	}
	return ""
}

func TestDebianPackage(t *testing.T) {
	optIn(t, "SINKHOLE_PACKAGE_TEST", "the package test (dpkg -i, a system user, dpkg --purge)")
	if os.Geteuid() != 0 {
		t.Fatal("the package test needs root (dpkg -i)")
	}
	for _, tool := range []string{"dpkg", "dpkg-query", "systemd-analyze", "make", "man"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed (.ci/run installs it)", tool)
		}
	}
	lockMachine(t, "sinkhole-package-test")
	if out, err := run(t, time.Minute, "dpkg-query", "-W", "-f=${Status}", "sinkhole"); err == nil && strings.Contains(out, "installed") {
		t.Skip("a sinkhole package is installed on this machine; the test leaves it alone")
	}

	dist := t.TempDir()
	must(t, 10*time.Minute, "make", "-C", repo, "deb", "DIST="+dist)
	debs, _ := filepath.Glob(filepath.Join(dist, "sinkhole_*.deb"))
	if len(debs) != 1 {
		t.Fatalf("make deb made %v", debs)
	}
	deb := debs[0]
	t.Logf("built %s", filepath.Base(deb))

	// What the package holds, before installing it.
	info := must(t, time.Minute, "dpkg-deb", "--info", deb)
	for _, want := range []string{"Package: sinkhole", "Section: net", "postinst", "prerm", "postrm", "conffiles"} {
		if !strings.Contains(info, want) {
			t.Errorf("dpkg-deb --info has no %q:\n%s", want, info)
		}
	}

	t.Cleanup(func() { run(t, 5*time.Minute, "dpkg", "--purge", "sinkhole") })
	must(t, 5*time.Minute, "dpkg", "-i", deb)

	// Installed: binary, user, conffiles, man page, completions, unit.
	if out := must(t, time.Minute, "/usr/bin/sinkhole", "version"); !strings.HasPrefix(out, "sinkhole ") {
		t.Errorf("sinkhole version: %s", out)
	}
	u, err := user.Lookup("sinkhole")
	if err != nil {
		t.Fatalf("no sinkhole user after install: %v", err)
	}
	conffiles := must(t, time.Minute, "dpkg-query", "-W", "-f=${Conffiles}", "sinkhole")
	for _, want := range []string{"/etc/sinkhole/sinkhole.yaml", "/etc/sinkhole/lists/foreign-exchanges.txt"} {
		if !strings.Contains(conffiles, want) {
			t.Errorf("%s is not a conffile: %s", want, conffiles)
		}
	}
	if out := must(t, time.Minute, "man", "-w", "sinkhole"); strings.TrimSpace(out) != "/usr/share/man/man8/sinkhole.8.gz" {
		t.Errorf("man -w sinkhole: %s", out)
	}
	for _, f := range []string{"/usr/share/bash-completion/completions/sinkhole", "/usr/share/zsh/vendor-completions/_sinkhole",
		"/usr/share/fish/vendor_completions.d/sinkhole.fish", "/usr/share/doc/sinkhole/copyright", "/usr/share/doc/sinkhole/sinkhole.yaml"} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("not installed: %v", err)
		}
	}
	if st, err := os.Stat("/etc/sinkhole/credentials"); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("/etc/sinkhole/credentials: %v %v", st, err)
	}
	if out, err := run(t, 2*time.Minute, "systemd-analyze", "verify", "/lib/systemd/system/sinkhole.service"); err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}

	// Run the installed binary with the installed config as the unit
	// would (as the sinkhole user), on a free port, forwarding to a test
	// upstream.
	up, err := dnstest.Start(dnstest.Options{Records: []string{"example.com. 60 IN A 192.0.2.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	asSinkhole := &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	args := []string{"serve", "--config", "/etc/sinkhole/sinkhole.yaml", "--upstream", up.Addr,
		"--listen", fmt.Sprintf("127.0.0.1:%d", freePort(t)), "--admin", "127.0.0.1:0"}

	check := exec.Command("/usr/bin/sinkhole", append(args, "--check-config")...)
	check.SysProcAttr, check.Dir = asSinkhole, "/var/lib/sinkhole"
	if out, err := check.CombinedOutput(); err != nil || !strings.Contains(string(out), "configuration ok") {
		t.Errorf("serve --check-config with the installed config: %v\n%s", err, out)
	}

	s := &server{cmd: exec.Command("/usr/bin/sinkhole", args...), done: make(chan error, 1), stderr: newLockedBuffer()}
	s.cmd.SysProcAttr, s.cmd.Dir, s.cmd.Stderr = asSinkhole, "/var/lib/sinkhole", s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.done <- s.cmd.Wait() }()
	defer s.cmd.Process.Kill()
	s.waitServing(t)
	if strings.Contains(s.stderr.String(), `"level":"WARN"`) {
		t.Errorf("the installed configuration starts with a warning:\n%s", s.stderr.String())
	}
	if r := ask(t, s.dns, "www.binance.com"); r.Rcode != dns.RcodeNameError || !strings.HasPrefix(edeText(r), "blocked by foreign-exchanges.txt:") {
		t.Errorf("www.binance.com: %v", r)
	}
	if r := ask(t, s.dns, "example.com"); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Errorf("example.com: %v", r)
	}
	s.stop(t)
	if audit, err := os.ReadFile("/var/log/sinkhole/audit.log"); err != nil || !bytes.Contains(audit, []byte(`"name":"www.binance.com"`)) {
		t.Errorf("audit log: %v\n%s", err, audit)
	}

	// Remove keeps the conffiles; purge removes them, the logs and state.
	must(t, 5*time.Minute, "dpkg", "-r", "sinkhole")
	if _, err := os.Stat("/usr/bin/sinkhole"); !os.IsNotExist(err) {
		t.Errorf("/usr/bin/sinkhole after dpkg -r: %v", err)
	}
	if _, err := os.Stat("/etc/sinkhole/sinkhole.yaml"); err != nil {
		t.Errorf("the conffile is gone after dpkg -r: %v", err)
	}
	must(t, 5*time.Minute, "dpkg", "--purge", "sinkhole")
	for _, p := range []string{"/etc/sinkhole", "/var/log/sinkhole", "/var/lib/sinkhole"} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s after dpkg --purge: %v", p, err)
		}
	}
	if out, err := run(t, time.Minute, "dpkg-query", "-W", "-f=${Status}", "sinkhole"); err == nil && strings.Contains(out, "installed") {
		t.Errorf("still installed after purge: %s", out)
	}
}
