package blocklist

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestInstallFile(t *testing.T) {
	dir := t.TempDir()
	p, sync, err := InstallFile(dir, "feed.txt", []byte("a.example\n"))
	if err != nil || p != nil {
		t.Fatalf("good file: %v %v", p, err)
	}
	if err := sync(); err != nil {
		t.Fatal(err)
	}
	p, sync, err = InstallFile(dir, "feed.txt", []byte("a.example\nnot an entry\n"))
	if err != nil || sync != nil || len(p) != 1 || !strings.HasPrefix(p[0].Error(), "feed.txt:2:") {
		t.Fatalf("bad file: %v %v", p, err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "feed.txt")); string(b) != "a.example\n" {
		t.Fatalf("bad version replaced the good one: %q", b)
	}
	if p, _, _ := InstallFile(dir, "feed.md", []byte("x")); len(p) != 1 {
		t.Fatal("accepted a file that is not a list")
	}
	// RPZ zones are checked with the origin their name gives.
	if p, _, err := InstallFile(dir, "rpz.example.rpz", []byte("$TTL 60\n@ SOA a. b. 1 1 1 1 1\nbad CNAME .\n")); err != nil || p != nil {
		t.Fatalf("zone: %v %v", p, err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 4 {
		t.Fatalf("directory holds %d entries, want 4 (two copies, their checksums, no temporary files)", len(ents))
	}
	if err := VerifyCopy(filepath.Join(dir, "feed.txt")); err != nil {
		t.Fatalf("copy does not verify: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "feed.txt"), nil, 0o644)
	if err := VerifyCopy(filepath.Join(dir, "feed.txt")); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("truncated copy verifies: %v", err)
	}
}
