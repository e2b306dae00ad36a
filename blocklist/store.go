package blocklist

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash"
	"hash/maphash"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMaxFileSize is the largest list file read unless Options says otherwise.
const DefaultMaxFileSize = 512 << 20

// parseFunc parses one file into sink and returns its problems.
type parseFunc func(file string, r io.Reader, sink entrySink) []*LineError

// formats maps a file extension to its parser. Files with other extensions
// in a lists directory are ignored.
var formats = map[string]parseFunc{
	".txt":  parseList,
	".list": parseList,
	".rpz":  parseRPZ,
	".zone": parseRPZ,
}

// IsListFile reports whether a file name is one the store loads.
func IsListFile(name string) bool {
	base := filepath.Base(name)
	if strings.HasPrefix(base, ".") {
		return false // editor swap and lock files, hidden files
	}
	_, ok := formats[strings.ToLower(filepath.Ext(base))]
	return ok
}

// Options configures a Store.
type Options struct {
	// Dirs are the directories whose list files are loaded, in order.
	Dirs []string
	// MaxFileSize caps the bytes read from one file (DefaultMaxFileSize if 0).
	MaxFileSize int64
	// Logger receives reload results; slog.Default() if nil.
	Logger *slog.Logger
	// Verify, when set, checks every file's signature before it is parsed
	// (see Verifier); refused versions never serve.
	Verify Verifier

	// Settle is how long a new version of a file must be unchanged (by its
	// inode change time) before it is read for service; a younger one is
	// waited for once, then read again and compared. 0 reads at once.
	Settle time.Duration
	// Writing, when set, reports whether a file is open for writing (the
	// watch's close-write events): such a file is not read for service
	// until its writer closes it.
	Writing func(path string) bool
	// MaxShrink is the largest share of a file's rules (0 to 1) a new
	// version may drop; a version that drops more, has no rules, or a
	// deleted file, is held until a reload with Accept. 0 means
	// DefaultMaxShrink; 1 turns the guard off.
	MaxShrink float64
	// Checks run over every new version before it is parsed (in order),
	// after Verify; an error refuses it like a failed signature.
	Checks []Check
	// Verified are directories (among Dirs) written only by sinkhole,
	// whose files are replaced by rename and checked against their
	// recorded SHA-256 (ChecksumCheck): they need no settling.
	Verified []string
	// LastGood, when set, is a directory where the last good version of
	// each file of Dirs[0] is kept, so that a cold start holds a version
	// the shrink guard would hold against it (see lastgood.go). Off when
	// MaxShrink is 1.
	LastGood string
}

// ReloadOptions are the options of one reload.
type ReloadOptions struct {
	// Trigger names the cause for logs ("start", "fsnotify", "SIGHUP", "api").
	Trigger string
	// Accept applies the versions the shrink guard would hold (the
	// operator's "sinkhole reload --accept").
	Accept bool
}

// Store holds the current Snapshot behind an atomic pointer and rebuilds it
// from the list files. Readers call Current and never wait; Reload calls are
// serialized.
type Store struct {
	opts      Options
	log       *slog.Logger
	cur       atomic.Pointer[Snapshot]
	mu        sync.Mutex // serializes Reload
	gen       uint64
	listeners []func(*Snapshot, *ReloadReport)
	loaded    atomic.Bool
	reloads   atomic.Uint64
	retry     atomic.Bool // a reload is scheduled for a settling file
	// Background merges of deltas (see compactSoon).
	compactMu    sync.Mutex // guards compactTimer
	compactTimer *time.Timer
	mergeMu      sync.Mutex // one merge at a time
	compacting   sync.WaitGroup
	compactions  atomic.Uint64
	lg           *lastGood // Options.LastGood
	feeds        feedFiles // state files feeds wrote for rules in service (feeddelta.go)
}

