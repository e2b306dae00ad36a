package blocklist

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/miekg/dns"
)

// Deltas of RPZ zone files. An edit of a zone file read by the streaming
// parser is applied as a delta like an edit of a plain list (see
// storedelta.go), with the zone's own context taken into account: a
// record's owner may be written on an earlier line (a blank owner field),
// a trigger is all the consecutive records of one owner (its line is the
// first one's), a record may span lines in parentheses, and $ORIGIN and
// $TTL apply to the lines after them. So each changed run of lines is
// widened to whole owners: back to the first record of the owner before
// it, forward to the start of the second owner after it (the first
// after the change may continue an owner of the change in one version
// and not in the other). Only those regions are parsed, by the streaming
// parser started with the origin, TTL and apex in force there; the lines
// in between are scanned for directives, parentheses and owner names, not
// parsed. A change the regions cannot decide alone is left to the full
// reload: a $ line changed, no $TTL in force at a region, a region whose
// apex records (SOA, TXT directives) now say something else than those in
// service, an owner or rpz-ip trigger that now appears twice in the zone
// (which only the general parser can group), any error, a zone the
// streaming parser did not read.

// rpzFileState is what a delta of an RPZ zone file needs to know of the
// version in service (set when the streaming parser read it whole).
type rpzFileState struct {
	apex       string // lower case
	apexDot    []byte
	soaLine    int
	zone       rpzZoneDirectives
	apexGroups int
	dirs       []rpzDirective // the $ORIGIN and $TTL lines, in order
}

// rpzDirective is an $ORIGIN or $TTL line and the context after it.
type rpzDirective struct {
	line         int
	origin       string
	ttl          uint32
	ttlDirective bool
}

// stateAt returns the origin and $TTL in force at line (the file's default
// origin before any directive).
func (st *rpzFileState) stateAt(file string, line int) rpzDirective {
	k := sort.Search(len(st.dirs), func(k int) bool { return st.dirs[k].line >= line })
	if k == 0 {
		return rpzDirective{origin: defaultOrigin(file)}
	}
	return st.dirs[k-1]
}

// rpzStateSink is a sink that keeps the zone state the streaming parser
// reports at the end of a zone it read without errors.
type rpzStateSink interface{ rpzState(*rpzFileState) }

func (b *builder) rpzState(st *rpzFileState) { b.rpz = st }

func isRPZFile(path string) bool {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".rpz", ".zone":
		return true
	}
	return false
}

// errRPZFull is the window parser's report of a change the full reload
// must decide.
var errRPZFull = errors.New("the change needs the full reload")

// rpzScanState is the context in force at the start of an owner's records.
type rpzScanState struct {
	origin       string
	ttl          uint32
	haveTTL      bool
	ttlDirective bool
	records      int
}

// rpzWindow reads a new version of an RPZ zone file and parses the regions
// around its changed lines (hunks, from lineDiff against the version in
// service, old).
type rpzWindow struct {
	file  string
	sink  *builder
	old   *rpzFileState
	hunks []hunk

	ls      rpzStream // the light scan's origin and TTL
	depth   int       // parentheses open, outside regions
	records int       // record starts seen
	owner   []byte    // absolute lower-case owner of the last record
	cand    []byte    // the owner of the record being read
	lorigin string    // the origin in lower case

	// The owner in progress: the line of its first record, the context
	// before it and its lines since (with their newlines).
	gStart int
	gState rpzScanState
	gBuf   []byte

	// The region being parsed, if any.
	p            *rpzStream
	rStart       int
	rHunk        int  // its first hunk
	top          bool // it starts at the top of the zone (the apex's records)
	seenExplicit bool // an owner written out since the last hunk ended
	tail         bool // a hunk of the region has ended

	hi       int // next hunk
	regions  []hunk
	ipOwners map[netip.Prefix]bool
	local    map[string][]dns.RR
}

