package blocklist

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestReadSinceMatchesColdRead edits a file of a few MiB (more than one
// SHA-256 checkpoint) in many ways and checks that reading each version
// with the fingerprint of the one before gives exactly what a read from
// scratch gives: the chunks, the directive lines, the line count and the
// SHA-256 of the bytes; and that a small edit is not read twice whole.
func TestReadSinceMatchesColdRead(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	var base bytes.Buffer
	for i := 0; base.Len() < 3*sumEvery+12345; i++ {
		switch {
		case i%5000 == 17:
			fmt.Fprintf(&base, "# platform: P%d\n", i)
		case i%7001 == 3:
			base.WriteString("  # allow-public-suffix\n")
		case i%3001 == 5:
			base.WriteString("# just a comment\n\n")
		case i%4001 == 9:
			// A zone file's record over lines (the chunks keep the
			// parentheses open at their end).
			fmt.Fprintf(&base, "r%d ( TXT\n  \"a (b\" ; )\n  \"c\" )\n", i)
		default:
			fmt.Fprintf(&base, "name%d-%x.example\n", i, rng.Uint32())
		}
	}
	lineAt := func(b []byte, frac float64) int {
		at := int(float64(len(b)) * frac)
		if i := bytes.IndexByte(b[at:], '\n'); i >= 0 {
			return at + i + 1
		}
		return len(b)
	}
	splice := func(b []byte, at, del int, ins string) []byte {
		out := append([]byte(nil), b[:at]...)
		out = append(out, ins...)
		return append(out, b[min(len(b), at+del):]...)
	}
	edits := []struct {
		name string
		edit func([]byte) []byte
	}{
		{"unchanged", func(b []byte) []byte { return b }},
		{"append", func(b []byte) []byte { return append(slices.Clip(b), "added.example\n"...) }},
		{"append without newline", func(b []byte) []byte { return append(slices.Clip(b), "partial.example"...) }},
		{"finish the last line", func(b []byte) []byte { return append(slices.Clip(b), "more\n"...) }},
		{"insert in the middle", func(b []byte) []byte { return splice(b, lineAt(b, 0.5), 0, "inserted.example\n") }},
		{"delete in the middle", func(b []byte) []byte {
			at := lineAt(b, 0.4)
			return splice(b, at, bytes.IndexByte(b[at:], '\n')+1, "")
		}},
		{"edit in place", func(b []byte) []byte {
			at := lineAt(b, 0.6)
			out := slices.Clone(b)
			out[at] ^= 1
			return out
		}},
		{"two edits far apart", func(b []byte) []byte {
			b = splice(b, lineAt(b, 0.8), 0, "late.example\nlater.example\n")
			return splice(b, lineAt(b, 0.1), 0, "early.example\n")
		}},
		{"prepend", func(b []byte) []byte { return splice(b, 0, 0, "first.example\n") }},
		{"byte order mark", func(b []byte) []byte { return splice(b, 0, 0, "\xef\xbb\xbf") }},
		{"directive added", func(b []byte) []byte { return splice(b, lineAt(b, 0.3), 0, "# action: log\n") }},
		{"truncate", func(b []byte) []byte { return b[:lineAt(b, 0.7)] }},
		{"truncate mid-line", func(b []byte) []byte { return b[:lineAt(b, 0.7)+3] }},
		{"shrink to one line", func(b []byte) []byte { return []byte("one.example\n") }},
		{"empty", func(b []byte) []byte { return nil }},
		{"back to the start", func([]byte) []byte { return base.Bytes() }},
		{"blank lines at the end", func(b []byte) []byte { return append(slices.Clip(b), "\n\n\n"...) }},
		{"long line", func(b []byte) []byte {
			return splice(b, lineAt(b, 0.5), 0, string(bytes.Repeat([]byte("x"), 300<<10))+"\n")
		}},
		{"parenthesis opened", func(b []byte) []byte { return splice(b, lineAt(b, 0.55), 0, "open ( TXT \"x\"\n") }},
		{"parenthesis closed", func(b []byte) []byte { return splice(b, lineAt(b, 0.75), 0, "  \"y\" )\n") }},
		{"same size, every chunk shifted", func(b []byte) []byte {
			b = splice(b, lineAt(b, 0.2), 0, "abc\n")
			at := lineAt(b, 0.9)
			return splice(b, at, bytes.IndexByte(b[at:], '\n')+1, "")
		}},
	}
	path := filepath.Join(t.TempDir(), "list.txt")
	read := func(data []byte, prev *fingerprint) *listFile {
		t.Helper()
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		lf, err := openList(path, 1<<30, prev)
		if err != nil {
			t.Fatal(err)
		}
		lf.close()
		return lf
	}
	cur := base.Bytes()
	prev := read(cur, nil).fp
	for _, e := range edits {
		next := e.edit(cur)
		got := read(next, prev)
		want := read(next, nil)
		sum := sha256.Sum256(next)
		if got.hash != hex.EncodeToString(sum[:]) || want.hash != got.hash {
			t.Errorf("%s: SHA-256 %s, from scratch %s, of the bytes %x", e.name, got.hash, want.hash, sum)
		}
		// The parentheses open at each chunk boundary are those parenDepth
		// counts line by line.
		want.fp.layout()
		depth, k := 0, 0
		for n, l := range bytes.Split(next, []byte{'\n'}) {
			for k < len(want.fp.chunks) && want.fp.firstLines[k] == n {
				if int(want.fp.depths[k]) != depth {
					t.Fatalf("%s: chunk %d (line %d): %d parentheses open, parenDepth says %d", e.name, k, n+1, want.fp.depths[k], depth)
				}
				k++
			}
			depth = parenDepth(l, depth)
		}
		if e.name == "parenthesis opened" {
			want.fp.layout()
			open := 0
			for _, d := range want.fp.depths {
				open = max(open, int(d))
			}
			if open == 0 {
				t.Errorf("%s: no chunk ends with a parenthesis open", e.name)
			}
		}
		if !slices.Equal(got.fp.chunks, want.fp.chunks) {
			t.Errorf("%s: %d chunks, from scratch %d", e.name, len(got.fp.chunks), len(want.fp.chunks))
		}
		if !slices.Equal(got.fp.dirs, want.fp.dirs) || got.fp.dirsOver != want.fp.dirsOver {
			t.Errorf("%s: directive lines %v, from scratch %v", e.name, got.fp.dirs, want.fp.dirs)
		}
		if got.lines != want.lines || got.size != int64(len(next)) || want.lines != bytes.Count(next, []byte{'\n'})+1 {
			t.Errorf("%s: %d lines, from scratch %d, %d bytes", e.name, got.lines, want.lines, got.size)
		}
		if len(got.fp.marks) != len(want.fp.marks) {
			t.Errorf("%s: %d checkpoints, from scratch %d", e.name, len(got.fp.marks), len(want.fp.marks))
		}
		for k := range min(len(got.fp.marks), len(want.fp.marks)) {
			if got.fp.marks[k].off != want.fp.marks[k].off || !bytes.Equal(got.fp.marks[k].state, want.fp.marks[k].state) {
				t.Errorf("%s: checkpoint %d differs", e.name, k)
				break
			}
		}
		if small := len(e.name) > 0 && e.name != "long line" && e.name != "shrink to one line" && e.name != "empty" && e.name != "back to the start"; small && got.rescanned > 256<<10 {
			t.Errorf("%s: %d bytes read again", e.name, got.rescanned)
		}
		cur, prev = next, got.fp
	}
}

// TestDeltaSectionsMatchFullReload is TestDeltaMatchesFullReload for a
// list with directives all through it (a platform every 150 lines, an
// action now and then, "# allow-public-suffix" before a public suffix
// rule), edited where the deltas read only the changed chunks: at chunk
// boundaries, next to directives, at the end (appends), at the start;
// directives added and removed too (the full reload's to decide). After
// every reload each probe gets the rule, line, action and platform a full
// load of the same file gives.
func TestDeltaSectionsMatchFullReload(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 5))
	var lines []string
	for i := range 4000 {
		switch {
		case i%150 == 0:
			lines = append(lines, fmt.Sprintf("# platform: P%d", i/150))
		case i%700 == 1:
			lines = append(lines, []string{"# action: log", "# action: nxdomain", "  # scope: any"}[rng.IntN(3)])
		case i == 2500:
			lines = append(lines, "# allow-public-suffix", "co.uk")
		default:
			lines = append(lines, deltaLine(rng))
		}
	}
	body := func() string { return strings.Join(lines, "\n") + "\n" }
	st, dir := load(t, map[string]string{"big.txt": body()})
	var names []string
	for i := range 60 {
		names = append(names, fmt.Sprintf("n%d.example", i), fmt.Sprintf("s%d.n%d.example", i%4, i), fmt.Sprintf("x.s%d.n%d.example", i%4, i))
	}
	names = append(names, "www.co.uk", "added.example")
	var ips []netip.Addr
	for i := range 16 {
		ips = append(ips, netip.MustParseAddr(fmt.Sprintf("198.51.100.%d", i)))
	}
	describe := func(s *Snapshot) string {
		var b strings.Builder
		b.WriteString(decisions(s, names, ips))
		for _, n := range names {
			if m := s.MatchName(n); m.HasRule {
				fmt.Fprintf(&b, "%s platform=%q\n", n, s.Section(m.Rule).Platform)
			}
		}
		return b.String()
	}
	// boundary returns a line number where a chunk of the version in
	// service starts.
	boundary := func() int {
		fp := st.Current().File("big.txt").fp
		if fp == nil {
			return 1 + rng.IntN(len(lines))
		}
		fp.layout()
		return fp.firstLines[rng.IntN(len(fp.chunks))] + 1
	}
	deltas := 0
	for step := range 150 {
		at := 1 + rng.IntN(len(lines)-1) // 0-based index of the line edited
		switch step % 6 {
		case 0, 1:
			at = min(boundary()-1+rng.IntN(3)-1, len(lines)-1)
		case 2:
			at = len(lines) // an append
		case 3:
			// Next to a directive.
			for at < len(lines)-1 && !strings.HasPrefix(strings.TrimSpace(lines[at]), "#") {
				at++
			}
			at += rng.IntN(3) - 1
		}
		at = max(0, at)
		switch op := rng.IntN(10); {
		case at >= len(lines) || op < 4:
			l := deltaLine(rng)
			if step%25 == 0 {
				l = "# platform: Inserted" // a directive: the full reload
			}
			lines = slices.Insert(lines, min(at, len(lines)), l)
		case op < 7 && len(lines) > 100:
			lines = slices.Delete(lines, at, at+1)
		default:
			lines[at] = deltaLine(rng)
		}
		write(t, dir, "big.txt", body())
		rep := reload(t, st)
		if rep.Delta {
			deltas++
		}
		fresh, _ := load(t, map[string]string{"big.txt": body()})
		want := describe(fresh.Current())
		if got := describe(st.Current()); got != want {
			t.Fatalf("step %d (delta %v, line %d): decisions differ from a full load:\n%s", step, rep.Delta, at+1, diffLines(got, want))
		}
		if f := st.Current().File("big.txt"); f.Domains != st.Current().fileDomainCount(f) {
			t.Fatalf("step %d: %d domain rules counted, %d in service", step, f.Domains, st.Current().fileDomainCount(f))
		}
		if step%10 == 0 {
			st.WaitCompacted()
			if got := describe(st.Current()); got != want {
				t.Fatalf("step %d: after the merge, decisions differ from a full load:\n%s", step, diffLines(got, want))
			}
		}
	}
	if deltas < 100 {
		t.Fatalf("only %d of 150 reloads were deltas", deltas)
	}
}