// NewStore returns a store serving the empty snapshot until the first Reload.
func NewStore(opts Options) *Store {
	if opts.MaxFileSize <= 0 {
		opts.MaxFileSize = DefaultMaxFileSize
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxShrink <= 0 {
		opts.MaxShrink = DefaultMaxShrink
	}
	s := &Store{opts: opts, log: opts.Logger, lg: newLastGood(opts)}
	s.cur.Store(Empty())
	return s
}

// Current returns the snapshot in service. It never blocks.
func (s *Store) Current() *Snapshot { return s.cur.Load() }

// Loaded reports whether a Reload has completed at least once.
func (s *Store) Loaded() bool { return s.loaded.Load() }

// Reloads returns how many reloads have completed (successful or not).
func (s *Store) Reloads() uint64 { return s.reloads.Load() }

// Dirs returns the directories the store loads.
func (s *Store) Dirs() []string { return s.opts.Dirs }

// OnReload registers fn to run after every reload, successful or not, with
// the snapshot then in service (the previous one when the reload failed;
// the report's Error says why). Register before the first Reload.
func (s *Store) OnReload(fn func(*Snapshot, *ReloadReport)) {
	s.listeners = append(s.listeners, fn)
}

// FileChange reports what a reload did with one file.
type FileChange struct {
	Name string `json:"name"`
	// Change is one of added, updated, unchanged, failed, removed.
	Change        string       `json:"change"`
	Rules         int          `json:"rules"`
	PreviousRules int          `json:"previous_rules"`
	Errors        []*LineError `json:"errors,omitempty"`
	// Refused is set when the Verifier refused the new version.
	Refused *Refusal `json:"refused,omitempty"`
	// Warnings are problems of a newly loaded version that did not stop it
	// from loading (unsupported RPZ triggers, for instance).
	Warnings []*LineError `json:"warnings,omitempty"`
	// Withheld describes the version on disk that was not put in service
	// (Change held or settling); Rules are those still serving.
	Withheld *Withheld `json:"withheld,omitempty"`
	// Accepted is set when the version went into service only because the
	// reload accepted what the shrink guard would have held.
	Accepted bool `json:"accepted,omitempty"`
	// AddedCount and RemovedCount are the rules the reload brought into
	// and took out of service for this file (a line-by-line difference
	// from the version served before; a new file adds all its rules, a
	// removed one removes them). Added and Removed list them, at most
	// MaxReportedRules each, in file order.
	AddedCount   int    `json:"added_count,omitempty"`
	RemovedCount int    `json:"removed_count,omitempty"`
	Added        []Rule `json:"added,omitempty"`
	Removed      []Rule `json:"removed,omitempty"`
	// allAdded and allRemoved list every rule a delta reload added and
	// removed (AllAdded, AllRemoved).
	allAdded, allRemoved []Rule
}

// AllAdded returns every rule the reload added for this file, and false
// when the report does not list them all (a full reload lists at most
// MaxReportedRules; a delta reload, whose size the store bounds, lists
// every one).
func (f *FileChange) AllAdded() ([]Rule, bool) { return allRules(f.allAdded, f.Added, f.AddedCount) }

// AllRemoved is AllAdded for the rules the reload removed.
func (f *FileChange) AllRemoved() ([]Rule, bool) {
	return allRules(f.allRemoved, f.Removed, f.RemovedCount)
}

func allRules(all, listed []Rule, n int) ([]Rule, bool) {
	switch {
	case len(all) == n:
		return all, true
	case len(listed) == n:
		return listed, true
	}
	return nil, false
}

// setDeltaChanges records the complete lists of a delta reload: the
// counts, every rule (AllAdded, AllRemoved) and the first
// MaxReportedRules of each in Added and Removed.
func (f *FileChange) setDeltaChanges(rem, add []Rule) {
	f.RemovedCount, f.AddedCount = len(rem), len(add)
	f.allRemoved, f.allAdded = rem, add
	f.Removed, f.Added = rem[:min(len(rem), MaxReportedRules):min(len(rem), MaxReportedRules)], add[:min(len(add), MaxReportedRules):min(len(add), MaxReportedRules)]
	if len(f.Removed) == 0 {
		f.Removed = nil
	}
	if len(f.Added) == 0 {
		f.Added = nil
	}
}

// MaxReportedRules caps the rules listed per file in FileChange.Added and
// FileChange.Removed; the counts are always complete.
const MaxReportedRules = 1000

// Changes a reload reports.
const (
	ChangeAdded     = "added"
	ChangeUpdated   = "updated"
	ChangeUnchanged = "unchanged"
	ChangeFailed    = "failed"
	ChangeRemoved   = "removed"
	// ChangeHeld and ChangeSettling: the version on disk is not in service
	// (see Withheld); the last good version serves.
	ChangeHeld     = StateHeld
	ChangeSettling = StateSettling
)

// ReloadReport is the result of one Reload.
type ReloadReport struct {
	Trigger    string        `json:"trigger"`
	Generation uint64        `json:"generation"`
	Changed    bool          `json:"changed"` // a new generation was published
	Rules      int           `json:"rules"`
	Duration   time.Duration `json:"duration_ns"`
	Files      []FileChange  `json:"files"`
	// Delta is set when the change was applied as a delta over the lists
	// in service (one file changed by a few lines) instead of a full
	// compile; the merge into a new base follows in the background.
	Delta bool `json:"delta,omitempty"`
	// Error is set when nothing could be reloaded (Reload returned an error).
	Error string `json:"error,omitempty"`
}

// Failed reports whether any file failed to load.
func (r *ReloadReport) Failed() bool {
	for _, f := range r.Files {
		if f.Change == ChangeFailed {
			return true
		}
	}
	return false
}

// Withheld returns the files whose version on disk was held by the shrink
// guard (settling files are left out: they are read again on their own;
// refused ones are failed).
func (r *ReloadReport) Withheld() []FileChange {
	var out []FileChange
	for _, f := range r.Files {
		if f.Change == ChangeHeld {
			out = append(out, f)
		}
	}
	return out
}

// Errors returns every file error of the reload.
func (r *ReloadReport) Errors() []*LineError {
	var out []*LineError
	for _, f := range r.Files {
		out = append(out, f.Errors...)
	}
	return out
}

// FileName returns the name the store gives file in dir (one of
// Options.Dirs) in snapshots and reports: the file's name for the first
// directory, "DIR/FILE" (the directory's base name) for the others.
func (s *Store) FileName(dir, file string) string {
	for i, d := range s.opts.Dirs {
		if d == dir && i > 0 {
			return filepath.Base(dir) + "/" + file
		}
	}
	return file
}

// listedFile is a file found in one of the directories.
type listedFile struct{ name, path, dir string }

func (s *Store) listFiles() ([]listedFile, error) {
	var out []listedFile
	for i, dir := range s.opts.Dirs {
		ents, err := os.ReadDir(dir)
		if err != nil {
			return nil, fmt.Errorf("lists directory: %w", err)
		}
		for _, e := range ents {
			if e.IsDir() || !IsListFile(e.Name()) {
				continue
			}
			name := e.Name()
			if i > 0 {
				name = filepath.Base(dir) + "/" + name
			}
			out = append(out, listedFile{name: name, path: filepath.Join(dir, e.Name()), dir: dir})
		}
	}
	slices.SortFunc(out, func(a, b listedFile) int { return strings.Compare(a.name, b.name) })
	return out, nil
}

// listFile is an open list file whose size and content hash are known.
type listFile struct {
	f     *os.File
	st    os.FileInfo // when it was opened
	size  int64
	lines int
	hash  string
	fp    *fingerprint // see fingerprint.go
	// sum64 is a 64-bit hash (maphash, chunkSeed) of every byte read,
	// which parse checks the bytes it parses against: cheaper than the
	// SHA-256 a second time.
	sum64 uint64
	// rescanned is how many bytes of chunks that differed from the
	// version before were read a second time.
	rescanned int64
}

// errChangedWhileRead is parse's report of a file whose bytes changed
// between the hashing pass and the parsing pass.
var errChangedWhileRead = errors.New("the file changed while it was being read")

// parse runs the file's parser over its content again (skipping a UTF-8
// byte order mark), checking that the bytes parsed are the bytes hashed
// (by their 64-bit hash, sum64):
// when they are not, it returns errChangedWhileRead and no line errors.
func (lf *listFile) parse(name string, parse parseFunc, sink entrySink) ([]*LineError, error) {
	if _, err := lf.f.Seek(0, io.SeekStart); err != nil {
		return []*LineError{{File: name, Msg: err.Error()}}, nil
	}
	check := new(maphash.Hash)
	check.SetSeed(chunkSeed)
	hr := &hashingReader{f: lf.f, limit: lf.size + 1, h: check}
	if err := hr.start(); err != nil {
		return []*LineError{{File: name, Msg: err.Error()}}, nil
	}
	errs := parse(name, hr, sink)
	if check.Sum64() != lf.sum64 {
		return nil, errChangedWhileRead
	}
	return errs, nil
}

func (lf *listFile) close() { lf.f.Close() }

// hashingReader reads at most limit bytes of f, skipping a UTF-8 byte
// order mark at the start, and hashes every byte read (the mark too).
// Seeking back to the start (a parser handing the file to another) starts
// the hash again, so the hash is always of the bytes the last parse read.
type hashingReader struct {
	f     *os.File
	limit int64
	n     int64
	h     hash.Hash
	pend  []byte // bytes read at the start that were not a mark
	err   error
	head  [3]byte
}

// start reads from the beginning of the file, past a byte order mark.
func (r *hashingReader) start() error {
	if _, err := r.f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	r.n, r.err, r.pend = 0, nil, nil
	r.h.Reset()
	n, err := io.ReadFull(r.raw(), r.head[:])
	if n == 3 && bytes.Equal(r.head[:], utf8BOM) {
		return nil
	}
	r.pend = r.head[:n]
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		r.err = err
	}
	return nil
}

