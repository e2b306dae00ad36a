package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/internal/dnstest"
)

// testServer is a sinkhole started in-process on loopback ports.
type testServer struct {
	in     *instance
	addr   string // DNS, UDP and TCP
	lists  string
	audit  string // the audit log's file, unless the test chose one
	stderr *syncBuffer
	cancel context.CancelFunc
	done   chan int
	// stopOnce makes stop idempotent (tests stop early, cleanup again).
	stopOnce sync.Once
}

// syncBuffer is a bytes.Buffer safe for the logger and the test at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startUpstream runs a test upstream with the given records.
func startUpstream(t *testing.T, records ...string) *dnstest.Server {
	t.Helper()
	up, err := dnstest.Start(dnstest.Options{Records: records})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(up.Close)
	return up
}

// writeLists creates a lists directory holding files.
func writeLists(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// startSinkhole runs "sinkhole serve" in-process with args added to a
// loopback listener and admin address, and waits until it serves. Unless
// args set --audit-log, the audit log goes to a file in a temporary
// directory (ts.audit).
func startSinkhole(t *testing.T, lists string, args ...string) *testServer {
	t.Helper()
	return startSinkholeOut(t, io.Discard, lists, args...)
}

// startSinkholeOut is startSinkhole with stdout as the command's standard
// output (where logs given as "-" go).
func startSinkholeOut(t *testing.T, stdout io.Writer, lists string, args ...string) *testServer {
	t.Helper()
	return startSinkholeWith(t, "127.0.0.1:0", stdout, lists, args...)
}

// serverStartTimeout bounds a test server's start: generous, because a
// 100,000-name list under the race detector on a busy 2-core machine can
// take most of a minute to load.
const serverStartTimeout = time.Minute

// startSinkholeWith starts the server on listen, with stdout as the
// command's standard output.
func startSinkholeWith(t *testing.T, listen string, stdout io.Writer, lists string, args ...string) *testServer {
	t.Helper()
	ts := &testServer{lists: lists, stderr: &syncBuffer{}, done: make(chan int, 1)}
	if !slices.Contains(args, "--start-strategy") {
		// Tests that are not about the start strategy serve at once, with
		// empty lists or a feed whose primary starts later (lists_test.go
		// tests the strategies).
		args = append([]string{"--start-strategy", "fast"}, args...)
	}
	if !slices.Contains(args, "--state-dir") {
		// Not the working directory's ./state (shared by every test).
		args = append([]string{"--state-dir", t.TempDir()}, args...)
	}
	if !slices.Contains(args, "--audit-log") {
		ts.audit = filepath.Join(t.TempDir(), "audit.log")
		args = append([]string{"--audit-log", ts.audit}, args...)
	}
	ready := make(chan *instance, 1)
	ctx, cancel := context.WithCancel(context.Background())
	ts.cancel = cancel
	ctx = context.WithValue(ctx, readyHookKey{}, func(in *instance) { ready <- in })
	full := append([]string{"sinkhole", "serve", "--listen", listen, "--admin", "127.0.0.1:0", "--lists", lists}, args...)
	// The logger writes to os.Stderr; keep test output readable by
	// discarding unless the test fails.
	go func() { ts.done <- run(ctx, full, stdout, ts.stderr) }()
	select {
	case ts.in = <-ready:
	case code := <-ts.done:
		t.Fatalf("serve exited with %d: %s", code, ts.stderr.String())
	case <-time.After(serverStartTimeout):
		t.Fatalf("server did not start within %s", serverStartTimeout)
	}
	ts.addr = ts.in.dns.Addrs()[0]
	t.Cleanup(ts.stop)
	return ts
}

// stop ends the server and waits for serve to return (once; later calls
// return at once).
func (ts *testServer) stop() {
	ts.stopOnce.Do(func() {
		ts.cancel()
		select {
		case <-ts.done:
		case <-time.After(10 * time.Second):
		}
	})
}

// query asks the server over proto ("udp" or "tcp") with EDNS on.
func (ts *testServer) query(t *testing.T, proto, name string, qtype uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.SetEdns0(1232, false)
	return ts.exchange(t, proto, m)
}

func (ts *testServer) exchange(t *testing.T, proto string, m *dns.Msg) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: proto, Timeout: 8 * time.Second}
	r, _, err := c.Exchange(m, ts.addr)
	if err != nil {
		t.Fatalf("%s query %s: %v", proto, m.Question[0].Name, err)
	}
	if r.Id != m.Id {
		t.Fatalf("answer ID %d, query ID %d", r.Id, m.Id)
	}
	return r
}

// ede returns the extended error of a response, or nil.
func ede(m *dns.Msg) *dns.EDNS0_EDE {
	if opt := m.IsEdns0(); opt != nil {
		for _, o := range opt.Option {
			if e, ok := o.(*dns.EDNS0_EDE); ok {
				return e
			}
		}
	}
	return nil
}

func answerStrings(m *dns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		out = append(out, strings.ReplaceAll(rr.String(), "\t", " "))
	}
	return out
}
