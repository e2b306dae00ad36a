package blocklist

import (
	"bytes"
	"crypto/sha256"
	"encoding"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"hash/maphash"
	"io"
	"os"
	"sort"
	"sync/atomic"
	"syscall"
)

// How a reload finds what changed in a file. While a file is read its
// lines are cut into chunks at content-defined boundaries (a line whose
// key, from its first sixteen bytes, last eight and length, ends in six
// zero bits ends a chunk once the chunk has minChunkLines lines; no chunk
// passes maxChunkLines), each chunk keeping a hash of its bytes (maphash,
// seeded once per process), its size and its line count. An edit changes
// only the chunks around it; the chunks before and after are equal in
// both versions, however the lines moved. The changed middle is the line
// difference of the two versions (lineDiff).
//
// Reading a new version of a file whose previous version was read costs
// what changed, beyond one read of the bytes: the previous version's
// chunks are checked in order against the new bytes at the same place
// (one hash of each chunk's bytes, no line scan), the lines are scanned
// only from the first chunk that differs until a chunk boundary of the
// new version falls where one of the old version falls (shifted by the
// change in size), and the bytes after it are checked against the old
// chunks again. The file's SHA-256 goes on from the state saved at the
// last checkpoint (every sumEvery bytes) before the first difference: an
// append hashes the bytes appended, an edit the bytes after it. The old
// version's last chunk (which ended at the end of the file, not at a
// boundary of its content) is always scanned again.

// A file of bigChunkFile bytes or more is cut with bigChunkShift more
// zero bits in the key and as many times more lines at most (chunks of
// about 260 lines instead of 70): a quarter of the chunk records, which
// are most of what a big file's fingerprint holds, for a change that
// rescans a few KiB more. The next version of a file is cut as the one
// before was (fingerprint.shift), whatever its size, so their chunks line
// up.
const (
	chunkMask     = 63
	minChunkLines = 8
	maxChunkLines = 1024
	bigChunkShift = 2
	// sumEvery is the distance between the SHA-256 checkpoints.
	sumEvery = 1 << 20
	// maxDirLines and maxDirText bound the directive lines a fingerprint
	// keeps (more, or a longer one, and deltas read the lines before a
	// change from the start of the file instead).
	maxDirLines = 1 << 14
	maxDirText  = 4 << 10
	maxDirBytes = 1 << 20
	// maxCarry is how much of a line cut by the end of a read is kept
	// (longer lines are errors for the parsers).
	maxCarry = maxLineLen + 1
)

// bigChunkFile is the size from which a file is cut into bigger chunks
// (128 MiB; tests lower it).
var bigChunkFile atomic.Int64

func init() { bigChunkFile.Store(128 << 20) }

// chunkSeed seeds the chunks' hashes (they never leave the process).
var chunkSeed = maphash.MakeSeed()

// lineChunk is a run of whole lines of a file.
type lineChunk struct {
	hash      uint64 // maphash of its bytes
	size      int64  // bytes, newlines included
	lines     uint32
	directive bool // a line starts with '#' and may be a directive (see isDirectiveCandidate)
	paren     bool // a line holds a parenthesis
	// pnet and plow are the walk of its parentheses as a zone file reads
	// them (parenDepth): the net change and the lowest point, relative to
	// its start (they depend on its bytes only; see depthAfter).
	pnet, plow int32
}

// depthAfter returns the parentheses open after c when depth were open
// before it (parenDepth never goes below zero).
func (c lineChunk) depthAfter(depth int) int {
	return max(depth+int(c.pnet), int(c.pnet-c.plow))
}

// parenWalk returns the net change of the parentheses of a zone file line
// as parenDepth counts them (quotes, escapes and comments skipped) and
// the lowest point of the walk (at most zero), relative to its start.
func parenWalk(line []byte) (net, low int) {
	quoted := false
	for i := 0; i < len(line); i++ {
		switch c := line[i]; {
		case c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case quoted:
		case c == ';':
			return net, low
		case c == '(':
			net++
		case c == ')':
			net--
			low = min(low, net)
		}
	}
	return net, low
}

// dirLine is a line of a list file that may be a directive, with its line
// number.
type dirLine struct {
	line int
	text string
}

// shaMark is the SHA-256 state after the first off bytes of a file.
type shaMark struct {
	off   int64
	state []byte
}

