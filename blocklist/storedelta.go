package blocklist

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"hash/maphash"
	"io"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"
	"time"
)

// How a reload finds what changed in a file: while a file is hashed its
// lines are cut into chunks at content-defined boundaries (a line whose
// hash ends in six zero bits ends a chunk, and no chunk passes
// maxChunkLines), each chunk keeping its lines' hash and count. An edit
// changes only the chunks around it; the chunks before and after are
// equal in both versions, however the lines moved. The changed middle is
// the line difference of the two versions.

const (
	chunkMask     = 63
	maxChunkLines = 1024
)

// lineChunk is a run of whole lines of a file.
type lineChunk struct {
	hash      uint64
	lines     uint32
	directive bool // a line starts with '#' and holds a ':' (it may be a directive)
}

// chunker cuts a stream into lineChunks. Lines are hashed whole, eight
// bytes at a time (lineHash).
type chunker struct {
	chunks    []lineChunk
	cur       lineChunk
	carry     []byte // the start of a line cut by the end of a write
	lineStart bool   // no non-blank byte seen yet on this line
	comment   bool   // this line starts with '#'
	colon     bool   // ... and has a ':' (it may be a directive)
	started   bool
}

func (c *chunker) write(b []byte) {
	if !c.started {
		c.started, c.lineStart = true, true
	}
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		seg := b
		if i >= 0 {
			seg = b[:i]
		}
		if c.lineStart {
			for k, x := range seg {
				if x != ' ' && x != '\t' {
					c.lineStart, c.comment = false, x == '#'
					if c.comment && bytes.IndexByte(seg[k:], ':') >= 0 {
						c.colon = true
					}
					break
				}
			}
		} else if c.comment && !c.colon && bytes.IndexByte(seg, ':') >= 0 {
			c.colon = true
		}
		if i < 0 {
			c.carry = append(c.carry, seg...)
			return
		}
		if len(c.carry) > 0 {
			c.carry = append(c.carry, seg...)
			seg = c.carry
			c.carry = c.carry[:0]
		}
		c.endLine(lineHash(seg))
		c.lineStart = true
		b = b[i+1:]
	}
}

// lineHash hashes a line eight bytes at a time (a multiply-xor over
// little-endian words, the last word zero-padded, then the length).
func lineHash(b []byte) uint64 {
	h := uint64(fnvOffset64)
	n := len(b)
	for len(b) >= 8 {
		h = (h ^ binary.LittleEndian.Uint64(b)) * 0x9e3779b97f4a7c15
		h ^= h >> 29
		b = b[8:]
	}
	if len(b) > 0 {
		var w [8]byte
		copy(w[:], b)
		h = (h ^ binary.LittleEndian.Uint64(w[:])) * 0x9e3779b97f4a7c15
		h ^= h >> 29
	}
	return mix(h ^ uint64(n))
}

func (c *chunker) endLine(h uint64) {
	if c.comment && c.colon {
		c.cur.directive = true
	}
	c.comment, c.colon = false, false
	c.cur.hash = (c.cur.hash^h)*fnvPrime64 + 1
	c.cur.lines++
	if h&chunkMask == 0 || c.cur.lines >= maxChunkLines {
		c.chunks = append(c.chunks, c.cur)
		c.cur = lineChunk{}
	}
}

// finish ends the last line (one without a newline counts too) and chunk.
func (c *chunker) finish() []lineChunk {
	if len(c.carry) > 0 {
		c.endLine(lineHash(c.carry))
		c.carry = nil
	}
	if c.cur.lines > 0 {
		c.chunks = append(c.chunks, c.cur)
	}
	return c.chunks
}

// hunk is one changed run of lines: lines [oldFrom, oldEnd) of the old
// version became lines [newFrom, newEnd) of the new one.
type hunk struct{ oldFrom, oldEnd, newFrom, newEnd int }

// diffWindow is how far (in chunks, on each side) lineDiff looks for the
// chunks after an edit before it takes the rest of both versions as one
// change.
const diffWindow = 32

