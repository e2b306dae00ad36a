package main

import (
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// notifySocket is the socket systemd would give a Type=notify service.
func notifySocket(t *testing.T) (string, <-chan string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	msgs := make(chan string, 100)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	return path, msgs
}

func waitNotify(t *testing.T, msgs <-chan string, prefix string) string {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case m := <-msgs:
			if strings.HasPrefix(m, prefix) {
				return m
			}
		case <-deadline:
			t.Fatalf("no %q notification within 10s", prefix)
		}
	}
}

// Under a Type=notify unit: READY=1 only once the lists are loaded and DNS
// answers, WATCHDOG=1 at half of WatchdogSec, STOPPING=1 when the drain
// begins.
func TestSystemdNotify(t *testing.T) {
	sock, msgs := notifySocket(t)
	t.Setenv("NOTIFY_SOCKET", sock)
	t.Setenv("WATCHDOG_USEC", "400000") // keep-alives every 200ms
	t.Setenv("WATCHDOG_PID", "")
	up := startUpstream(t)
	lists := writeLists(t, map[string]string{"x.txt": "a.test\nb.test\n"})
	p := startBinary(t, t.TempDir(), "--lists", lists, "--upstream", up.Addr)
	ready := waitNotify(t, msgs, "READY=1")
	if !strings.Contains(ready, "STATUS=serving 2 rules on 127.0.0.1:") {
		t.Errorf("ready notification %q", ready)
	}
	// Ready means answering: the blocked name is blocked at once.
	q := new(dns.Msg)
	q.SetQuestion("www.a.test.", dns.TypeA)
	if r, _, err := (&dns.Client{Timeout: 5 * time.Second}).Exchange(q, p.dns); err != nil || r.Rcode != dns.RcodeNameError {
		t.Fatalf("query right after READY=1: %v %v", r, err)
	}
	start := time.Now()
	waitNotify(t, msgs, "WATCHDOG=1")
	waitNotify(t, msgs, "WATCHDOG=1")
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("two keep-alives took %s, want about 400ms", d)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	waitNotify(t, msgs, "STOPPING=1")
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("exit: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
}

// Secrets from systemd's LoadCredential=: the admin token is read from
// $CREDENTIALS_DIRECTORY/sinkhole_admin-token when no --admin-token-file is
// given, and any token or key file option takes credential:ID.
func TestSystemdCredentials(t *testing.T) {
	creds := t.TempDir()
	if err := os.WriteFile(filepath.Join(creds, adminTokenCredential), []byte("from-systemd\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(creds, "other-token"), []byte("other\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CREDENTIALS_DIRECTORY", creds)
	up := startUpstream(t)
	lists := writeLists(t, map[string]string{"x.txt": "a.test\n"})
	status := func(addr, token string) int {
		req, _ := http.NewRequest("GET", "http://"+addr+"/v1/status", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	ts := startSinkhole(t, lists, "--upstream", up.Addr)
	if a, b := status(ts.in.admin.Addr(), ""), status(ts.in.admin.Addr(), "from-systemd"); a != 401 || b != 200 {
		t.Errorf("token from the credential: without it %d, with it %d", a, b)
	}
	ts = startSinkhole(t, lists, "--upstream", up.Addr, "--admin-token-file", "credential:other-token")
	if a, b := status(ts.in.admin.Addr(), "from-systemd"), status(ts.in.admin.Addr(), "other"); a != 401 || b != 200 {
		t.Errorf("--admin-token-file credential:other-token: wrong token %d, right one %d", a, b)
	}
	// A credential that is not there, and credentials outside systemd.
	if _, err := loadServeConfig(t, "--lists", lists, "--upstream", up.Addr, "--admin-token-file", "credential:missing"); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing credential: %v", err)
	}
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	if _, err := loadServeConfig(t, "--lists", lists, "--upstream", up.Addr, "--admin-token-file", "credential:other-token"); err == nil || !strings.Contains(err.Error(), "CREDENTIALS_DIRECTORY") {
		t.Errorf("credential without systemd: %v", err)
	}
}
