//go:build linux

package exepages

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Release drops the mappings of the executable's clean read-only segments
// and returns how many bytes of them were resident before.
func Release() (int64, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0, fmt.Errorf("exepages: %w", err)
	}
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		return 0, fmt.Errorf("exepages: %w", err)
	}
	var released int64
	for _, r := range releasable(smaps, exe) {
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, r.start, r.end-r.start, unix.MADV_DONTNEED); errno != 0 {
			return released, fmt.Errorf("exepages: madvise %#x-%#x: %w", r.start, r.end, errno)
		}
		released += r.rss
	}
	return released, nil
}

// span is one mapping that may be released.
type span struct {
	start, end uintptr
	rss        int64 // resident bytes
}

// releasable returns the mappings of smaps (the text of /proc/PID/smaps)
// that map the file exe, are neither writable nor shared, and hold no
// anonymous (copy-on-write) page.
func releasable(smaps []byte, exe string) []span {
	exe = strings.TrimSuffix(exe, " (deleted)")
	var out []span
	var cur *span
	var dirty bool // the current mapping holds anonymous (copy-on-write) pages
	flush := func() {
		if cur != nil && !dirty {
			out = append(out, *cur)
		}
		cur, dirty = nil, false
	}
	sc := bufio.NewScanner(bytes.NewReader(smaps))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if start, end, ok := mappingRange(f[0]); ok && len(f) >= 5 {
			flush()
			path := ""
			if len(f) >= 6 {
				path = strings.TrimSuffix(strings.Join(f[5:], " "), " (deleted)")
			}
			perms := f[1]
			if path == exe && len(perms) == 4 && perms[0] == 'r' && perms[1] == '-' && perms[3] == 'p' {
				cur = &span{start: start, end: end}
			}
			continue
		}
		if cur == nil || len(f) < 2 || !strings.HasSuffix(f[0], ":") {
			continue
		}
		kb, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "Rss:":
			cur.rss = kb << 10
		case "Anonymous:", "Swap:":
			// Copy-on-write pages are anonymous. (A file page the page
			// cache has not written back yet counts as Private_Dirty but
			// stays in the page cache: it may be released.)
			if kb != 0 {
				dirty = true
			}
		}
	}
	flush()
	return out
}

// mappingRange parses the "start-end" field of a mapping's first line.
func mappingRange(s string) (start, end uintptr, ok bool) {
	a, b, found := strings.Cut(s, "-")
	if !found {
		return 0, 0, false
	}
	x, err1 := strconv.ParseUint(a, 16, 64)
	y, err2 := strconv.ParseUint(b, 16, 64)
	if err1 != nil || err2 != nil || y <= x {
		return 0, 0, false
	}
	return uintptr(x), uintptr(y), true
}