// raw reads the file within the limit, hashing what it reads.
func (r *hashingReader) raw() io.Reader { return readerFunc(r.readRaw) }

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

func (r *hashingReader) readRaw(p []byte) (int, error) {
	if r.n >= r.limit {
		return 0, io.EOF
	}
	if int64(len(p)) > r.limit-r.n {
		p = p[:r.limit-r.n]
	}
	n, err := r.f.Read(p)
	r.n += int64(n)
	r.h.Write(p[:n])
	return n, err
}

func (r *hashingReader) Read(p []byte) (int, error) {
	if len(r.pend) > 0 {
		n := copy(p, r.pend)
		r.pend = r.pend[n:]
		return n, nil
	}
	if r.err != nil {
		return 0, r.err
	}
	return r.readRaw(p)
}

// Seek supports only seeking to the start.
func (r *hashingReader) Seek(offset int64, whence int) (int64, error) {
	if offset != 0 || whence != io.SeekStart {
		return 0, errors.New("hashingReader: only a seek to the start is supported")
	}
	return 0, r.start()
}

// Reload rereads every list file and publishes a new snapshot when anything
// changed. A file that fails keeps its last good rules in service and its
// errors are reported; a removed file drops its rules. trigger names the
// cause for logs ("start", "fsnotify", "SIGHUP", "api"). The error is only
// for failures that prevent reading the directories at all, in which case
// the current snapshot stays.
func (s *Store) Reload(ctx context.Context, trigger string) (*ReloadReport, error) {
	return s.ReloadWith(ctx, ReloadOptions{Trigger: trigger})
}