// fingerprint is what reading the next version of a file needs of the
// version read before: its chunks, SHA-256 checkpoints, size and hash,
// and the lines that may be directives (the state of the list parser
// before a change; nil with dirsOver when there were too many to keep).
type fingerprint struct {
	chunks   []lineChunk
	marks    []shaMark
	dirs     []dirLine
	dirsOver bool
	size     int64
	hash     string
	// shift is the chunking's (chunker.shift).
	shift uint8
	// starts, firstLines and depths, once computed, are each chunk's byte
	// offset, the number of lines before it and the parentheses open
	// before it (len(chunks)+1 entries).
	starts     []int64
	firstLines []int
	depths     []int32
}

// layout computes starts and firstLines.
func (fp *fingerprint) layout() {
	if fp.starts != nil {
		return
	}
	fp.starts = make([]int64, len(fp.chunks)+1)
	fp.firstLines = make([]int, len(fp.chunks)+1)
	fp.depths = make([]int32, len(fp.chunks)+1)
	for i, c := range fp.chunks {
		fp.starts[i+1] = fp.starts[i] + c.size
		fp.firstLines[i+1] = fp.firstLines[i] + int(c.lines)
		fp.depths[i+1] = int32(min(c.depthAfter(int(fp.depths[i])), 1<<30))
	}
}

// chunkAtLine returns the index of the chunk holding line (1-based), or
// len(chunks) past the end.
func (fp *fingerprint) chunkAtLine(line int) int {
	fp.layout()
	return sort.Search(len(fp.chunks), func(k int) bool { return fp.firstLines[k+1] >= line })
}

// isDirectiveCandidate reports whether a comment line (starting with '#'
// after blanks) may change the list parser's state: it holds a ':' or is
// "# allow-public-suffix".
func isDirectiveCandidate(line []byte) bool {
	if bytes.IndexByte(line, ':') >= 0 {
		return true
	}
	t := trimSpace(line)
	if len(t) == 0 || t[0] != '#' {
		return false
	}
	return bytes.EqualFold(trimSpace(t[1:]), []byte(allowPublicSuffixDirective))
}

// chunker cuts a stream into lineChunks.
type chunker struct {
	chunks    []lineChunk
	cur       lineChunk
	h         maphash.Hash // of the current chunk's bytes
	carry     []byte       // the start of a line cut by the end of a write (at most maxCarry bytes)
	carryN    int          // its whole length
	tail      [8]byte      // the last eight bytes of the carried line
	lineStart bool         // no non-blank byte seen yet on this line
	comment   bool         // this line starts with '#'
	parens    bool         // the bytes being written may hold a parenthesis
	lineParen bool         // this line holds one
	started   bool
	line      int // lines ended so far
	// shift scales the chunks: chunkMask<<shift | (1<<shift-1) is the
	// key's mask and maxChunkLines<<shift the most lines (see
	// bigChunkFile).
	shift    uint8
	dirs     []dirLine
	dirsOver bool
	dirBytes int
}

func (c *chunker) start() {
	if !c.started {
		c.started, c.lineStart = true, true
		c.h.SetSeed(chunkSeed)
	}
}

// hasParens reports whether b holds a parenthesis.
func hasParens(b []byte) bool {
	return bytes.IndexByte(b, '(') >= 0 || bytes.IndexByte(b, ')') >= 0
}

// write takes the next bytes of the stream.
func (c *chunker) write(b []byte) {
	c.parens = hasParens(b)
	for len(b) > 0 {
		n, _ := c.writeChunk(b)
		b = b[n:]
	}
}

// writeChunk takes bytes of b up to the end of the current chunk (all of
// b when the chunk does not end in it) and reports how many, and whether
// the chunk ended.
func (c *chunker) writeChunk(b []byte) (int, bool) {
	c.start()
	off := 0
	for off < len(b) {
		i := bytes.IndexByte(b[off:], '\n')
		seg := b[off:]
		if i >= 0 {
			seg = b[off : off+i]
		}
		if c.lineStart {
			for _, x := range seg {
				if x != ' ' && x != '\t' {
					c.lineStart, c.comment = false, x == '#'
					break
				}
			}
		}
		if c.parens && !c.lineParen && hasParens(seg) {
			c.lineParen = true
		}
		if i < 0 {
			c.addCarry(seg)
			c.h.Write(b)
			return len(b), false
		}
		line := seg
		n := len(seg)
		if c.carryN > 0 {
			c.addCarry(seg)
			line, n = c.carry, c.carryN
		}
		c.cur.size += int64(n) + 1
		off += i + 1
		ended := c.endLine(line, n)
		c.carry, c.carryN = c.carry[:0], 0
		c.lineStart = true
		if ended {
			c.h.Write(b[:off])
			c.endChunk()
			return off, true
		}
	}
	c.h.Write(b)
	return len(b), false
}

