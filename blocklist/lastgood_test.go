package blocklist

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// lastGoodStore starts a store over lists keeping its last good versions
// in state, as a cold start does, and waits for the copies.
func lastGoodStore(t *testing.T, lists, state string, max float64) (*Store, *ReloadReport) {
	t.Helper()
	st := NewStore(Options{Dirs: []string{lists}, LastGood: state, MaxShrink: max, Logger: discardLogger()})
	rep := reload(t, st)
	st.WaitLastGood()
	return st, rep
}

func TestLastGoodPersisted(t *testing.T) {
	lists, state := t.TempDir(), filepath.Join(t.TempDir(), "last-good")
	write(t, lists, "l.txt", names("a", 10))
	write(t, lists, "other.txt", "other.example\n")
	lastGoodStore(t, lists, state, 0)
	// The copy holds the bytes, its sidecar their SHA-256, the index both files.
	b, err := ReadVerified(filepath.Join(state, "l.txt"))
	if err != nil || string(b) != names("a", 10) {
		t.Fatalf("copy: %v %q", err, b)
	}
	var idx lastGoodIndex
	raw, _ := os.ReadFile(filepath.Join(state, lastGoodIndexFile))
	if err := json.Unmarshal(raw, &idx); err != nil || len(idx.Files) != 2 || idx.Files["l.txt"].SHA256 != HashBytes(b) ||
		idx.Files["l.txt"].Rules != 10 || idx.Lists != lists {
		t.Fatalf("index %v: %s", err, raw)
	}
	saved := idx.Files["l.txt"].SavedAt

	// Nothing changed: nothing written. A new version: written.
	st, _ := lastGoodStore(t, lists, state, 0)
	raw, _ = os.ReadFile(filepath.Join(state, lastGoodIndexFile))
	json.Unmarshal(raw, &idx)
	if !idx.Files["l.txt"].SavedAt.Equal(saved) {
		t.Fatal("an unchanged file was written again")
	}
	write(t, lists, "l.txt", names("b", 12))
	reload(t, st)
	st.WaitLastGood()
	if b, err := ReadVerified(filepath.Join(state, "l.txt")); err != nil || string(b) != names("b", 12) {
		t.Fatalf("after an edit: %v %q", err, b)
	}
	// A removed file (accepted) loses its copy.
	os.Remove(filepath.Join(lists, "other.txt"))
	if _, err := st.ReloadWith(context.Background(), ReloadOptions{Trigger: "test", Accept: true}); err != nil {
		t.Fatal(err)
	}
	st.WaitLastGood()
	if _, err := os.Stat(filepath.Join(state, "other.txt")); !os.IsNotExist(err) {
		t.Fatalf("copy of a removed file kept: %v", err)
	}
	if _, err := os.Stat(ChecksumPath(filepath.Join(state, "other.txt"))); !os.IsNotExist(err) {
		t.Fatalf("sidecar of a removed file kept: %v", err)
	}
}

