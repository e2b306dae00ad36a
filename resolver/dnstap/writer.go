package dnstap

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultQueue is the default number of records the Writer holds for the
// collector.
const DefaultQueue = 16384

// Reconnection backoff bounds: the first retry after a lost collector
// comes after minBackoff, each failure doubles it up to maxBackoff.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// handshakeTimeout bounds connecting and the READY/ACCEPT exchange, and
// waiting for FINISH at close.
const handshakeTimeout = 5 * time.Second

// Config configures a Writer.
type Config struct {
	// Target is "unix:PATH", "tcp:HOST:PORT" or "file:PATH".
	Target string
	// Identity and Version go into every record (empty: not written).
	Identity, Version string
	// Queue is how many records wait for the collector (DefaultQueue if 0);
	// records over it are dropped and counted.
	Queue  int
	Logger *slog.Logger
}

// Writer sends dnstap records to a collector or a file. Write never
// blocks: a record that does not fit in the queue is dropped and counted.
// A socket collector that goes away is reconnected with backoff (100 ms
// doubling to 5 s); records queue, then drop, meanwhile.
type Writer struct {
	network, addr string // "unix", "tcp" or "file"
	identity      string
	version       string
	log           *slog.Logger
	queue         chan *[]byte
	bufs          sync.Pool
	file          *os.File

	sent, dropped, reconnects atomic.Uint64
	connected                 atomic.Bool

	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}
}

// ParseTarget splits "unix:PATH", "tcp:HOST:PORT" or "file:PATH" into its
// network and address.
func ParseTarget(target string) (network, addr string, err error) {
	network, addr, ok := strings.Cut(target, ":")
	if !ok || addr == "" {
		return "", "", fmt.Errorf("dnstap target %q: want unix:PATH, tcp:HOST:PORT or file:PATH", target)
	}
	switch network {
	case "unix", "file":
	case "tcp":
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return "", "", fmt.Errorf("dnstap target %q: %w", target, err)
		}
	default:
		return "", "", fmt.Errorf("dnstap target %q: unknown kind %q (want unix, tcp or file)", target, network)
	}
	return network, addr, nil
}