// parseRPZWindow parses the regions of a new version of an RPZ zone file
// around hunks into sink (rules with their lines in the new version) and
// returns them, widened, as hunks; errRPZFull when the change is for the
// full reload.
func parseRPZWindow(file string, r io.Reader, sink *builder, hunks []hunk, old *rpzFileState) ([]hunk, *rpzFileState, error) {
	if old == nil || old.apexGroups != 1 {
		return nil, nil, errRPZFull
	}
	w := &rpzWindow{file: file, sink: sink, old: old, hunks: hunks, gStart: 1}
	w.ls.origin = defaultOrigin(file)
	w.lorigin = strings.ToLower(w.ls.origin)
	w.gState = w.state()
	br := bufio.NewReaderSize(r, 64<<10)
	n := 0
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, nil, errRPZFull
		}
		if len(line) > 0 {
			n++
			if e := w.lineAt(n, line); e != nil {
				return nil, nil, e
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				return nil, nil, errRPZFull
			}
			break
		}
	}
	if e := w.endOfInput(n); e != nil {
		return nil, nil, e
	}
	st := *old
	st.dirs = w.ls.dirs
	return w.regions, &st, nil
}

// endOfInput ends the window after the file's last line, n: a change at
// the end (lines removed there) opens a region if none is open, the
// region open is parsed to its end and closed; errRPZFull when the zone
// ends inside parentheses or the region does not parse.
func (w *rpzWindow) endOfInput(n int) error {
	for ; w.hi < len(w.hunks); w.hi++ {
		if w.p == nil {
			if e := w.open(); e != nil {
				return e
			}
		}
	}
	if w.p != nil {
		if w.p.endInput() != nil {
			return errRPZFull
		}
		if e := w.close(n + 1); e != nil {
			return e
		}
	}
	if w.depth > 0 {
		return errRPZFull
	}
	return nil
}

func (w *rpzWindow) state() rpzScanState {
	return rpzScanState{origin: w.ls.origin, ttl: w.ls.ttl, haveTTL: w.ls.haveTTL, ttlDirective: w.ls.ttlDirective, records: w.records}
}

// lineAt takes line n of the new version.
func (w *rpzWindow) lineAt(n int, raw []byte) error {
	inHunk := false
	for w.hi < len(w.hunks) && w.hunks[w.hi].newFrom <= n {
		if w.p == nil {
			if err := w.open(); err != nil {
				return err
			}
		}
		if n < w.hunks[w.hi].newEnd {
			inHunk = true
			break
		}
		w.hi++
		w.tail, w.seenExplicit = true, false
	}
	depth := w.depth
	if w.p != nil {
		depth = w.p.depth
	}
	if depth > 0 {
		if w.p != nil {
			return w.feed(n, raw)
		}
		w.gBuf = append(w.gBuf, raw...)
		w.depth = parenDepth(raw, w.depth)
		return nil
	}
	i := 0
	for i < len(raw) && isSpace(raw[i]) {
		i++
	}
	switch {
	case i == len(raw) || raw[i] == '\n' || raw[i] == ';':
	case raw[i] == '$':
		if w.ls.directive(n, trimSpace(bytes.TrimSuffix(raw, []byte{'\n'}))) != nil {
			return errRPZFull
		}
		w.lorigin = strings.ToLower(w.ls.origin)
	default:
		// A record starts here.
		inherit := i > 0
		owner := w.owner
		if !inherit {
			for i < len(raw) && ownerClass[raw[i]] != classEnd {
				i++
			}
			var ok bool
			if w.cand, ok = w.ownerKey(w.cand[:0], raw[:i]); !ok {
				return errRPZFull
			}
			owner = w.cand
		} else if w.records == 0 {
			return errRPZFull
		}
		newOwner := w.records > 0 && !inherit && !bytes.Equal(owner, w.owner)
		if w.p != nil && !inHunk && w.tail && !inherit {
			if w.seenExplicit && newOwner {
				// Both versions start an owner here: the region ends.
				if err := w.close(n); err != nil {
					return err
				}
			} else {
				w.seenExplicit = true
			}
		}
		if newOwner && w.p == nil {
			w.gStart, w.gState, w.gBuf = n, w.state(), w.gBuf[:0]
		}
		if !inherit {
			w.owner, w.cand = w.cand, w.owner
		}
		w.records++
		if w.p == nil && special(raw[i:]) {
			if bytes.IndexByte(raw, ')') >= 0 && bytes.IndexByte(raw, '(') < 0 {
				return errRPZFull // a closing parenthesis of a record the change opened
			}
			w.depth = parenDepth(raw, 0)
		}
	}
	if w.p != nil {
		return w.feed(n, raw)
	}
	w.gBuf = append(w.gBuf, raw...)
	return nil
}