// ReloadWith is Reload with options (Accept applies held versions).
func (s *Store) ReloadWith(ctx context.Context, o ReloadOptions) (*ReloadReport, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.reloads.Add(1)
	start := time.Now()
	rep, err := s.reload(ctx, o, start)
	if err != nil {
		rep.Duration = time.Since(start)
		rep.Error = err.Error()
	}
	s.afterReloadLastGood(rep)
	for _, fn := range s.listeners {
		fn(s.cur.Load(), rep)
	}
	if rep.Changed && !rep.Delta && err == nil {
		go releaseMemory(s.cur.Load()) // the replaced version's (and the parse's) pages
	}
	s.retryIfSettling(rep)
	return rep, err
}

// retryIfSettling schedules one reload after Settle when a file of rep was
// still being written, so it goes into service once it settles even if no
// further change event comes.
//
// While a file stays unsettled (a writer that holds it open) the retries
// back off, doubling up to maxSettleRetry: every reload reads every file.
func (s *Store) retryIfSettling(rep *ReloadReport) {
	var oldest time.Time
	for _, f := range rep.Files {
		if f.Change == ChangeSettling && (oldest.IsZero() || f.Withheld.Since.Before(oldest)) {
			oldest = f.Withheld.Since
		}
	}
	if oldest.IsZero() || !s.retry.CompareAndSwap(false, true) {
		return
	}
	delay := max(s.opts.Settle, 50*time.Millisecond)
	for waited := time.Since(oldest); delay < maxSettleRetry && delay < waited; {
		delay *= 2
	}
	time.AfterFunc(min(delay, maxSettleRetry), func() {
		s.retry.Store(false)
		s.Reload(context.Background(), "settle")
	})
}

// maxSettleRetry bounds the time between the store's own reloads of a
// file that stays unsettled.
const maxSettleRetry = 5 * time.Second

