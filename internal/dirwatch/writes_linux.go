package dirwatch

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// writeTracker follows which files in the watched directories are open
// for writing, with an inotify instance of its own for IN_OPEN, IN_MODIFY
// and the close events (fsnotify does not deliver them). A file counts as
// being written from a change made while it is open until every opener
// has closed it; a change with nobody holding the file open (truncate(2)
// by path) is complete at once.
type writeTracker struct {
	log     *slog.Logger
	closed  func(path string) // a writer closed a file: count it as a change
	f       *os.File
	mu      sync.Mutex
	wds     map[string]int // dir -> watch descriptor
	dirs    map[int]string
	dirty   map[string]time.Time // path -> last change seen, while open for writing
	opens   map[string]int       // path -> opens not yet closed
	stopped chan struct{}
}

func newWriteTracker(log *slog.Logger, closed func(path string)) *writeTracker {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		log.Warn("no close-write events (inotify unavailable): files being written are recognised by their change time only", "err", err)
		return nil
	}
	t := &writeTracker{log: log, closed: closed, f: os.NewFile(uintptr(fd), "inotify"),
		wds: map[string]int{}, dirs: map[int]string{}, dirty: map[string]time.Time{}, opens: map[string]int{}, stopped: make(chan struct{})}
	go t.read()
	return t
}

const trackedEvents = unix.IN_OPEN | unix.IN_MODIFY | unix.IN_CLOSE_WRITE | unix.IN_CLOSE_NOWRITE |
	unix.IN_MOVED_TO | unix.IN_CREATE | unix.IN_DELETE | unix.IN_MOVED_FROM

func (t *writeTracker) add(dir string) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.wds[dir]; ok {
		return
	}
	wd, err := unix.InotifyAddWatch(int(t.f.Fd()), dir, trackedEvents)
	if err != nil {
		t.log.Warn("cannot follow writers in a watched directory", "dir", dir, "err", err)
		return
	}
	t.wds[dir], t.dirs[wd] = wd, dir
}

func (t *writeTracker) remove(dir string) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	wd, ok := t.wds[dir]
	if !ok {
		return
	}
	unix.InotifyRmWatch(int(t.f.Fd()), uint32(wd))
	delete(t.wds, dir)
	delete(t.dirs, wd)
	for p := range t.dirty {
		if filepath.Dir(p) == dir {
			delete(t.dirty, p)
		}
	}
	for p := range t.opens {
		if filepath.Dir(p) == dir {
			delete(t.opens, p)
		}
	}
}

func (t *writeTracker) writing(path string, maxWait time.Duration) bool {
	if t == nil {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	at, ok := t.dirty[path]
	return ok && time.Since(at) < maxWait
}

func (t *writeTracker) close() {
	if t == nil {
		return
	}
	t.f.Close()
	<-t.stopped
}

func (t *writeTracker) read() {
	defer close(t.stopped)
	buf := make([]byte, 64<<10)
	for {
		n, err := t.f.Read(buf)
		if err != nil {
			if !errors.Is(err, os.ErrClosed) {
				t.log.Warn("close-write events stopped", "err", err)
			}
			return
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			nameLen := int(ev.Len)
			name := ""
			if nameLen > 0 && off+unix.SizeofInotifyEvent+nameLen <= n {
				raw := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+nameLen]
				for i, c := range raw {
					if c == 0 {
						raw = raw[:i]
						break
					}
				}
				name = string(raw)
			}
			off += unix.SizeofInotifyEvent + nameLen
			t.event(int(ev.Wd), ev.Mask, name)
		}
	}
}

func (t *writeTracker) event(wd int, mask uint32, name string) {
	t.mu.Lock()
	dir, ok := t.dirs[wd]
	if mask&unix.IN_IGNORED != 0 && ok {
		delete(t.dirs, wd)
		delete(t.wds, dir)
	}
	if !ok || name == "" {
		t.mu.Unlock()
		return
	}
	path := filepath.Join(dir, name)
	closed := false
	switch {
	case mask&unix.IN_OPEN != 0:
		t.opens[path]++
	case mask&unix.IN_MODIFY != 0:
		if t.opens[path] > 0 {
			t.dirty[path] = time.Now()
		}
	case mask&(unix.IN_CLOSE_WRITE|unix.IN_CLOSE_NOWRITE) != 0:
		if t.opens[path] > 1 {
			t.opens[path]--
			break
		}
		delete(t.opens, path)
		_, closed = t.dirty[path]
		delete(t.dirty, path)
	default: // created, renamed or deleted: a new file (or none) has the name
		delete(t.dirty, path)
		if mask&(unix.IN_DELETE|unix.IN_MOVED_FROM) != 0 {
			delete(t.opens, path)
		}
	}
	t.mu.Unlock()
	if closed {
		t.closed(path)
	}
}
