package history

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/sinkhole-dns/sinkhole/blocklist"
)

func TestSplitTrigger(t *testing.T) {
	for in, want := range map[string][2]string{
		"api 192.0.2.1:40000": {"api", "192.0.2.1:40000"},
		"SIGHUP":              {"signal", "SIGHUP"},
		"rpz-feed regulator":  {"rpz-feed", "regulator"},
		"fsnotify":            {"fsnotify", ""},
		"start":               {"start", ""},
	} {
		if k, w := SplitTrigger(in); k != want[0] || w != want[1] {
			t.Errorf("SplitTrigger(%q) = %q, %q; want %v", in, k, w, want)
		}
	}
}

type fixture struct {
	dir   string
	store *blocklist.Store
	h     *History
	logs  *strings.Builder
}

func newFixture(t *testing.T, size int) *fixture {
	f := &fixture{dir: t.TempDir(), logs: &strings.Builder{}}
	log := slog.New(slog.NewTextHandler(f.logs, nil))
	f.store = blocklist.NewStore(blocklist.Options{Dirs: []string{f.dir}, Logger: slog.New(slog.DiscardHandler)})
	f.h = New(size, log)
	f.store.OnReload(f.h.Observe)
	return f
}

func (f *fixture) write(t *testing.T, name, content string) {
	if err := os.WriteFile(filepath.Join(f.dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) reload(t *testing.T, trigger string) []Diff {
	if _, err := f.store.Reload(context.Background(), trigger); err != nil {
		t.Fatal(err)
	}
	d, _ := f.h.Last()
	return d
}

func TestReloadDiffsAndVersions(t *testing.T) {
	f := newFixture(t, 0)
	f.write(t, "ex.txt", "# platform: Binance\nbinance.com\nokx.com\n203.0.113.0/24\n")
	f.write(t, "other.txt", "a.example\n")
	d := f.reload(t, "start")
	want := []Diff{
		{File: "ex.txt", AddedCount: 3, Added: []string{"binance.com", "okx.com", "203.0.113.0/24"}},
		{File: "other.txt", AddedCount: 1, Added: []string{"a.example"}},
	}
	if !reflect.DeepEqual(d, want) {
		t.Fatalf("start: %+v\nwant %+v", d, want)
	}
	// One domain swapped for another: the same count, a real change.
	f.write(t, "ex.txt", "# platform: Binance\nbinance.com\nbybit.com\n203.0.113.0/24\n")
	d = f.reload(t, "api 192.0.2.1:40000")
	want = []Diff{{File: "ex.txt", AddedCount: 1, RemovedCount: 1, Added: []string{"bybit.com"}, Removed: []string{"okx.com"}}}
	if !reflect.DeepEqual(d, want) {
		t.Fatalf("swap: %+v\nwant %+v", d, want)
	}
	if !strings.Contains(f.logs.String(), `msg="list file rules changed" file=ex.txt added=1 removed=1 added_rules=[bybit.com] removed_rules=[okx.com]`) {
		t.Errorf("log:\n%s", f.logs.String())
	}
	// Nothing changed: no diff, no version.
	if d = f.reload(t, "fsnotify"); d != nil {
		t.Errorf("no change: %+v", d)
	}
	// 30 new rules are counted, 20 listed; a removed file removes its rules.
	var b strings.Builder
	for i := range 30 {
		fmt.Fprintf(&b, "n%d.example\n", i)
	}
	f.write(t, "other.txt", "a.example\n"+b.String())
	os.Remove(filepath.Join(f.dir, "ex.txt")) // the shrink guard holds a deletion: accept it
	if _, err := f.store.ReloadWith(context.Background(), blocklist.ReloadOptions{Trigger: "SIGHUP", Accept: true}); err != nil {
		t.Fatal(err)
	}
	d, _ = f.h.Last()
	slices.SortFunc(d, func(a, b Diff) int { return strings.Compare(a.File, b.File) })
	if len(d) != 2 || d[0].File != "ex.txt" || d[0].RemovedCount != 3 || d[1].AddedCount != 30 || len(d[1].Added) != MaxListed || d[1].Added[0] != "n0.example" {
		t.Errorf("big change: %+v", d)
	}
	vs := f.h.Versions()
	type brief struct {
		file, change, trigger, who string
		rules, added, removed      int
		hashed                     bool
	}
	var got []brief
	for _, v := range vs {
		got = append(got, brief{v.File, v.Change, v.Trigger, v.Who, v.Rules, v.Added, v.Removed, len(v.SHA256) == 64})
	}
	// Newest first, within a reload too (in the order of the store's
	// report, which the test does not pin down).
	slices.SortFunc(got[:2], func(a, b brief) int { return strings.Compare(a.file, b.file) })
	wantV := []brief{
		{"ex.txt", "removed", "signal", "SIGHUP", 0, 0, 3, false},
		{"other.txt", "updated", "signal", "SIGHUP", 31, 30, 0, true},
		{"ex.txt", "updated", "api", "192.0.2.1:40000", 3, 1, 1, true},
		{"other.txt", "added", "start", "", 1, 1, 0, true},
		{"ex.txt", "added", "start", "", 3, 3, 0, true},
	}
	if !reflect.DeepEqual(got, wantV) {
		t.Errorf("versions:\n%+v\nwant\n%+v", got, wantV)
	}
	if vs[0].Generation <= vs[2].Generation || vs[0].Time.Before(vs[4].Time) {
		t.Errorf("versions not newest first: %+v", vs)
	}
}

// The history is bounded: the oldest versions go first.
func TestHistoryBounded(t *testing.T) {
	f := newFixture(t, 5)
	for i := range 8 {
		f.write(t, "x.txt", fmt.Sprintf("v%d.example\n", i))
		f.reload(t, "fsnotify")
	}
	vs := f.h.Versions()
	if len(vs) != 5 {
		t.Fatalf("%d versions, want 5", len(vs))
	}
	for i, v := range vs {
		if want := uint64(8 - i); v.Generation != want {
			t.Errorf("version %d: generation %d, want %d", i, v.Generation, want)
		}
	}
}

// A version the shrink guard holds is recorded once (with the held
// version's hash and why), however many reloads report it; accepted, it is
// recorded as such.
func TestHeldAndAcceptedVersions(t *testing.T) {
	f := newFixture(t, 0)
	var b strings.Builder
	for i := range 10 {
		fmt.Fprintf(&b, "n%d.example\n", i)
	}
	f.write(t, "x.txt", b.String())
	f.reload(t, "start")
	f.write(t, "x.txt", "n0.example\n")
	f.reload(t, "fsnotify")
	f.reload(t, "SIGHUP")
	if _, err := f.store.ReloadWith(context.Background(), blocklist.ReloadOptions{Trigger: "api 192.0.2.1:4000", Accept: true}); err != nil {
		t.Fatal(err)
	}
	vs := f.h.Versions()
	if len(vs) != 3 {
		t.Fatalf("%d versions, want 3: %+v", len(vs), vs)
	}
	held, acc := vs[1], vs[0]
	if held.Change != blocklist.ChangeHeld || held.Rules != 10 || len(held.SHA256) != 64 || held.Note == "" || held.Trigger != "fsnotify" {
		t.Errorf("held: %+v", held)
	}
	if acc.Change != blocklist.ChangeUpdated || !acc.Accepted || acc.Rules != 1 || acc.Removed != 9 || acc.SHA256 != held.SHA256 || acc.Who != "192.0.2.1:4000" {
		t.Errorf("accepted: %+v", acc)
	}
}