// reload does the work of Reload, under its lock.
func (s *Store) reload(ctx context.Context, o ReloadOptions, start time.Time) (*ReloadReport, error) {
	trigger := o.Trigger
	old := s.seedLastGood(s.cur.Load()) // a cold start compares with the last good versions
	rep := &ReloadReport{Trigger: trigger, Generation: old.Generation}
	listed, err := s.listFiles()
	if err != nil {
		s.log.Error("list reload failed; keeping the lists in service", "trigger", trigger, "err", err, "generation", old.Generation)
		return rep, err
	}
	if s.tryDelta(ctx, o, old, listed, rep) {
		next := s.cur.Load()
		s.loaded.Store(true)
		rep.Generation, rep.Rules, rep.Duration = next.Generation, next.RuleCount(), time.Since(start)
		s.logReport(rep)
		return rep, nil
	}
	b := newBuilder(old.domainCount(), old.dom.nameBytes())
	var files []*FileStatus
	changed := false
	// Files are processed in name order, deleted ones among them, so that
	// every file's rules keep their place (a reload that changes nothing
	// keeps the old snapshot's rule arrays).
	listedNames := map[string]bool{}
	for _, lf := range listed {
		listedNames[lf.name] = true
	}
	gone := slices.DeleteFunc(slices.Clone(old.Files), func(f *FileStatus) bool { return listedNames[f.Name] })
	for len(listed) > 0 || len(gone) > 0 {
		if err := ctx.Err(); err != nil {
			return rep, fmt.Errorf("reload cancelled: %w", err)
		}
		if len(gone) > 0 && (len(listed) == 0 || gone[0].Name < listed[0].name) {
			f := gone[0]
			gone = gone[1:]
			if fc, fs := s.holdDeleted(b, old, f, o.Accept); fs != nil {
				rep.Files = append(rep.Files, fc)
				files = append(files, fs)
				continue
			}
			rep.Files = append(rep.Files, FileChange{Name: f.Name, Change: ChangeRemoved, PreviousRules: f.Rules(), Accepted: o.Accept && f.Rules() > 0,
				RemovedCount: f.Rules()})
			changed = true
			continue
		}
		lf := listed[0]
		listed = listed[1:]
		fc, fs, ch := s.loadFile(b, old, old.File(lf.name), lf, o.Accept)
		rep.Files = append(rep.Files, fc)
		if fs != nil {
			files = append(files, fs)
		}
		changed = changed || ch
	}

	statusChanged := changed || !sameErrors(old.Files, files)
	next := old
	if changed || !s.loaded.Load() {
		s.gen++
		next, err = b.compile(s.gen, files)
		if err != nil {
			s.gen--
			s.log.Error("list reload failed; keeping the lists in service", "trigger", trigger, "err", err)
			return rep, err
		}
		rep.Changed = true
	} else if statusChanged {
		// Same rules, new error state: republish with the same generation
		// (with old's rule ranges: the builder renumbers a layered
		// snapshot's rules).
		cp := *old
		cp.Files = files
		for i, f := range files {
			if of := old.File(f.Name); of != nil && (of.dom != f.dom || of.ip != f.ip || of.asn != f.asn || of.sect != f.sect) {
				c := *f
				c.dom, c.ip, c.asn, c.sect = of.dom, of.ip, of.asn, of.sect
				cp.Files[i] = &c
			}
		}
		next = &cp
	}
	s.cur.Store(next)
	s.loaded.Store(true)
	rep.Generation = next.Generation
	rep.Rules = next.RuleCount()
	rep.Duration = time.Since(start)
	s.logReport(rep)
	return rep, nil
}

