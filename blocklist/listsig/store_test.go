package listsig

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sinkhole-dns/sinkhole/blocklist"
)

// TestStoreRefusesBadSignatures runs the list store with a Verifier: an
// unsigned file, a file signed by another key, a file renamed to another
// name, and a rolled-back version are refused, each while the last good
// version keeps serving, and the refusal is in the file's status.
func TestStoreRefusesBadSignatures(t *testing.T) {
	keys := t.TempDir()
	pub, sec := writeKeys(t, keys, "regulator")
	_, otherSec := writeKeys(t, keys, "other")
	ring, err := NewKeyring([]string{pub})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	list := filepath.Join(dir, "exchanges.txt")
	put := func(body string) { os.WriteFile(list, []byte(body), 0o644) }
	st := blocklist.NewStore(blocklist.Options{Dirs: []string{dir}, Verify: &Verifier{Keys: ring},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	reload := func() *blocklist.ReloadReport {
		t.Helper()
		rep, err := st.Reload(context.Background(), "test")
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	file := func() *blocklist.FileStatus { return st.Current().File("exchanges.txt") }
	blocked := func(name string) bool { return st.Current().MatchName(name).Blocked() }

	// Cold start with an unsigned file: refused, nothing served.
	put("binance.com\n")
	reload()
	if f := file(); f == nil || f.Refused == nil || f.Refused.Reason != ReasonUnsigned || blocked("binance.com") {
		t.Fatalf("unsigned at start: %+v", f)
	}
	// Signed: served, with its signer.
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	signFile(t, sec, list, t0)
	reload()
	f := file()
	if f.Refused != nil || f.Stale || !blocked("binance.com") || f.Signature == nil || !f.Signature.SignedAt.Equal(t0) {
		t.Fatalf("signed: %+v", f)
	}
	good := f.Signature.KeyID

	steps := []struct {
		name   string
		change func()
		reason string
	}{
		{"unsigned edit", func() { put("okx.com\n"); os.Remove(list + Suffix) }, ReasonUnsigned},
		{"other key", func() { put("okx.com\n"); signFile(t, otherSec, list, t0.Add(time.Minute)) }, ReasonUnknownKey},
		{"edited after signing", func() { put("okx.com\n"); signFile(t, sec, list, t0.Add(time.Minute)); put("okx.com\nbybit.com\n") }, ReasonBadSignature},
		{"renamed", func() {
			other := filepath.Join(keys, "kucoin.txt")
			os.WriteFile(other, []byte("okx.com\n"), 0o644)
			signFile(t, sec, other, t0.Add(time.Minute))
			put("okx.com\n")
			b, _ := os.ReadFile(other + Suffix)
			os.WriteFile(list+Suffix, b, 0o644)
		}, ReasonWrongFile},
		{"rollback", func() { put("okx.com\n"); signFile(t, sec, list, t0.Add(-time.Minute)) }, ReasonRollback},
	}
	for _, s := range steps {
		s.change()
		rep := reload()
		f := file()
		if f.Refused == nil || f.Refused.Reason != s.reason || !f.Stale {
			t.Fatalf("%s: want refusal %q, status %+v (refused %+v)", s.name, s.reason, f, f.Refused)
		}
		if !blocked("binance.com") || blocked("okx.com") || f.Signature.KeyID != good {
			t.Fatalf("%s: the last good version does not serve", s.name)
		}
		if rep.Changed || !strings.Contains(f.Errors[0].Error(), "signature refused") {
			t.Fatalf("%s: report %+v errors %v", s.name, rep, f.Errors)
		}
		if s.reason != ReasonUnsigned && s.reason != ReasonMalformed && f.Refused.KeyID == "" {
			t.Fatalf("%s: refusal names no signer: %+v", s.name, f.Refused)
		}
	}
	// A newer, properly signed version replaces it.
	put("okx.com\n")
	t1 := t0.Add(time.Minute)
	signFile(t, sec, list, t1)
	rep := reload()
	f = file()
	if !rep.Changed || f.Refused != nil || f.Stale || !blocked("okx.com") || blocked("binance.com") || !f.Signature.SignedAt.Equal(t1) {
		t.Fatalf("good update: %+v %+v", rep, f)
	}
	// Signed again (same content, later time): same rules, new signature.
	gen := st.Current().Generation
	signFile(t, sec, list, t1.Add(time.Minute))
	reload()
	if st.Current().Generation != gen || !file().Signature.SignedAt.Equal(t1.Add(time.Minute)) {
		t.Fatalf("re-signed: generation %d (was %d), %+v", st.Current().Generation, gen, file().Signature)
	}
}

func TestWatched(t *testing.T) {
	m := Watched(blocklist.IsListFile)
	for name, want := range map[string]bool{"a.txt": true, "a.txt.minisig": true, "a.rpz.minisig": true, "a.minisig": false, "a.md": false, ".a.txt.minisig": false} {
		if m(name) != want {
			t.Errorf("%s: %v", name, !want)
		}
	}
}

// TestRollbackAcrossRestarts: with Seen, a store that starts afresh still
// refuses a version signed before the newest one accepted earlier.
func TestRollbackAcrossRestarts(t *testing.T) {
	keys := t.TempDir()
	pub, sec := writeKeys(t, keys, "regulator")
	ring, _ := NewKeyring([]string{pub})
	dir := t.TempDir()
	list := filepath.Join(dir, "exchanges.txt")
	seenPath := filepath.Join(t.TempDir(), "signed-times.json")
	newStore := func() *blocklist.Store {
		seen, err := OpenSeenTimes(seenPath)
		if err != nil {
			t.Fatal(err)
		}
		return blocklist.NewStore(blocklist.Options{Dirs: []string{dir}, Verify: &Verifier{Keys: ring, Seen: seen},
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	}
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	os.WriteFile(list, []byte("okx.com\n"), 0o644)
	signFile(t, sec, list, t0)
	st := newStore()
	st.Reload(context.Background(), "start")
	if !st.Current().MatchName("okx.com").Blocked() {
		t.Fatal("signed list not served")
	}
	// Down; an older version is put in place; up again.
	os.WriteFile(list, []byte("binance.com\n"), 0o644)
	signFile(t, sec, list, t0.Add(-time.Minute))
	st = newStore()
	st.Reload(context.Background(), "start")
	if f := st.Current().File("exchanges.txt"); f.Refused == nil || f.Refused.Reason != ReasonRollback || st.Current().MatchName("binance.com").Blocked() {
		t.Fatalf("rollback across a restart: %+v", f)
	}
}
