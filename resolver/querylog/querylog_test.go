package querylog

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/blocklist"
	"github.com/sinkhole-dns/sinkhole/resolver/policy"
	"github.com/sinkhole-dns/sinkhole/resolver/query"
)

// stalledWriter blocks every Write until released, then records.
type stalledWriter struct {
	release chan struct{}
	entered chan struct{} // closed at the first Write
	once    sync.Once
	mu      sync.Mutex
	buf     bytes.Buffer
}

func newStalledWriter() *stalledWriter {
	return &stalledWriter{release: make(chan struct{}), entered: make(chan struct{})}
}

func (w *stalledWriter) Write(p []byte) (int, error) {
	w.once.Do(func() { close(w.entered) })
	<-w.release
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *stalledWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func blockedRequest(t testing.TB, snap *blocklist.Snapshot, name string) *query.Request {
	req := request(snap, "192.0.2.1:5353", name, dns.TypeA)
	m := snap.MatchName(req.Name)
	if !m.Blocked() {
		t.Fatalf("%s is not blocked", name)
	}
	req.Info.Decision = (&policy.Blocker{}).Decide(snap, m.Rule, query.TriggerQName, req.Name)
	return req
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// A writer that never returns fills the buffer: logging keeps returning at
// once, the overflow is counted as dropped, and once the writer moves again
// every line is either written or counted.
func TestStalledWriterDropsLinesNotCallers(t *testing.T) {
	snap := loadSnapshot(t, map[string]string{"x.txt": testList})
	w := newStalledWriter()
	l, err := Open(Options{Name: "audit", Path: Stdout, Stdout: w, Buffer: 16, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	const n = 500
	start := time.Now()
	for i := range n {
		l.Audit(blockedRequest(t, snap, "w"+string(rune('a'+i%26))+".binance.com"))
		if i == 0 {
			select {
			case <-w.entered:
			case <-time.After(5 * time.Second):
				t.Fatal("writer never called")
			}
		}
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("logging %d lines against a stalled writer took %s", n, el)
	}
	// At most the buffer and the batch held by the writer are pending.
	if d := l.Dropped(); d < n-16-n/2 || d >= n {
		t.Fatalf("dropped %d of %d with a 16-line buffer", d, n)
	}
	if l.Lines() != 0 {
		t.Fatalf("lines written while stalled: %d", l.Lines())
	}
	close(w.release)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if l.Lines()+l.Dropped() != n {
		t.Fatalf("written %d + dropped %d != %d", l.Lines(), l.Dropped(), n)
	}
	lines := strings.Split(strings.TrimSuffix(w.String(), "\n"), "\n")
	if uint64(len(lines)) != l.Lines() {
		t.Fatalf("%d lines in the output, %d counted", len(lines), l.Lines())
	}
	for _, line := range lines {
		var v map[string]any
		if err := json.Unmarshal([]byte(line), &v); err != nil || v["platform"] != "Binance" {
			t.Fatalf("bad line %q: %v", line, err)
		}
	}
	// Logging after Close is a no-op.
	l.Audit(blockedRequest(t, snap, "binance.com"))
	l.Query(blockedRequest(t, snap, "binance.com"), nil)
}

// A Close whose writer never returns gives up when its context ends.
func TestCloseGivesUpOnStuckWriter(t *testing.T) {
	snap := loadSnapshot(t, map[string]string{"x.txt": testList})
	w := newStalledWriter()
	defer close(w.release)
	l, err := Open(Options{Name: "query", Path: Stdout, Stdout: w, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	l.Query(blockedRequest(t, snap, "binance.com"), nil)
	<-w.entered
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := l.Close(ctx); err == nil || !strings.Contains(err.Error(), "query log -: writer did not finish") {
		t.Fatalf("close: %v", err)
	}
}

func TestFileLogFlushesOnClose(t *testing.T) {
	snap := loadSnapshot(t, map[string]string{"x.txt": testList})
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(Options{Name: "audit", Path: path, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	for range 100 {
		l.Audit(blockedRequest(t, snap, "www.binance.com"))
	}
	// A query without a decision is not audited.
	l.Audit(request(snap, "192.0.2.1:1", "example.com", dns.TypeA))
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o640 {
		t.Fatalf("stat: %v %v", st.Mode(), err)
	}
	if got := countLines(t, path); got != 100 || l.Lines() != 100 || l.Dropped() != 0 {
		t.Fatalf("%d lines in file, %d written, %d dropped", got, l.Lines(), l.Dropped())
	}
}

// countLines counts the lines of a file, each of which must be JSON.
func countLines(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		if !json.Valid(sc.Bytes()) {
			t.Fatalf("%s: line %d is not JSON: %q", path, n+1, sc.Text())
		}
		n++
	}
	return n
}

// Rotation by size keeps whole lines in every file and the number of
// backups asked for.
func TestRotationKeepsWholeLines(t *testing.T) {
	snap := loadSnapshot(t, map[string]string{"x.txt": testList})
	dir := t.TempDir()
	path := filepath.Join(dir, "query.log")
	l, err := Open(Options{Name: "query", Path: path, MaxSizeMB: 1, MaxBackups: 2, Buffer: 1 << 16, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	req := blockedRequest(t, snap, "www.binance.com")
	lineLen := len(AppendQuery(nil, req, nil, 0))
	n := 3*(1<<20)/lineLen + 100 // a little over 3 MB: at least 3 rotations
	for i := range n {
		l.Query(req, nil)
		if i%1000 == 999 {
			// Let the writer keep up: this test is about rotation, not drops.
			for deadline := time.Now().Add(5 * time.Second); l.Lines()+l.Dropped() < uint64(i+1) && time.Now().Before(deadline); {
				time.Sleep(time.Millisecond)
			}
		}
	}
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if l.Dropped() != 0 {
		t.Fatalf("dropped %d", l.Dropped())
	}
	// Old backups are removed in the background: wait for it, bounded.
	var files []string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		files, _ = filepath.Glob(filepath.Join(dir, "query*.log"))
		if len(files) <= 3 {
			break
		}
	}
	if len(files) != 3 {
		t.Fatalf("want the log and 2 backups, got %v", files)
	}
	for _, f := range files {
		st, _ := os.Stat(f)
		if st.Size() > 1<<20 {
			t.Errorf("%s: %d bytes, over the 1 MB limit", f, st.Size())
		}
		countLines(t, f)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct{ path, want string }{
		{filepath.Join(dir, "missing", "audit.log"), "audit log: open " + filepath.Join(dir, "missing", "audit.log") + ": no such file or directory"},
		{dir, "audit log: open " + dir + ": is a directory"},
		{"", "audit log: no path"},
	} {
		_, err := Open(Options{Name: "audit", Path: tt.path})
		if err == nil || err.Error() != tt.want {
			t.Errorf("%q: %v, want %q", tt.path, err, tt.want)
		}
	}
}

// A failing writer counts its lines as dropped.
func TestWriteErrorsCountAsDropped(t *testing.T) {
	snap := loadSnapshot(t, map[string]string{"x.txt": testList})
	l, err := Open(Options{Name: "audit", Path: Stdout, Stdout: failWriter{}, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		l.Audit(blockedRequest(t, snap, "binance.com"))
	}
	l.Close(context.Background())
	if l.Dropped() != 10 || l.Lines() != 0 {
		t.Fatalf("dropped %d, written %d", l.Dropped(), l.Lines())
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, io.ErrShortWrite }

// BenchmarkAudit is the cost on the query path: format on the stack and
// append to the pending lines.
func BenchmarkAudit(b *testing.B) {
	snap := loadSnapshot(b, map[string]string{"x.txt": testList})
	req := blockedRequest(b, snap, "www.binance.com")
	l, err := Open(Options{Name: "audit", Path: Stdout, Stdout: io.Discard, Buffer: 1 << 16, Logger: quiet()})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close(context.Background())
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l.Audit(req)
		}
	})
}

// countingWriter records what it is given.
type countingWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *countingWriter) lines() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return bytes.Count(w.buf.Bytes(), []byte{'\n'})
}

// Once fullBatch bytes of lines are pending the writer takes them without
// waiting out its pause (an hour here), so a busy log's pending lines stay
// a small buffer: of lines logged in a burst, all but the last partial
// batch are written while the writer is still pausing.
func TestFullBatchEndsThePause(t *testing.T) {
	snap := loadSnapshot(t, map[string]string{"x.txt": testList})
	w := &countingWriter{}
	l, err := Open(Options{Name: "audit", Path: Stdout, Stdout: w, Buffer: 1 << 20, Logger: quiet(), wait: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(context.Background())
	req := blockedRequest(t, snap, "www.binance.com")
	var buf [lineBuf]byte
	lineLen := len(AppendAudit(buf[:0], req))
	// The first line wakes the idle writer, which writes it and pauses;
	// then enough lines for three full batches.
	l.Audit(req)
	deadline := time.Now().Add(time.Minute)
	for w.lines() < 1 {
		if time.Now().After(deadline) {
			t.Fatal("the first line was not written within a minute")
		}
		time.Sleep(time.Millisecond)
	}
	n := 3*fullBatch/lineLen + 1
	for range n {
		l.Audit(req)
	}
	want := 1 + 2*fullBatch/lineLen // at least two full batches, taken during the pause
	for w.lines() < want {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d lines written within a minute of an hour-long pause; want at least %d", w.lines(), 1+n, want)
		}
		time.Sleep(time.Millisecond)
	}
}

// The pending lines are gathered in chunks of whole lines, at most
// batchSize bytes each (a longer line has one of its own), in order; once
// written, the chunks take the next lines: a busy log allocates nothing.
func TestPendingChunks(t *testing.T) {
	l := &Log{max: 1 << 20, wake: make(chan struct{}, 1), full: make(chan struct{}, 1)}
	var lines [][]byte
	for i := range 2000 {
		n := 100 + i%300
		if i%700 == 0 {
			n = batchSize + 1000 // a line longer than a chunk
		}
		line := bytes.Repeat([]byte{'a' + byte(i%26)}, n)
		line[n-1] = '\n'
		lines = append(lines, line)
	}
	cycle := func() {
		for _, line := range lines {
			l.add(line)
		}
		batch, n := l.take()
		if n != len(lines) {
			t.Fatalf("took %d lines, logged %d", n, len(lines))
		}
		var all []byte
		for _, c := range batch {
			if len(c.b) > batchSize && c.n != 1 {
				t.Fatalf("a chunk of %d bytes holds %d lines", len(c.b), c.n)
			}
			if c.n != bytes.Count(c.b, []byte{'\n'}) || c.b[len(c.b)-1] != '\n' {
				t.Fatalf("chunk of %d lines does not hold whole lines", c.n)
			}
			all = append(all, c.b...)
		}
		if !bytes.Equal(all, bytes.Join(lines, nil)) {
			t.Fatal("the chunks do not hold the lines in order")
		}
		l.giveBack(batch)
	}
	cycle()
	// Counted without the checks' own allocations: add, take and giveBack.
	allocs := testing.AllocsPerRun(5, func() {
		for _, line := range lines {
			if len(line) <= batchSize {
				l.add(line)
			}
		}
		batch, _ := l.take()
		l.giveBack(batch)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per busy cycle, want 0", allocs)
	}
	cycle()
}
