package blocklist

import (
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

// lineRecorder records every call a list parser makes on its sink.
type lineRecorder struct{ calls []string }

func (r *lineRecorder) beginSection(s Section) {
	r.calls = append(r.calls, fmt.Sprintf("section %+v", s))
}
func (r *lineRecorder) addDomain(name []byte, kind MatchKind, allow bool, line int) {
	r.calls = append(r.calls, fmt.Sprintf("domain %q %v %v %d", name, kind, allow, line))
}
func (r *lineRecorder) addPrefix(p netip.Prefix, allow bool, line int) {
	r.calls = append(r.calls, fmt.Sprintf("prefix %v %v %d", p, allow, line))
}
func (r *lineRecorder) addASN(asn uint32, allow bool, line int) {
	r.calls = append(r.calls, fmt.Sprintf("asn %d %v %d", asn, allow, line))
}

// parseOneLine parses line (line 7 of a file) with the parser's plain
// name path on (parseLine) or off (parseLineGeneral), and returns the
// sink's calls and the errors, as text.
func parseOneLine(line string, allowSuffix, plain bool) ([]string, []string) {
	rec := &lineRecorder{}
	p := &listParser{file: "f.txt", sink: rec, sec: Section{File: "f.txt"}, name: make([]byte, 0, 256),
		suffixes: suffixChecker{hint: suffixHintList}, allowSuffix: allowSuffix}
	if plain {
		p.parseLine(7, []byte(line))
	} else {
		p.parseLineGeneral(7, []byte(line))
	}
	for _, h := range p.suffixes.finish() {
		p.fail(h.line, []byte(h.name), h.msg)
	}
	var errs []string
	for _, e := range p.errs {
		errs = append(errs, e.Error())
	}
	return rec.calls, errs
}

// checkPlainName fails t when parseLine's plain name path reads line
// otherwise than the general path.
func checkPlainName(t *testing.T, line string) {
	t.Helper()
	for _, allow := range []bool{false, true} {
		calls, errs := parseOneLine(line, allow, true)
		wantCalls, wantErrs := parseOneLine(line, allow, false)
		if !reflect.DeepEqual(calls, wantCalls) || !reflect.DeepEqual(errs, wantErrs) {
			t.Fatalf("line %q (allow-public-suffix %v): plain path %q %q, general path %q %q", line, allow, calls, errs, wantCalls, wantErrs)
		}
	}
}

// TestPlainNameMatchesGeneral checks that the one-pass read of a bare
// name line gives the sink and the errors exactly what the general line
// path gives, for the lines it takes and those it must leave.
func TestPlainNameMatchesGeneral(t *testing.T) {
	for _, line := range []string{
		"example.com", "Example.COM", "example.com.", "  example.com\t", "example.com\r", "a", "com", "co.uk",
		"_dmarc.example.com", "x-y.example", "1.2.3.4", "1.2.3.4.", "10.0.0.0/8", "123", "1a.example", "0.0.0.0",
		"AS64496", "as13335", "AS0", "as99999999999", "AS123.", "asset.example.com", "as", "as1x",
		"example.com..", ".example.com", "a..b", ".", "..", "", "   ", "example.com # comment", "example.com#x",
		"*.example.com", "=example.com", "@@example.com", "||example.com^", "0.0.0.0 a.com", "bücher.de",
		"xn--bcher-kva.de", "a*b.com", "-a.com", "a-.com", strings.Repeat("a", 63) + ".com", strings.Repeat("a", 64) + ".com",
		strings.Repeat("a.", 126) + "a", strings.Repeat("a.", 126) + "ab", strings.Repeat("a.", 127) + "a",
		"# platform: x", "!comment", "[Adblock Plus 2.0]", "example.com:53", "http://example.com", "a/b",
	} {
		checkPlainName(t, line)
	}
}