func (w *rpzWindow) feed(n int, raw []byte) error {
	if err := w.p.feed(n, raw); err != nil || w.p.nerrs > 0 {
		return errRPZFull
	}
	return nil
}

// special reports whether b holds a quote, a backslash or a parenthesis.
func special(b []byte) bool {
	for _, c := range b {
		if c == '"' || c == '\\' || c == '(' || c == ')' {
			return true
		}
	}
	return false
}

// Byte classes of owner names, for the scan.
const (
	classOther = iota
	className  // a-z, 0-9, '-', '_', '*'
	classUpper // A-Z
	classDot
	classEnd // a blank or the newline: the token ends
)

var ownerClass = func() (t [256]uint8) {
	for c := range 256 {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_', c == '*':
			t[c] = className
		case c >= 'A' && c <= 'Z':
			t[c] = classUpper
		case c == '.':
			t[c] = classDot
		case c == '\n' || isSpace(byte(c)):
			t[c] = classEnd
		}
	}
	return t
}()

// ownerKey appends an owner token's absolute lower-case form (the form in
// which the streaming parser compares owners) to dst; ok is false for a
// token the streaming parser would hand to the zone parser.
func (w *rpzWindow) ownerKey(dst, tok []byte) ([]byte, bool) {
	switch {
	case len(tok) == 1 && tok[0] == '@':
		return append(dst, w.lorigin...), w.lorigin != ""
	case len(tok) == 1 && tok[0] == '.':
		return append(dst, '.'), true
	case len(tok) > 254:
		return dst, false
	}
	n := len(dst)
	dst = slices.Grow(dst, len(tok)+1+len(w.lorigin))[:n+len(tok)]
	out := dst[n:]
	prevDot := true
	for k, c := range tok {
		switch ownerClass[c] {
		case className:
			prevDot = false
		case classUpper:
			c += 'a' - 'A'
			prevDot = false
		case classDot:
			if prevDot {
				return dst, false
			}
			prevDot = true
		default:
			return dst, false
		}
		out[k] = c
	}
	switch {
	case tok[len(tok)-1] == '.':
		return dst, true
	case w.lorigin == "":
		return dst, false
	case w.lorigin == ".":
		return append(dst, '.'), true
	}
	return append(append(dst, '.'), w.lorigin...), true
}

// open starts a region at the owner in progress, replaying its lines.
func (w *rpzWindow) open() error {
	st := w.gState
	p := &rpzStream{file: w.file, sink: w.sink, origin: st.origin, ttl: st.ttl, haveTTL: st.haveTTL,
		ttlDirective: st.ttlDirective, records: st.records, ipOwners: w.ipOwners, local: w.local}
	w.top = st.records == 0
	if !w.top {
		if !st.ttlDirective {
			return errRPZFull // the TTL in force is the previous record's
		}
		o := w.old
		p.apex, p.apexDot, p.soaLine, p.zone = o.apex, o.apexDot, o.soaLine, o.zone
	}
	w.p, w.rStart, w.rHunk, w.tail, w.seenExplicit, w.depth = p, w.gStart, w.hi, false, false, 0
	n := w.gStart
	for buf := w.gBuf; len(buf) > 0; n++ {
		line := buf
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			line = buf[:i+1]
		}
		buf = buf[len(line):]
		if err := w.feed(n, line); err != nil {
			return err
		}
	}
	return nil
}

// close ends the region before line end.
func (w *rpzWindow) close(end int) error {
	p := w.p
	w.p = nil
	p.flush()
	switch {
	case p.nerrs > 0 || p.needGeneral || !p.ttlDirective || p.depth > 0:
		return errRPZFull
	case w.top && (p.apex != w.old.apex || p.apexGroups != 1):
		return errRPZFull
	case !w.top && p.apexGroups > 0:
		return errRPZFull
	case p.zone != w.old.zone:
		return errRPZFull
	}
	w.ipOwners, w.local = p.ipOwners, p.local
	last := w.hunks[w.hi-1]
	shiftBefore := 0
	if w.rHunk > 0 {
		h := w.hunks[w.rHunk-1]
		shiftBefore = h.oldEnd - h.newEnd
	}
	oldEnd := end + last.oldEnd - last.newEnd
	if was := w.old.stateAt(w.file, oldEnd); was.origin != w.ls.origin || was.ttlDirective != w.ls.ttlDirective || was.ttl != w.ls.ttl {
		return errRPZFull // a directive of the region changed what the lines after it mean
	}
	w.regions = append(w.regions, hunk{oldFrom: w.rStart + shiftBefore, oldEnd: oldEnd, newFrom: w.rStart, newEnd: end})
	w.gStart, w.gState, w.gBuf = end, w.state(), w.gBuf[:0]
	return nil
}