// lineDiff compares two versions' chunks and returns the changed runs of
// lines, in order; lines outside them are equal in both versions (in
// order, however they moved). directive is set when a changed run of
// either version has a line that may be a directive.
func lineDiff(old, cur []lineChunk) (hunks []hunk, directive bool) {
	i, j := 0, 0
	oldLine, newLine := 1, 1
	span := func(k, l int) {
		h := hunk{oldFrom: oldLine, newFrom: newLine}
		for _, c := range old[i : i+k] {
			oldLine += int(c.lines)
			directive = directive || c.directive
		}
		for _, c := range cur[j : j+l] {
			newLine += int(c.lines)
			directive = directive || c.directive
		}
		h.oldEnd, h.newEnd = oldLine, newLine
		hunks = append(hunks, h)
		i, j = i+k, j+l
	}
	for i < len(old) && j < len(cur) {
		if old[i] == cur[j] {
			oldLine += int(old[i].lines)
			newLine += int(cur[j].lines)
			i, j = i+1, j+1
			continue
		}
		found := false
		for sum := 1; sum <= 2*diffWindow && !found; sum++ {
			for k := max(0, sum-diffWindow); k <= min(sum, diffWindow); k++ {
				l := sum - k
				if i+k < len(old) && j+l < len(cur) && old[i+k] == cur[j+l] {
					span(k, l)
					found = true
					break
				}
			}
		}
		if !found {
			break
		}
	}
	if i < len(old) || j < len(cur) {
		span(len(old)-i, len(cur)-j)
	}
	return hunks, directive
}

// inHunks reports whether line (old version when old, else new) is in a
// changed run.
func inHunks(hunks []hunk, line int, old bool) bool {
	k := sort.Search(len(hunks), func(k int) bool {
		if old {
			return hunks[k].oldEnd > line
		}
		return hunks[k].newEnd > line
	})
	if k == len(hunks) {
		return false
	}
	if old {
		return line >= hunks[k].oldFrom
	}
	return line >= hunks[k].newFrom
}

// maxDeltaShare is the largest share of a file's lines a change may touch
// and still be applied as a delta (beyond maxDeltaLines).
const (
	maxDeltaShare = 4 // a quarter
	maxDeltaLines = 16384
)

func isNativeList(path string) bool {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".txt", ".list":
		return true
	}
	return false
}

// tryDelta applies a reload as a delta when exactly one list file (native
// format, or an RPZ zone the streaming parser read: see rpzdelta.go)
// changed, its change is small, and no policy needs the whole file
// (signatures, checks, held or broken versions, the shrink guard).
// It reports whether it published; otherwise the full reload runs.
func (s *Store) tryDelta(ctx context.Context, o ReloadOptions, old *Snapshot, listed []listedFile, rep *ReloadReport) bool {
	if !s.loaded.Load() || len(listed) != len(old.Files) {
		return false
	}
	var (
		file *listFile
		lf   listedFile
		prev *FileStatus
	)
	defer func() {
		if file != nil {
			file.close()
		}
	}()
	for i, l := range listed {
		f := old.Files[i]
		if f.Name != l.name || f.Stale || f.Withheld != nil || f.SHA256 == "" || ctx.Err() != nil {
			return false
		}
		st, err := openList(l.path, s.opts.MaxFileSize)
		if err != nil {
			return false
		}
		if st.hash == f.SHA256 || s.feedApplied(f.Name, st.hash) {
			st.close()
			continue
		}
		if file != nil || f.chunks == nil || !isNativeList(l.path) && (!isRPZFile(l.path) || f.rpz == nil) {
			st.close()
			return false
		}
		file, lf, prev = st, l, f
	}
	if file == nil {
		return false
	}
	// The changed version must be whole (waited for as the full reload
	// does), pass the checks and carry a good signature; anything else is
	// the full reload's to report.
	if s.opts.Settle > 0 || s.opts.Writing != nil {
		file.close()
		var err error
		if file, err = s.openStable(lf); err != nil {
			file = nil
			return false
		}
		if file.hash == prev.SHA256 {
			return false
		}
	}
	for _, check := range s.opts.Checks {
		v := &Version{Name: lf.name, Path: lf.path, Dir: lf.dir, SHA256: file.hash, Size: file.size, Content: io.NewSectionReader(file.f, 0, file.size)}
		if check(v) != nil {
			return false
		}
	}
	var (
		signed   *Signature
		sigPrint string
	)
	if s.opts.Verify != nil {
		sigPrint = s.opts.Verify.Fingerprint(lf.path)
		var refusal *Refusal
		if signed, refusal = s.verifyFile(lf.name, lf.path, file, prev); refusal != nil {
			return false
		}
	}
	hunks, directive := lineDiff(prev.chunks, file.chunks)
	rpz := isRPZFile(lf.path)
	if rpz {
		directive = false // $ lines are checked by parseRPZWindow
	}
	changed := 0
	for _, h := range hunks {
		changed += h.oldEnd - h.oldFrom + h.newEnd - h.newFrom
	}
	if directive || (changed > maxDeltaLines && changed*maxDeltaShare > file.lines) {
		return false
	}
	nb := newBuilder(0, 0)
	nb.startFile()
	if _, err := file.f.Seek(0, io.SeekStart); err != nil {
		return false
	}
	hr := &hashingReader{f: file.f, limit: file.size + 1, h: newSHA256()}
	if hr.start() != nil {
		return false
	}
	var (
		errs   []*LineError
		rpzNew *rpzFileState
	)
	if rpz {
		regions, st, err := parseRPZWindow(lf.name, hr, nb, hunks, prev.rpz)
		if err != nil {
			return false
		}
		hunks, rpzNew = regions, st
	} else {
		errs = parseListWindow(lf.name, hr, nb, hunks)
	}
	if len(errs) > 0 || nb.sectErr || hexSum(hr.h) != file.hash {
		return false // the full reload reports it
	}
	fs := *prev
	fs.SHA256, fs.Size, fs.LoadedAt, fs.chunks = file.hash, file.size, time.Now(), file.chunks
	if rpz {
		if nb.nwarns > len(nb.warns) || nb.repeatedOwner() || rpzDeltaConflicts(old, prev, hunks, nb) {
			return false
		}
		var ok bool
		if fs.Warnings, ok = rpzDeltaWarnings(lf.name, prev.Warnings, &fileDelta{hunks: hunks}, nb.takeWarnings(lf.name)); !ok {
			return false
		}
		fs.rpz = rpzNew
	}
	if s.opts.Verify != nil {
		fs.Signature, fs.sigPrint = signed, sigPrint
	}
	s.gen++
	next, removed, added := applyDelta(old, &fileDelta{file: lf.name, hunks: hunks, add: nb, status: fs}, s.gen)
	nf := next.File(lf.name)
	fc := FileChange{Name: lf.name, Change: ChangeUpdated, Rules: nf.Rules(), PreviousRules: prev.Rules()}
	fc.setDeltaChanges(removed, added)
	if rpz {
		fc.Warnings = fs.Warnings
	}
	if _, held := shrinkGuard(s.opts.MaxShrink, prev.Rules(), nf.Rules()); held {
		if !o.Accept {
			s.gen--
			return false // the full reload holds it and says why
		}
		fc.Accepted = true
	}
	for _, f := range next.Files {
		if f.Name == lf.name {
			rep.Files = append(rep.Files, fc)
			continue
		}
		rep.Files = append(rep.Files, FileChange{Name: f.Name, Change: ChangeUnchanged, Rules: f.Rules(), PreviousRules: f.Rules()})
	}
	s.cur.Store(next)
	rep.Changed, rep.Delta = true, true
	if next.layer != nil {
		s.compactSoon(next)
	}
	return true
}

