package blocklist

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func write(t *testing.T, dir, name, body string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func reload(t *testing.T, st *Store) *ReloadReport {
	t.Helper()
	rep, err := st.Reload(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func change(rep *ReloadReport, name string) FileChange {
	for _, f := range rep.Files {
		if f.Name == name {
			return f
		}
	}
	return FileChange{}
}

func TestStoreLastGoodAndRemoval(t *testing.T) {
	st, dir := load(t, map[string]string{"a.txt": "a.com\n", "b.list": "b.com\n", "ignored.md": "not a list"})
	s1 := st.Current()
	if s1.Generation != 1 || !s1.MatchName("a.com").Blocked() || !s1.MatchName("b.com").Blocked() {
		t.Fatalf("initial load wrong: gen %d", s1.Generation)
	}
	// Nothing changed: same generation.
	rep := reload(t, st)
	if rep.Changed || st.Current().Generation != 1 || change(rep, "a.txt").Change != ChangeUnchanged {
		t.Fatalf("no-op reload changed something: %+v", rep)
	}
	// Break a.txt: its last good version stays, with the error reported.
	write(t, dir, "a.txt", "a2.com\nnot valid\n")
	rep = reload(t, st)
	fc := change(rep, "a.txt")
	if fc.Change != ChangeFailed || len(fc.Errors) != 1 || fc.Errors[0].Error() != `a.txt:2: unexpected text after entry (one entry per line, or a hosts-file line "0.0.0.0 name..."): "not valid"` {
		t.Fatalf("broken file report: %+v %v", fc, fc.Errors)
	}
	s := st.Current()
	if !s.MatchName("a.com").Blocked() || s.MatchName("a2.com").Blocked() {
		t.Fatal("broken file replaced its last good version")
	}
	if f := s.File("a.txt"); !f.Stale || len(f.Errors) != 1 || f.Domains != 1 {
		t.Fatalf("status of broken file: %+v", f)
	}
	if !rep.Failed() {
		t.Fatal("report not failed")
	}
	// Another file changes while a.txt is still broken.
	write(t, dir, "b.list", "b.com\nc.com\n")
	rep = reload(t, st)
	s = st.Current()
	if !s.MatchName("c.com").Blocked() || !s.MatchName("a.com").Blocked() || change(rep, "a.txt").Change != ChangeFailed {
		t.Fatal("update of another file lost the last good a.txt")
	}
	// Fix a.txt.
	write(t, dir, "a.txt", "a2.com\n")
	rep = reload(t, st)
	s = st.Current()
	if change(rep, "a.txt").Change != ChangeUpdated || s.MatchName("a.com").Blocked() || !s.MatchName("a2.com").Blocked() {
		t.Fatalf("fix not applied: %+v", rep)
	}
	if f := s.File("a.txt"); f.Stale || f.Errors != nil {
		t.Fatalf("fixed file still stale: %+v", f)
	}
	// Delete b.list: held by the shrink guard until accepted, then its
	// rules go.
	os.Remove(filepath.Join(dir, "b.list"))
	rep = reload(t, st)
	if fc := change(rep, "b.list"); fc.Change != ChangeHeld || !fc.Withheld.Deleted || !st.Current().MatchName("b.com").Blocked() {
		t.Fatalf("deletion not held: %+v", rep)
	}
	rep, err := st.ReloadWith(context.Background(), ReloadOptions{Trigger: "test", Accept: true})
	if err != nil || change(rep, "b.list").Change != ChangeRemoved || !change(rep, "b.list").Accepted || st.Current().MatchName("b.com").Blocked() {
		t.Fatalf("removal: %+v", rep)
	}
	if st.Current().Generation <= s.Generation {
		t.Fatal("generation did not advance")
	}
}

func TestStoreColdStartBroken(t *testing.T) {
	st, dir := load(t, map[string]string{"good.txt": "good.com\n", "bad.txt": "bad.com\n# scope: sideways\n"})
	s := st.Current()
	if !s.MatchName("good.com").Blocked() || s.MatchName("bad.com").Blocked() {
		t.Fatal("cold start: good file must serve, broken file must not")
	}
	f := s.File("bad.txt")
	if f == nil || !f.Stale || len(f.Errors) != 1 || !strings.Contains(f.Errors[0].Error(), "bad.txt:2") {
		t.Fatalf("cold start status: %+v", f)
	}
	write(t, dir, "bad.txt", "bad.com\n")
	rep := reload(t, st)
	if change(rep, "bad.txt").Change != ChangeAdded || !st.Current().MatchName("bad.com").Blocked() {
		t.Fatalf("repair after cold start: %+v", rep)
	}
}

func TestStoreSizeLimit(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "big.txt", strings.Repeat("a.com\n", 100))
	st := NewStore(Options{Dirs: []string{dir}, MaxFileSize: 50, Logger: discardLogger()})
	rep := reload(t, st)
	fc := change(rep, "big.txt")
	if fc.Change != ChangeFailed || !strings.Contains(fc.Errors[0].Error(), "over the 50-byte limit") {
		t.Fatalf("size limit: %+v", fc)
	}
}

func TestStoreMissingDir(t *testing.T) {
	st := NewStore(Options{Dirs: []string{"/nonexistent/lists"}, Logger: discardLogger()})
	if _, err := st.Reload(context.Background(), "test"); err == nil || !strings.Contains(err.Error(), "/nonexistent/lists") {
		t.Fatalf("missing dir error: %v", err)
	}
}

// OnReload listeners hear about every reload, failed ones included, with
// the snapshot in service.
func TestStoreOnReloadIncludesFailures(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "a.txt", "a.test\n")
	st := NewStore(Options{Dirs: []string{dir}, Logger: discardLogger()})
	type call struct {
		gen  uint64
		err  string
		fail bool
	}
	var calls []call
	st.OnReload(func(s *Snapshot, rep *ReloadReport) {
		calls = append(calls, call{s.Generation, rep.Error, rep.Failed()})
	})
	reload(t, st)
	write(t, dir, "b.txt", "b.test\nnot a rule\n")
	reload(t, st)
	os.RemoveAll(dir)
	rep, err := st.Reload(context.Background(), "test")
	if err == nil || rep.Error != err.Error() || rep.Duration <= 0 {
		t.Fatalf("reload of a removed directory: %v, report %+v", err, rep)
	}
	want := []call{{1, "", false}, {1, "", true}, {1, err.Error(), false}}
	if len(calls) != len(want) {
		t.Fatalf("calls %+v, want %+v", calls, want)
	}
	for i := range want {
		if calls[i] != want[i] {
			t.Errorf("call %d: %+v, want %+v", i, calls[i], want[i])
		}
	}
}

func TestStoreRefusesSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "good.txt", "a.com\n")
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo.txt"), 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	if err := os.Symlink("/dev/zero", filepath.Join(dir, "zero.txt")); err != nil {
		t.Fatal(err)
	}
	st := NewStore(Options{Dirs: []string{dir}, Logger: discardLogger()})
	done := make(chan *ReloadReport, 1)
	go func() { done <- reload(t, st) }()
	var rep *ReloadReport
	select {
	case rep = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("reload hangs on a FIFO")
	}
	for _, name := range []string{"fifo.txt", "zero.txt"} {
		if fc := change(rep, name); fc.Change != ChangeFailed || len(fc.Errors) != 1 || !strings.Contains(fc.Errors[0].Msg, "not a regular file") {
			t.Errorf("%s: %+v", name, fc)
		}
	}
	if !st.Current().MatchName("a.com").Blocked() {
		t.Error("the good file is not loaded")
	}
}