func (c *chunker) addCarry(seg []byte) {
	if room := maxCarry - len(c.carry); room > 0 {
		c.carry = append(c.carry, seg[:min(room, len(seg))]...)
	}
	c.carryN += len(seg)
	if len(seg) >= 8 {
		copy(c.tail[:], seg[len(seg)-8:])
	} else {
		copy(c.tail[:], c.tail[len(seg):])
		copy(c.tail[8-len(seg):], seg)
	}
}

// lineKey is a line's boundary key: from its first sixteen bytes, its
// last eight and its length n (line holds at least its start).
func (c *chunker) lineKey(line []byte, n int) uint64 {
	var w [24]byte
	copy(w[:16], line)
	if n == len(line) {
		if n >= 8 {
			copy(w[16:], line[n-8:])
		}
	} else {
		copy(w[16:], c.tail[:])
	}
	h := (binary.LittleEndian.Uint64(w[:]) ^ uint64(n)) * 0x9e3779b97f4a7c15
	h = (h ^ h>>29 ^ binary.LittleEndian.Uint64(w[8:])) * 0xbf58476d1ce4e5b9
	h = (h ^ h>>32 ^ binary.LittleEndian.Uint64(w[16:])) * 0x94d049bb133111eb
	return h ^ h>>31
}

// endLine ends a line (line is its start, n its length) and reports
// whether it ends the chunk.
func (c *chunker) endLine(line []byte, n int) bool {
	if c.line == 0 && bytes.HasPrefix(line, utf8BOM) {
		// The parsers skip a byte order mark.
		line = line[len(utf8BOM):]
		n -= len(utf8BOM)
		t := trimSpace(line)
		c.comment = len(t) > 0 && t[0] == '#'
	}
	if c.comment {
		c.comment = false
		if isDirectiveCandidate(line) {
			c.cur.directive = true
			if n > maxDirText || len(c.dirs) >= maxDirLines || c.dirBytes+n > maxDirBytes {
				c.dirsOver, c.dirs = true, nil
			} else if !c.dirsOver {
				c.dirs = append(c.dirs, dirLine{line: c.line + 1, text: string(line)})
				c.dirBytes += n
			}
		}
	}
	if c.lineParen {
		c.lineParen, c.cur.paren = false, true
		n, l := parenWalk(line)
		c.cur.plow = min(c.cur.plow, c.cur.pnet+int32(max(l, -1<<20)))
		c.cur.pnet += int32(max(min(n, 1<<20), -1<<20))
	}
	c.line++
	c.cur.lines++
	return c.cur.lines >= maxChunkLines<<c.shift ||
		c.cur.lines >= minChunkLines && c.lineKey(line, n)&(chunkMask<<c.shift|(1<<c.shift-1)) == 0
}

func (c *chunker) endChunk() {
	c.cur.hash = c.h.Sum64()
	c.h.Reset()
	c.chunks = append(c.chunks, c.cur)
	c.cur = lineChunk{}
}

// take appends a chunk known from the version before (the stream is at a
// chunk boundary), with its directive lines (dirs, renumbered to start
// after the lines so far).
func (c *chunker) take(ch lineChunk, dirs []dirLine, firstLine int) {
	c.start()
	c.chunks = append(c.chunks, ch)
	if ch.directive && !c.dirsOver {
		for _, d := range dirs {
			c.dirs = append(c.dirs, dirLine{line: d.line - firstLine + c.line, text: d.text})
			c.dirBytes += len(d.text)
		}
		if len(c.dirs) > maxDirLines || c.dirBytes > maxDirBytes {
			c.dirsOver, c.dirs = true, nil
		}
	}
	c.line += int(ch.lines)
}

// finish ends the last line (one without a newline counts too) and chunk.
func (c *chunker) finish() []lineChunk {
	c.start()
	if c.carryN > 0 {
		c.cur.size += int64(c.carryN)
		c.endLine(c.carry, c.carryN)
		c.carry, c.carryN = nil, 0
	}
	if c.cur.lines > 0 {
		c.endChunk()
	}
	return c.chunks
}