// New starts a Writer. A file target is created (truncated) now, and an
// error names it; a socket collector is connected in the background, so a
// collector that is down at start costs records, not service.
func New(cfg Config) (*Writer, error) {
	network, addr, err := ParseTarget(cfg.Target)
	if err != nil {
		return nil, err
	}
	if cfg.Queue <= 0 {
		cfg.Queue = DefaultQueue
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	w := &Writer{
		network: network, addr: addr, identity: cfg.Identity, version: cfg.Version,
		log:   cfg.Logger.With("dnstap", cfg.Target),
		queue: make(chan *[]byte, cfg.Queue),
		stop:  make(chan struct{}), done: make(chan struct{}),
	}
	w.bufs.New = func() any { b := make([]byte, 0, 1024); return &b }
	if network == "file" {
		f, err := os.OpenFile(addr, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
		if err != nil {
			return nil, fmt.Errorf("dnstap: %w", err)
		}
		w.file = f
		go w.runFile()
	} else {
		go w.runSocket()
	}
	return w, nil
}

// Write encodes m and queues it. It copies what it needs from m before
// returning and never blocks; it reports false when the record was dropped.
func (w *Writer) Write(m *Message) bool {
	bp := w.bufs.Get().(*[]byte)
	*bp = Append((*bp)[:4], w.identity, w.version, m)
	binary.BigEndian.PutUint32(*bp, uint32(len(*bp)-4)) // the data frame's length
	select {
	case w.queue <- bp:
		return true
	default:
		w.put(bp)
		w.dropped.Add(1)
		return false
	}
}

func (w *Writer) put(bp *[]byte) {
	if cap(*bp) <= 64<<10 {
		w.bufs.Put(bp)
	}
}

// Sent is the number of records written to the collector or file.
func (w *Writer) Sent() uint64 { return w.sent.Load() }

// Dropped is the number of records lost: the queue was full (the collector
// was away or slow) or a write failed.
func (w *Writer) Dropped() uint64 { return w.dropped.Load() }

// Reconnects counts connections to the collector after the first.
func (w *Writer) Reconnects() uint64 { return w.reconnects.Load() }

// Connected reports whether a collector (or the file) takes records now.
func (w *Writer) Connected() bool { return w.connected.Load() }

// Target returns the target as configured.
func (w *Writer) Target() string { return w.network + ":" + w.addr }

// Close sends what is queued (until ctx ends), ends the stream (STOP, and
// FINISH from a socket collector) and closes it.
func (w *Writer) Close(ctx context.Context) error {
	w.stopOnce.Do(func() { close(w.stop) })
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("dnstap: closing: %w", ctx.Err())
	}
}

// runFile writes the queue to the file until Close.
func (w *Writer) runFile() {
	defer close(w.done)
	defer w.file.Close()
	b := newBatch(w.file)
	b.bw.Write(appendControl(nil, ctlStart, ContentType))
	w.connected.Store(true)
	err := w.pump(b, nil)
	b.bw.Write(appendControl(nil, ctlStop))
	if ferr := w.flush(b); err == nil || errors.Is(err, errStopped) {
		err = ferr
	}
	w.connected.Store(false)
	if err != nil {
		w.log.Error("dnstap file write failed; records are dropped", "err", err)
		w.drain()
	}
}

// errStopped ends pump when the Writer is closed.
var errStopped = errors.New("dnstap writer closed")

// pump writes queued records to bw, flushing whenever the queue runs
// empty, until Close (errStopped, after writing what was queued), a write
// error, or a message on gone (the collector closed its side).
func (w *Writer) pump(b *batch, gone <-chan error) error {
	for {
		var bp *[]byte
		select {
		case bp = <-w.queue:
		default:
			if err := w.flush(b); err != nil {
				return err
			}
			select {
			case bp = <-w.queue:
			case err := <-gone:
				if err == nil {
					err = errors.New("collector closed the stream")
				}
				return err
			case <-w.stop:
				for {
					select {
					case bp := <-w.queue:
						if err := w.writeFrame(b, bp); err != nil {
							return err
						}
					default:
						return errStopped
					}
				}
			}
		}
		if err := w.writeFrame(b, bp); err != nil {
			return err
		}
	}
}

// batch is a buffered stream and the frames in its buffer: they count as
// sent once a flush succeeds, as dropped when the stream fails first.
type batch struct {
	bw *bufio.Writer
	n  uint64
}

func newBatch(wr io.Writer) *batch { return &batch{bw: bufio.NewWriterSize(wr, 64<<10)} }

func (w *Writer) writeFrame(b *batch, bp *[]byte) error {
	if b.bw.Buffered() > 0 && b.bw.Available() < len(*bp) {
		// The write would flush the frames buffered: count them first.
		if err := w.flush(b); err != nil {
			w.put(bp)
			w.dropped.Add(1)
			return err
		}
	}
	_, err := b.bw.Write(*bp)
	w.put(bp)
	b.n++
	if err != nil {
		w.dropped.Add(b.n)
		b.n = 0
	}
	return err
}

// flush writes the buffered frames out and counts them.
func (w *Writer) flush(b *batch) error {
	err := b.bw.Flush()
	if err != nil {
		w.dropped.Add(b.n)
	} else {
		w.sent.Add(b.n)
	}
	b.n = 0
	return err
}

// drain drops what is queued (once the file is broken).
func (w *Writer) drain() {
	for {
		select {
		case bp := <-w.queue:
			w.put(bp)
			w.dropped.Add(1)
		case <-w.stop:
			return
		}
	}
}

// discard counts what is still queued as dropped (closing with no
// collector to send it to).
func (w *Writer) discard() {
	for {
		select {
		case bp := <-w.queue:
			w.put(bp)
			w.dropped.Add(1)
		default:
			return
		}
	}
}

// runSocket connects, streams and reconnects until Close.
func (w *Writer) runSocket() {
	defer close(w.done)
	backoff := minBackoff
	failing := false // a failure was logged; the next success is logged too
	first := true
	for {
		conn, err := w.connect()
		if err != nil {
			if !failing {
				w.log.Warn("dnstap collector unreachable; records queue, then drop, until it is back", "err", err)
				failing = true
			}
			select {
			case <-w.stop:
				w.discard()
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, maxBackoff)
			continue
		}
		if !first {
			w.reconnects.Add(1)
		}
		first, failing, backoff = false, false, minBackoff
		w.log.Info("dnstap collector connected")
		if w.stream(conn) {
			return
		}
		w.log.Warn("dnstap collector connection lost; reconnecting")
		failing = true
	}
}

// connect dials the collector and runs the handshake.
func (w *Writer) connect() (net.Conn, error) {
	conn, err := net.DialTimeout(w.network, w.addr, handshakeTimeout)
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(handshakeTimeout))
	if err := handshake(conn); err != nil {
		conn.Close()
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	return conn, nil
}

// stream writes records to conn until it fails (false) or the Writer is
// closed (true, after STOP and the collector's FINISH).
func (w *Writer) stream(conn net.Conn) bool {
	defer conn.Close()
	w.connected.Store(true)
	defer w.connected.Store(false)
	// The collector sends nothing but FINISH (after our STOP); a read that
	// returns earlier means it went away.
	gone := make(chan error, 1)
	finish := make(chan struct{})
	go func() {
		c, err := readControl(conn)
		if err == nil && c.typ == ctlFinish {
			close(finish)
			return
		}
		gone <- err
	}()
	b := newBatch(conn)
	err := w.pump(b, gone)
	if !errors.Is(err, errStopped) {
		w.dropped.Add(b.n) // buffered, never written
		b.n = 0
		if err != nil {
			w.log.Debug("dnstap stream ended", "err", err)
		}
		return false
	}
	b.bw.Write(appendControl(nil, ctlStop))
	w.flush(b)
	select {
	case <-finish:
	case <-gone:
	case <-time.After(handshakeTimeout):
	}
	return true
}