// parenDepth, taken from parenWalk, is the walk of the parentheses that
// ignores a ")" with none open, from any depth: a table of lines with
// quotes, escapes and comments, then random lines against that walk
// written out.
func TestParenDepthFromWalk(t *testing.T) {
	walk := func(line []byte, depth int) int {
		quoted := false
		for i := 0; i < len(line); i++ {
			switch c := line[i]; {
			case c == '\\':
				i++
			case c == '"':
				quoted = !quoted
			case quoted:
			case c == ';':
				return depth
			case c == '(':
				depth++
			case c == ')':
				if depth > 0 {
					depth--
				}
			}
		}
		return depth
	}
	tests := []struct {
		line  string
		depth int
		want  int
	}{
		{"@ SOA ns. admin. ( 1", 0, 1},
		{"60 60 600 60 )", 1, 0},
		{"))(", 0, 1},
		{")) (", 1, 1},
		{`x TXT "(" ; (`, 0, 0},
		{`x TXT \( (`, 2, 3},
		{"", 2, 2},
	}
	for _, tt := range tests {
		if got := parenDepth([]byte(tt.line), tt.depth); got != tt.want {
			t.Errorf("parenDepth(%q, %d) = %d, want %d", tt.line, tt.depth, got, tt.want)
		}
	}
	r := rand.New(rand.NewPCG(5, 5))
	alphabet := []byte(`()();"\ a`)
	for range 20000 {
		line := make([]byte, r.IntN(12))
		for i := range line {
			line[i] = alphabet[r.IntN(len(alphabet))]
		}
		depth := r.IntN(4)
		if got, want := parenDepth(line, depth), walk(line, depth); got != want {
			t.Fatalf("parenDepth(%q, %d) = %d, want %d", line, depth, got, want)
		}
	}
}