// loadFile brings one file into the builder: its new version when it is
// whole, verified, parses and passes the shrink guard; otherwise its last
// good version, with the reason reported. It reports whether the rules
// changed.
func (s *Store) loadFile(b *builder, old *Snapshot, prev *FileStatus, lf listedFile, accept bool) (FileChange, *FileStatus, bool) {
	fc := FileChange{Name: lf.name}
	if prev != nil {
		fc.PreviousRules = prev.Rules()
	}
	var refusal *Refusal // the Verifier or a Check refused the version on disk
	sigPrint := ""       // the Verifier's fingerprint of the file's signature
	// keepPrev serves the last good version (if any) with the version on
	// disk reported as broken or refused (errs) or withheld (w).
	keepPrev := func(errs []*LineError, badHash string, w *Withheld) (FileChange, *FileStatus, bool) {
		fc.Change, fc.Errors, fc.Refused, fc.Withheld = ChangeFailed, errs, refusal, w
		if w != nil {
			fc.Change = w.State
			if pw := prev.withheldAs(w.State, w.SHA256); pw != nil {
				w.Since = pw.Since // the same version, still withheld
			}
		}
		if prev == nil || prev.SHA256 == "" {
			// Never loaded: nothing to serve, but keep reporting why.
			return fc, &FileStatus{Name: lf.name, Path: lf.path, Stale: errs != nil, Errors: errs, Refused: refusal,
				Withheld: w, badHash: badHash, badSig: sigPrint}, false
		}
		m := b.mark()
		b.copyFile(old, prev)
		fs := *prev
		fs.Stale, fs.Errors, fs.Refused, fs.badHash, fs.badSig, fs.Withheld = errs != nil, errs, refusal, badHash, sigPrint, w
		b.finishFile(&fs, m)
		fc.Rules = fs.Rules()
		return fc, &fs, false
	}
	withhold := func(state, reason, hash string, rules int) (FileChange, *FileStatus, bool) {
		return keepPrev(nil, "", &Withheld{State: state, Reason: reason, SHA256: hash, Rules: rules, Since: time.Now()})
	}
	// settling withholds a file a writer has open or changed too lately.
	settling := func() (FileChange, *FileStatus, bool) {
		return withhold(StateSettling, "the file is being written; it is read again once it is unchanged for "+s.opts.Settle.String(), "", -1)
	}
	var prevFP *fingerprint
	if prev != nil {
		prevFP = prev.fp
	}
	var (
		file  *listFile
		first *firstRead // the file is read once, as it is parsed
		err   error
	)
	if s.useFirstRead(prev, lf) {
		file, first, err = s.openFirst(lf)
	}
	if first == nil && err == nil {
		file, err = s.openStable(lf, prevFP)
	}
	if errors.Is(err, errUnsettled) {
		return settling()
	}
	if err != nil {
		return keepPrev([]*LineError{{File: lf.name, Msg: err.Error()}}, "", nil)
	}
	defer file.close()
	hash := file.hash
	if s.opts.Verify != nil {
		sigPrint = s.opts.Verify.Fingerprint(lf.path)
	}
	// A new signature on the same content is verified again.
	sameSig := prev == nil || prev.sigPrint == sigPrint
	if prev != nil && prev.SHA256 != "" && !prev.Stale && s.feedApplied(lf.name, hash) {
		// A feed's state file, written for rules in service already.
		m := b.mark()
		b.copyFile(old, prev)
		fs := *prev
		fs.SHA256, fs.Size, fs.Withheld, fs.Errors, fs.Refused, fs.badHash = hash, file.size, nil, nil, nil, ""
		b.finishFile(&fs, m)
		fc.Change, fc.Rules = ChangeUnchanged, fs.Rules()
		return fc, &fs, false
	}
	if prev != nil && prev.SHA256 == hash && sameSig {
		// The version in service (put back, if the file was broken or
		// withheld meanwhile).
		m := b.mark()
		b.copyFile(old, prev)
		fs := *prev
		back := fs.Stale || fs.Withheld != nil
		fs.Stale, fs.Errors, fs.Refused, fs.badHash, fs.Withheld = false, nil, nil, "", nil
		b.finishFile(&fs, m)
		fc.Change, fc.Rules = ChangeUnchanged, fs.Rules()
		if back {
			fc.Change = ChangeUpdated
		}
		return fc, &fs, false
	}
	if prev != nil && prev.Stale && prev.badHash == hash && prev.badSig == sigPrint {
		refusal = prev.Refused
		return keepPrev(prev.Errors, hash, nil) // same broken bytes as last time
	}
	if w := prev.withheldAs(StateHeld, hash); w != nil && sameSig && !accept {
		return keepPrev(nil, "", w) // same held version: nothing new to decide
	}
	if len(s.opts.Checks) > 0 {
		v := &Version{Name: lf.name, Path: lf.path, Dir: lf.dir, SHA256: hash, Size: file.size, Content: io.NewSectionReader(file.f, 0, file.size)}
		for _, check := range s.opts.Checks {
			if err := check(v); err != nil {
				refusal = refusalOf(err)
				// Checked again at every reload (what it checks against
				// may change without the file changing).
				return keepPrev([]*LineError{{File: lf.name, Msg: refusal.Reason + " refused: " + refusal.Error}}, "", nil)
			}
		}
	}
	var signed *Signature
	if s.opts.Verify != nil {
		if signed, refusal = s.verifyFile(lf.name, lf.path, file, prev); refusal != nil {
			return keepPrev([]*LineError{{File: lf.name, Msg: "signature refused (" + refusal.Reason + "): " + refusal.Error}}, hash, nil)
		}
		if prev != nil && !prev.Stale && prev.SHA256 == hash {
			// Same rules, signed again: keep them, note the new signature.
			m := b.mark()
			b.copyFile(old, prev)
			fs := *prev
			fs.Signature, fs.sigPrint, fs.Withheld = signed, sigPrint, nil
			b.finishFile(&fs, m)
			fc.Change, fc.Rules = ChangeUnchanged, fs.Rules()
			return fc, &fs, false
		}
	}
	m := b.startFile()
	var errs []*LineError
	if first != nil {
		b.s.dom.grow(first.lineHint, nameBytesHint(lf.path, file.st.Size()))
		errs = parseList(lf.name, first, b)
		err := first.finish()
		unsettled := err == nil && !slices.Contains(s.opts.Verified, lf.dir) && s.opts.Writing != nil && s.opts.Writing(lf.path)
		if err != nil || unsettled {
			b.rollback(m)
			b.takeWarnings(lf.name)
			if unsettled { // a writer opened it while it was being read
				return settling()
			}
			return keepPrev([]*LineError{{File: lf.name, Msg: err.Error()}}, "", nil)
		}
		hash = file.hash
	} else {
		b.s.dom.grow(file.lines, nameBytesHint(lf.path, file.size))
		errs, err = file.parse(lf.name, formats[strings.ToLower(filepath.Ext(lf.path))], b)
		if err != nil {
			b.rollback(m)
			return withhold(StateSettling, err.Error()+"; it is read again once it settles", "", -1)
		}
	}
	warns := b.takeWarnings(lf.name)
	if b.sectErr {
		errs = append(errs, &LineError{File: lf.name, Msg: "too many sections (over 65536 directive changes across all files)"})
	}
	if len(errs) > 0 {
		b.rollback(m)
		return keepPrev(errs, hash, nil)
	}
	fs := &FileStatus{Name: lf.name, Path: lf.path, SHA256: hash, Size: file.size, LoadedAt: time.Now(), Warnings: warns,
		Signature: signed, sigPrint: sigPrint, fp: file.fp, rpz: b.rpz}
	b.finishFile(fs, m)
	if prev != nil && prev.SHA256 != "" {
		if reason, held := shrinkGuard(s.opts.MaxShrink, prev.Rules(), fs.Rules()); held {
			if !accept {
				rules := fs.Rules()
				b.rollback(m)
				return withhold(StateHeld, reason, hash, rules)
			}
			fc.Accepted = true
		}
	}
	fillChanges(&fc, old, prev, b, m, file.fp)
	fc.Rules, fc.Warnings = fs.Rules(), warns
	fc.Change = ChangeAdded
	if prev != nil && prev.SHA256 != "" {
		fc.Change = ChangeUpdated
	}
	return fc, fs, true
}

