package scalenames

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
)

// The names of a seed are the same on every call, distinct, about 28
// characters, and never a public suffix or the child of one.
func TestNames(t *testing.T) {
	a, b := New(3), New(3)
	seen := map[string]bool{}
	total := 0
	for i := range 20000 {
		n := string(a.Name(i))
		if m := string(b.Name(i)); m != n {
			t.Fatalf("name %d: %q, then %q for the same seed", i, n, m)
		}
		if seen[n] {
			t.Fatalf("name %d: %q twice", i, n)
		}
		seen[n] = true
		if strings.Count(n, ".") != 2 || isPublicSuffix(n) {
			t.Fatalf("name %d: %q, want three labels and no public suffix", i, n)
		}
		total += len(n)
	}
	if avg := total / 20000; avg < 24 || avg > 32 {
		t.Errorf("average length %d, want about 28", avg)
	}
	if string(New(4).Name(0)) == string(New(3).Name(0)) {
		t.Error("seeds 3 and 4 give the same first name")
	}
}

// Write lays out a native list (a platform line every 10,000 names) or an
// RPZ zone (a name and its wildcard per name) of the same names.
func TestWrite(t *testing.T) {
	for _, tc := range []struct {
		rpz         bool
		lines, head int
	}{
		{rpz: false, lines: 20001 + 3, head: 0},
		{rpz: true, lines: 2*20001 + 4, head: 4},
	} {
		var buf bytes.Buffer
		if err := Write(&buf, 20001, 9, tc.rpz); err != nil {
			t.Fatal(err)
		}
		var lines []string
		sc := bufio.NewScanner(&buf)
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		if len(lines) != tc.lines {
			t.Fatalf("rpz=%v: %d lines, want %d", tc.rpz, len(lines), tc.lines)
		}
		first := string(New(9).Name(0))
		if tc.rpz {
			if lines[0] != "$ORIGIN "+Zone || lines[4] != first+" CNAME ." || lines[5] != "*."+first+" CNAME ." {
				t.Errorf("rpz: starts %q", lines[:6])
			}
		} else if lines[0] != "# platform: P0" || lines[1] != first || lines[10001] != "# platform: P1" {
			t.Errorf("native: starts %q, line 10001 %q", lines[:2], lines[10001])
		}
	}
}
