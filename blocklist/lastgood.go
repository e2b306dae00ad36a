package blocklist

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// The last good versions (Options.LastGood). The store keeps, in a
// directory of its own, a copy of the version in service of each file of
// its first directory (the operator's lists): the bytes, under the file's
// name, with the SHA-256 sidecar every copy sinkhole writes has (see
// checksum.go), and index.json naming the lists directory and the files.
// A copy is written in the background once a version has served for
// lastGoodQuiet without another change, only when the content changed, streamed from the file (no copy is kept
// in memory), synced and renamed into place.
//
// At a cold start, a file whose version on disk the shrink guard would
// hold against its last good version (no rules, past MaxShrink, deleted)
// is held exactly as a live reload holds it: the last good version serves
// from its copy until a reload with Accept. A copy that does not match its
// sidecar is refused (logged at ERROR) and never served.

// lastGoodIndexFile is the index in Options.LastGood.
const lastGoodIndexFile = "index.json"

// lastGoodIndex is the content of index.json.
type lastGoodIndex struct {
	// Lists is the absolute path of the lists directory the copies are of;
	// copies of another directory are not used.
	Lists string                   `json:"lists"`
	Files map[string]lastGoodEntry `json:"files"`
}

type lastGoodEntry struct {
	SHA256  string    `json:"sha256"`
	Size    int64     `json:"size"`
	Rules   int       `json:"rules"`
	SavedAt time.Time `json:"saved_at"`
	// Signature is who signed it (with Options.Verify), for status and
	// the Verifier's comparison with the version in service.
	Signature *Signature `json:"signature,omitempty"`
}

// lastGoodWant is a version in service the copies must follow.
type lastGoodWant struct {
	path, hash string
	size       int64
	rules      int
	sig        *Signature
}

// lastGood writes and reads the copies of one store.
type lastGood struct {
	dir   string
	lists string // absolute
	max   int64
	log   *slog.Logger

	mu      sync.Mutex
	idx     lastGoodIndex // what the directory holds (the worker's own)
	want    map[string]lastGoodWant
	pending bool
	changed time.Time // of the last reload that set want
	flush   bool      // write at once, without retries (WaitLastGood)
	running bool
	idle    *sync.Cond
	writing func(path string) bool // Options.Writing
	seeded  map[string]bool        // files served from their copy at the cold start
}

// newLastGood returns nil when the copies are off (no directory, no
// lists directory or the shrink guard off). With the guard off, the
// copies kept before are removed: they no longer follow the lists, and
// turning the guard on again must not hold files against old versions.
func newLastGood(o Options) *lastGood {
	if o.LastGood != "" && o.MaxShrink >= 1 {
		if _, err := os.Stat(o.LastGood); err == nil {
			if err := os.RemoveAll(o.LastGood); err != nil {
				o.Logger.Warn("the shrink guard is off: could not remove the last good versions", "dir", o.LastGood, "err", err)
			} else {
				o.Logger.Info("the shrink guard is off: the last good versions kept are removed", "dir", o.LastGood)
			}
		}
	}
	if o.LastGood == "" || len(o.Dirs) == 0 || o.MaxShrink >= 1 {
		return nil
	}
	abs, err := filepath.Abs(o.Dirs[0])
	if err != nil {
		abs = o.Dirs[0]
	}
	lg := &lastGood{dir: o.LastGood, lists: abs, max: o.MaxFileSize, log: o.Logger, seeded: map[string]bool{}, writing: o.Writing}
	lg.idle = sync.NewCond(&lg.mu)
	return lg
}

// readIndex reads index.json (empty when there is none).
func (lg *lastGood) readIndex() lastGoodIndex {
	idx := lastGoodIndex{Files: map[string]lastGoodEntry{}}
	path := filepath.Join(lg.dir, lastGoodIndexFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return idx
	}
	if err == nil {
		err = json.Unmarshal(b, &idx)
	}
	if err != nil {
		lg.log.Error("last good versions: the index is unreadable; no copy is used", "index", path, "err", err)
		return lastGoodIndex{Files: map[string]lastGoodEntry{}}
	}
	if idx.Files == nil {
		idx.Files = map[string]lastGoodEntry{}
	}
	return idx
}