// rpzDeltaConflicts reports whether a rule parsed from the regions of an
// RPZ file's change (in add) has the trigger of a rule of the file in
// service outside them: the zone would then hold that owner twice, which
// the full reload reads with the general parser.
func rpzDeltaConflicts(cur *Snapshot, f *FileStatus, regions []hunk, add *builder) bool {
	kept := func(id uint32) bool {
		if id < uint32(cur.dom.len()) && (cur.layer.isRemoved(id) || id < uint32(f.dom[0]) || id >= uint32(f.dom[1])) {
			return false
		}
		if cur.Section(makeRuleID(RuleDomain, int(id))).File != f.Name {
			return false
		}
		return !inHunks(regions, cur.domLine(id), true)
	}
	nd := &add.s.dom
	for i := 0; i < nd.len(); i++ {
		name := nd.name(uint32(i))
		own := nd.ownKind(uint32(i))
		k, _ := kindOf(own)
		h := hashName(name)
		tables := []*domainTable{&cur.dom}
		bases := []uint32{0}
		if cur.layer != nil {
			tables, bases = append(tables, &cur.layer.add), append(bases, uint32(cur.dom.len()))
		}
		for ti, t := range tables {
			head, ok := t.lookup(h, string(name))
			if !ok {
				continue
			}
			var ids []dupRule
			switch kk := t.kindAt(head); {
			case kk&kindNext != 0:
				ids = []dupRule{{head, t.ownKind(head)}, {head + 1, t.kindAt(head + 1)}}
			case kk&kindMore != 0:
				ids = t.dups[head]
			default:
				ids = []dupRule{{head, kk}}
			}
			for _, d := range ids {
				if dk, _ := kindOf(d.kind & kindMaskOwn); dk == k && kept(bases[ti]+d.id) {
					return true
				}
			}
		}
	}
	if len(add.s.ips) > 0 {
		for _, r := range cur.ips[f.ip[0]:f.ip[1]] {
			if inHunks(regions, int(r.line), true) {
				continue
			}
			for _, a := range add.s.ips {
				if a.prefix == r.prefix {
					return true
				}
			}
		}
	}
	return false
}

// rpzDeltaWarnings returns the warnings of the file after the change: the
// old ones outside the regions (lines moved) and the regions' new ones, in
// line order, capped as a full load caps them; ok is false when the old
// ones were capped (the full reload counts them again).
func rpzDeltaWarnings(file string, old []*LineError, d *fileDelta, add []*LineError) ([]*LineError, bool) {
	var out []*LineError
	for _, w := range old {
		if w.Line == 0 {
			return nil, false
		}
		line, kept := d.mapLine(w.Line)
		if !kept {
			continue
		}
		if line != w.Line {
			cp := *w
			cp.Line = line
			w = &cp
		}
		out = append(out, w)
	}
	out = append(out, add...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Line < out[j].Line })
	if len(out) > maxErrorsPerFile {
		more := len(out) - maxErrorsPerFile
		out = append(out[:maxErrorsPerFile:maxErrorsPerFile], &LineError{File: file, Msg: strconv.Itoa(more) + " more warnings not shown"})
	}
	return out, true
}

// The window need not read the zone from its start: it can start at a
// chunk boundary (of the new version's fingerprint) before the first
// change where the scan's state is known without the lines before it —
// outside parentheses, at the start of an owner's records (the record
// before it, in the chunk before, has another owner, not the apex), with
// the origin and $TTL in force there taken from the version in service's
// directives (the lines before the change are that version's) — and stop
// once the region of the last change is closed (the lines after it are
// the version in service's too). rpzWindowStart finds such a boundary a
// few chunks before the change.

// rpzStartTries is how many chunk boundaries before the change
// rpzWindowStart tries.
const rpzStartTries = 8

