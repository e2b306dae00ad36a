package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// flipNames are the names whose rules the reload test turns on and off.
var flipNames = func() []string {
	out := make([]string, 10)
	for i := range out {
		out[i] = fmt.Sprintf("flip%d.test", i)
	}
	return out
}()

// phase is what the load goroutines may see for each name: during a
// transition both the old and the new decision are allowed; when stable,
// only one.
type phase struct {
	allowed map[string][2]bool // name -> {may be allowed, may be blocked}
}

func stablePhase(blocked map[string]bool) *phase {
	p := &phase{allowed: map[string][2]bool{}}
	for _, n := range append(flipNames, "static.test") {
		b := blocked[n]
		p.allowed[n] = [2]bool{!b, b}
	}
	return p
}

func transition(from, to map[string]bool) *phase {
	p := &phase{allowed: map[string][2]bool{}}
	for _, n := range append(flipNames, "static.test") {
		p.allowed[n] = [2]bool{!from[n] || !to[n], from[n] || to[n]}
	}
	return p
}

// TestReloadUnderLoad rewrites a list file 50 times (in place, by rename,
// broken, deleted) while clients query without pause. No query may fail or
// go unanswered, and a name's decision may only change when its rule does.
func TestReloadUnderLoad(t *testing.T) {
	recs := []string{"static.test. 60 IN A 192.0.2.1"}
	for _, n := range flipNames {
		recs = append(recs, n+". 60 IN A 192.0.2.2")
	}
	up := startUpstream(t, recs...)
	lists := writeLists(t, map[string]string{"static.txt": "# platform: Static\nstatic.test\n"})
	// The shrink guard is off: this test is about atomic swaps, and its
	// random rewrites and deletions drop rules on purpose (the guard has
	// its own tests in lists_test.go).
	ts := startSinkhole(t, lists, "--upstream", up.Addr, "--reload-debounce", "60ms", "--max-shrink", "100%")
	flip := filepath.Join(lists, "flip.txt")

	var cur atomic.Pointer[phase]
	blocked := map[string]bool{"static.test": true}
	cur.Store(stablePhase(blocked))

	var stop atomic.Bool
	var queries, failures atomic.Int64
	var failMu sync.Mutex
	var failMsgs []string
	fail := func(format string, args ...any) {
		failures.Add(1)
		failMu.Lock()
		if len(failMsgs) < 10 {
			failMsgs = append(failMsgs, fmt.Sprintf(format, args...))
		}
		failMu.Unlock()
	}
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			proto := "udp"
			if g == 3 {
				proto = "tcp"
			}
			c := &dns.Client{Net: proto, Timeout: 3 * time.Second}
			names := append(append([]string{}, flipNames...), "static.test")
			for i := 0; !stop.Load(); i++ {
				name := names[(i*7+g)%len(names)]
				before := cur.Load()
				m := new(dns.Msg)
				m.SetQuestion(name+".", dns.TypeA)
				m.SetEdns0(1232, false)
				r, _, err := c.Exchange(m, ts.addr)
				after := cur.Load()
				queries.Add(1)
				if err != nil {
					fail("%s %s: %v", proto, name, err)
					continue
				}
				var isBlocked bool
				switch {
				case r.Rcode == dns.RcodeNameError && ede(r) != nil:
					isBlocked = true
				case r.Rcode == dns.RcodeSuccess && len(r.Answer) == 1:
				default:
					fail("%s %s: unexpected answer rcode %s", proto, name, dns.RcodeToString[r.Rcode])
					continue
				}
				idx := 0
				if isBlocked {
					idx = 1
				}
				if !before.allowed[name][idx] && !after.allowed[name][idx] {
					fail("%s %s: blocked=%v but its rule did not say so", proto, name, isBlocked)
				}
			}
		}(g)
	}

	rng := rand.New(rand.NewPCG(1, 2))
	sum := func(b []byte) string { h := sha256.Sum256(b); return hex.EncodeToString(h[:]) }
	waitFor := func(step int, what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("step %d: reload did not happen (%s)", step, what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	for step := 0; step < 50; step++ {
		next := map[string]bool{"static.test": true}
		var body []byte
		kind := []string{"in-place", "rename"}[step%2]
		switch {
		case step == 15 || step == 35:
			kind = "broken"
		case step == 25 || step == 45:
			kind = "delete"
		}
		switch kind {
		case "broken":
			for n, v := range blocked {
				next[n] = v
			}
			body = []byte("# platform: Flip\nflip0.test\nthis line is broken\n")
		case "delete":
		default:
			var b strings.Builder
			b.WriteString("# platform: Flip\n")
			for _, n := range flipNames {
				if rng.IntN(2) == 0 {
					next[n] = true
					b.WriteString(n + "\n")
				}
			}
			fmt.Fprintf(&b, "# step %d\n", step)
			body = []byte(b.String())
		}
		cur.Store(transition(blocked, next))
		switch kind {
		case "in-place", "broken":
			if err := os.WriteFile(flip, body, 0o644); err != nil {
				t.Fatal(err)
			}
		case "rename":
			tmp := filepath.Join(lists, ".flip.txt.tmp")
			if err := os.WriteFile(tmp, body, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, flip); err != nil {
				t.Fatal(err)
			}
		case "delete":
			if err := os.Remove(flip); err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
		}
		switch kind {
		case "broken":
			waitFor(step, kind, func() bool {
				f := ts.in.store.Current().File("flip.txt")
				return f != nil && f.Stale && len(f.Errors) > 0
			})
		case "delete":
			waitFor(step, kind, func() bool { return ts.in.store.Current().File("flip.txt") == nil })
		default:
			want := sum(body)
			waitFor(step, kind, func() bool {
				f := ts.in.store.Current().File("flip.txt")
				return f != nil && !f.Stale && f.SHA256 == want
			})
		}
		blocked = next
		cur.Store(stablePhase(blocked))
		// Every name's decision is now exactly what the file says.
		for _, n := range append(append([]string{}, flipNames...), "static.test") {
			r := ts.query(t, "udp", n, dns.TypeA)
			if got := r.Rcode == dns.RcodeNameError; got != blocked[n] {
				t.Fatalf("step %d (%s): %s blocked=%v, want %v", step, kind, n, got, blocked[n])
			}
		}
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("%d queries during 50 rewrites, %d failures", queries.Load(), failures.Load())
	if failures.Load() != 0 {
		t.Fatalf("%d failed queries, first: %v", failures.Load(), failMsgs)
	}
	if queries.Load() < 100 {
		t.Fatalf("only %d queries ran", queries.Load())
	}
}
