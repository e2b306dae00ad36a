// Package dirwatch calls a function when files in watched directories
// change, with a debounce so that a burst of events (an editor's save by
// rename, a copy in progress) causes one call.
//
// Directories are watched, not files: editors and deploy tools replace files
// by rename, which would end a watch on the file itself. The watch follows
// each directory's path, not the directory it first found there: the
// parent of the path is watched too, so a directory replaced (mv -T) or a
// symlink swapped (ln -sfn) is noticed, the watch moves to the new
// directory and OnChange runs. On Linux it also tracks which files are
// open for writing (inotify's close-write event, which fsnotify does not
// expose), so a reader can wait for a writer that pauses mid-file.
package dirwatch

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// DefaultMaxWriteWait bounds how long a file counts as being written after
// its last change when no close-write event comes (a writer that died, or
// keeps the file open without writing).
const DefaultMaxWriteWait = time.Minute

// Options configures Run.
type Options struct {
	// Dirs are the directories to watch, by path (symlinks are followed
	// and re-resolved).
	Dirs []string
	// Match selects the file names (base names) whose changes count.
	Match func(name string) bool
	// Debounce is the quiet period after the last event before OnChange runs.
	Debounce time.Duration
	// MaxDelay bounds how long a continuous stream of events can postpone
	// OnChange (default 10 x Debounce).
	MaxDelay time.Duration
	// MaxWriteWait bounds Writing (DefaultMaxWriteWait when 0).
	MaxWriteWait time.Duration
	// OnChange runs on the watcher's goroutine, never concurrently with itself.
	OnChange func()
	Logger   *slog.Logger
}

// Run watches until ctx is done. It returns an error only when the watch
// cannot be set up.
func Run(ctx context.Context, o Options) error {
	w, err := Start(o)
	if err != nil {
		return err
	}
	<-ctx.Done()
	w.Close()
	return nil
}

// watchedPath is one of Options.Dirs and the directory it leads to now.
type watchedPath struct {
	path string      // absolute, as configured
	real string      // the directory it resolves to ("" while it does not)
	fi   os.FileInfo // of real, to notice a directory replaced in place
}

// Watcher is a running watch.
type Watcher struct {
	o      Options
	fs     *fsnotify.Watcher
	writes *writeTracker // nil where close-write is not available
	done   chan struct{}
	kick   chan struct{} // a close-write: counts as an event
	loops  bool          // the event loop was started

	mu      sync.Mutex
	paths   []*watchedPath
	parents map[string]map[string]bool // watched parent dir -> base names of interest
	dirs    map[string]bool            // list directories watched now
}

// Start sets up the watch and returns at once; Close stops it. Every
// directory must exist at start.
func Start(o Options) (*Watcher, error) {
	if o.Debounce <= 0 {
		o.Debounce = 250 * time.Millisecond
	}
	if o.MaxDelay <= 0 {
		o.MaxDelay = 10 * o.Debounce
	}
	if o.MaxWriteWait <= 0 {
		o.MaxWriteWait = DefaultMaxWriteWait
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch: %w", err)
	}
	w := &Watcher{o: o, fs: fw, done: make(chan struct{}), kick: make(chan struct{}, 1),
		parents: map[string]map[string]bool{}, dirs: map[string]bool{}}
	w.writes = newWriteTracker(o.Logger, w.closedFile)
	for _, d := range o.Dirs {
		abs, err := filepath.Abs(d)
		if err != nil {
			w.Close()
			return nil, fmt.Errorf("watch %s: %w", d, err)
		}
		w.paths = append(w.paths, &watchedPath{path: abs})
	}
	w.mu.Lock()
	for _, p := range w.paths {
		if err := w.arm(p, true); err != nil {
			w.mu.Unlock()
			w.Close()
			return nil, err
		}
	}
	w.mu.Unlock()
	w.loops = true
	go w.loop()
	return w, nil
}

// arm resolves p and watches its directory and the parents of its path
// and of its target. A path that leads nowhere is an error at start
// (initial), else logged and watched for. Called with w.mu held.
func (w *Watcher) arm(p *watchedPath, initial bool) error {
	w.watchParent(p.path)
	real, err := filepath.EvalSymlinks(p.path)
	var fi os.FileInfo
	if err == nil {
		fi, err = os.Stat(real)
	}
	if err == nil && !fi.IsDir() {
		err = fmt.Errorf("%s is not a directory", real)
	}
	if err != nil {
		if initial {
			return fmt.Errorf("watch %s: %w", p.path, err)
		}
		if p.real != "" {
			w.o.Logger.Error("watched directory is gone; watching for it to come back", "path", p.path, "err", err)
			w.unwatchDir(p.real)
		}
		p.real, p.fi = "", nil
		return nil
	}
	if p.real == real && p.fi != nil && os.SameFile(p.fi, fi) {
		return nil
	}
	if p.real != "" {
		w.unwatchDir(p.real)
		w.o.Logger.Warn("watched directory replaced; following its path", "path", p.path, "was", p.real, "now", real)
	}
	if real != p.path {
		w.watchParent(real)
	}
	if err := w.fs.Add(real); err != nil {
		return fmt.Errorf("watch %s: %w", real, err)
	}
	w.writes.add(real)
	w.dirs[real] = true
	p.real, p.fi = real, fi
	return nil
}

