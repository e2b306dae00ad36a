package blocklist

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestLint(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "a.txt", "# platform: X\nbinance.com\napi.binance.com\n*.www.binance.com\n=binance.com\nokx.com\nokx.com\n198.51.100.0/24\n198.51.100.0/24\n# platform: Y\nsub.okx.com\n")
	write(t, dir, "b.txt", "# platform: X\nokx.com\n*.bybit.com\nx.bybit.com\n@@academy.binance.com\n")
	write(t, dir, "c.txt", "# only a comment\n")
	write(t, dir, "bad.txt", "not a rule here\n")
	got := Lint([]string{filepath.Join(dir, "a.txt"), filepath.Join(dir, "b.txt"), filepath.Join(dir, "c.txt"), filepath.Join(dir, "bad.txt")}, 0)
	var lines []string
	for _, e := range got {
		lines = append(lines, strings.TrimPrefix(e.Error(), dir+"/"))
	}
	want := []string{
		"a.txt:7: warning: duplicate of " + dir + "/a.txt:6",
		"a.txt:9: warning: duplicate of " + dir + "/a.txt:8",
		"b.txt:2: warning: duplicate of " + dir + "/a.txt:6",
		"c.txt: warning: the file has no rules (a list that is empty or only comments enforces nothing)",
		"a.txt:3: warning: api.binance.com is already covered by binance.com (" + dir + "/a.txt:2)",
		"a.txt:4: warning: *.www.binance.com is already covered by binance.com (" + dir + "/a.txt:2)",
		"a.txt:5: warning: =binance.com is already covered by binance.com (" + dir + "/a.txt:2)",
		"b.txt:4: warning: x.bybit.com is already covered by *.bybit.com (" + dir + "/b.txt:3)",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}