// TestSHAAsideMatchesInline checks that a file read with no version
// before and hashed on another goroutine (shaAside) gives exactly what
// hashing it inline gives: the SHA-256, its checkpoints (which the next
// read restores), the chunks and the line count, for sizes around the
// reads' and the checkpoints' boundaries.
func TestSHAAsideMatchesInline(t *testing.T) {
	defer func(m int64) { shaAsideMin = m }(shaAsideMin)
	rng := rand.New(rand.NewPCG(5, 8))
	dir := t.TempDir()
	for _, size := range []int{0, 1, scanBuf - 1, scanBuf, scanBuf + 1, 3*scanBuf + 17, sumEvery, sumEvery + 1, 2*sumEvery + scanBuf/3} {
		var b bytes.Buffer
		for b.Len() < size {
			fmt.Fprintf(&b, "n%x.example\n", rng.Uint64())
		}
		data := b.Bytes()[:size]
		path := filepath.Join(dir, fmt.Sprintf("f%d.list", size))
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		read := func(aside bool) *listFile {
			shaAsideMin = 1 << 62
			if aside {
				shaAsideMin = -1
			}
			lf, err := openList(path, 1<<30, nil)
			if err != nil {
				t.Fatalf("size %d: %v", size, err)
			}
			lf.close()
			return lf
		}
		in, as := read(false), read(true)
		sum := sha256.Sum256(data)
		if as.hash != hex.EncodeToString(sum[:]) || as.hash != in.hash {
			t.Errorf("size %d: SHA-256 %s aside, %s inline, want %x", size, as.hash, in.hash, sum)
		}
		if as.lines != in.lines || as.size != in.size || !slices.Equal(as.fp.chunks, in.fp.chunks) {
			t.Errorf("size %d: lines %d/%d, size %d/%d, %d/%d chunks (aside/inline)", size, as.lines, in.lines, as.size, in.size, len(as.fp.chunks), len(in.fp.chunks))
		}
		if len(as.fp.marks) != len(in.fp.marks) {
			t.Fatalf("size %d: %d checkpoints aside, %d inline", size, len(as.fp.marks), len(in.fp.marks))
		}
		for i := range as.fp.marks {
			if as.fp.marks[i].off != in.fp.marks[i].off || !bytes.Equal(as.fp.marks[i].state, in.fp.marks[i].state) {
				t.Errorf("size %d: checkpoint %d differs", size, i)
			}
		}
	}
}