// compactDelay is how long the lists must go unchanged before a layered
// snapshot is merged; a layer over compactLimit rules is merged at once.
const (
	compactDelay = time.Second
	compactLimit = 1 << 14
)

// compactSoon merges the layer of snap into a new base in the background:
// after compactDelay without another change (a burst of edits is merged
// once), or at once when the layer is large. A snapshot replaced in the
// meantime is not merged (its successor is). Merges run one at a time.
func (s *Store) compactSoon(snap *Snapshot) {
	l := snap.layer
	size := l.nremoved + l.add.len()
	delay := compactDelay
	if size > compactLimit && size*32 > snap.dom.len() {
		delay = 0
	}
	s.compactMu.Lock()
	defer s.compactMu.Unlock()
	if s.compactTimer != nil && s.compactTimer.Stop() {
		s.compacting.Done() // the merge it would have run is superseded
	}
	s.compacting.Add(1)
	s.compactTimer = time.AfterFunc(delay, func() {
		defer s.compacting.Done()
		s.mergeMu.Lock()
		defer s.mergeMu.Unlock()
		if s.cur.Load() != snap {
			return
		}
		merged, err := compact(snap)
		if err != nil {
			s.log.Error("merging a list delta failed; the layered lists keep serving", "err", err)
			return
		}
		if s.cur.CompareAndSwap(snap, merged) {
			s.compactions.Add(1)
			snap = nil // the layered version is garbage now: let its pages go
			releaseMemory(merged)
		}
	})
}

// WaitCompacted waits until a pending merge of a delta has run (for tests
// and benchmarks).
func (s *Store) WaitCompacted() {
	s.compactMu.Lock()
	if s.compactTimer != nil && s.compactTimer.Stop() {
		// Run it now instead of after its delay.
		s.compactTimer.Reset(0)
	}
	s.compactMu.Unlock()
	s.compacting.Wait()
}