// rpzWindowStart returns a chunk of fp (minK or later) where the window
// can start reading for a change at line first (the lines before it are
// the version in service's, moved by shift), and the owner (absolute,
// lower case) of the last record before it; ok is false when there is
// none.
func rpzWindowStart(file string, f *os.File, fp *fingerprint, old *rpzFileState, first, shift, minK int) (k int, owner []byte, ok bool) {
	fp.layout()
	kh := fp.chunkAtLine(first)
	for k = kh - 1; k >= max(2, minK) && k >= kh-rpzStartTries; k-- {
		prev := fp.chunks[k-1]
		if prev.paren || fp.depths[k-1] != 0 || fp.depths[k] != 0 {
			continue
		}
		data := make([]byte, fp.starts[k+1]-fp.starts[k-1])
		if _, err := f.ReadAt(data, fp.starts[k-1]); err != nil {
			return 0, nil, false
		}
		ck := chunker{shift: fp.shift}
		ck.write(data)
		if got := ck.finish(); !slices.Equal(got, fp.chunks[k-1:k+1]) {
			return 0, nil, false // changed since it was read
		}
		split := fp.starts[k] - fp.starts[k-1]
		last, lastLine := lastOwnerToken(data[:split], fp.firstLines[k-1]+1)
		if last == nil {
			continue
		}
		w := &rpzWindow{lorigin: strings.ToLower(old.stateAt(file, lastLine-shift).origin)}
		key, good := w.ownerKey(nil, last)
		if !good || string(key) == old.apex {
			continue
		}
		next, nextLine, inherited := firstOwnerToken(data[split:], fp.firstLines[k]+1)
		if next == nil || inherited {
			continue
		}
		w.lorigin = strings.ToLower(old.stateAt(file, nextLine-shift).origin)
		if nk, good := w.ownerKey(nil, next); !good || bytes.Equal(nk, key) {
			continue
		}
		return k, key, true
	}
	return 0, nil, false
}

// lastOwnerToken returns the owner written on the last record of lines
// (the first of which is line), and its line: nil when no record there
// has its owner written out.
func lastOwnerToken(lines []byte, line int) ([]byte, int) {
	var tok []byte
	at := 0
	for n := line; len(lines) > 0; n++ {
		l := lines
		if i := bytes.IndexByte(lines, '\n'); i >= 0 {
			l = lines[:i]
		}
		lines = lines[len(l)+min(1, len(lines)-len(l)):]
		if t, inherited := ownerToken(l); t != nil {
			tok, at = t, n
		} else if inherited && tok == nil {
			at = 0 // a record of an owner written before these lines
		}
	}
	if at == 0 {
		return nil, 0
	}
	return tok, at
}

// firstOwnerToken returns the owner written on the first record of lines
// (the first of which is line) and its line, or inherited when that
// record's owner is the record's before.
func firstOwnerToken(lines []byte, line int) ([]byte, int, bool) {
	for n := line; len(lines) > 0; n++ {
		l := lines
		if i := bytes.IndexByte(lines, '\n'); i >= 0 {
			l = lines[:i]
		}
		lines = lines[len(l)+min(1, len(lines)-len(l)):]
		if t, inherited := ownerToken(l); t != nil || inherited {
			return t, n, inherited
		}
	}
	return nil, 0, false
}

// ownerToken returns the owner written at the start of a zone file line
// (outside parentheses), nil for a line that is not a record, or
// inherited for a record whose owner is left blank.
func ownerToken(l []byte) (tok []byte, inherited bool) {
	i := 0
	for i < len(l) && isSpace(l[i]) {
		i++
	}
	if i == len(l) || l[i] == ';' || l[i] == '$' {
		return nil, false
	}
	if i > 0 {
		return nil, true
	}
	for i < len(l) && ownerClass[l[i]] != classEnd {
		i++
	}
	return l[:i], false
}

