package blocklist

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Writing a copy streams the file: the heap it allocates does not grow
// with the file (a 12 MB list here).
func TestLastGoodCopyStreams(t *testing.T) {
	lists, state := t.TempDir(), t.TempDir()
	var b strings.Builder
	for i := range 500_000 {
		fmt.Fprintf(&b, "name%d.example.test\n", i)
	}
	path := filepath.Join(lists, "big.txt")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	size := int64(b.Len())
	hash := HashBytes([]byte(b.String()))
	b.Reset()
	lg := &lastGood{dir: state, lists: lists, max: DefaultMaxFileSize, log: discardLogger()}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	if err := lg.save("big.txt", lastGoodWant{path: path, hash: hash, size: size}); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	runtime.ReadMemStats(&after)
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("copied %d bytes in %s, %d bytes allocated", size, took, alloc)
	if alloc > 1<<20 {
		t.Fatalf("copying %d bytes allocated %d", size, alloc)
	}
	if err := VerifyCopy(filepath.Join(state, "big.txt")); err != nil {
		t.Fatal(err)
	}
	// A file that changed since the version in service was read is not copied.
	os.WriteFile(path, []byte("other.example\n"), 0o644)
	if err := lg.save("big.txt", lastGoodWant{path: path, hash: hash, size: size}); err != errChangedSince {
		t.Fatalf("changed file: %v", err)
	}
	if err := VerifyCopy(filepath.Join(state, "big.txt")); err != nil {
		t.Fatalf("the older copy was harmed: %v", err)
	}
}

// A file a writer holds open is copied once it is closed.
func TestLastGoodWaitsForWriter(t *testing.T) {
	lists, state := t.TempDir(), filepath.Join(t.TempDir(), "last-good")
	write(t, lists, "l.txt", names("a", 10))
	var open atomic.Bool
	st := NewStore(Options{Dirs: []string{lists}, LastGood: state, Logger: discardLogger(),
		Writing: func(p string) bool { return open.Load() && strings.HasSuffix(p, "l.txt") }})
	reload(t, st)
	open.Store(true) // a writer opened it after the version went into service
	copyPath := filepath.Join(state, "l.txt")
	time.Sleep(lastGoodQuiet + 300*time.Millisecond)
	if _, err := os.Stat(copyPath); !os.IsNotExist(err) {
		t.Fatalf("copied while a writer holds it open: %v", err)
	}
	open.Store(false)
	deadline := time.Now().Add(5 * time.Second)
	for VerifyCopy(copyPath) != nil {
		if time.Now().After(deadline) {
			t.Fatal("not copied after the writer closed it")
		}
		time.Sleep(20 * time.Millisecond)
	}
	st.WaitLastGood() // the index after the copy, before the directory is removed
}