// listScan reads a file once, cutting it into chunks and hashing it with
// SHA-256, with the fingerprint of the version before (prev, may be nil)
// to skip what did not change.
type listScan struct {
	f    *os.File
	prev *fingerprint
	ck   chunker
	pos  int64 // offset of the next byte fed
	// D is the change in size since prev: a chunk of the new version
	// that ends where an old one ends, shifted by D or by shift, is where
	// the old chunks are checked again.
	delta int64

	sha   hash.Hash
	shaOn bool
	shaAt int64 // bytes hashed
	marks []shaMark
	// shaAside is set for a file read with no version before: every byte
	// is hashed, in order, so listFile.scan hands its reads to a
	// goroutine that hashes them (sha, shaAt and marks are that
	// goroutine's until shaWait) and feed hashes nothing.
	shaAside bool

	verifying bool
	vi        int   // the old chunk being checked
	shift     int64 // new offset - old offset of the chunks checked
	vh        maphash.Hash
	vStart    int64 // new offset of the chunk being checked
	vGot      int64
	minResync int // old chunks before this one were passed
	rescanned int64
}

func newListScan(f *os.File, size int64, prev *fingerprint) *listScan {
	s := &listScan{f: f, sha: sha256.New()}
	s.vh.SetSeed(chunkSeed)
	if size >= bigChunkFile.Load() {
		s.ck.shift = bigChunkShift
	}
	if prev != nil {
		s.ck.shift = prev.shift
	}
	if prev != nil && len(prev.chunks) > 1 && len(prev.marks) > 0 {
		prev.layout()
		s.prev, s.delta = prev, size-prev.size
		s.verifying = true
		s.ck.dirsOver = prev.dirsOver
		s.ck.chunks = make([]lineChunk, 0, len(prev.chunks)+len(prev.chunks)/8+16)
		s.marks = make([]shaMark, 0, len(prev.marks)+len(prev.marks)/8+4)
	} else {
		s.startSHA(0)
	}
	return s
}

// startSHA starts the SHA-256 at offset at, from the last checkpoint of
// the version before at or before it (the bytes up to at are that
// version's).
func (s *listScan) startSHA(at int64) error {
	if s.shaOn {
		return nil
	}
	s.shaOn = true
	if s.prev == nil || at == 0 {
		s.markAt(0)
		return nil
	}
	k := sort.Search(len(s.prev.marks), func(k int) bool { return s.prev.marks[k].off > at }) - 1
	m := s.prev.marks[k]
	if err := s.sha.(encoding.BinaryUnmarshaler).UnmarshalBinary(m.state); err != nil {
		return fmt.Errorf("restore the SHA-256 state: %w", err)
	}
	s.marks = append(s.marks[:0], s.prev.marks[:k+1]...)
	s.shaAt = m.off
	buf := make([]byte, min(256<<10, at-m.off))
	for s.shaAt < at {
		n, err := s.f.ReadAt(buf[:min(int64(len(buf)), at-s.shaAt)], s.shaAt)
		if n == 0 && err != nil {
			return err
		}
		s.hashSHA(buf[:n], s.shaAt)
	}
	return nil
}

func (s *listScan) markAt(off int64) {
	st, err := s.sha.(encoding.BinaryMarshaler).MarshalBinary()
	if err == nil {
		s.marks = append(s.marks, shaMark{off: off, state: st})
	}
}

// hashSHA hashes b (the bytes at offset at) beyond those hashed already,
// saving a checkpoint at every multiple of sumEvery.
func (s *listScan) hashSHA(b []byte, at int64) {
	if !s.shaOn || s.shaAside {
		return
	}
	s.writeSHA(b, at)
}

// writeSHA is hashSHA's hashing.
func (s *listScan) writeSHA(b []byte, at int64) {
	if skip := s.shaAt - at; skip > 0 {
		if skip >= int64(len(b)) {
			return
		}
		b = b[skip:]
	}
	for len(b) > 0 {
		next := (s.shaAt/sumEvery + 1) * sumEvery
		n := min(int64(len(b)), next-s.shaAt)
		s.sha.Write(b[:n])
		s.shaAt += n
		b = b[n:]
		if s.shaAt == next {
			s.markAt(next)
		}
	}
}