func TestLastGoodColdStart(t *testing.T) {
	tests := []struct {
		name    string
		next    string // the version on disk at the restart
		del     bool
		corrupt bool // the copy is garbled before the restart
		max     float64
		held    bool
		serving int
	}{
		{name: "truncated", next: "", held: true, serving: 10},
		{name: "comments only", next: "# nothing\n", held: true, serving: 10},
		{name: "shrunk past the limit", next: names("a", 3), held: true, serving: 10},
		{name: "deleted", del: true, held: true, serving: 10},
		{name: "normal edit", next: names("a", 8) + "new.example\n", serving: 9},
		{name: "one for one", next: names("c", 10), serving: 10},
		{name: "unchanged", next: names("a", 10), serving: 10},
		{name: "corrupt copy", next: "", corrupt: true, serving: 0},
		{name: "guard off", next: "", max: 1, serving: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lists, state := t.TempDir(), filepath.Join(t.TempDir(), "last-good")
			write(t, lists, "l.txt", names("a", 10))
			write(t, lists, "other.txt", "other.example\n")
			lastGoodStore(t, lists, state, 0)
			if tt.del {
				os.Remove(filepath.Join(lists, "l.txt"))
			} else {
				write(t, lists, "l.txt", tt.next)
			}
			if tt.corrupt {
				os.WriteFile(filepath.Join(state, "l.txt"), []byte("a0.example\n"), 0o644)
			}
			st, rep := lastGoodStore(t, lists, state, tt.max)
			fc := change(rep, "l.txt")
			if got := fc.Change == ChangeHeld; got != tt.held {
				t.Fatalf("held %v, want %v: %+v", got, tt.held, fc)
			}
			snap := st.Current()
			f := snap.File("l.txt")
			serving := 0
			if f != nil {
				serving = f.Rules()
			}
			if serving != tt.serving {
				t.Fatalf("serving %d rules, want %d (%+v)", serving, tt.serving, f)
			}
			if tt.held {
				if f.Withheld == nil || f.Withheld.State != StateHeld || f.Withheld.Deleted != tt.del {
					t.Fatalf("withheld %+v", f.Withheld)
				}
				if !snap.MatchName("a0.example").Blocked() || !snap.MatchName("sub.a9.example").Blocked() {
					t.Fatal("the last good version does not block")
				}
				// Held again at every reload until accepted; then the
				// version on disk serves and becomes the last good one.
				if fc := change(reload(t, st), "l.txt"); fc.Change != ChangeHeld {
					t.Fatalf("second reload: %+v", fc)
				}
				rep, err := st.ReloadWith(context.Background(), ReloadOptions{Trigger: "test", Accept: true})
				if err != nil {
					t.Fatal(err)
				}
				st.WaitLastGood()
				fc := change(rep, "l.txt")
				if !fc.Accepted || st.Current().MatchName("a0.example").Blocked() && tt.next == "" {
					t.Fatalf("accept: %+v", fc)
				}
				// A restart now is not held.
				_, rep = lastGoodStore(t, lists, state, 0)
				if fc := change(rep, "l.txt"); fc.Change == ChangeHeld {
					t.Fatalf("held after accepting: %+v", fc)
				}
				return
			}
			if tt.corrupt {
				if snap.MatchName("a0.example").Blocked() {
					t.Fatal("a corrupt copy was served")
				}
				// Replaced by the version now in service.
				st.WaitLastGood()
				if b, err := ReadVerified(filepath.Join(state, "l.txt")); err != nil || string(b) != tt.next {
					t.Fatalf("copy after a corrupt one: %v %q", err, b)
				}
			}
			if f != nil && (f.Withheld != nil || f.Stale) {
				t.Fatalf("not held, yet %+v", f)
			}
			if !tt.corrupt && tt.max < 1 && tt.next != "" && !strings.Contains(tt.next, "a0.") && snap.MatchName("a0.example").Blocked() {
				t.Fatal("the old version serves after an edit")
			}
		})
	}
}

// With the guard off the copies are removed: turning it on again does not
// hold a file against a version from before.
func TestLastGoodGuardOffRemovesCopies(t *testing.T) {
	lists, state := t.TempDir(), filepath.Join(t.TempDir(), "last-good")
	write(t, lists, "l.txt", names("a", 10))
	lastGoodStore(t, lists, state, 0)
	write(t, lists, "l.txt", names("a", 2))
	lastGoodStore(t, lists, state, 1)
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Fatalf("copies kept with the guard off: %v", err)
	}
	write(t, lists, "l.txt", names("a", 1))
	if _, rep := lastGoodStore(t, lists, state, 0); change(rep, "l.txt").Change == ChangeHeld {
		t.Fatalf("held against a version from before the guard was off: %+v", change(rep, "l.txt"))
	}
}

// Copies of another lists directory are not used.
func TestLastGoodOtherListsDir(t *testing.T) {
	lists, state := t.TempDir(), filepath.Join(t.TempDir(), "last-good")
	write(t, lists, "l.txt", names("a", 10))
	lastGoodStore(t, lists, state, 0)
	other := t.TempDir()
	write(t, other, "l.txt", "")
	st, rep := lastGoodStore(t, other, state, 0)
	if fc := change(rep, "l.txt"); fc.Change == ChangeHeld || st.Current().RuleCount() != 0 {
		t.Fatalf("%+v", fc)
	}
}