// fillChanges sets the added and removed rules of a file a full reload
// loaded (rules of the new version in [m, end) of b), from the line
// difference with the version before (prev in old, nil when new).
func fillChanges(fc *FileChange, old *Snapshot, prev *FileStatus, b *builder, m mark, chunks []lineChunk) {
	all := int(^uint(0) >> 1)
	hunks := []hunk{{1, all, 1, all}}
	if prev != nil && prev.chunks != nil && chunks != nil {
		hunks, _ = lineDiff(prev.chunks, chunks)
	}
	var removed, added []RuleID
	if prev != nil && prev.SHA256 != "" && !prev.Stale {
		eachFileRule(old, prev, func(id RuleID, line int) {
			if inHunks(hunks, line, true) {
				removed = append(removed, id)
			}
		})
	}
	cur := b.s
	e := b.mark()
	for i := m.dom; i < e.dom; i++ {
		if inHunks(hunks, cur.dom.line(uint32(i)), false) {
			added = append(added, makeRuleID(RuleDomain, i))
		}
	}
	for i := m.ip; i < e.ip; i++ {
		if inHunks(hunks, int(cur.ips[i].line), false) {
			added = append(added, makeRuleID(RuleIP, i))
		}
	}
	for i := m.asn; i < e.asn; i++ {
		if inHunks(hunks, int(cur.asns[i].line), false) {
			added = append(added, makeRuleID(RuleASN, i))
		}
	}
	fc.Removed, fc.Added, fc.RemovedCount, fc.AddedCount = diffRuleIDs(old, removed, cur, added, MaxReportedRules)
}

// diffRuleIDs compares the rules of a changed region: rules of the old
// version (ids in old) and of the new one (ids in cur). A rule in both
// (the same text under the same directives, moved or not) cancels out;
// the rest are returned, at most limit of each (all of them when limit
// is negative), with counts.
func diffRuleIDs(old *Snapshot, removed []RuleID, cur *Snapshot, added []RuleID, limit int) (rem, add []Rule, nrem, nadd int) {
	pick := func(s *Snapshot, ids []RuleID, keep func(int) bool) ([]Rule, int) {
		var out []Rule
		n := 0
		for i, id := range ids {
			if keep != nil && !keep(i) {
				continue
			}
			n++
			if limit < 0 || len(out) < limit {
				out = append(out, s.Rule(id))
			}
		}
		return out, n
	}
	if len(removed) == 0 || len(added) == 0 {
		rem, nrem = pick(old, removed, nil)
		add, nadd = pick(cur, added, nil)
		return
	}
	seed := maphash.MakeSeed()
	var buf []byte
	key := func(s *Snapshot, id RuleID) uint64 {
		sec := s.Section(id)
		buf = s.AppendRuleText(buf[:0], id)
		buf = fmt.Appendf(buf, "\x00%s\x00%d\x00%d\x00%v", sec.Platform, sec.Action, sec.Scope, sec.Why)
		return maphash.Bytes(seed, buf)
	}
	left := make(map[uint64]int32, len(removed))
	for _, id := range removed {
		left[key(old, id)]++
	}
	keepAdded := make([]bool, len(added))
	for i, id := range added {
		if k := key(cur, id); left[k] > 0 {
			left[k]--
		} else {
			keepAdded[i] = true
		}
	}
	keepRemoved := make([]bool, len(removed))
	for i, id := range removed {
		if k := key(old, id); left[k] > 0 {
			left[k]--
			keepRemoved[i] = true
		}
	}
	rem, nrem = pick(old, removed, func(i int) bool { return keepRemoved[i] })
	add, nadd = pick(cur, added, func(i int) bool { return keepAdded[i] })
	return
}

// eachFileRule calls fn for every rule of file f in service in s, with its
// current line.
func eachFileRule(s *Snapshot, f *FileStatus, fn func(RuleID, int)) {
	n := s.dom.len()
	for i := f.dom[0]; i < f.dom[1]; i++ {
		if !s.layer.isRemoved(uint32(i)) {
			fn(makeRuleID(RuleDomain, i), s.domLine(uint32(i)))
		}
	}
	if s.layer != nil {
		ar := s.layer.addRange[f.Name]
		for i := ar[0]; i < ar[1]; i++ {
			fn(makeRuleID(RuleDomain, n+i), s.layer.add.line(uint32(i)))
		}
	}
	for i := f.ip[0]; i < f.ip[1]; i++ {
		fn(makeRuleID(RuleIP, i), int(s.ips[i].line))
	}
	for i := f.asn[0]; i < f.asn[1]; i++ {
		fn(makeRuleID(RuleASN, i), int(s.asns[i].line))
	}
}

func newSHA256() hash.Hash { return sha256.New() }

func hexSum(h hash.Hash) string { return hex.EncodeToString(h.Sum(nil)) }

// releaseBytes is the size of compiled lists above which the memory a
// replaced version held is handed back to the system at once.
const releaseBytes = 16 << 20

// releaseMemory returns the pages of the lists snap replaced to the
// system when the lists are big: the Go runtime would otherwise keep them
// for minutes, and a server reloading a million-name list every few
// minutes would hold several versions' worth of resident memory. It costs
// one garbage collection, after the new version is in service.
func releaseMemory(snap *Snapshot) {
	if snap.MemoryBytes() >= releaseBytes {
		debug.FreeOSMemory()
	}
}