// seedLastGood returns, for the first reload, a snapshot holding the last
// good version of each file whose version on disk differs from it (or is
// gone), as if it were in service: the reload then compares the versions
// on disk with it, as a live reload does. old is returned when there is
// nothing to seed.
func (s *Store) seedLastGood(old *Snapshot) *Snapshot {
	lg := s.lg
	if lg == nil || s.loaded.Load() {
		return old
	}
	lg.mu.Lock()
	defer lg.mu.Unlock()
	lg.idx = lg.readIndex()
	if lg.idx.Lists != "" && lg.idx.Lists != lg.lists {
		s.log.Info("last good versions are of another lists directory; not used", "dir", lg.dir, "of", lg.idx.Lists, "lists", lg.lists)
		return old
	}
	b := newBuilder(0, 0)
	var files []*FileStatus
	for _, name := range slices.Sorted(maps.Keys(lg.idx.Files)) {
		e := lg.idx.Files[name]
		if !IsListFile(name) || strings.ContainsAny(name, `/\`) {
			delete(lg.idx.Files, name)
			continue
		}
		disk := filepath.Join(s.opts.Dirs[0], name)
		if h, err := HashFile(disk); err == nil && h == e.SHA256 {
			continue // the version on disk is the last good one: it loads as it is
		}
		fs, err := lg.parseCopy(b, name, disk)
		if err != nil {
			s.log.Error("last good version refused: it is not served", "file", name, "copy", filepath.Join(lg.dir, name), "err", err)
			delete(lg.idx.Files, name) // written again from the version that goes into service
			continue
		}
		fs.LoadedAt, fs.Signature = e.SavedAt, e.Signature
		files = append(files, fs)
		lg.seeded[name] = true
	}
	if len(files) == 0 {
		return old
	}
	seed, err := b.compile(0, files)
	if err != nil {
		s.log.Error("last good versions not used", "err", err)
		clear(lg.seeded)
		return old
	}
	return seed
}

// parseCopy parses the copy of name into b, after checking it against its
// sidecar; disk is the path of the file it is the copy of.
func (lg *lastGood) parseCopy(b *builder, name, disk string) (*FileStatus, error) {
	path := filepath.Join(lg.dir, name)
	file, err := openList(path, lg.max, nil)
	if err != nil {
		return nil, err
	}
	defer file.close()
	if err := checkHash(path, file.hash); err != nil {
		return nil, err
	}
	m := b.startFile()
	errs, err := file.parse(name, formats[strings.ToLower(filepath.Ext(name))], b)
	b.takeWarnings(name)
	if err == nil && len(errs) > 0 {
		err = errs[0]
	}
	if err == nil && b.sectErr {
		err = errors.New("too many sections")
	}
	if err != nil {
		b.rollback(m)
		return nil, err
	}
	fs := &FileStatus{Name: name, Path: disk, SHA256: file.hash, Size: file.size, fp: file.fp}
	b.finishFile(fs, m)
	return fs, nil
}

// afterReloadLastGood runs after every reload: it tells the first reload's
// holds of seeded versions, and has the copies follow the versions now in
// service (in the background).
func (s *Store) afterReloadLastGood(rep *ReloadReport) {
	lg := s.lg
	if lg == nil {
		return
	}
	cur := s.cur.Load()
	lg.mu.Lock()
	defer lg.mu.Unlock()
	if rep.Error != "" || !s.loaded.Load() {
		return // nothing new in service (and the copies are kept)
	}
	if len(lg.seeded) > 0 {
		for _, f := range rep.Files {
			if lg.seeded[f.Name] && f.Change == ChangeHeld {
				s.log.Error("list file held at start: its last good version, kept in the state directory, serves; \"sinkhole reload --accept\" applies the version on disk",
					"file", f.Name, "reason", f.Withheld.Reason, "new_rules", f.Withheld.Rules, "serving_rules", f.Rules, "copy", filepath.Join(lg.dir, f.Name))
			}
		}
		clear(lg.seeded)
	}
	want := map[string]lastGoodWant{}
	for _, f := range cur.Files {
		if strings.Contains(f.Name, "/") || f.SHA256 == "" {
			continue // another directory's file, or nothing in service
		}
		want[f.Name] = lastGoodWant{path: f.Path, hash: f.SHA256, size: f.Size, rules: f.Rules(), sig: f.Signature}
	}
	lg.want, lg.pending, lg.changed = want, true, time.Now()
	if !lg.running {
		lg.running = true
		go lg.run()
	}
}

// lastGoodQuiet is how long the lists must be unchanged before the copies
// are written: a burst of edits is copied once, and a copy (which holds
// the file open for reading) seldom meets an edit.
const lastGoodQuiet = time.Second

// run writes the copies once the lists are quiet, until nothing is
// pending. A file a writer holds open is tried again later.
func (lg *lastGood) run() {
	lg.mu.Lock()
	defer lg.mu.Unlock()
	for lg.pending {
		if wait := lastGoodQuiet - time.Since(lg.changed); wait > 0 && !lg.flush {
			lg.mu.Unlock()
			time.Sleep(min(wait, 20*time.Millisecond))
			lg.mu.Lock()
			continue
		}
		want := lg.want
		lg.pending = false
		idx := lg.idx
		retry := !lg.flush
		lg.mu.Unlock()
		idx, busy := lg.sync(idx, want, retry)
		lg.mu.Lock()
		lg.idx = idx
		if busy && !lg.pending {
			lg.pending, lg.changed = true, time.Now()
		}
	}
	lg.running, lg.flush = false, false
	lg.idle.Broadcast()
}

// wait writes what is pending at once and returns when it is written.
func (lg *lastGood) wait() {
	lg.mu.Lock()
	if lg.running {
		lg.flush = true
	}
	for lg.running {
		lg.idle.Wait()
	}
	lg.mu.Unlock()
}

// WaitLastGood returns once the copies of the last good versions follow
// the versions in service (Options.LastGood; at once without it).
func (s *Store) WaitLastGood() {
	if s.lg != nil {
		s.lg.wait()
	}
}

// sync brings the directory to want: writes the versions it does not
// hold, removes the copies of files no longer in service, then the index.
// With retry, a file open for writing is left for later (busy).
func (lg *lastGood) sync(idx lastGoodIndex, want map[string]lastGoodWant, retry bool) (_ lastGoodIndex, busy bool) {
	files := maps.Clone(idx.Files)
	if files == nil {
		files = map[string]lastGoodEntry{}
	}
	changed := idx.Lists != lg.lists
	if err := os.MkdirAll(lg.dir, 0o755); err != nil {
		lg.log.Warn("last good versions: cannot create the directory", "dir", lg.dir, "err", err)
		return idx, false
	}
	for _, name := range slices.Sorted(maps.Keys(want)) {
		w := want[name]
		if e, ok := files[name]; ok && e.SHA256 == w.hash {
			continue
		}
		if retry && lg.writing != nil && lg.writing(w.path) {
			busy = true
			continue
		}
		err := lg.save(name, w)
		if errors.Is(err, errChangedSince) {
			// Written again after the reload that serves the new bytes;
			// until then the older copy stays.
			lg.log.Debug("last good version not written: the file changed since it was read", "file", name)
			continue
		}
		if err != nil {
			lg.log.Warn("last good version not written", "file", name, "err", err)
			continue
		}
		files[name] = lastGoodEntry{SHA256: w.hash, Size: w.size, Rules: w.rules, SavedAt: time.Now().UTC(), Signature: w.sig}
		changed = true
	}
	for name := range files {
		if _, ok := want[name]; ok {
			continue
		}
		delete(files, name)
		changed = true
		// The index goes first: a copy it does not name is never used.
	}
	if !changed {
		return idx, busy
	}
	next := lastGoodIndex{Lists: lg.lists, Files: files}
	data, err := json.MarshalIndent(next, "", "  ")
	if err == nil {
		err = writeSynced(filepath.Join(lg.dir, lastGoodIndexFile), data)
	}
	if err != nil {
		lg.log.Warn("last good versions: index not written", "err", err)
		return idx, busy
	}
	lg.removeUnlisted(files)
	return next, busy
}

// removeUnlisted deletes the copies (and sidecars) the index does not name.
func (lg *lastGood) removeUnlisted(files map[string]lastGoodEntry) {
	ents, err := os.ReadDir(lg.dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		n := e.Name()
		if e.IsDir() || n == lastGoodIndexFile {
			continue
		}
		base := n
		if strings.HasPrefix(n, ".") && strings.HasSuffix(n, ".sha256") {
			base = strings.TrimSuffix(strings.TrimPrefix(n, "."), ".sha256")
		}
		if _, ok := files[base]; !ok && !strings.Contains(n, ".tmp") {
			os.Remove(filepath.Join(lg.dir, n))
		}
	}
}

// errChangedSince: the file's bytes are no longer the version in service.
var errChangedSince = errors.New("the file changed since it was read")

// save copies the version w of name into the directory, streaming it from
// the file and checking that the bytes copied are the version in service:
// temporary file, fsync, sidecar, rename, fsync of the directory.
func (lg *lastGood) save(name string, w lastGoodWant) error {
	src, err := os.Open(w.path)
	if err != nil {
		return err
	}
	defer src.Close()
	dst := filepath.Join(lg.dir, name)
	f, err := os.CreateTemp(lg.dir, "."+name+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	h := sha256.New()
	_, cerr := io.Copy(io.MultiWriter(f, h), io.LimitReader(src, w.size+1))
	serr := f.Sync()
	if err := errors.Join(cerr, serr, f.Close(), os.Chmod(tmp, 0o644)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", dst, err)
	}
	if hex.EncodeToString(h.Sum(nil)) != w.hash {
		os.Remove(tmp)
		return errChangedSince
	}
	if err := replaceVerified(tmp, dst, w.hash); err != nil {
		return err
	}
	return syncDir(lg.dir)
}

// writeSynced replaces path with data atomically and durably.
func writeSynced(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	if err := errors.Join(werr, f.Sync(), f.Close(), os.Chmod(tmp, 0o644)); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
