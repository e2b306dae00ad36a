package dirwatch

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func start(t *testing.T, dir string) (*Watcher, chan struct{}) {
	t.Helper()
	ch := make(chan struct{}, 100)
	w, err := Start(Options{Dirs: []string{dir}, Debounce: 20 * time.Millisecond, Logger: quiet(),
		Match:    func(n string) bool { return strings.HasSuffix(n, ".txt") },
		OnChange: func() { ch <- struct{}{} }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	return w, ch
}

func waitChange(t *testing.T, ch chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("no change seen: %s", what)
	}
}

func drain(ch chan struct{}) {
	time.Sleep(100 * time.Millisecond)
	for len(ch) > 0 {
		<-ch
	}
}

func TestWatchSeesFiles(t *testing.T) {
	dir := t.TempDir()
	_, ch := start(t, dir)
	os.WriteFile(filepath.Join(dir, "a.txt"), []byte("x"), 0o644)
	waitChange(t, ch, "new file")
	drain(ch)
	os.WriteFile(filepath.Join(dir, "a.md"), []byte("x"), 0o644)
	select {
	case <-ch:
		t.Fatal("a file that does not match caused a change")
	case <-time.After(150 * time.Millisecond):
	}
}

// A directory replaced under its path (mv -T) and a symlink swapped
// (ln -sfn) are followed: later edits in the new directory are seen.
func TestWatchFollowsPath(t *testing.T) {
	for _, how := range []string{"mv -T", "ln -sfn"} {
		t.Run(how, func(t *testing.T) {
			root := t.TempDir()
			path := filepath.Join(root, "lists")
			v1, v2 := filepath.Join(root, "v1"), filepath.Join(root, "v2")
			os.Mkdir(v1, 0o755)
			os.Mkdir(v2, 0o755)
			if how == "mv -T" {
				os.Mkdir(path, 0o755)
			} else if err := os.Symlink(v1, path); err != nil {
				t.Fatal(err)
			}
			w, ch := start(t, path)
			if how == "mv -T" {
				os.Rename(path, filepath.Join(root, "old"))
				if err := os.Rename(v2, path); err != nil {
					t.Fatal(err)
				}
			} else {
				tmp := filepath.Join(root, ".lists.tmp")
				os.Symlink(v2, tmp)
				if err := os.Rename(tmp, path); err != nil {
					t.Fatal(err)
				}
			}
			waitChange(t, ch, "path replaced")
			drain(ch)
			target := path
			if how == "ln -sfn" {
				target = v2
			}
			os.WriteFile(filepath.Join(target, "b.txt"), []byte("x"), 0o644)
			waitChange(t, ch, "edit in the new directory")
			if w.Rearm() {
				t.Fatal("Rearm moved a watch that is up to date")
			}
		})
	}
}

func TestWriting(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("close-write tracking is Linux only")
	}
	dir := t.TempDir()
	w, ch := start(t, dir)
	p := filepath.Join(dir, "a.txt")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("half")
	deadline := time.Now().Add(5 * time.Second)
	for !w.Writing(p) {
		if time.Now().After(deadline) {
			t.Fatal("a file open for writing is not reported as being written")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Asked by a relative path, or through a symlink to the directory.
	if rel, err := filepath.Rel(mustGetwd(t), p); err == nil && !w.Writing(rel) {
		t.Fatalf("Writing(%s) is false", rel)
	}
	drain(ch)
	f.WriteString(" and the rest\n")
	f.Close()
	waitChange(t, ch, "close-write")
	if w.Writing(p) {
		t.Fatal("a closed file is still being written")
	}
}

func mustGetwd(t *testing.T) string {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return wd
}
