// Package querylog writes the audit log (one JSON line per blocked or
// monitored query) and the query log (one JSON line per query) without
// ever slowing the query path: a query formats its line straight into the
// log's pending lines (under a mutex, no copy); one
// goroutine takes the pending lines at most batchWait later and writes
// them in batches of whole lines, or as soon as fullBatch bytes are
// pending (so the pending lines stay a small buffer, hot in the CPU's
// cache). When Buffer lines are pending the line is dropped and counted,
// never the query. Files rotate by size (lumberjack), are reopened when
// deleted or renamed (and on Reopen), and never keep a partial line.
package querylog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"gopkg.in/natefinch/lumberjack.v2"

	"github.com/sinkhole-dns/sinkhole/resolver/query"
)

// Stdout is the path that means standard output.
const Stdout = "-"

// Defaults of Options.
const (
	DefaultBuffer     = 16384 // lines
	DefaultMaxSizeMB  = 100
	DefaultMaxBackups = 10
)

// batchSize is how many bytes of whole lines are gathered before a write.
const batchSize = 64 << 10

// batchWait is how long the writer lets lines gather after a write: it
// bounds how late a line reaches the file (and how often the writer wakes).
// Each write (and the file status check before it) holds a P for its
// whole length, and on a server pinned to one CPU (GOMAXPROCS 1) that is
// the only P, the one the UDP read loop needs: a query arriving then
// waits for it. At 5,000 blocked queries a second, 10 ms made about 95
// writes a second that held the P 1.6-3 % of the time (Go execution
// trace), enough to lift the 99th percentile latency; 50 ms makes about
// 24 that hold it 0.5 % (docs/benchmarks.md, "p99 at 5,000 qps"). A busy
// log is written every fullBatch bytes whatever batchWait is.
const batchWait = 50 * time.Millisecond

// fullBatch is how many bytes of pending lines make the writer take them
// at once instead of at the end of its pause. The query path then yields
// (runtime.Gosched) so that the writer runs even when a busy read loop
// holds the only P: at full load (150,000 audit lines a second, 50 MB/s)
// the pending lines otherwise piled up to megabytes between two runs of
// the writer (4.5 MB of the heap in make bench's blocked workload), each
// line copied into memory the CPU's caches no longer held.
const fullBatch = 2 * batchSize

// lineBuf is the room a pending chunk must have left to take the next
// line, which is formatted in place; a longer line (many answer
// addresses) gets a chunk of its own.
const lineBuf = 1024

// maxSpare is how many bytes of written chunks the writer keeps for
// reuse: a backlog up to that size (the writer held back by the disk) is
// gathered in chunks already allocated, so a busy log makes no garbage.
const maxSpare = 4 << 20

// chunk is batchSize bytes of whole pending lines, written in one write.
// A line longer than batchSize gets a chunk of its own, which is not kept
// for reuse.
type chunk struct {
	b []byte
	n int // lines in b
}

// Options configures a Log.
type Options struct {
	// Name says which log this is ("audit", "query") in errors and logs.
	Name string
	// Path is the file to write; Stdout ("-") writes to Stdout.
	Path string
	// Stdout is the writer for Path "-" (os.Stdout when nil).
	Stdout io.Writer
	// MaxSizeMB rotates the file when it would grow past this many
	// megabytes (DefaultMaxSizeMB when 0).
	MaxSizeMB int
	// MaxBackups is how many rotated files to keep (0 keeps them all).
	MaxBackups int
	// Buffer is how many lines may wait for the writer (DefaultBuffer
	// when 0); past it lines are dropped and counted.
	Buffer int
	// Logger receives write errors; slog.Default() when nil.
	Logger *slog.Logger

	wait time.Duration // the writer's pause (batchWait when 0; tests set it)
}

// Log is an asynchronous JSON-lines log. Audit and Query are safe for
// concurrent use and never block.
type Log struct {
	name    string
	path    string
	out     io.Writer
	closer  io.Closer // the rotating file, nil for stdout
	lj      *lumberjack.Logger
	reopen  chan struct{}
	file    os.FileInfo // the file last opened at path (writer goroutine only)
	log     *slog.Logger
	max     int           // Options.Buffer: lines that may be pending
	wait    time.Duration // batchWait (tests set another)
	stop    chan struct{}
	done    chan struct{}
	closed  atomic.Bool
	once    sync.Once
	lines   atomic.Uint64
	dropped atomic.Uint64

	// The lines waiting for the writer, whole and in order, in chunks of
	// batchSize bytes. A line is appended under mu; the writer takes the
	// pending chunks, writes them and gives them back to spare (at most
	// maxSpare bytes of them) for the next lines. wake tells an idle writer
	// that lines are pending.
	mu      sync.Mutex
	pending []*chunk
	npend   int // lines in pending
	nbytes  int // bytes in pending
	spare   []*chunk
	taken   []*chunk // the slice pending was, handed back by the writer
	wake    chan struct{}
	// full tells a pausing writer that fullBatch bytes are pending;
	// nudged says it was told since it last took the pending lines.
	full   chan struct{}
	nudged bool

	lastErrLog time.Time // writer goroutine only
}

