package blocklist

import (
	"fmt"
	"strings"
	"testing"

	"golang.org/x/net/publicsuffix"

	"github.com/sinkhole-dns/sinkhole/internal/scalenames"
)

// BenchmarkPublicSuffixCheck is what the over-broad rule check adds to
// parsing a list: one public suffix lookup per domain rule.
func BenchmarkPublicSuffixCheck(b *testing.B) {
	names := genNames(4096, 1)
	bs := make([][]byte, len(names))
	for i, n := range names {
		bs[i] = []byte(n)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if publicSuffixMsg(bs[i&4095], suffixHintList) != "" {
			b.Fatal("a generated name is a public suffix")
		}
	}
}

// A big file is checked beside the parser: the offenders are still
// reported with their lines, in order, among the other errors.
func TestPublicSuffixBigFile(t *testing.T) {
	var b strings.Builder
	for i := range 3*suffixBatchLen + 10 {
		switch i {
		case 5000:
			b.WriteString("co.uk\n")
		case 9000:
			b.WriteString("not a rule\n")
		case 12000:
			b.WriteString("*.github.io\n")
		default:
			fmt.Fprintf(&b, "n%d.example\n", i)
		}
	}
	errs := parseList("big.txt", strings.NewReader(b.String()), &recorder{})
	want := []string{`5001 "co.uk" is a public suffix`, "9001 unexpected text after entry", `12001 "github.io" is a public suffix`}
	if len(errs) != len(want) {
		t.Fatalf("errors %v", errs)
	}
	for i, e := range errs {
		if got := fmt.Sprintf("%d %s", e.Line, e.Msg); !strings.HasPrefix(got, want[i]) {
			t.Errorf("error %d: %q, want %q...", i, got, want[i])
		}
	}
}

// xnetPublicSuffixMsg is the check as golang.org/x/net/publicsuffix
// answers it, for TestPublicSuffixTable.
func xnetPublicSuffixMsg(name string) bool {
	if name == "" {
		return false
	}
	ps, icann := publicsuffix.PublicSuffix(name)
	return len(ps) == len(name) && (icann || strings.Contains(name, "."))
}

// TestPublicSuffixTable holds isPublicSuffix to x/net's PublicSuffix: for
// every node of the list, the node itself, names one and two labels under
// it and its parent, plus names that are neither (single labels, addresses,
// generated names).
func TestPublicSuffixTable(t *testing.T) {
	if v := publicsuffix.List.String(); v != pslVersion {
		t.Fatalf("psltable.go is of %q, x/net's list is %q: run go generate in blocklist", pslVersion, v)
	}
	cases := []string{
		"com", "co.uk", "uk", "github.io", "foo.github.io", "ck", "foo.ck", "www.ck", "a.www.ck", "jp", "kawasaki.jp",
		"foo.kawasaki.jp", "city.kawasaki.jp", "wpad", "intranet", "localhost", "example", "xn--p1ai", "xn--80aswg.xn--p1ai",
		"1.2.3.4", "10.0.0.1", "1.2.3", "256.1.1.1", "1.2.3.4.5", "::1", "0", "1", "com.com", "example.com",
		"blogspot.com", "www.blogspot.com", "s3.amazonaws.com", "compute.amazonaws.com", "x.compute.amazonaws.com",
		"appspot.com", "a.b.c.d.e.f", "_dmarc.example.com", "-.com", "a-b.co.uk", "bd", "foo.bd", "er", "x.er",
	}
	for line := range strings.SplitSeq(strings.TrimSpace(pslNodes), "\n") {
		n := line[2:]
		_, parent, _ := strings.Cut(n, ".")
		cases = append(cases, n, "x."+n, "a.b."+n, "www."+n, parent, "x"+n)
	}
	cases = append(cases, genNames(5000, 3)...)
	g := scalenames.New(5)
	for i := range 5000 {
		cases = append(cases, string(g.Name(i)))
	}
	for _, name := range cases {
		got, want := isPublicSuffix(name), xnetPublicSuffixMsg(name)
		if got != want {
			t.Errorf("isPublicSuffix(%q) = %v, x/net says %v", name, got, want)
		}
		if want && !pslCandidate(name) {
			t.Errorf("pslCandidate(%q) = false for a public suffix", name)
		}
	}
}

// TestPSLCandidate: the hash pre-check sends the names that may be public
// suffixes to the full check and decides the rest (TestPublicSuffixTable
// holds the two together to x/net).
func TestPSLCandidate(t *testing.T) {
	for _, c := range []struct {
		name string
		want bool
	}{
		{"com", true}, {"co.uk", true}, {"github.io", true}, {"foo.ck", true}, {"www.ck", true},
		{"1.2.3.4", true}, {"::ffff:1.2.3.4", true}, {"a.b.compute.amazonaws.com", false},
		{"x.compute.amazonaws.com", true}, {"example.com", false}, {"w7lvhdsnc-uzhsnt.yvlhsaqm6.net", false},
		{"foo.co.uk", false}, {"a.foo.github.io", false},
	} {
		if got := pslCandidate(c.name); got != c.want {
			t.Errorf("pslCandidate(%q) = %v, want %v", c.name, got, c.want)
		}
	}
}

// BenchmarkPSLCandidate is the pre-check a list's name takes before any
// public suffix lookup.
func BenchmarkPSLCandidate(b *testing.B) {
	g := scalenames.New(1)
	names := make([]string, 4096)
	for i := range names {
		names[i] = string(g.Name(i))
	}
	n := 0
	for i := 0; b.Loop(); i++ {
		if pslCandidate(names[i&4095]) {
			n++
		}
	}
	if n > b.N/100 {
		b.Fatalf("%d of %d names need the full check", n, b.N)
	}
}