// withheldAs returns a copy of f's withheld state when it is state for the
// version hash.
func (f *FileStatus) withheldAs(state, hash string) *Withheld {
	if f == nil || f.Withheld == nil || f.Withheld.State != state || f.Withheld.SHA256 != hash {
		return nil
	}
	w := *f.Withheld
	return &w
}

// holdDeleted keeps a deleted file's last good version in service, held
// by the shrink guard, unless the guard is off, the reload accepts it, or
// the file had no rules. It returns a nil status when the file goes.
func (s *Store) holdDeleted(b *builder, old *Snapshot, f *FileStatus, accept bool) (FileChange, *FileStatus) {
	if accept || s.opts.MaxShrink >= 1 || f.SHA256 == "" || f.Rules() == 0 {
		return FileChange{}, nil
	}
	w := f.withheldAs(StateHeld, "")
	if w == nil || !w.Deleted {
		w = &Withheld{State: StateHeld, Deleted: true, Since: time.Now(),
			Reason: fmt.Sprintf("the file was deleted (the version in service has %d rules)", f.Rules())}
	}
	m := b.mark()
	b.copyFile(old, f)
	fs := *f
	fs.Stale, fs.Errors, fs.badHash, fs.Withheld = false, nil, "", w
	b.finishFile(&fs, m)
	return FileChange{Name: f.Name, Change: ChangeHeld, Rules: fs.Rules(), PreviousRules: f.Rules(), Withheld: w}, &fs
}

// errUnsettled means a file is still being written.
var errUnsettled = errors.New("the file is being written")

// openStable opens and hashes a file once it is whole: not open for
// writing (Options.Writing) and unchanged for Options.Settle. A file
// changed more recently is waited for once and read again; if it changed
// meanwhile, or is open for writing, it is errUnsettled. Files in
// Options.Verified directories are replaced by rename and need no wait.
func (s *Store) openStable(lf listedFile, prev *fingerprint) (*listFile, error) {
	if s.opts.Writing != nil && s.opts.Writing(lf.path) {
		return nil, errUnsettled
	}
	file, err := openList(lf.path, s.opts.MaxFileSize, prev)
	if err != nil {
		return nil, err
	}
	return s.settle(lf, file)
}

// settle is openStable for file, read already: it returns file when it is
// whole, or its version once it settled (read again, the first read's
// fingerprint sparing what did not change), closing file otherwise.
func (s *Store) settle(lf listedFile, file *listFile) (*listFile, error) {
	if slices.Contains(s.opts.Verified, lf.dir) {
		return file, nil
	}
	if s.opts.Writing != nil && s.opts.Writing(lf.path) {
		// A writer opened it while it was being read.
		file.close()
		return nil, errUnsettled
	}
	if s.opts.Settle <= 0 {
		return file, nil
	}
	age := time.Since(changeTime(file.st))
	if age >= s.opts.Settle {
		return file, nil
	}
	file.close()
	time.Sleep(s.opts.Settle - age)
	again, err := openList(lf.path, s.opts.MaxFileSize, file.fp)
	if err != nil {
		return nil, err
	}
	if again.hash != file.hash || !changeTime(again.st).Equal(changeTime(file.st)) || (s.opts.Writing != nil && s.opts.Writing(lf.path)) {
		again.close()
		return nil, errUnsettled
	}
	return again, nil
}