// Open checks that the file can be written (creating it, mode 0640, but
// not its directory) and starts the writer.
func Open(opts Options) (*Log, error) {
	if opts.Path == "" {
		return nil, fmt.Errorf("%s log: no path", opts.Name)
	}
	if opts.Buffer <= 0 {
		opts.Buffer = DefaultBuffer
	}
	if opts.MaxSizeMB <= 0 {
		opts.MaxSizeMB = DefaultMaxSizeMB
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	l := &Log{
		name: opts.Name, path: opts.Path, log: opts.Logger, max: opts.Buffer,
		stop: make(chan struct{}), done: make(chan struct{}), reopen: make(chan struct{}, 1),
		wake: make(chan struct{}, 1), full: make(chan struct{}, 1), wait: opts.wait,
	}
	if l.wait <= 0 {
		l.wait = batchWait
	}
	if opts.Path == Stdout {
		l.out = opts.Stdout
		if l.out == nil {
			l.out = os.Stdout
		}
	} else {
		f, err := os.OpenFile(opts.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
		if err != nil {
			return nil, fmt.Errorf("%s log: %w", opts.Name, err)
		}
		st, err := f.Stat()
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s log: %w", opts.Name, err)
		}
		if !st.Mode().IsRegular() {
			return nil, fmt.Errorf("%s log %s: not a regular file", opts.Name, opts.Path)
		}
		lj := &lumberjack.Logger{Filename: opts.Path, MaxSize: opts.MaxSizeMB, MaxBackups: opts.MaxBackups}
		l.out, l.closer, l.lj = lj, lj, lj
	}
	go l.run()
	return l, nil
}

// Path returns the file the log writes ("-" for standard output).
func (l *Log) Path() string { return l.path }

// Lines returns how many lines were written.
func (l *Log) Lines() uint64 { return l.lines.Load() }

// Dropped returns how many lines were lost: the buffer was full, or the
// write failed.
func (l *Log) Dropped() uint64 { return l.dropped.Load() }

// Audit logs a query on which a rule fired (blocked, or monitored under
// action log). It does nothing for a query without a decision.
func (l *Log) Audit(req *query.Request) {
	if req.Info.Decision == nil || l.closed.Load() {
		return
	}
	l.addWith(func(b []byte) []byte { return AppendAudit(b, req) })
}

// Query logs any answered query with its response (nil when none was sent).
func (l *Log) Query(req *query.Request, resp *dns.Msg) {
	if l.closed.Load() {
		return
	}
	dur := time.Since(req.Start)
	l.addWith(func(b []byte) []byte { return AppendQuery(b, req, resp, dur) })
}

// add appends one formatted line to the pending lines, or drops it (and
// counts it) when Buffer lines are pending already. line is copied.
func (l *Log) add(line []byte) {
	l.addWith(func(b []byte) []byte { return append(b, line...) })
}

// addWith appends one line to the pending lines, formatted by format
// straight into the last pending chunk (format appends the whole line to
// b and returns it), or drops it (and counts it) when Buffer lines are
// pending already.
func (l *Log) addWith(format func(b []byte) []byte) {
	first, full, ok := l.appendLine(format)
	if !ok {
		l.dropped.Add(1)
		return
	}
	if first {
		select {
		case l.wake <- struct{}{}:
		default:
		}
	}
	if full {
		select {
		case l.full <- struct{}{}:
		default:
		}
		runtime.Gosched() // let the writer run now, even on a single P
	}
}

// appendLine is addWith's part under mu: ok is false when the line was
// not taken (Buffer lines pending), first when it is the only pending
// line, full when it made fullBatch bytes pending. A chunk takes a line
// only with lineBuf bytes free, so a line fits in place unless it is
// longer than lineBuf (many answer addresses): then it gets a chunk of
// its own, which is not kept for reuse. mu is released however format
// returns (a panic on the query path leaves the pending lines whole).
func (l *Log) appendLine(format func(b []byte) []byte) (first, full, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.npend >= l.max {
		return false, false, false
	}
	first = l.npend == 0
	var c *chunk
	if k := len(l.pending); k > 0 && len(l.pending[k-1].b)+lineBuf <= cap(l.pending[k-1].b) {
		c = l.pending[k-1]
	} else {
		c = l.newChunk(lineBuf)
		l.pending = append(l.pending, c)
	}
	start := len(c.b)
	b := format(c.b)
	n := len(b) - start
	switch {
	case cap(b) == cap(c.b):
		c.b = b
	case c.n == 0:
		c.b = b[:len(b):len(b)] // a chunk of its own, full
	default:
		c = &chunk{b: b[start:len(b):len(b)]} // the new array is the line's alone from now on
		l.pending = append(l.pending, c)
	}
	c.n++
	l.npend++
	l.nbytes += n
	full = l.nbytes >= fullBatch && !l.nudged
	if full {
		l.nudged = true
	}
	return first, full, true
}

// newChunk returns an empty chunk for a line of n bytes: a spare one, or
// a new one. mu is held.
func (l *Log) newChunk(n int) *chunk {
	if n <= batchSize {
		if k := len(l.spare); k > 0 {
			c := l.spare[k-1]
			l.spare = l.spare[:k-1]
			return c
		}
		n = batchSize
	}
	return &chunk{b: make([]byte, 0, n)}
}

// take hands the pending chunks to the writer (n lines in all, possibly
// none). The writer gives them back with giveBack once they are written.
func (l *Log) take() (batch []*chunk, n int) {
	l.mu.Lock()
	batch, n = l.pending, l.npend
	l.pending, l.npend, l.nbytes, l.nudged = l.taken[:0], 0, 0, false
	l.taken = nil
	l.mu.Unlock()
	return batch, n
}

// giveBack keeps written chunks for the next lines, up to maxSpare bytes.
func (l *Log) giveBack(batch []*chunk) {
	l.mu.Lock()
	for i, c := range batch {
		if cap(c.b) == batchSize && len(l.spare)*batchSize < maxSpare {
			c.b, c.n = c.b[:0], 0
			l.spare = append(l.spare, c)
		}
		batch[i] = nil
	}
	if l.taken == nil {
		l.taken = batch[:0]
	}
	l.mu.Unlock()
}

// run is the writer goroutine. Idle, it waits for a line; then it writes
// what is pending and lets lines gather for batchWait before the next
// write, or until fullBatch bytes are pending, so a line reaches the file
// at most about batchWait after it was logged while the writer keeps up,
// and the writer wakes at most once per batchWait or per fullBatch bytes
// of lines.
func (l *Log) run() {
	defer close(l.done)
	flush := func() {
		batch, n := l.take()
		if n > 0 {
			l.writeLines(batch)
		}
		l.giveBack(batch)
	}
	finish := func() {
		flush()
		if l.closer != nil {
			if err := l.closer.Close(); err != nil {
				l.log.Warn("closing log", "log", l.name, "path", l.path, "err", err)
			}
		}
	}
	pause := time.NewTimer(l.wait)
	pause.Stop()
	check := time.NewTicker(checkInterval)
	defer check.Stop()
	for {
		// Idle: wait for a line.
		select {
		case <-l.wake:
		case <-l.full:
		case <-check.C:
			l.checkFile()
			continue
		case <-l.reopen:
			l.reopenFile("asked to (SIGHUP or SIGUSR1)")
			continue
		case <-l.stop:
			finish()
			return
		}
		flush()
		// Busy: let lines gather for a moment rather than being woken for
		// each one.
		pause.Reset(l.wait)
		select {
		case <-pause.C:
		case <-l.full:
			pause.Stop()
		case <-l.stop:
			pause.Stop()
			finish()
			return
		}
		flush()
	}
}

// writeLines writes the chunks' lines, one write per chunk (each ends at
// a line's end: a rotation never splits a line).
func (l *Log) writeLines(batch []*chunk) {
	for _, c := range batch {
		if c.n > 0 {
			l.write(c.b, uint64(c.n))
		}
	}
}

// write writes one batch of n lines; on failure the lines are counted as
// dropped and the error logged (at most once a minute).
func (l *Log) write(batch []byte, n uint64) {
	if err := l.writeBatch(batch); err != nil {
		l.dropped.Add(n)
		if now := time.Now(); now.Sub(l.lastErrLog) >= time.Minute {
			l.lastErrLog = now
			l.log.Error("writing log failed; lines dropped", "log", l.name, "path", l.path, "lines", n, "err", err)
		}
		return
	}
	l.lines.Add(n)
}

// Close writes the lines still buffered and closes the file. It waits
// until ctx ends; lines logged after Close are dropped silently.
func (l *Log) Close(ctx context.Context) error {
	l.once.Do(func() {
		l.closed.Store(true)
		close(l.stop)
	})
	select {
	case <-l.done:
		return nil
	case <-ctx.Done():
		return errors.Join(fmt.Errorf("%s log %s: writer did not finish", l.name, l.path), ctx.Err())
	}
}
