package dirwatch

import (
	"errors"
	"log/slog"
	"path/filepath"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// writeTracker follows which files in the watched directories are open
// for writing, with an inotify instance of its own for IN_OPEN, IN_MODIFY
// and the close events (fsnotify does not deliver them). A file counts as
// being written from a change made while it is open (or a truncation by
// open(O_TRUNC)) until every opener has closed it; a change nobody holds
// the file open for (truncate(2) by path) is complete at once.
//
// The kernel queues the events as they happen, and writing drains the
// queue before it answers: its answer is never behind the file system.
type writeTracker struct {
	log    *slog.Logger
	closed func(path string) // a writer closed a file: count it as a change
	fd     int
	wake   [2]int // pipe: close writes to it to stop the poller
	mu     sync.Mutex
	buf    []byte
	wds    map[string]int // dir -> watch descriptor
	dirs   map[int]string
	dirty  map[string]time.Time // path -> last change seen, while open for writing
	opens  map[string]int       // path -> opens not yet closed
	trunc  map[string]bool      // changed with no opener: an open(O_TRUNC) reports the change before the open
	done   chan struct{}
}

func newWriteTracker(log *slog.Logger, closed func(path string)) *writeTracker {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		log.Warn("no close-write events (inotify unavailable): files being written are recognised by their change time only", "err", err)
		return nil
	}
	t := &writeTracker{log: log, closed: closed, fd: fd, buf: make([]byte, 64<<10),
		wds: map[string]int{}, dirs: map[int]string{}, dirty: map[string]time.Time{}, opens: map[string]int{},
		trunc: map[string]bool{}, done: make(chan struct{})}
	if err := unix.Pipe2(t.wake[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		unix.Close(fd)
		log.Warn("no close-write events", "err", err)
		return nil
	}
	go t.poll()
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
	wd, err := unix.InotifyAddWatch(t.fd, dir, trackedEvents)
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
	unix.InotifyRmWatch(t.fd, uint32(wd))
	delete(t.wds, dir)
	delete(t.dirs, wd)
	for _, m := range []map[string]time.Time{t.dirty} {
		for p := range m {
			if filepath.Dir(p) == dir {
				delete(m, p)
			}
		}
	}
	for p := range t.opens {
		if filepath.Dir(p) == dir {
			delete(t.opens, p)
		}
	}
}

// writing reports whether path is being written, after taking in every
// event the kernel has queued.
func (t *writeTracker) writing(path string, maxWait time.Duration) bool {
	if t == nil {
		return false
	}
	t.mu.Lock()
	closedPaths := t.drain()
	at, ok := t.dirty[path]
	t.mu.Unlock()
	t.notify(closedPaths)
	return ok && time.Since(at) < maxWait
}

func (t *writeTracker) close() {
	if t == nil {
		return
	}
	unix.Write(t.wake[1], []byte{0})
	<-t.done
	unix.Close(t.fd)
	unix.Close(t.wake[0])
	unix.Close(t.wake[1])
}

// poll waits for events and takes them in, until close.
func (t *writeTracker) poll() {
	defer close(t.done)
	fds := []unix.PollFd{{Fd: int32(t.fd), Events: unix.POLLIN}, {Fd: int32(t.wake[0]), Events: unix.POLLIN}}
	for {
		_, err := unix.Poll(fds, -1)
		if err != nil && !errors.Is(err, unix.EINTR) {
			t.log.Warn("close-write events stopped", "err", err)
			return
		}
		if fds[1].Revents != 0 {
			return
		}
		if fds[0].Revents != 0 {
			t.mu.Lock()
			closedPaths := t.drain()
			t.mu.Unlock()
			t.notify(closedPaths)
		}
	}
}

func (t *writeTracker) notify(paths []string) {
	for _, p := range paths {
		t.closed(p)
	}
}

// drain reads every queued event and returns the files their writers
// closed. Called with t.mu held.
func (t *writeTracker) drain() []string {
	var closedPaths []string
	for {
		n, err := unix.Read(t.fd, t.buf)
		if n <= 0 || err != nil {
			return closedPaths
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&t.buf[off]))
			nameLen := int(ev.Len)
			name := ""
			if nameLen > 0 && off+unix.SizeofInotifyEvent+nameLen <= n {
				raw := t.buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+nameLen]
				for i, c := range raw {
					if c == 0 {
						raw = raw[:i]
						break
					}
				}
				name = string(raw)
			}
			off += unix.SizeofInotifyEvent + nameLen
			if p := t.event(int(ev.Wd), ev.Mask, name); p != "" {
				closedPaths = append(closedPaths, p)
			}
		}
	}
}

// event takes in one event; it returns the path when a writer closed it.
func (t *writeTracker) event(wd int, mask uint32, name string) string {
	dir, ok := t.dirs[wd]
	if mask&unix.IN_IGNORED != 0 && ok {
		delete(t.dirs, wd)
		delete(t.wds, dir)
	}
	if !ok || name == "" {
		return ""
	}
	path := filepath.Join(dir, name)
	switch {
	case mask&unix.IN_OPEN != 0:
		t.opens[path]++
		if t.trunc[path] {
			t.dirty[path] = time.Now() // open(O_TRUNC): the truncation came first
			delete(t.trunc, path)
		}
	case mask&unix.IN_MODIFY != 0:
		if t.opens[path] > 0 {
			t.dirty[path] = time.Now()
		} else {
			t.trunc[path] = true
		}
	case mask&(unix.IN_CLOSE_WRITE|unix.IN_CLOSE_NOWRITE) != 0:
		delete(t.trunc, path)
		if t.opens[path] > 1 {
			t.opens[path]--
			return ""
		}
		delete(t.opens, path)
		_, wasDirty := t.dirty[path]
		delete(t.dirty, path)
		if wasDirty {
			return path
		}
	default: // created, renamed or deleted: a new file (or none) has the name
		delete(t.dirty, path)
		delete(t.trunc, path)
		if mask&(unix.IN_DELETE|unix.IN_MOVED_FROM) != 0 {
			delete(t.opens, path)
		}
	}
	return ""
}
