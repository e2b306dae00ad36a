package querylog

import (
	"os"
	"time"
)

// The audit trail survives what happens to its file: a log whose file is
// deleted or renamed (by hand, or by logrotate without copytruncate) is
// reopened at its path within checkInterval, without a signal; Reopen
// (SIGHUP, SIGUSR1) does it at once; and a batch whose write fails halfway
// (a full disk) is cut back, so no partial line is ever left for the next
// line to be glued onto.

// checkInterval is how often the writer checks that its path is still
// the file it writes.
const checkInterval = 500 * time.Millisecond

// Reopen makes the writer close its file and open the path again (for
// logrotate's postrotate SIGHUP or SIGUSR1). It does not wait.
func (l *Log) Reopen() {
	if l.lj == nil {
		return
	}
	select {
	case l.reopen <- struct{}{}:
	default:
	}
}

// reopenFile closes the file and opens the path again, creating it if it
// is gone. Writer goroutine only.
func (l *Log) reopenFile(why string) {
	if err := l.lj.Close(); err != nil {
		l.log.Warn("closing log before reopening it", "log", l.name, "path", l.path, "err", err)
	}
	if f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640); err == nil {
		f.Close() // created with the log's mode; lumberjack opens it
	}
	if _, err := l.lj.Write(nil); err != nil { // lumberjack opens (or creates) the path
		l.log.Error("cannot reopen log; lines are dropped until it can be", "log", l.name, "path", l.path, "err", err)
		l.file = nil
		return
	}
	l.file, _ = os.Stat(l.path)
	l.log.Warn("log reopened", "log", l.name, "path", l.path, "why", why)
}

// checkFile reopens the log when its path no longer leads to the file it
// writes. Writer goroutine only.
func (l *Log) checkFile() {
	if l.lj == nil {
		return
	}
	cur, err := os.Stat(l.path)
	switch {
	case err != nil:
		l.reopenFile("the file was deleted or renamed")
	case l.file == nil:
		l.file = cur
	case !os.SameFile(cur, l.file):
		l.reopenFile("the file was replaced or renamed")
	}
}

// writeBatch writes one batch of whole lines. When the write fails after
// writing part of it, the part is cut off again (the file truncated to
// its size before the write), so the file ends with a whole line. Writer
// goroutine only.
func (l *Log) writeBatch(batch []byte) error {
	if l.lj == nil {
		_, err := l.out.Write(batch)
		return err
	}
	before, serr := os.Stat(l.path)
	n, err := l.out.Write(batch)
	if err == nil {
		if l.file == nil || serr != nil || !os.SameFile(before, l.file) {
			l.file, _ = os.Stat(l.path) // created, or rotated by size
		}
		return nil
	}
	if n > 0 {
		after, aerr := os.Stat(l.path)
		switch {
		case aerr != nil:
		case serr == nil && os.SameFile(before, after) && after.Size() > before.Size():
			os.Truncate(l.path, before.Size())
		case serr != nil || !os.SameFile(before, after):
			// Rotated by size in this write: the new file holds only this
			// batch's part.
			if after.Size() <= int64(n) {
				os.Truncate(l.path, 0)
			}
		}
	}
	// lumberjack counted the bytes it wrote; reopening recounts them.
	l.lj.Close()
	l.file = nil
	return err
}
