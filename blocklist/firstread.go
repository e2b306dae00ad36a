package blocklist

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// A list file with no version before (the first load of a file, a cold
// start without a last good state) is read once: a goroutine reads it,
// cuts it into chunks and hashes it (what openList's scan does) and hands
// each read to the parser, which parses it as it comes. A later version
// takes openList's scan first, to skip what did not change. The file's
// SHA-256 and fingerprint are the scan's, of the very bytes parsed, so
// there is no second read to check against the first.
//
// Only big files of the list format take this path, and only when
// nothing must judge the file's hash before its parse (no Checks, no
// Verifier, no shrink guard or held version of a version before) and the
// file is old enough not to need a settling wait.

// firstReadMin is the size over which a list file with no version before
// is read once (a variable for the tests).
var firstReadMin int64 = scanBuf

// firstReadBuffers is how many reads may be scanned ahead of the parser.
const firstReadBuffers = 4

// firstRead is the parser's reader of a file read once.
type firstRead struct {
	lf   *listFile
	max  int64
	sc   *listScan
	full chan firstBlock
	free chan []byte
	quit chan struct{}
	done chan struct{}
	// cur is the rest of the read being parsed, held the buffer it is in.
	cur, held []byte
	eof       bool
	// The goroutine's, read after done: the scan's error, the last byte.
	err  error
	last byte
	// lineHint estimates the file's lines from its first read.
	lineHint int
}

type firstBlock struct {
	b   []byte
	end bool // the last read
}

// useFirstRead reports whether a file with no version before is read once.
func (s *Store) useFirstRead(prev *FileStatus, lf listedFile) bool {
	if prev != nil || len(s.opts.Checks) > 0 || s.opts.Verify != nil {
		return false
	}
	switch strings.ToLower(filepath.Ext(lf.path)) {
	case ".txt", ".list":
		return true
	}
	return false
}

// openFirst opens a file for the single read. It returns a nil reader
// (and no error) when the file is to take openStable and a separate
// parse: too small, or too young to be taken without the settling wait.
// Errors are those openStable reports.
func (s *Store) openFirst(lf listedFile) (*listFile, *firstRead, error) {
	if s.opts.Writing != nil && s.opts.Writing(lf.path) {
		return nil, nil, errUnsettled
	}
	f, err := os.OpenFile(lf.path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	max := s.opts.MaxFileSize
	if !st.Mode().IsRegular() || st.Size() > max || st.Size() <= firstReadMin ||
		!slices.Contains(s.opts.Verified, lf.dir) && s.opts.Settle > 0 && time.Since(changeTime(st)) < s.opts.Settle {
		f.Close()
		return nil, nil, nil
	}
	file := &listFile{f: f, st: st}
	r, err := startFirstRead(file, max)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return file, r, nil
}

// startFirstRead starts reading lf; it returns once the first read is in
// (an error then is the file's: its encoding, or the read).
func startFirstRead(lf *listFile, max int64) (*firstRead, error) {
	r := &firstRead{lf: lf, max: max, sc: newListScan(lf.f, lf.st.Size(), nil),
		full: make(chan firstBlock, firstReadBuffers), free: make(chan []byte, firstReadBuffers+1),
		quit: make(chan struct{}), done: make(chan struct{})}
	first := make([]byte, scanBuf)
	n, end, err := r.read(first, true)
	if err != nil {
		return nil, err
	}
	lines := bytes.Count(first[:n], []byte{'\n'})
	r.lineHint = 64
	if n > 0 && lines > 0 {
		r.lineHint += int(lf.st.Size() * int64(lines) / int64(n))
	}
	r.cur, r.held = first[:n], first
	if n >= len(utf8BOM) && bytes.Equal(first[:len(utf8BOM)], utf8BOM) {
		r.cur = first[len(utf8BOM):n] // the parsers skip a byte order mark
	}
	if end {
		r.eof = true
		close(r.done)
		return r, nil
	}
	go r.run()
	return r, nil
}

// read fills b from the file (a short read only at its end), scans what
// it read, and reports how much and whether the file ended.
func (r *firstRead) read(b []byte, first bool) (int, bool, error) {
	n := 0
	var err error
	for n < len(b) && err == nil {
		var k int
		k, err = r.lf.f.Read(b[n:])
		n += k
	}
	if first {
		if msg := sniffEncoding(b[:min(n, sniffLen)]); msg != "" {
			return 0, true, errors.New(msg)
		}
	}
	if n > 0 {
		r.last = b[n-1]
		if e := r.sc.feed(b[:n]); e != nil {
			return 0, true, e
		}
	}
	r.lf.size += int64(n)
	if r.lf.size > r.max {
		return 0, true, fmt.Errorf("file grew over the %d-byte limit while being read", r.max)
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return 0, true, err
	}
	return n, err != nil, nil
}

// run reads and scans the file after its first read, handing each read
// to the parser, until the end, an error, or quit.
func (r *firstRead) run() {
	defer close(r.done)
	defer close(r.full)
	bufs := 1
	for {
		var b []byte
		select {
		case b = <-r.free:
		case <-r.quit:
			return
		default:
			if bufs < firstReadBuffers+1 {
				b, bufs = make([]byte, scanBuf), bufs+1
			} else {
				select {
				case b = <-r.free:
				case <-r.quit:
					return
				}
			}
		}
		n, end, err := r.read(b[:cap(b)], false)
		if err != nil {
			r.err = err
			return
		}
		select {
		case r.full <- firstBlock{b: b[:n], end: end}:
		case <-r.quit:
			return
		}
		if end {
			return
		}
	}
}

// Read gives the parser the file's bytes, past a byte order mark. A read
// or scan error ends them early; finish reports it.
func (r *firstRead) Read(p []byte) (int, error) {
	for len(r.cur) == 0 {
		if r.eof {
			return 0, io.EOF
		}
		if r.held != nil {
			select {
			case r.free <- r.held:
			default:
			}
			r.held = nil
		}
		blk, ok := <-r.full
		if !ok {
			r.eof = true
			return 0, io.EOF
		}
		r.cur, r.held, r.eof = blk.b, blk.b, blk.end
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

// finish stops the reading goroutine, waits for it, and completes lf as
// openList would have (size, lines, SHA-256, fingerprint), or returns the
// error that cut the read short.
func (r *firstRead) finish() error {
	close(r.quit)
	<-r.done
	if r.err != nil {
		return r.err
	}
	if !r.eof || len(r.cur) > 0 {
		return errors.New("the list parser stopped before the end of the file")
	}
	return r.lf.scanned(r.sc, r.last)
}
