// Package dirwatch calls a function when files in watched directories
// change, with a debounce so that a burst of events (an editor's save by
// rename, a copy in progress) causes one call.
//
// Directories are watched, not files: editors and deploy tools replace files
// by rename, which would end a watch on the file itself.
package dirwatch

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Options configures Run.
type Options struct {
	// Dirs are the directories to watch.
	Dirs []string
	// Match selects the file names (base names) whose changes count.
	Match func(name string) bool
	// Debounce is the quiet period after the last event before OnChange runs.
	Debounce time.Duration
	// MaxDelay bounds how long a continuous stream of events can postpone
	// OnChange (default 10 x Debounce).
	MaxDelay time.Duration
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

// Watcher is a running watch.
type Watcher struct {
	fs   *fsnotify.Watcher
	done chan struct{}
}

// Start sets up the watch and returns at once; Close stops it.
func Start(o Options) (*Watcher, error) {
	if o.Debounce <= 0 {
		o.Debounce = 250 * time.Millisecond
	}
	if o.MaxDelay <= 0 {
		o.MaxDelay = 10 * o.Debounce
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch: %w", err)
	}
	for _, d := range o.Dirs {
		if err := fw.Add(d); err != nil {
			fw.Close()
			return nil, fmt.Errorf("watch %s: %w", d, err)
		}
	}
	w := &Watcher{fs: fw, done: make(chan struct{})}
	go w.loop(o)
	return w, nil
}

// Close stops the watch and waits for a running OnChange to return.
func (w *Watcher) Close() {
	w.fs.Close()
	<-w.done
}

func (w *Watcher) loop(o Options) {
	defer close(w.done)
	var timer *time.Timer
	var fire <-chan time.Time
	var first time.Time
	for {
		select {
		case ev, ok := <-w.fs.Events:
			if !ok {
				return
			}
			if ev.Op == fsnotify.Chmod || (o.Match != nil && !o.Match(filepath.Base(ev.Name))) {
				continue
			}
			o.Logger.Debug("file change seen", "file", ev.Name, "op", ev.Op.String())
			now := time.Now()
			if fire == nil {
				first = now
			}
			delay := o.Debounce
			if left := o.MaxDelay - now.Sub(first); left < delay {
				delay = max(left, 0)
			}
			if timer == nil {
				timer = time.NewTimer(delay)
			} else {
				timer.Reset(delay)
			}
			fire = timer.C
		case <-fire:
			fire = nil
			o.OnChange()
		case err, ok := <-w.fs.Errors:
			if !ok {
				return
			}
			o.Logger.Warn("file watch error", "err", err)
		}
	}
}