// parseRPZRegions is parseRPZWindow reading the new version by chunks of
// its fingerprint fp: from the start of the zone, or from a boundary
// rpzWindowStart finds before the first change; after each change's
// region it skips to a boundary before the next change when there is one
// (the lines between are the version in service's, moved), and it stops
// once the last region is closed. The bytes read are checked against fp's
// chunks (errReadAgain).
func parseRPZRegions(file string, f *os.File, fp *fingerprint, sink *builder, hunks []hunk, old *rpzFileState) ([]hunk, *rpzFileState, error) {
	if old == nil || old.apexGroups != 1 || len(hunks) == 0 {
		return nil, nil, errRPZFull
	}
	fp.layout()
	w := &rpzWindow{file: file, sink: sink, old: old, hunks: hunks, gStart: 1}
	w.ls.origin = defaultOrigin(file)
	w.lorigin = strings.ToLower(w.ls.origin)
	w.gState = w.state()
	k := 0
	if k2, owner, ok := rpzWindowStart(file, f, fp, old, hunks[0].newFrom, 0, 2); ok {
		w.skipTo(fp, k2, owner, 0, 0)
		k = k2
	}
	n := 0
	eof := false
	for {
		ck := chunker{line: fp.firstLines[k], shift: fp.shift}
		start := fp.starts[k]
		br := bufio.NewReaderSize(io.NewSectionReader(f, start, fp.size-start), 64<<10)
		n = fp.firstLines[k]
		var read int64
		next := -1
		for !(w.hi == len(hunks) && w.p == nil) {
			line, err := br.ReadSlice('\n')
			if errors.Is(err, bufio.ErrBufferFull) {
				return nil, nil, errRPZFull
			}
			if len(line) > 0 {
				n++
				ck.write(line)
				read += int64(len(line))
				regions := len(w.regions)
				if e := w.lineAt(n, line); e != nil {
					return nil, nil, e
				}
				if len(w.regions) > regions && w.p == nil && w.hi < len(hunks) {
					// A region closed: skip to the next change?
					h := hunks[w.hi-1]
					cur := fp.chunkAtLine(n)
					if k2, owner, ok := rpzWindowStart(file, f, fp, old, hunks[w.hi].newFrom, h.newEnd-h.oldEnd, cur+2); ok {
						w.skipTo(fp, k2, owner, n, h.newEnd-h.oldEnd)
						next = k2
						break
					}
				}
			}
			if err != nil {
				if !errors.Is(err, io.EOF) {
					return nil, nil, errRPZFull
				}
				eof = true
				break
			}
		}
		if !eof {
			// Up to the end of the chunk the last line read is in, to
			// check the bytes.
			end := fp.starts[min(fp.chunkAtLine(n)+1, len(fp.chunks))]
			rest := make([]byte, end-start-read)
			if _, err := io.ReadFull(br, rest); err != nil {
				return nil, nil, errReadAgain
			}
			ck.write(rest)
			read += int64(len(rest))
		}
		got := ck.finish()
		if k+len(got) > len(fp.chunks) || !slices.Equal(got, fp.chunks[k:k+len(got)]) || fp.starts[k+len(got)]-start != read {
			return nil, nil, errReadAgain
		}
		if next < 0 {
			break
		}
		k = next
	}
	if eof {
		if e := w.endOfInput(n); e != nil {
			return nil, nil, e
		}
	}
	ns := *old
	ns.dirs = w.ls.dirs
	if !eof {
		// The directives after the lines read are the version in
		// service's, moved by the change.
		last := hunks[len(hunks)-1]
		ns.dirs = appendMovedDirs(ns.dirs, old.dirs, n, int(^uint(0)>>1), last.newEnd-last.oldEnd)
	}
	return w.regions, &ns, nil
}

// appendMovedDirs appends to dirs the directives of old whose lines, moved
// by shift, are in (after, before).
func appendMovedDirs(dirs, old []rpzDirective, after, before, shift int) []rpzDirective {
	for _, d := range old {
		if l := d.line + shift; l > after && l < before {
			d.line = l
			dirs = append(dirs, d)
		}
	}
	return dirs
}

// skipTo moves the window's scan, outside any region, from after line
// to the start of chunk k of fp (see rpzWindowStart; owner is the last
// record's before it); the lines between are the version in service's,
// moved by shift.
func (w *rpzWindow) skipTo(fp *fingerprint, k int, owner []byte, after, shift int) {
	start := fp.firstLines[k] + 1
	w.ls.dirs = appendMovedDirs(w.ls.dirs, w.old.dirs, after, start, shift)
	st := w.old.stateAt(w.file, start-shift)
	w.ls.origin, w.ls.ttl, w.ls.haveTTL, w.ls.ttlDirective = st.origin, st.ttl, st.ttlDirective, st.ttlDirective
	w.lorigin = strings.ToLower(w.ls.origin)
	w.records, w.owner, w.depth = max(w.records, 1), append(w.owner[:0], owner...), 0
	w.gStart, w.gState, w.gBuf = start, w.state(), w.gBuf[:0]
}
