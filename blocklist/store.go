package blocklist

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
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
}

// NewStore returns a store serving the empty snapshot until the first Reload.
func NewStore(opts Options) *Store {
	if opts.MaxFileSize <= 0 {
		opts.MaxFileSize = DefaultMaxFileSize
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Store{opts: opts, log: opts.Logger}
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
}

// Changes a reload reports.
const (
	ChangeAdded     = "added"
	ChangeUpdated   = "updated"
	ChangeUnchanged = "unchanged"
	ChangeFailed    = "failed"
	ChangeRemoved   = "removed"
)

// ReloadReport is the result of one Reload.
type ReloadReport struct {
	Trigger    string        `json:"trigger"`
	Generation uint64        `json:"generation"`
	Changed    bool          `json:"changed"` // a new generation was published
	Rules      int           `json:"rules"`
	Duration   time.Duration `json:"duration_ns"`
	Files      []FileChange  `json:"files"`
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

// Errors returns every file error of the reload.
func (r *ReloadReport) Errors() []*LineError {
	var out []*LineError
	for _, f := range r.Files {
		out = append(out, f.Errors...)
	}
	return out
}

// listedFile is a file found in one of the directories.
type listedFile struct{ name, path string }

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
			out = append(out, listedFile{name: name, path: filepath.Join(dir, e.Name())})
		}
	}
	slices.SortFunc(out, func(a, b listedFile) int { return strings.Compare(a.name, b.name) })
	return out, nil
}

// listFile is an open list file whose size and content hash are known.
type listFile struct {
	f     *os.File
	size  int64
	lines int
	hash  string
}

// openList opens a list file, refusing one larger than max and anything but
// a regular file (opened without blocking, so that a FIFO dropped in the
// lists directory cannot hang the reload), and hashes it and counts its
// lines in one streaming pass (no copy of the file is kept).
func openList(path string, max int64) (*listFile, error) {
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
	h := sha256.New()
	buf := make([]byte, 256<<10)
	lf := &listFile{f: f}
	for {
		n, err := f.Read(buf)
		h.Write(buf[:n])
		lf.size += int64(n)
		lf.lines += bytes.Count(buf[:n], []byte{'\n'})
		if lf.size > max {
			f.Close()
			return nil, fmt.Errorf("file grew over the %d-byte limit while being read", max)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			f.Close()
			return nil, err
		}
	}
	lf.lines++
	lf.hash = hex.EncodeToString(h.Sum(nil))
	return lf, nil
}

// parse runs the file's parser over its content again, checking that the
// bytes parsed are the bytes hashed (a file rewritten in between is
// reported, and retried at the next change event).
func (lf *listFile) parse(name string, parse parseFunc, sink entrySink) []*LineError {
	if _, err := lf.f.Seek(0, io.SeekStart); err != nil {
		return []*LineError{{File: name, Msg: err.Error()}}
	}
	h := sha256.New()
	errs := parse(name, io.TeeReader(io.LimitReader(lf.f, lf.size+1), h), sink)
	if hex.EncodeToString(h.Sum(nil)) != lf.hash {
		errs = append(errs, &LineError{File: name, Msg: "file changed while being read; it will be read again at the next change"})
	}
	return errs
}

func (lf *listFile) close() { lf.f.Close() }

// Reload rereads every list file and publishes a new snapshot when anything
// changed. A file that fails keeps its last good rules in service and its
// errors are reported; a removed file drops its rules. trigger names the
// cause for logs ("start", "fsnotify", "SIGHUP", "api"). The error is only
// for failures that prevent reading the directories at all, in which case
// the current snapshot stays.
func (s *Store) Reload(ctx context.Context, trigger string) (*ReloadReport, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.reloads.Add(1)
	start := time.Now()
	rep, err := s.reload(ctx, trigger, start)
	if err != nil {
		rep.Duration = time.Since(start)
		rep.Error = err.Error()
	}
	for _, fn := range s.listeners {
		fn(s.cur.Load(), rep)
	}
	return rep, err
}