// TestParseChecksBytesScanned checks that listFile.parse reports
// errChangedWhileRead for a file whose bytes changed between the scan
// (which hashed them) and the parse, in place and at the same size, and
// parses a file that did not change, with or without a byte order mark.
func TestParseChecksBytesScanned(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name   string
		data   string
		change bool
	}{
		{"same.list", "a.example\nb.example\n", false},
		{"bom.list", "\xef\xbb\xbfa.example\nb.example\n", false},
		{"changed.list", "a.example\nb.example\n", true},
		{"changed-bom.list", "\xef\xbb\xbfa.example\nb.example\n", true},
		{"big.rpz", rpzHead + strings.Repeat("n.example CNAME .\n", 100000), true},
	} {
		path := filepath.Join(dir, tc.name)
		if err := os.WriteFile(path, []byte(tc.data), 0o644); err != nil {
			t.Fatal(err)
		}
		lf, err := openList(path, 1<<30, nil)
		if err != nil {
			t.Fatal(err)
		}
		if tc.change {
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt([]byte("z"), int64(len(tc.data)-3)); err != nil {
				t.Fatal(err)
			}
			f.Close()
		}
		_, err = lf.parse(tc.name, formats[filepath.Ext(tc.name)], &recorder{})
		lf.close()
		if tc.change != errors.Is(err, errChangedWhileRead) {
			t.Errorf("%s (changed %v): parse error %v", tc.name, tc.change, err)
		}
	}
}

// TestBigChunksMatchFullReload runs the delta property tests with every
// file cut into the bigger chunks of big files (bigChunkFile).
func TestBigChunksMatchFullReload(t *testing.T) {
	defer bigChunkFile.Store(bigChunkFile.Load())
	bigChunkFile.Store(0)
	t.Run("ReadSinceMatchesColdRead", TestReadSinceMatchesColdRead)
	t.Run("DeltaMatchesFullReload", TestDeltaMatchesFullReload)
	t.Run("DeltaSectionsMatchFullReload", TestDeltaSectionsMatchFullReload)
	t.Run("RPZDeltaMatchesFullReload", TestRPZDeltaMatchesFullReload)
	path := filepath.Join(t.TempDir(), "big.txt")
	var b bytes.Buffer
	for i := range 20000 {
		fmt.Fprintf(&b, "n%d.example.com\n", i)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	lf, err := openList(path, 1<<30, nil)
	if err != nil {
		t.Fatal(err)
	}
	lf.close()
	if lf.fp.shift != bigChunkShift || len(lf.fp.chunks) > 20000/150 {
		t.Errorf("shift %d, %d chunks of 20000 lines: want shift %d, chunks of about 260 lines", lf.fp.shift, len(lf.fp.chunks), bigChunkShift)
	}
}
