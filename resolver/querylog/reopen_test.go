package querylog

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// waitLines waits until path holds n lines (each JSON), bounded.
func waitLines(t *testing.T, path string, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil && countLines(t, path) >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not reach %d lines", path, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A log whose file is deleted or renamed is reopened at its path within a
// second, without a signal; Reopen does it at once.
func TestReopen(t *testing.T) {
	snap := loadSnapshot(t, map[string]string{"x.txt": testList})
	for _, how := range []string{"delete", "rename", "Reopen"} {
		t.Run(how, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "audit.log")
			l, err := Open(Options{Name: "audit", Path: path, Logger: quiet()})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close(context.Background())
			l.Audit(blockedRequest(t, snap, "www.binance.com"))
			waitLines(t, path, 1)
			switch how {
			case "delete":
				os.Remove(path)
			case "rename", "Reopen":
				os.Rename(path, path+".1")
			}
			start := time.Now()
			if how == "Reopen" {
				// logrotate's create: a new empty file, then the signal.
				os.WriteFile(path, nil, 0o640)
				l.Reopen()
			}
			// Lines keep coming; within a second they reach the path again.
			deadline := start.Add(3 * time.Second)
			for {
				l.Audit(blockedRequest(t, snap, "www.binance.com"))
				if st, err := os.Stat(path); err == nil && st.Size() > 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the log was not reopened")
				}
				time.Sleep(20 * time.Millisecond)
			}
			// The check runs every 0.5 s; a busy machine may add to it.
			if d := time.Since(start); d > 3*time.Second {
				t.Fatalf("reopened after %s, want within about a second", d)
			} else {
				t.Logf("reopened after %s", d.Round(time.Millisecond))
			}
			if st, _ := os.Stat(path); st.Mode().Perm() != 0o640 {
				t.Fatalf("reopened file mode %v", st.Mode().Perm())
			}
			countLines(t, path) // every line whole
		})
	}
}

// A full disk: the write fails halfway; no partial line is left for the
// next line to be glued onto. Needs a small tmpfs (root).
func TestDiskFullLeavesWholeLines(t *testing.T) {
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs to fill (needs root): %v %s", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	snap := loadSnapshot(t, map[string]string{"x.txt": testList})
	path := filepath.Join(dir, "audit.log")
	l, err := Open(Options{Name: "audit", Path: path, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(context.Background())
	// One line, so the file has a partly used page; then fill the disk:
	// the next batch fits that page's rest and fails past it.
	l.Audit(blockedRequest(t, snap, "www.binance.com"))
	waitLines(t, path, 1)
	filler := filepath.Join(dir, "filler")
	f, _ := os.Create(filler)
	for {
		if _, err := f.Write(make([]byte, 1024)); err != nil {
			break
		}
	}
	f.Close()
	for range 60 {
		l.Audit(blockedRequest(t, snap, "www.binance.com"))
	}
	deadline := time.Now().Add(5 * time.Second)
	for l.Dropped() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if l.Dropped() == 0 {
		t.Fatal("no write failed on the full disk")
	}
	os.Remove(filler)
	before := l.Lines()
	for range 5 {
		l.Audit(blockedRequest(t, snap, "www.binance.com"))
	}
	for l.Lines() < before+5 && time.Now().Before(deadline.Add(5*time.Second)) {
		time.Sleep(10 * time.Millisecond)
	}
	b, _ := os.ReadFile(path)
	if len(b) == 0 || b[len(b)-1] != '\n' {
		t.Fatalf("the log does not end with a whole line: %q", b[max(0, len(b)-80):])
	}
	if n := countLines(t, path); uint64(n) != l.Lines() {
		t.Fatalf("%d whole lines in the file, %d written", n, l.Lines())
	}
}
