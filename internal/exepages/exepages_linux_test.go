//go:build linux

package exepages

import (
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

func TestReleasable(t *testing.T) {
	const exe = "/usr/bin/sinkhole"
	mapping := func(rng, perms, path string, fields ...string) string {
		s := rng + " " + perms + " 00000000 fe:01 4242"
		if path != "" {
			s += "                       " + path
		}
		s += "\nSize:              1024 kB\n"
		for _, f := range fields {
			s += f + "\n"
		}
		return s + "VmFlags: rd ex mr mw me\n"
	}
	clean := []string{"Rss:               512 kB", "Anonymous:            0 kB", "Private_Dirty:        0 kB", "Swap:                 0 kB"}
	for _, tc := range []struct {
		name  string
		smaps string
		want  []span
	}{
		{"text and rodata", mapping("00400000-00500000", "r-xp", exe, clean...) + mapping("00500000-00600000", "r--p", exe, clean...),
			[]span{{0x400000, 0x500000, 512 << 10}, {0x500000, 0x600000, 512 << 10}}},
		{"writable data is kept", mapping("00600000-00700000", "rw-p", exe, clean...), nil},
		{"shared mapping is kept", mapping("00600000-00700000", "r--s", exe, clean...), nil},
		{"relocated read-only data is kept", mapping("00600000-00700000", "r--p", exe,
			"Rss:                 8 kB", "Anonymous:            8 kB", "Private_Dirty:        8 kB"), nil},
		{"dirty file pages may go", mapping("00400000-00500000", "r-xp", exe, "Rss: 512 kB", "Private_Dirty: 512 kB", "Anonymous: 0 kB"),
			[]span{{0x400000, 0x500000, 512 << 10}}},
		{"swapped private pages are kept", mapping("00600000-00700000", "r--p", exe, "Rss: 0 kB", "Swap: 4 kB"), nil},
		{"another file", mapping("7f0000000000-7f0000100000", "r-xp", "/usr/lib/libc.so.6", clean...), nil},
		{"anonymous memory", mapping("c000000000-c000400000", "rw-p", "", "Rss: 4096 kB", "Anonymous: 4096 kB") +
			mapping("00400000-00500000", "r-xp", exe, clean...), []span{{0x400000, 0x500000, 512 << 10}}},
		{"deleted executable", mapping("00400000-00500000", "r-xp", exe+" (deleted)", clean...), []span{{0x400000, 0x500000, 512 << 10}}},
		{"path with a space", mapping("00400000-00500000", "r-xp", "/opt/my dir/sinkhole", clean...), nil},
		{"garbage", "not smaps\n-\nRss: x kB\n\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := releasable([]byte(tc.smaps), exe); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
	spaced := mapping("00400000-00500000", "r-xp", "/opt/my dir/sinkhole", clean...)
	if got := releasable([]byte(spaced), "/opt/my dir/sinkhole"); len(got) != 1 {
		t.Errorf("path with a space: got %+v, want one span", got)
	}
}

// fileRSS returns the resident bytes of the test binary's read-only mappings.
func fileRSS(t *testing.T) int64 {
	t.Helper()
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, s := range releasable(smaps, exe) {
		n += s.rss
	}
	return n
}

// TestRelease releases the test binary's own pages: its resident read-only
// mappings shrink, and the program (code, tables, strings) goes on working.
func TestRelease(t *testing.T) {
	before := fileRSS(t)
	if before == 0 {
		t.Skip("no resident read-only mapping of the executable (unusual kernel)")
	}
	released, err := Release()
	if err != nil {
		t.Fatal(err)
	}
	if released <= 0 || released > before+(1<<20) {
		t.Errorf("released %d bytes, %d were resident", released, before)
	}
	after := fileRSS(t)
	if after >= before {
		t.Errorf("resident read-only pages %d bytes before, %d after", before, after)
	}
	t.Logf("resident read-only pages of the executable: %d KB before, %d KB after", before>>10, after>>10)
	// Code and read-only data come back on use.
	if got := strings.Repeat(strconv.Itoa(42), 3); got != "424242" {
		t.Fatalf("after Release: %q", got)
	}
	if _, err := Release(); err != nil {
		t.Fatalf("second Release: %v", err)
	}
}