// reload does the work of Reload, under its lock.
func (s *Store) reload(ctx context.Context, trigger string, start time.Time) (*ReloadReport, error) {
	old := s.cur.Load()
	rep := &ReloadReport{Trigger: trigger, Generation: old.Generation}
	listed, err := s.listFiles()
	if err != nil {
		s.log.Error("list reload failed; keeping the lists in service", "trigger", trigger, "err", err, "generation", old.Generation)
		return rep, err
	}
	b := newBuilder(old.dom.len(), len(old.dom.arena))
	var files []*FileStatus
	changed := false
	seen := map[string]bool{}
	for _, lf := range listed {
		if err := ctx.Err(); err != nil {
			return rep, fmt.Errorf("reload cancelled: %w", err)
		}
		seen[lf.name] = true
		prev := old.File(lf.name)
		fc, fs, ch := s.loadFile(b, old, prev, lf)
		rep.Files = append(rep.Files, fc)
		if fs != nil {
			files = append(files, fs)
		}
		changed = changed || ch
	}
	for _, f := range old.Files {
		if !seen[f.Name] {
			rep.Files = append(rep.Files, FileChange{Name: f.Name, Change: ChangeRemoved, PreviousRules: f.Rules()})
			changed = true
		}
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
		// Same rules, new error state: republish with the same generation.
		cp := *old
		cp.Files = files
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

// loadFile brings one file into the builder: its new version when it parses,
// otherwise its last good version. It reports whether the rules changed.
func (s *Store) loadFile(b *builder, old *Snapshot, prev *FileStatus, lf listedFile) (FileChange, *FileStatus, bool) {
	fc := FileChange{Name: lf.name}
	if prev != nil {
		fc.PreviousRules = prev.Rules()
	}
	var refusal *Refusal // the Verifier refused the version on disk
	sigPrint := ""       // the Verifier's fingerprint of the file's signature
	keepPrev := func(errs []*LineError, badHash string) (FileChange, *FileStatus, bool) {
		fc.Change, fc.Errors, fc.Refused = ChangeFailed, errs, refusal
		if prev == nil {
			// Never loaded: nothing to serve, but keep reporting the error.
			return fc, &FileStatus{Name: lf.name, Path: lf.path, Stale: true, Errors: errs, Refused: refusal, badHash: badHash, badSig: sigPrint}, false
		}
		m := b.mark()
		b.copyFile(old, prev)
		fs := *prev
		fs.Stale, fs.Errors, fs.Refused, fs.badHash, fs.badSig = true, errs, refusal, badHash, sigPrint
		b.finishFile(&fs, m)
		fc.Rules = fs.Rules()
		return fc, &fs, false
	}
	file, err := openList(lf.path, s.opts.MaxFileSize)
	if err != nil {
		return keepPrev([]*LineError{{File: lf.name, Msg: err.Error()}}, "")
	}
	defer file.close()
	hash := file.hash
	if s.opts.Verify != nil {
		sigPrint = s.opts.Verify.Fingerprint(lf.path)
	}
	// A new signature on the same content is verified again.
	sameSig := prev == nil || prev.sigPrint == sigPrint
	if prev != nil && !prev.Stale && prev.SHA256 == hash && sameSig {
		m := b.mark()
		b.copyFile(old, prev)
		fs := *prev
		b.finishFile(&fs, m)
		fc.Change, fc.Rules = ChangeUnchanged, fs.Rules()
		return fc, &fs, false
	}
	if prev != nil && prev.Stale && prev.badHash == hash && prev.badSig == sigPrint {
		refusal = prev.Refused
		return keepPrev(prev.Errors, hash) // same broken bytes as last time
	}
	if prev != nil && prev.Stale && prev.SHA256 == hash && sameSig {
		// The broken file was put back to its last good version.
		m := b.mark()
		b.copyFile(old, prev)
		fs := *prev
		fs.Stale, fs.Errors, fs.Refused, fs.badHash = false, nil, nil, ""
		b.finishFile(&fs, m)
		fc.Change, fc.Rules = ChangeUpdated, fs.Rules()
		return fc, &fs, false
	}
	var signed *Signature
	if s.opts.Verify != nil {
		if signed, refusal = s.verifyFile(lf.name, lf.path, file, prev); refusal != nil {
			return keepPrev([]*LineError{{File: lf.name, Msg: "signature refused (" + refusal.Reason + "): " + refusal.Error}}, hash)
		}
		if prev != nil && !prev.Stale && prev.SHA256 == hash {
			// Same rules, signed again: keep them, note the new signature.
			m := b.mark()
			b.copyFile(old, prev)
			fs := *prev
			fs.Signature, fs.sigPrint = signed, sigPrint
			b.finishFile(&fs, m)
			fc.Change, fc.Rules = ChangeUnchanged, fs.Rules()
			return fc, &fs, false
		}
	}
	m := b.mark()
	b.s.dom.grow(file.lines, int(file.size))
	errs := file.parse(lf.name, formats[strings.ToLower(filepath.Ext(lf.path))], b)
	warns := b.takeWarnings(lf.name)
	if b.sectErr {
		errs = append(errs, &LineError{File: lf.name, Msg: "too many sections (over 65536 directive changes across all files)"})
	}
	if len(errs) > 0 {
		b.rollback(m)
		return keepPrev(errs, hash)
	}
	fs := &FileStatus{Name: lf.name, Path: lf.path, SHA256: hash, Size: file.size, LoadedAt: time.Now(), Warnings: warns,
		Signature: signed, sigPrint: sigPrint}
	b.finishFile(fs, m)
	fc.Rules, fc.Warnings = fs.Rules(), warns
	fc.Change = ChangeAdded
	if prev != nil && !(prev.Stale && prev.SHA256 == "") {
		fc.Change = ChangeUpdated
	}
	return fc, fs, true
}

func sameErrors(a, b []*FileStatus) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name || a[i].Stale != b[i].Stale || len(a[i].Errors) != len(b[i].Errors) ||
			a[i].Signature != b[i].Signature || a[i].Refused != b[i].Refused {
			return false
		}
	}
	return true
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
				s.log.Error(strings.Replace(msg, "rejected", "refused: its signature does not verify", 1),
					"file", f.Name, "reason", r.Reason, "signer", r.KeyID, "signed_at", r.SignedAt, "error", r.Error, "serving_rules", f.Rules)
				continue
			}
			for _, e := range f.Errors {
				s.log.Error(msg, "file", f.Name, "error", e.Error(), "serving_rules", f.Rules)
			}
		case ChangeAdded, ChangeUpdated, ChangeRemoved:
			s.log.Info("list file "+f.Change, "file", f.Name, "rules", f.Rules, "previous_rules", f.PreviousRules)
			for _, w := range f.Warnings {
				s.log.Warn("list file loaded with a warning", "file", f.Name, "warning", w.Error())
			}
		}
	}
	lvl := slog.LevelInfo
	if rep.Failed() {
		lvl = slog.LevelWarn
	}
	s.log.Log(context.Background(), lvl, "lists reloaded", "trigger", rep.Trigger, "generation", rep.Generation,
		"changed", rep.Changed, "rules", rep.Rules, "files", len(rep.Files), "failed", rep.Failed(), "duration", rep.Duration)
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
	file, err := openList(path, maxSize)
	if err != nil {
		return fs, []*LineError{{File: path, Msg: err.Error()}}
	}
	defer file.close()
	b := newBuilder(0, 0)
	m := b.mark()
	errs := file.parse(name, parse, b)
	fs.Warnings = b.takeWarnings(name)
	b.finishFile(&fs, m)
	fs.SHA256, fs.Size = file.hash, file.size
	return fs, errs
}
