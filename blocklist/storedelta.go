package blocklist

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

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
	// deltaSettleTries is how many times a delta waits for a changed file
	// that is still being written before it leaves the change to the
	// full reload (which withholds the file until it settles);
	// minDeltaSettle is the wait between tries when Settle is zero.
	deltaSettleTries = 3
	minDeltaSettle   = 10 * time.Millisecond
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
		st, err := openList(l.path, s.opts.MaxFileSize, f.fp)
		if err != nil {
			return false
		}
		if st.hash == f.SHA256 || s.feedApplied(f.Name, st.hash) {
			st.close()
			continue
		}
		if file != nil || f.fp == nil || !isNativeList(l.path) && (!isRPZFile(l.path) || f.rpz == nil) {
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
		var err error
		file, err = s.settle(lf, file)
		// A file caught mid-write (truncated and not yet rewritten, as
		// an in-place write leaves it between its two steps, or still
		// open for writing) settles within a few settling periods: wait
		// for it here, so that the change stays a delta instead of
		// costing the whole list in a full reload that would wait too.
		for try := 1; errors.Is(err, errUnsettled) && try < deltaSettleTries && ctx.Err() == nil; try++ {
			time.Sleep(max(s.opts.Settle, minDeltaSettle))
			if file, err = openList(lf.path, s.opts.MaxFileSize, prev.fp); err == nil {
				file, err = s.settle(lf, file)
			}
		}
		if err != nil {
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
	hunks, directive := lineDiff(prev.fp.chunks, file.fp.chunks)
	rpz := isRPZFile(lf.path)
	switch {
	case rpz:
		directive = false // $ lines are checked by parseRPZWindow
	case directive && !prev.fp.dirsOver && !file.fp.dirsOver:
		// The changed lines are parsed after the directives before them:
		// only directives that now say something else after the change
		// need the full reload.
		directive = !sameHunkDirectives(prev.fp, file.fp, hunks)
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
	check := new(maphash.Hash)
	check.SetSeed(chunkSeed)
	hr := &hashingReader{f: file.f, limit: file.size + 1, h: check}
	if hr.start() != nil {
		return false
	}
	var (
		errs   []*LineError
		rpzNew *rpzFileState
	)
	whole := true // the whole file was read again (and hashed)
	switch {
	case rpz:
		var (
			regions []hunk
			st      *rpzFileState
			err     error
		)
		if len(hunks) > 0 {
			regions, st, err = parseRPZRegions(lf.name, file.f, file.fp, nb, hunks, prev.rpz)
			whole = false
		} else {
			regions, st, err = parseRPZWindow(lf.name, hr, nb, hunks, prev.rpz)
		}
		if err != nil {
			return false
		}
		hunks, rpzNew = regions, st
	case !file.fp.dirsOver:
		var err error
		if errs, err = parseListHunks(lf.name, file.f, file.fp, nb, hunks); err != nil {
			return false
		}
		whole = false
	default:
		errs = parseListWindow(lf.name, hr, nb, hunks)
	}
	if len(errs) > 0 || nb.sectErr || whole && check.Sum64() != file.sum64 {
		return false // the full reload reports it
	}
	fs := *prev
	fs.SHA256, fs.Size, fs.LoadedAt, fs.fp = file.hash, file.size, time.Now(), file.fp
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
func fillChanges(fc *FileChange, old *Snapshot, prev *FileStatus, b *builder, m mark, fp *fingerprint) {
	all := int(^uint(0) >> 1)
	hunks := []hunk{{1, all, 1, all}}
	if prev != nil && prev.fp != nil && fp != nil {
		hunks, _ = lineDiff(prev.fp.chunks, fp.chunks)
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
	if len(removed) == 0 && len(hunks) == 1 && hunks[0].newFrom <= 1 && hunks[0].newEnd == all {
		// Every rule is added and none removed (a first load): nothing
		// cancels out, so the report is the first MaxReportedRules rules
		// and the count, without a list of every rule's id.
		fc.AddedCount = (e.dom - m.dom) + (e.ip - m.ip) + (e.asn - m.asn)
		for i := m.dom; i < e.dom && len(fc.Added) < MaxReportedRules; i++ {
			fc.Added = append(fc.Added, cur.Rule(makeRuleID(RuleDomain, i)))
		}
		for i := m.ip; i < e.ip && len(fc.Added) < MaxReportedRules; i++ {
			fc.Added = append(fc.Added, cur.Rule(makeRuleID(RuleIP, i)))
		}
		for i := m.asn; i < e.asn && len(fc.Added) < MaxReportedRules; i++ {
			fc.Added = append(fc.Added, cur.Rule(makeRuleID(RuleASN, i)))
		}
		fc.Removed, fc.RemovedCount = nil, 0
		return
	}
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
	var (
		buf     []byte
		lastSec *Section
		secKey  uint64
	)
	key := func(s *Snapshot, id RuleID) uint64 {
		// The directives' part of the key is hashed once per section (a
		// file has a handful), not per rule.
		if sec := s.Section(id); sec != lastSec {
			lastSec = sec
			secKey = maphash.Comparable(seed, struct {
				platform string
				action   Action
				scope    Scope
				why      Why
			}{sec.Platform, sec.Action, sec.Scope, sec.Why})
		}
		buf = s.AppendRuleText(buf[:0], id)
		buf = binary.LittleEndian.AppendUint64(append(buf, 0), secKey)
		return maphash.Bytes(seed, buf)
	}
	// Keys sorted with their places, matched run by run: a multiset
	// difference without a map probe (a cache miss) per rule. Of a key's
	// rules, the first removed ones and the last added ones are those
	// kept (the report's choice, whatever the order of the rest).
	keys := func(s *Snapshot, ids []RuleID) []keyedRule {
		out := make([]keyedRule, len(ids))
		for i, id := range ids {
			out[i] = keyedRule{key(s, id), int32(i)}
		}
		return sortKeyed(out)
	}
	rk, ak := keys(old, removed), keys(cur, added)
	keepRemoved, keepAdded := make([]bool, len(removed)), make([]bool, len(added))
	for r, a := 0, 0; r < len(rk) || a < len(ak); {
		var k uint64
		switch {
		case a == len(ak) || (r < len(rk) && rk[r].k < ak[a].k):
			k = rk[r].k
		default:
			k = ak[a].k
		}
		r0, a0 := r, a
		for r < len(rk) && rk[r].k == k {
			r++
		}
		for a < len(ak) && ak[a].k == k {
			a++
		}
		m := min(r-r0, a-a0)
		for _, x := range rk[r0 : r-m] {
			keepRemoved[x.i] = true
		}
		for _, x := range ak[a0+m : a] {
			keepAdded[x.i] = true
		}
	}
	rem, nrem = pick(old, removed, func(i int) bool { return keepRemoved[i] })
	add, nadd = pick(cur, added, func(i int) bool { return keepAdded[i] })
	return
}

// keyedRule is a rule's key and its place in a list of rules.
type keyedRule struct {
	k uint64
	i int32
}

// sortKeyed sorts a (in places order) by key, places in order within a
// key: a stable radix sort, 16 bits a pass, about 20 times faster than a
// comparison sort at a million rules. It returns the sorted slice (a or
// a buffer of its size).
func sortKeyed(a []keyedRule) []keyedRule {
	if len(a) < 256 {
		slices.SortStableFunc(a, func(x, y keyedRule) int { return cmp.Compare(x.k, y.k) })
		return a
	}
	tmp := make([]keyedRule, len(a))
	var count [1 << 16]int
	for shift := 0; shift < 64; shift += 16 {
		clear(count[:])
		for _, x := range a {
			count[x.k>>shift&0xffff]++
		}
		sum := 0
		for d, c := range count {
			count[d] = sum
			sum += c
		}
		for _, x := range a {
			d := x.k >> shift & 0xffff
			tmp[count[d]] = x
			count[d]++
		}
		a, tmp = tmp, a
	}
	return a
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

// errReadAgain is parseListHunks' report of changed lines whose bytes,
// read again, are not those the reload's first read saw.
var errReadAgain = errors.New("the file changed while it was being read")

// parseListHunks is parseListWindow reading only the changed lines: the
// new lines of hunks (whole chunks of fp, the new version's fingerprint)
// are read from f by their byte ranges and parsed, after the directive
// lines before each (fp.dirs, which set the sections in force there). The
// bytes read are checked against fp's chunks (errReadAgain when they
// differ).
func parseListHunks(file string, f *os.File, fp *fingerprint, sink entrySink, hunks []hunk) ([]*LineError, error) {
	fp.layout()
	p := &listParser{file: file, sink: sink, sec: Section{File: file}, name: make([]byte, 0, 256), suffixes: suffixChecker{hint: suffixHintList}}
	di := 0
	for _, h := range hunks {
		for ; di < len(fp.dirs) && fp.dirs[di].line < h.newFrom; di++ {
			p.parseLine(fp.dirs[di].line, []byte(fp.dirs[di].text))
		}
		for di < len(fp.dirs) && fp.dirs[di].line < h.newEnd {
			di++ // parsed from the bytes
		}
		if h.newEnd <= h.newFrom {
			continue
		}
		k0, k1 := fp.chunkAtLine(h.newFrom), fp.chunkAtLine(h.newEnd-1)
		if k1 >= len(fp.chunks) || fp.firstLines[k0]+1 != h.newFrom {
			return nil, fmt.Errorf("changed lines %d-%d are not whole chunks", h.newFrom, h.newEnd)
		}
		if err := parseChunks(p, f, fp, k0, k1+1); err != nil {
			return nil, err
		}
	}
	if hits := p.suffixes.finish(); len(hits) > 0 {
		for _, h := range hits {
			p.fail(h.line, []byte(h.name), h.msg)
		}
		slices.SortStableFunc(p.errs, func(a, b *LineError) int { return a.Line - b.Line })
	}
	if p.nerrs > len(p.errs) {
		p.errs = append(p.errs, &LineError{File: file, Msg: strconv.Itoa(p.nerrs-len(p.errs)) + " more errors not shown"})
	}
	return p.errs, nil
}

// parseChunks parses the lines of chunks [k0, k1) of fp, read from f and
// checked against their hashes.
func parseChunks(p *listParser, f *os.File, fp *fingerprint, k0, k1 int) error {
	start, end := fp.starts[k0], fp.starts[k1]
	ck := chunker{line: fp.firstLines[k0], shift: fp.shift}
	br := bufio.NewReaderSize(io.NewSectionReader(f, start, end-start), maxLineLen)
	lineNo := fp.firstLines[k0]
	read := int64(0)
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// Over maxLineLen: an error, as parseListWindow reports it.
			lineNo++
			p.fail(lineNo, line[:80], "line longer than 65536 bytes")
			for {
				ck.write(line)
				read += int64(len(line))
				if !errors.Is(err, bufio.ErrBufferFull) {
					break
				}
				line, err = br.ReadSlice('\n')
			}
		} else if len(line) > 0 {
			ck.write(line)
			read += int64(len(line))
			lineNo++
			text := line
			if start == 0 && read == int64(len(line)) {
				text = bytes.TrimPrefix(text, utf8BOM)
			}
			p.parseLine(lineNo, bytes.TrimSuffix(text, []byte{'\n'}))
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				return err
			}
			break
		}
	}
	if got := ck.finish(); read != end-start || !slices.Equal(got, fp.chunks[k0:k1]) {
		return errReadAgain
	}
	return nil
}

// sameHunkDirectives reports whether the lines that may be directives in
// the old lines of each hunk (of old) are, in order, those of its new
// lines (of cur): the directives in force after each hunk are then the
// same in both versions.
func sameHunkDirectives(old, cur *fingerprint, hunks []hunk) bool {
	in := func(dirs []dirLine, from, end int) []dirLine {
		lo := sort.Search(len(dirs), func(k int) bool { return dirs[k].line >= from })
		hi := sort.Search(len(dirs), func(k int) bool { return dirs[k].line >= end })
		return dirs[lo:hi]
	}
	for _, h := range hunks {
		a, b := in(old.dirs, h.oldFrom, h.oldEnd), in(cur.dirs, h.newFrom, h.newEnd)
		if !slices.EqualFunc(a, b, func(x, y dirLine) bool { return x.text == y.text }) {
			return false
		}
	}
	return true
}
