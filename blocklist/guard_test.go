package blocklist

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// names returns a list of n rules n0.example ... as a file body.
func names(prefix string, n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "%s%d.example\n", prefix, i)
	}
	return b.String()
}

func newTestStore(t *testing.T, o Options, files map[string]string) (*Store, string) {
	t.Helper()
	dir := t.TempDir()
	for n, b := range files {
		write(t, dir, n, b)
	}
	o.Dirs = []string{dir}
	o.Logger = discardLogger()
	st := NewStore(o)
	reload(t, st)
	return st, dir
}

func TestShrinkGuard(t *testing.T) {
	tests := []struct {
		name     string
		next     string // "" with del: the file is deleted
		del      bool
		max      float64
		held     bool
		reason   string
		newRules int
	}{
		{name: "truncated", next: "", held: true, reason: "no rules (the version in service has 10)"},
		{name: "comments only", next: "# platform: X\n# nothing left\n", held: true, reason: "no rules"},
		{name: "deleted", del: true, held: true, reason: "deleted"},
		{name: "drops 6 of 10", next: names("a", 4), held: true, reason: "would drop 6 of 10 rules (60%), more than --max-shrink 50%", newRules: 4},
		{name: "drops 5 of 10", next: names("a", 5)},
		{name: "one for one", next: names("b", 10)},
		{name: "grows", next: names("a", 20)},
		{name: "guard at 20%", next: names("a", 7), max: 0.2, held: true, reason: "30%", newRules: 7},
		{name: "guard off truncated", next: "", max: 1},
		{name: "guard off deleted", del: true, max: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, dir := newTestStore(t, Options{MaxShrink: tt.max}, map[string]string{"l.txt": names("a", 10), "other.txt": "other.example\n"})
			gen := st.Current().Generation
			if tt.del {
				os.Remove(filepath.Join(dir, "l.txt"))
			} else {
				write(t, dir, "l.txt", tt.next)
			}
			rep := reload(t, st)
			fc := change(rep, "l.txt")
			if !tt.held {
				if fc.Change == ChangeHeld || fc.Withheld != nil {
					t.Fatalf("held: %+v %+v", fc, fc.Withheld)
				}
				return
			}
			if fc.Change != ChangeHeld || fc.Withheld == nil || !strings.Contains(fc.Withheld.Reason, tt.reason) || fc.Rules != 10 {
				t.Fatalf("not held as expected: %+v %+v", fc, fc.Withheld)
			}
			if !tt.del && fc.Withheld.Rules != tt.newRules {
				t.Fatalf("held version has %d rules, want %d", fc.Withheld.Rules, tt.newRules)
			}
			snap := st.Current()
			if !snap.MatchName("a9.example").Blocked() || snap.Generation != gen {
				t.Fatalf("the last good version does not serve (generation %d, was %d)", snap.Generation, gen)
			}
			if f := snap.File("l.txt"); f == nil || f.Withheld == nil || f.Withheld.State != StateHeld {
				t.Fatalf("status does not show the hold: %+v", f)
			}
			if len(rep.Withheld()) != 1 {
				t.Fatalf("report's withheld files: %+v", rep.Withheld())
			}
			// Still held at the next reload, with the same start time.
			since := fc.Withheld.Since
			rep = reload(t, st)
			if fc := change(rep, "l.txt"); fc.Change != ChangeHeld || !fc.Withheld.Since.Equal(since) {
				t.Fatalf("second reload: %+v %+v", fc, fc.Withheld)
			}
			// Accepted on purpose.
			rep, err := st.ReloadWith(context.Background(), ReloadOptions{Trigger: "test", Accept: true})
			if err != nil {
				t.Fatal(err)
			}
			fc = change(rep, "l.txt")
			if !fc.Accepted || st.Current().MatchName("a9.example").Blocked() || !st.Current().MatchName("other.example").Blocked() {
				t.Fatalf("accept did not apply: %+v; a9 blocked %v", fc, st.Current().MatchName("a9.example"))
			}
			if f := st.Current().File("l.txt"); f != nil && f.Withheld != nil {
				t.Fatalf("still withheld after accept: %+v", f.Withheld)
			}
		})
	}
}

// A held version that is then put back, or replaced by a good one, is no
// longer held.
func TestShrinkGuardRecovers(t *testing.T) {
	st, dir := newTestStore(t, Options{}, map[string]string{"l.txt": names("a", 10)})
	write(t, dir, "l.txt", "")
	if c := change(reload(t, st), "l.txt").Change; c != ChangeHeld {
		t.Fatalf("not held: %s", c)
	}
	write(t, dir, "l.txt", names("a", 10))
	rep := reload(t, st)
	if fc := change(rep, "l.txt"); fc.Change != ChangeUpdated || st.Current().File("l.txt").Withheld != nil {
		t.Fatalf("put back: %+v", fc)
	}
	write(t, dir, "l.txt", "")
	reload(t, st)
	write(t, dir, "l.txt", names("a", 9)+"new.example\n")
	rep = reload(t, st)
	if fc := change(rep, "l.txt"); fc.Change != ChangeUpdated || !st.Current().MatchName("new.example").Blocked() {
		t.Fatalf("good version after a hold: %+v", fc)
	}
}