// nameBytesHint estimates the encoded name bytes a file of size bytes adds
// to the arena: about five eighths of its size for the list format, a
// quarter for an RPZ zone (each name is written twice, with more text).
func nameBytesHint(path string, size int64) int {
	// Names are stored encoded, in about 60% of their length (names.go).
	switch strings.ToLower(filepath.Ext(path)) {
	case ".rpz", ".zone":
		return int(size / 4)
	}
	return int(size * 5 / 8)
}

func sameErrors(a, b []*FileStatus) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name || a[i].Stale != b[i].Stale || len(a[i].Errors) != len(b[i].Errors) ||
			a[i].Signature != b[i].Signature || a[i].Refused != b[i].Refused || !sameWithheld(a[i].Withheld, b[i].Withheld) {
			return false
		}
	}
	return true
}

func sameWithheld(a, b *Withheld) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.State == b.State && a.SHA256 == b.SHA256 && a.Deleted == b.Deleted
}

func (s *Store) logReport(rep *ReloadReport) {
	for _, f := range rep.Files {
		switch f.Change {
		case ChangeFailed:
			msg := "list file rejected; its last good version stays in service"
			if f.Rules == 0 {
				msg = "list file rejected; not loaded (there is no earlier good version)"
			}
			if r := f.Refused; r != nil {
				what := "refused: its signature does not verify"
				if r.KeyID == "" && r.Reason == "checksum" {
					what = "refused: it is not the copy written"
				}
				s.log.Error(strings.Replace(msg, "rejected", what, 1),
					"file", f.Name, "reason", r.Reason, "signer", r.KeyID, "signed_at", r.SignedAt, "error", r.Error, "serving_rules", f.Rules)
				continue
			}
			for _, e := range f.Errors {
				s.log.Error(msg, "file", f.Name, "error", e.Error(), "serving_rules", f.Rules)
			}
		case ChangeHeld:
			s.log.Error("list file held: its last good version stays in service; \"sinkhole reload --accept\" applies the new one",
				"file", f.Name, "reason", f.Withheld.Reason, "new_rules", f.Withheld.Rules, "serving_rules", f.Rules)
		case ChangeSettling:
			lvl := slog.LevelInfo
			if time.Since(f.Withheld.Since) > time.Second {
				lvl = slog.LevelDebug // said already; still being written
			}
			s.log.Log(context.Background(), lvl, "list file is being written: read again once it settles", "file", f.Name, "reason", f.Withheld.Reason, "serving_rules", f.Rules)
		case ChangeAdded, ChangeUpdated, ChangeRemoved:
			if f.Accepted {
				s.log.Warn("list file change accepted past the shrink guard", "file", f.Name, "change", f.Change, "rules", f.Rules, "previous_rules", f.PreviousRules)
				break
			}
			s.log.Info("list file "+f.Change, "file", f.Name, "rules", f.Rules, "previous_rules", f.PreviousRules)
			for _, w := range f.Warnings {
				s.log.Warn("list file loaded with a warning", "file", f.Name, "warning", w.Error())
			}
		}
	}
	lvl := slog.LevelInfo
	if rep.Failed() || len(rep.Withheld()) > 0 {
		lvl = slog.LevelWarn
	}
	s.log.Log(context.Background(), lvl, "lists reloaded", "trigger", rep.Trigger, "generation", rep.Generation,
		"changed", rep.Changed, "delta", rep.Delta, "rules", rep.Rules, "files", len(rep.Files), "failed", rep.Failed(), "withheld", len(rep.Withheld()), "duration", rep.Duration)
}

// CheckFile parses one file offline (for "sinkhole check") and returns its
// rule counts and problems.
func CheckFile(path string, maxSize int64) (FileStatus, []*LineError) {
	if maxSize <= 0 {
		maxSize = DefaultMaxFileSize
	}
	name := filepath.Base(path)
	fs := FileStatus{Name: name, Path: path}
	parse, ok := formats[strings.ToLower(filepath.Ext(path))]
	if !ok {
		parse = parseList
	}
	file, err := openList(path, maxSize, nil)
	if err != nil {
		return fs, []*LineError{{File: path, Msg: err.Error()}}
	}
	defer file.close()
	b := newBuilder(0, 0)
	m := b.startFile()
	errs, err := file.parse(name, parse, b)
	if err != nil {
		errs = append(errs, &LineError{File: path, Msg: err.Error()})
	}
	fs.Warnings = b.takeWarnings(name)
	b.finishFile(&fs, m)
	fs.SHA256, fs.Size = file.hash, file.size
	return fs, errs
}