// feed takes the next bytes read (at s.pos).
func (s *listScan) feed(b []byte) error {
	parensOf := []byte(nil) // the bytes s.ck.parens is for (the check is left for the scan)
	for len(b) > 0 {
		if s.verifying {
			c := s.prev.chunks[s.vi]
			n := min(int64(len(b)), c.size-s.vGot)
			s.vh.Write(b[:n])
			s.hashSHA(b[:n], s.pos)
			s.vGot += n
			s.pos += n
			b = b[n:]
			if s.vGot < c.size {
				continue
			}
			if s.vh.Sum64() == c.hash {
				p := s.prev
				var dirs []dirLine
				if c.directive {
					lo := sort.Search(len(p.dirs), func(k int) bool { return p.dirs[k].line > p.firstLines[s.vi] })
					hi := sort.Search(len(p.dirs), func(k int) bool { return p.dirs[k].line > p.firstLines[s.vi+1] })
					dirs = p.dirs[lo:hi]
				}
				s.ck.take(c, dirs, p.firstLines[s.vi])
				s.vi++
				s.vStart, s.vGot = s.pos, 0
				s.vh.Reset()
				if s.vi >= len(p.chunks)-1 {
					// The old last chunk: scanned.
					s.verifying = false
					s.minResync = len(p.chunks)
					if err := s.startSHA(s.pos); err != nil {
						return err
					}
				}
				continue
			}
			// Changed: scan this chunk's bytes (read again) and what follows.
			re, err := s.diverge()
			if err != nil {
				return err
			}
			b = append(re, b...)
			parensOf = nil
			continue
		}
		if parensOf == nil || &parensOf[len(parensOf)-1] != &b[len(b)-1] {
			parensOf = b
			s.ck.parens = hasParens(b)
		}
		n, ended := s.ck.writeChunk(b)
		s.hashSHA(b[:n], s.pos)
		s.pos += int64(n)
		b = b[n:]
		if ended && s.prev != nil {
			s.resync()
		}
	}
	return nil
}

// diverge leaves the check of old chunks at a chunk that differs: it
// returns that chunk's bytes, read again, for the scan.
func (s *listScan) diverge() ([]byte, error) {
	s.verifying = false
	s.minResync = s.vi + 1
	if err := s.startSHA(s.vStart); err != nil {
		return nil, err
	}
	re := make([]byte, s.vGot, s.vGot+256<<10)
	if _, err := s.f.ReadAt(re, s.vStart); err != nil {
		return nil, err
	}
	s.rescanned += s.vGot
	s.pos, s.vGot = s.vStart, 0
	s.vh.Reset()
	return re, nil
}

// resync checks, at a chunk boundary of the scan, whether an old chunk
// starts there (shifted by the change in size, or as the chunks before
// the change were): the old chunks are then checked from it.
func (s *listScan) resync() {
	p := s.prev
	for _, d := range [2]int64{s.delta, s.shift} {
		want := s.pos - d
		k := sort.Search(len(p.starts), func(k int) bool { return p.starts[k] >= want })
		if k < len(p.chunks)-1 && k >= s.minResync && p.starts[k] == want {
			s.verifying, s.vi, s.shift, s.vStart, s.vGot = true, k, d, s.pos, 0
			s.vh.Reset()
			return
		}
	}
}

// finish ends the scan at the end of the file (size bytes).
func (s *listScan) finish() ([]lineChunk, error) {
	for s.verifying && s.vGot > 0 {
		re, err := s.diverge()
		if err != nil {
			return nil, err
		}
		if err := s.feed(re); err != nil {
			return nil, err
		}
	}
	if err := s.startSHA(s.pos); err != nil {
		return nil, err
	}
	return s.ck.finish(), nil
}

// openList opens a list file, refusing one larger than max and anything but
// a regular file (opened without blocking, so that a FIFO dropped in the
// lists directory cannot hang the reload), and hashes it and cuts it into
// chunks in one streaming pass (no copy of the file is kept), with the
// fingerprint of the version read before (prev, nil for none) to skip
// what did not change.
func openList(path string, max int64, prev *fingerprint) (*listFile, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("not a regular file (%s)", st.Mode().Type())
	}
	if st.Size() > max {
		f.Close()
		return nil, fmt.Errorf("file is %d bytes, over the %d-byte limit", st.Size(), max)
	}
	lf := &listFile{f: f, st: st}
	if err := lf.scan(max, prev); err != nil {
		f.Close()
		return nil, err
	}
	return lf, nil
}

