// Package querylog writes the audit log (one JSON line per blocked or
// monitored query) and the query log (one JSON line per query) without
// ever slowing the query path: a query formats its line into a pooled
// buffer and hands it to a bounded channel; one goroutine writes the lines
// in batches. When the channel is full the line is dropped and counted,
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
const batchWait = 10 * time.Millisecond

// maxPooledLine is the largest line buffer returned to the pool.
const maxPooledLine = 4 << 10

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
	ch      chan *[]byte
	pool    sync.Pool
	stop    chan struct{}
	done    chan struct{}
	closed  atomic.Bool
	once    sync.Once
	lines   atomic.Uint64
	dropped atomic.Uint64

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
		name: opts.Name, path: opts.Path, log: opts.Logger,
		ch:   make(chan *[]byte, opts.Buffer),
		stop: make(chan struct{}), done: make(chan struct{}), reopen: make(chan struct{}, 1),
	}
	l.pool.New = func() any { b := make([]byte, 0, 512); return &b }
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
	bp := l.pool.Get().(*[]byte)
	*bp = AppendAudit((*bp)[:0], req)
	l.send(bp)
}

// Query logs any answered query with its response (nil when none was sent).
func (l *Log) Query(req *query.Request, resp *dns.Msg) {
	if l.closed.Load() {
		return
	}
	bp := l.pool.Get().(*[]byte)
	*bp = AppendQuery((*bp)[:0], req, resp, time.Since(req.Start))
	l.send(bp)
}

// send queues a formatted line, or drops it when the buffer is full.
func (l *Log) send(bp *[]byte) {
	select {
	case l.ch <- bp:
	default:
		l.dropped.Add(1)
		l.recycle(bp)
	}
}

func (l *Log) recycle(bp *[]byte) {
	if cap(*bp) <= maxPooledLine {
		l.pool.Put(bp)
	}
}

// run is the writer goroutine: it gathers whole lines into batches so a
// rotation never splits a line.
func (l *Log) run() {
	defer close(l.done)
	batch := make([]byte, 0, batchSize)
	var n uint64 // lines in batch
	add := func(bp *[]byte) {
		batch = append(batch, *bp...)
		n++
		l.recycle(bp)
		if len(batch) >= batchSize {
			l.write(batch, n)
			batch, n = batch[:0], 0
		}
	}
	drain := func() {
		for {
			select {
			case bp := <-l.ch:
				add(bp)
			default:
				return
			}
		}
	}
	finish := func() {
		drain()
		if len(batch) > 0 {
			l.write(batch, n)
		}
		if l.closer != nil {
			if err := l.closer.Close(); err != nil {
				l.log.Warn("closing log", "log", l.name, "path", l.path, "err", err)
			}
		}
	}
	pause := time.NewTimer(batchWait)
	pause.Stop()
	check := time.NewTicker(checkInterval)
	defer check.Stop()
	for {
		// Idle: wait for a line.
		select {
		case bp := <-l.ch:
			add(bp)
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
		drain()
		if len(batch) > 0 {
			l.write(batch, n)
			batch, n = batch[:0], 0
		}
		// Busy: let lines gather for a moment rather than being woken for
		// each one (a handoff to a parked receiver costs the sender far
		// more than queueing).
		pause.Reset(batchWait)
		select {
		case <-pause.C:
		case <-l.stop:
			pause.Stop()
			finish()
			return
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
