package blocklist

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestFirstReadMatchesScan loads files with no version before, read once
// as they are parsed (firstRead), and checks that the store ends with
// what openList's scan and a second, parsing read give: the same SHA-256,
// size, fingerprint, rules and errors, for files with a byte order mark,
// CRLF lines, no last newline, errors, and encodings refused before the
// parse. A second version of each file then loads as a delta of the
// first (the fingerprint is usable).
func TestFirstReadMatchesScan(t *testing.T) {
	var big strings.Builder
	for i := range 30000 {
		fmt.Fprintf(&big, "n%d.Example.com\n", i)
		if i%5000 == 0 {
			fmt.Fprintf(&big, "# platform: p%d\n", i)
		}
	}
	cases := map[string]string{
		"plain.txt":   big.String(),
		"bom.txt":     "\xef\xbb\xbf" + big.String(),
		"crlf.list":   strings.ReplaceAll(big.String(), "\n", "\r\n"),
		"nolast.txt":  strings.TrimSuffix(big.String(), "\n"),
		"errors.txt":  big.String() + "bad..name\ncom\n",
		"utf16.txt":   "\xff\xfe" + big.String(),
		"small.txt":   "a.example\nb.example\n",
		"empty.txt":   "",
		"hosts.txt":   strings.ReplaceAll(big.String(), "n1", "0.0.0.0 n1"),
		"comment.txt": strings.ReplaceAll(big.String(), ".com\n", ".com # note\n"),
	}
	defer func(v int64) { firstReadMin = v }(firstReadMin)
	for name, content := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, name)
			if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			load := func(min int64) (*Store, *FileStatus, []*LineError) {
				firstReadMin = min
				s := NewStore(Options{Dirs: []string{dir}, Logger: discardLogger()})
				rep, err := s.Reload(context.Background(), "test")
				if err != nil {
					t.Fatal(err)
				}
				return s, s.Current().File(name), rep.Errors()
			}
			sOnce, once, onceErrs := load(-1)    // every file read once
			_, twice, twiceErrs := load(1 << 40) // none
			if !reflect.DeepEqual(onceErrs, twiceErrs) {
				t.Fatalf("errors read once %v, read twice %v", onceErrs, twiceErrs)
			}
			if once.SHA256 != twice.SHA256 || once.Size != twice.Size || once.Domains != twice.Domains || once.Rules() != twice.Rules() ||
				once.Stale != twice.Stale || once.badHash != twice.badHash {
				t.Fatalf("read once %+v, read twice %+v", once, twice)
			}
			if !reflect.DeepEqual(once.fp, twice.fp) {
				t.Fatalf("fingerprints differ: read once %d chunks, read twice %d", len(once.fp.chunks), len(twice.fp.chunks))
			}
			lf, err := openList(path, DefaultMaxFileSize, nil)
			if err == nil {
				lf.close()
				if once.SHA256 != "" && lf.hash != once.SHA256 {
					t.Fatalf("SHA-256 %s, openList %s", once.SHA256, lf.hash)
				}
			}
			if once.SHA256 == "" {
				return
			}
			// A second version: one name appended.
			f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(f, "\nappended.example\n")
			f.Close()
			rep, err := sOnce.Reload(context.Background(), "test")
			if err != nil {
				t.Fatal(err)
			}
			if len(content) > 1<<16 && !rep.Delta {
				t.Errorf("the second version was not read as a delta of the first")
			}
			if m := sOnce.Current().MatchName("appended.example"); !m.HasRule && len(rep.Errors()) == 0 {
				t.Errorf("appended name not matched")
			}
		})
	}
}