func (w *Watcher) unwatchDir(dir string) {
	delete(w.dirs, dir)
	if _, isParent := w.parents[dir]; !isParent {
		w.fs.Remove(dir)
	}
	w.writes.remove(dir)
}

// watchParent watches the directory holding path for changes of its name.
func (w *Watcher) watchParent(path string) {
	parent, base := filepath.Dir(path), filepath.Base(path)
	if parent == path {
		return
	}
	names := w.parents[parent]
	if names == nil {
		if err := w.fs.Add(parent); err != nil {
			w.o.Logger.Warn("cannot watch the parent of a watched directory; a replaced directory is only noticed at the next reload", "dir", parent, "err", err)
			return
		}
		names = map[string]bool{}
		w.parents[parent] = names
	}
	names[base] = true
}

// Rearm resolves every path again and moves the watch where a path leads
// elsewhere now (also done before every OnChange). It reports whether one
// did.
func (w *Watcher) Rearm() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	moved := false
	for _, p := range w.paths {
		before := p.real
		beforeFI := p.fi
		if err := w.arm(p, false); err != nil {
			w.o.Logger.Error("cannot follow a watched directory", "path", p.path, "err", err)
		}
		moved = moved || before != p.real || (beforeFI == nil) != (p.fi == nil)
		if !moved && beforeFI != nil && p.fi != nil && !os.SameFile(beforeFI, p.fi) {
			moved = true
		}
	}
	return moved
}

// Writing reports whether the file at path (inside a watched directory)
// is open for writing: it changed, and its writer has not closed it, less
// than MaxWriteWait ago. Always false where close-write is not available.
func (w *Watcher) Writing(path string) bool {
	if w == nil || w.writes == nil {
		return false
	}
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	w.mu.Lock()
	dir := filepath.Dir(path)
	for _, p := range w.paths {
		if p.path == dir && p.real != "" {
			dir = p.real
		}
	}
	w.mu.Unlock()
	return w.writes.writing(filepath.Join(dir, filepath.Base(path)), w.o.MaxWriteWait)
}

// Close stops the watch and waits for a running OnChange to return.
func (w *Watcher) Close() {
	w.fs.Close()
	w.writes.close()
	if w.loops {
		<-w.done
	}
}

// closedFile counts a writer's close of a matching file as a change.
func (w *Watcher) closedFile(path string) {
	if w.o.Match != nil && !w.o.Match(filepath.Base(path)) {
		return
	}
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// relevant reports whether an event counts, and whether it concerns a
// watched path itself (a parent's entry) rather than a file in a list
// directory.
func (w *Watcher) relevant(ev fsnotify.Event) (count, path bool) {
	dir, base := filepath.Dir(ev.Name), filepath.Base(ev.Name)
	w.mu.Lock()
	defer w.mu.Unlock()
	if names := w.parents[dir]; names[base] {
		return true, true
	}
	if ev.Op == fsnotify.Chmod || !w.dirs[dir] {
		return false, false
	}
	return w.o.Match == nil || w.o.Match(base), false
}

func (w *Watcher) loop() {
	defer close(w.done)
	var timer *time.Timer
	var fire <-chan time.Time
	var first time.Time
	event := func() {
		now := time.Now()
		if fire == nil {
			first = now
		}
		delay := w.o.Debounce
		if left := w.o.MaxDelay - now.Sub(first); left < delay {
			delay = max(left, 0)
		}
		if timer == nil {
			timer = time.NewTimer(delay)
		} else {
			timer.Reset(delay)
		}
		fire = timer.C
	}
	for {
		select {
		case ev, ok := <-w.fs.Events:
			if !ok {
				return
			}
			count, isPath := w.relevant(ev)
			if !count {
				continue
			}
			w.o.Logger.Debug("file change seen", "file", ev.Name, "op", ev.Op.String(), "watched_path", isPath)
			event()
		case <-w.kick:
			event()
		case <-fire:
			fire = nil
			w.Rearm()
			w.o.OnChange()
		case err, ok := <-w.fs.Errors:
			if !ok {
				return
			}
			w.o.Logger.Warn("file watch error", "err", err)
		}
	}
}