func (lf *listFile) scan(max int64, prev *fingerprint) error {
	sc := newListScan(lf.f, lf.st.Size(), prev)
	var aside *shaAside
	if sc.prev == nil && lf.st.Size() > shaAsideMin {
		// Hashed beside the chunking, on another core.
		aside = startSHAAside(sc)
		defer aside.wait()
	}
	var buf []byte
	if aside == nil {
		buf = make([]byte, scanBuf)
	}
	var last byte
	var sum maphash.Hash
	sum.SetSeed(chunkSeed)
	for first := true; ; first = false {
		if aside != nil {
			buf = aside.buffer()
		}
		n, err := lf.f.Read(buf)
		if first {
			if msg := sniffEncoding(buf[:min(n, sniffLen)]); msg != "" {
				return errors.New(msg)
			}
		}
		if n > 0 {
			last = buf[n-1]
			sum.Write(buf[:n])
			if e := sc.feed(buf[:n]); e != nil {
				return e
			}
		}
		if aside != nil {
			aside.hash(buf[:n], lf.size)
		}
		lf.size += int64(n)
		if lf.size > max {
			return fmt.Errorf("file grew over the %d-byte limit while being read", max)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
	}
	if aside != nil {
		aside.wait()
	}
	if err := lf.scanned(sc, last); err != nil {
		return err
	}
	lf.sum64 = sum.Sum64()
	return nil
}

// scanned completes lf from its scan, which read every byte (the last
// one last): its chunks, lines, SHA-256 and fingerprint.
func (lf *listFile) scanned(sc *listScan, last byte) error {
	chunks, err := sc.finish()
	if err != nil {
		return err
	}
	for _, c := range chunks {
		lf.lines += int(c.lines)
	}
	if lf.size == 0 || last == '\n' {
		lf.lines++
	}
	lf.hash = hex.EncodeToString(sc.sha.Sum(nil))
	lf.rescanned = sc.rescanned
	lf.fp = &fingerprint{chunks: chunks, marks: sc.marks, dirs: sc.ck.dirs, dirsOver: sc.ck.dirsOver, size: lf.size, hash: lf.hash,
		shift: sc.ck.shift}
	return nil
}

// scanBuf is the size of listFile.scan's reads.
const scanBuf = 256 << 10

// shaAside hashes a scan's reads on another goroutine, in the order they
// were read, with buffers that go round between the two.
type shaAside struct {
	sc    *listScan
	work  chan shaBlock
	free  chan []byte
	done  chan struct{}
	ended bool
}

type shaBlock struct {
	b  []byte
	at int64
}

// shaAsideMin is the size over which a file read with no version before
// is hashed beside the scan (a variable for the tests).
var shaAsideMin int64 = scanBuf

// shaAsideBuffers is how many reads may wait to be hashed.
const shaAsideBuffers = 4

func startSHAAside(sc *listScan) *shaAside {
	sc.shaAside = true
	a := &shaAside{sc: sc, work: make(chan shaBlock, shaAsideBuffers), free: make(chan []byte, shaAsideBuffers+1), done: make(chan struct{})}
	go func() {
		defer close(a.done)
		for w := range a.work {
			sc.writeSHA(w.b, w.at)
			a.free <- w.b[:cap(w.b)]
		}
	}()
	return a
}

// buffer returns a buffer to read into: one hashed already, or a new one
// while fewer than shaAsideBuffers+1 are about.
func (a *shaAside) buffer() []byte {
	select {
	case b := <-a.free:
		return b
	default:
	}
	if len(a.work) < shaAsideBuffers {
		return make([]byte, scanBuf)
	}
	return <-a.free
}

// hash hands b, the bytes at offset at, to the goroutine; b is its own
// until it comes back from buffer.
func (a *shaAside) hash(b []byte, at int64) {
	if len(b) > 0 {
		a.work <- shaBlock{b: b, at: at}
	}
}

// wait returns once every read handed over is hashed (the scan's sha,
// shaAt and marks are then the scan's again).
func (a *shaAside) wait() {
	if a.ended {
		return
	}
	a.ended = true
	close(a.work)
	<-a.done
	a.sc.shaAside = false
}
