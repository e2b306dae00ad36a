package main

import (
	"fmt"
	"os"

	"github.com/sinkhole-dns/sinkhole/internal/scalenames"
)

// writeList writes n names of seed (internal/scalenames, the names the
// blocklist benchmarks use too) as a native list (format "native") or as
// an RPZ zone ("rpz": name CNAME . and *.name CNAME ., relative to
// scalenames.Zone).
func writeList(path, format string, n int, seed uint64) (int64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	if err := scalenames.Write(f, n, seed, format == "rpz"); err != nil {
		f.Close()
		return 0, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return 0, err
	}
	return st.Size(), f.Close()
}

// appendName appends one new listed name to a generated list (an edit at
// the end of the file) and returns it.
func appendName(path, format string, k int) (string, error) {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return "", err
	}
	name := fmt.Sprintf("added-%d.bench-change.example", k)
	line := name + "\n"
	if format == "rpz" {
		line = name + " CNAME .\n"
	}
	if _, err := f.WriteString(line); err != nil {
		f.Close()
		return "", err
	}
	return name, f.Close()
}