func TestStoreSettling(t *testing.T) {
	var writing atomic.Bool
	st, dir := newTestStore(t, Options{Writing: func(string) bool { return writing.Load() }}, map[string]string{"l.txt": "a.example\n"})
	writing.Store(true)
	write(t, dir, "l.txt", "b.example\n")
	rep := reload(t, st)
	if fc := change(rep, "l.txt"); fc.Change != ChangeSettling || !st.Current().MatchName("a.example").Blocked() || st.Current().MatchName("b.example").Blocked() {
		t.Fatalf("a file open for writing was loaded: %+v", fc)
	}
	writing.Store(false)
	rep = reload(t, st)
	if fc := change(rep, "l.txt"); fc.Change != ChangeUpdated || !st.Current().MatchName("b.example").Blocked() {
		t.Fatalf("closed file not loaded: %+v", fc)
	}
}

// A changed file caught while still being written (an in-place write
// between its truncation and its new content, or a writer that has not
// closed it yet) is waited for by the delta, so that a one-line change
// stays a delta rather than a whole-list reload.
func TestDeltaWaitsForWriter(t *testing.T) {
	var busy atomic.Int32 // the next calls that report the file open for writing
	st, dir := newTestStore(t, Options{Writing: func(string) bool { return busy.Add(-1) >= 0 }}, map[string]string{"l.txt": names("a", 2000)})
	for _, open := range []int32{1, 2} {
		busy.Store(open)
		write(t, dir, "l.txt", names("a", 2000)+fmt.Sprintf("new%d.example\n", open))
		rep := reload(t, st)
		if fc := change(rep, "l.txt"); fc.Change != ChangeUpdated || !rep.Delta || !st.Current().MatchName(fmt.Sprintf("new%d.example", open)).Blocked() {
			t.Fatalf("open for %d more checks: %+v, delta %v", open, fc, rep.Delta)
		}
	}
	// A writer that stays: the delta gives up and the full reload
	// withholds the file as settling, as before.
	busy.Store(1 << 20)
	write(t, dir, "l.txt", names("a", 2000)+"late.example\n")
	rep := reload(t, st)
	if fc := change(rep, "l.txt"); fc.Change != ChangeSettling || rep.Delta || st.Current().MatchName("late.example").Blocked() {
		t.Fatalf("a file kept open for writing was loaded: %+v, delta %v", fc, rep.Delta)
	}
}

