package main

import (
	"bufio"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestGenerateDeterministic(t *testing.T) {
	a, err := Generate(5000, 7, 0)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Generate(5000, 7, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a.Listed, b.Listed) || !slices.Equal(a.Allowed, b.Allowed) ||
		!slices.Equal(a.Blocked, b.Blocked) || !slices.Equal(a.Mix, b.Mix) {
		t.Fatal("same seed, different corpus")
	}
	c, err := Generate(5000, 8, 0)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Equal(a.Listed, c.Listed) {
		t.Fatal("different seeds, same list")
	}
}

func TestGenerateShape(t *testing.T) {
	const n = 20_000
	c, err := Generate(n, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]struct{}{}
	for _, d := range c.Listed {
		if _, dup := listed[d]; dup {
			t.Fatalf("duplicate listed name %q", d)
		}
		listed[d] = struct{}{}
		if !validName(d) {
			t.Fatalf("bad listed name %q", d)
		}
	}
	if len(c.Listed) != n || c.Probe != c.Listed[n-1] {
		t.Fatalf("listed %d, probe %q", len(c.Listed), c.Probe)
	}
	if len(c.Allowed) != allowedNames {
		t.Fatalf("allowed %d, want %d", len(c.Allowed), allowedNames)
	}
	for _, a := range c.Allowed {
		if underListed(a, listed) || !validName(a) {
			t.Fatalf("allowed name %q is blocked or invalid", a)
		}
	}
	if len(c.Blocked) != min(n, maxBlockedQs) {
		t.Fatalf("blocked %d", len(c.Blocked))
	}
	subs := 0
	for _, q := range c.Blocked {
		if !underListed(q, listed) || !validName(q) {
			t.Fatalf("blocked query %q is not under a listed name", q)
		}
		if _, exact := listed[q]; !exact {
			subs++
		}
	}
	if subs < len(c.Blocked)/3 || subs > 2*len(c.Blocked)/3 {
		t.Fatalf("%d of %d blocked queries are subdomains, want about half", subs, len(c.Blocked))
	}
	blocked := 0
	for _, q := range c.Mix {
		if underListed(q, listed) {
			blocked++
		}
	}
	if len(c.Mix) != mixLines || blocked*100 != mixLines*mixBlockedPct {
		t.Fatalf("mix: %d lines, %d blocked", len(c.Mix), blocked)
	}
}

func validName(s string) bool {
	if len(s) > 253 {
		return false
	}
	for l := range strings.SplitSeq(s, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, c := range []byte(l) {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

func TestGenerateRejectsEmpty(t *testing.T) {
	if _, err := Generate(0, 1, 0); err == nil {
		t.Fatal("Generate(0) succeeded")
	}
}

func TestWriteFormats(t *testing.T) {
	c, err := Generate(300, 3, 0)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	f, err := c.Write(dir)
	if err != nil {
		t.Fatal(err)
	}
	list := readLines(t, filepath.Join(f.ListDir, "bench.txt"))
	if !strings.HasPrefix(list[0], "#") || !slices.Equal(list[1:], c.Listed) {
		t.Fatalf("list file: %q...", list[:3])
	}
	zone := readLines(t, f.RPZZone)
	want := []string{"$ORIGIN rpz.bench.", "$TTL 300"}
	if !slices.Equal(zone[:2], want) || !strings.HasPrefix(zone[2], "@ SOA ") || len(zone) != 4+2*len(c.Listed) {
		t.Fatalf("zone head %q, %d lines", zone[:4], len(zone))
	}
	d := c.Listed[0]
	if zone[4] != d+" CNAME ." || zone[5] != "*."+d+" CNAME ." {
		t.Fatalf("zone records %q", zone[4:6])
	}
	conf := readLines(t, f.DnsmasqConf)
	if len(conf) != len(c.Listed) || conf[0] != "address=/"+d+"/" {
		t.Fatalf("dnsmasq conf %q, %d lines", conf[0], len(conf))
	}
	for name, names := range map[string][]string{"cached": c.Allowed, "blocked": c.Blocked, "mix": c.Mix} {
		q := readLines(t, f.Queries[name])
		if len(q) != len(names) || q[0] != names[0]+" A" {
			t.Fatalf("%s queries: %d lines, first %q", name, len(q), q[0])
		}
	}
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	var out []string
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// -name-len gives listed names of that length (to a character or two).
func TestGenerateNameLen(t *testing.T) {
	c, err := Generate(2000, 1, 28)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, d := range c.Listed {
		if len(d) < 25 || len(d) > 30 {
			t.Fatalf("listed %q: %d characters, want about 28", d, len(d))
		}
		total += len(d)
	}
	if avg := float64(total) / float64(len(c.Listed)); avg < 27 || avg > 29 {
		t.Fatalf("mean length %.1f, want about 28", avg)
	}
}
