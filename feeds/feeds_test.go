package feeds

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sinkhole-dns/sinkhole/resolver/rpz"
)

func TestParse(t *testing.T) {
	lists := t.TempDir()
	tests := []struct {
		o    Options
		want string // error text; "" for valid
	}{
		{Options{}, ""},
		{Options{Feeds: []string{"reg=rpz.test@127.0.0.1"}}, "--state-dir: a directory is needed"},
		{Options{StateDir: "s", Feeds: []string{"reg=RPZ.Test@127.0.0.1:5300"}}, ""},
		{Options{StateDir: "s", Feeds: []string{"reg"}}, `--rpz-feed "reg": want NAME=ZONE@PRIMARY[:PORT]`},
		{Options{StateDir: "s", Feeds: []string{"reg=rpz.test@host"}}, `primary "host": want an IP address`},
		{Options{StateDir: "s", Feeds: []string{"a=z.test@127.0.0.1", "b=Z.test@::1"}}, "zone z.test is already fed by a"},
		{Options{StateDir: "s", Feeds: []string{"a=z.test@127.0.0.1"}, URLs: []string{"a=https://x/l.rpz"}}, "--list-url a: the name is already used by --rpz-feed"},
		{Options{StateDir: "s", URLs: []string{"x=ftp://h/l"}}, `"ftp://h/l" is not an http or https URL`},
		{Options{StateDir: "s", Export: "rpz.test", AllowTransfer: []string{"10.0.0.1", "10.1.0.0/16"}, Notify: []string{"::1", "127.0.0.1:5300"}}, ""},
		{Options{Notify: []string{"127.0.0.1"}}, "need --rpz-export"},
		{Options{StateDir: lists, Export: "rpz.test"}, "must not be the --lists directory"},
		{Options{StateDir: "s", TSIG: []string{"nope=/k"}}, "no --rpz-feed named nope"},
	}
	for _, tt := range tests {
		if tt.o.URLInterval == 0 {
			tt.o.URLInterval = time.Minute
		}
		cfg, err := Parse(tt.o, lists)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%+v: %v", tt.o, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%+v: error %v, want %q", tt.o, err, tt.want)
		case tt.want == "" && len(tt.o.Feeds) == 1 && (cfg.Feeds[0].Zone != "rpz.test" || cfg.Feeds[0].Primary.Port() != 5300):
			t.Errorf("feed parsed as %+v", cfg.Feeds[0])
		case tt.want == "" && tt.o.Export != "" && (len(cfg.AllowTransfer) != 2 || cfg.Notify[0] != "[::1]:53"):
			t.Errorf("export parsed as %+v %v", cfg.AllowTransfer, cfg.Notify)
		}
	}
}

func TestListURLFileNames(t *testing.T) {
	cfg, err := Parse(Options{StateDir: "s", URLInterval: time.Minute,
		URLs: []string{"a=https://h/list.RPZ", "b.txt=https://h/x", "c=https://h/x?y"}}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, u := range cfg.URLs {
		got = append(got, u.File)
	}
	if strings.Join(got, " ") != "a.rpz b.txt c.txt" {
		t.Fatalf("files %v", got)
	}
}

func TestNewRemovesOrphans(t *testing.T) {
	state := t.TempDir()
	for _, f := range []string{"kept.rpz", "gone.rpz", "gone.txt", "notes.md"} {
		os.WriteFile(filepath.Join(state, f), []byte("x\n"), 0o644)
	}
	cfg, err := Parse(Options{StateDir: state, URLInterval: time.Minute, Feeds: []string{"kept=rpz.test@127.0.0.1"}}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	fs, err := New(cfg, rpz.BuildOptions{TTL: 60}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(state)
	var left []string
	for _, e := range ents {
		left = append(left, e.Name())
	}
	if strings.Join(left, " ") != "kept.rpz notes.md" {
		t.Fatalf("state dir holds %v", left)
	}
	if d := fs.Dirs(); len(d) != 1 || d[0] != state {
		t.Fatalf("Dirs = %v", d)
	}
	var none *Set
	if none.Dirs() != nil || none.Exporter() != nil || none.NotifyHandler() != nil {
		t.Fatal("a nil Set is not empty")
	}
	none.Start()
	none.Stop()
}
