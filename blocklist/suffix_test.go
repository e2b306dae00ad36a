package blocklist

import (
	"fmt"
	"strings"
	"testing"
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