// A file changed within Settle is waited for; one that keeps changing is
// left settling, and read again by the store on its own.
func TestStoreSettleWait(t *testing.T) {
	settle := 150 * time.Millisecond
	st, dir := newTestStore(t, Options{Settle: settle}, map[string]string{"l.txt": "a.example\n"})
	write(t, dir, "l.txt", "b.example\n")
	start := time.Now()
	rep := reload(t, st)
	if fc := change(rep, "l.txt"); fc.Change != ChangeUpdated || time.Since(start) < settle/2 {
		t.Fatalf("fresh file: %+v after %s", fc, time.Since(start))
	}
	// A writer that keeps going: the reload sees it change while it waits.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
				write(t, dir, "l.txt", fmt.Sprintf("b.example\nc%d.example\n", i))
			}
		}
	}()
	time.Sleep(30 * time.Millisecond)
	rep = reload(t, st)
	close(stop)
	<-done
	if fc := change(rep, "l.txt"); fc.Change != ChangeSettling {
		t.Fatalf("a file being rewritten was loaded: %+v", fc)
	}
	want, _ := HashFile(filepath.Join(dir, "l.txt"))
	deadline := time.Now().Add(10 * time.Second)
	for st.Current().File("l.txt").SHA256 != want {
		if time.Now().After(deadline) {
			t.Fatal("the settled file was never loaded by the store's retry")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestStoreCheck(t *testing.T) {
	var bad atomic.Bool
	check := func(v *Version) error {
		b := make([]byte, v.Size)
		if _, err := v.Content.ReadAt(b, 0); err != nil {
			return err
		}
		if bad.Load() || strings.Contains(string(b), "evil") {
			return &RefusedError{Check: "origin", Msg: "not from the regulator"}
		}
		return nil
	}
	st, dir := newTestStore(t, Options{Checks: []Check{check}}, map[string]string{"l.txt": "a.example\n"})
	write(t, dir, "l.txt", "a.example\nevil.example\n")
	rep := reload(t, st)
	fc := change(rep, "l.txt")
	if fc.Change != ChangeFailed || fc.Refused == nil || fc.Refused.Reason != "origin" || fc.Errors[0].Msg != "origin refused: not from the regulator" || st.Current().MatchName("evil.example").Blocked() {
		t.Fatalf("not refused: %+v %+v", fc, fc.Refused)
	}
	if f := st.Current().File("l.txt"); !st.Current().MatchName("a.example").Blocked() || f.Refused == nil || !f.Stale {
		t.Fatal("last good version lost, or the refusal not in the status")
	}
	// Accept does not apply a refused version.
	rep, _ = st.ReloadWith(context.Background(), ReloadOptions{Accept: true})
	if change(rep, "l.txt").Refused == nil {
		t.Fatal("accept applied a refused version")
	}
	// Cold start: a refused file has no version in service.
	bad.Store(true)
	st2 := NewStore(Options{Dirs: []string{dir}, Logger: discardLogger(), Checks: []Check{check}})
	reload(t, st2)
	if f := st2.Current().File("l.txt"); f == nil || f.SHA256 != "" || f.Refused == nil {
		t.Fatalf("cold start refused file: %+v", f)
	}
}

func TestChecksumCheck(t *testing.T) {
	dir := t.TempDir()
	if p, _, err := InstallFile(dir, "feed.txt", []byte(names("a", 4))); err != nil || p != nil {
		t.Fatal(p, err)
	}
	st := NewStore(Options{Dirs: []string{dir}, Logger: discardLogger(), Checks: []Check{ChecksumCheck(dir)}, Verified: []string{dir}})
	rep := reload(t, st)
	if fc := change(rep, "feed.txt"); fc.Change != ChangeAdded || fc.Rules != 4 {
		t.Fatalf("verified copy: %+v", fc)
	}
	// Garbled on disk: refused, the copy in service stays.
	write(t, dir, "feed.txt", names("a", 3)+"zzz.example\n")
	rep = reload(t, st)
	if fc := change(rep, "feed.txt"); fc.Refused == nil || fc.Refused.Reason != "checksum" || !strings.Contains(fc.Refused.Error, "SHA-256") || st.Current().MatchName("zzz.example").Blocked() {
		t.Fatalf("garbled copy: %+v %+v", fc, fc.Refused)
	}
	// No sidecar at all.
	write(t, dir, "other.txt", "o.example\n")
	rep = reload(t, st)
	if fc := change(rep, "other.txt"); fc.Refused == nil || !errors.Is(checkHash(filepath.Join(dir, "other.txt"), "x"), ErrNoChecksum) {
		t.Fatalf("copy without checksum: %+v", fc)
	}
	// Its sidecar written afterwards (the same bytes fetched again): it
	// loads, although the file did not change.
	RecordChecksum(filepath.Join(dir, "other.txt"), []byte("o.example\n"))
	rep = reload(t, st)
	if fc := change(rep, "other.txt"); fc.Refused != nil || !st.Current().MatchName("o.example").Blocked() {
		t.Fatalf("copy with its checksum recorded later: %+v", fc)
	}
}

func TestEncodings(t *testing.T) {
	utf16 := func(s string, be bool) string {
		var b []byte
		if be {
			b = append(b, 0xFE, 0xFF)
		} else {
			b = append(b, 0xFF, 0xFE)
		}
		for _, c := range []byte(s) {
			if be {
				b = append(b, 0, c)
			} else {
				b = append(b, c, 0)
			}
		}
		return string(b)
	}
	tests := []struct {
		name, body, err string
		rules           int
	}{
		{"utf-8 bom", "\ufeff# platform: X\nokx.com\n", "", 1},
		{"utf-8 bom rule first", "\ufeffokx.com\nb.example\n", "", 2},
		{"utf-8 bom only", "\ufeff", "", 0},
		{"utf-16le", utf16("# platform: X\nokx.com\n", false), "UTF-16 little-endian text (it starts with the byte order mark FF FE)", 0},
		{"utf-16be", utf16("okx.com\n", true), "UTF-16 big-endian", 0},
		{"utf-16le no bom", utf16("okx.com\nb.example\n", false)[2:], "UTF-16 little-endian text without a byte order mark", 0},
		{"binary", "okx.com\n\x00\x01\x02\x03", "binary, not a text list (a NUL byte at offset 8)", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			write(t, dir, "l.txt", tt.body)
			fs, errs := CheckFile(filepath.Join(dir, "l.txt"), 0)
			if tt.err == "" {
				if len(errs) != 0 || fs.Rules() != tt.rules {
					t.Fatalf("errors %v, %d rules", errs, fs.Rules())
				}
				return
			}
			if len(errs) != 1 || !strings.Contains(errs[0].Error(), tt.err) || !strings.HasPrefix(errs[0].Error(), filepath.Join(dir, "l.txt")+": ") {
				t.Fatalf("want one error %q, got %v", tt.err, errs)
			}
			if p := CheckData("l.txt", []byte(tt.body)); len(p) != 1 || !strings.Contains(p[0].Msg, tt.err) {
				t.Fatalf("CheckData: %v", p)
			}
		})
	}
}
