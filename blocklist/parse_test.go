package blocklist

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// recorder is an entrySink that writes entries as text, for table tests.
type recorder struct {
	out   []string
	sec   Section
	warns []*LineError
}

func (r *recorder) beginSection(s Section) { r.sec = s }
func (r *recorder) useSection(s Section)   { r.sec = s }
func (r *recorder) restart()               { r.out, r.warns = nil, nil }

// repeatedOwner reports a name listed twice with the same kind.
func (r *recorder) repeatedOwner() bool {
	seen := map[string]bool{}
	for _, o := range r.out {
		f := strings.Fields(o) // "LINE KIND allow=B NAME ..."
		if len(f) < 4 || f[1] == "ip" {
			continue
		}
		key := f[1] + " " + f[3]
		if seen[key] {
			return true
		}
		seen[key] = true
	}
	return false
}

// hasDomainRule reports a domain rule of name and kind, whatever its
// allow bit.
func (r *recorder) hasDomainRule(name []byte, kind MatchKind) bool {
	for _, o := range r.out {
		if f := strings.Fields(o); len(f) >= 4 && f[1] == kind.String() && f[3] == string(name) {
			return true
		}
	}
	return false
}
func (r *recorder) addDomain(name []byte, kind MatchKind, allow bool, line int) {
	r.out = append(r.out, fmt.Sprintf("%d %s allow=%v %s [%s/%s/%s]", line, kind, allow, name, r.sec.Platform, r.sec.Action, r.sec.Scope))
}
func (r *recorder) addPrefix(p netip.Prefix, allow bool, line int) {
	r.out = append(r.out, fmt.Sprintf("%d ip allow=%v %s [%s/%s/%s]", line, allow, p, r.sec.Platform, r.sec.Action, r.sec.Scope))
}
func (r *recorder) setLocalData(rrs []dns.RR) {
	var parts []string
	for _, rr := range rrs {
		parts = append(parts, strings.ReplaceAll(rr.String(), "\t", " "))
	}
	r.out[len(r.out)-1] += " {" + strings.Join(parts, "; ") + "}"
}
func (r *recorder) warn(e *LineError) { r.warns = append(r.warns, e) }
func (r *recorder) addASN(asn uint32, allow bool, line int) {
	r.out = append(r.out, fmt.Sprintf("%d asn allow=%v AS%d [%s/%s/%s]", line, allow, asn, r.sec.Platform, r.sec.Action, r.sec.Scope))
}

func TestParseLineForms(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"plain domain", "example.com", []string{"1 domain allow=false example.com [/default/any]"}},
		{"upper case and trailing dot", "Example.COM.", []string{"1 domain allow=false example.com [/default/any]"}},
		{"wildcard", "*.example.com", []string{"1 wildcard allow=false example.com [/default/any]"}},
		{"exact", "=www.example.com", []string{"1 exact allow=false www.example.com [/default/any]"}},
		{"exception", "@@example.com", []string{"1 domain allow=true example.com [/default/any]"}},
		{"exception wildcard", "@@*.example.com", []string{"1 wildcard allow=true example.com [/default/any]"}},
		{"exception exact", "@@=example.com", []string{"1 exact allow=true example.com [/default/any]"}},
		{"trailing comment", "example.com   # the main site", []string{"1 domain allow=false example.com [/default/any]"}},
		{"full-line comment and blank", "# hello\n\n   \nexample.com", []string{"4 domain allow=false example.com [/default/any]"}},
		{"crlf", "a.com\r\nb.com\r\n", []string{"1 domain allow=false a.com [/default/any]", "2 domain allow=false b.com [/default/any]"}},
		{"tabs and spaces", "\t  a.com \t", []string{"1 domain allow=false a.com [/default/any]"}},
		{"unicode to punycode", "bücher.de", []string{"1 domain allow=false xn--bcher-kva.de [/default/any]"}},
		{"underscore label", "_dmarc.example.com", []string{"1 domain allow=false _dmarc.example.com [/default/any]"}},
		{"hosts 0.0.0.0", "0.0.0.0 a.com b.com", []string{"1 domain allow=false a.com [/default/any]", "1 domain allow=false b.com [/default/any]"}},
		{"hosts 127.0.0.1", "127.0.0.1\ta.com", []string{"1 domain allow=false a.com [/default/any]"}},
		{"hosts ::", ":: a.com", []string{"1 domain allow=false a.com [/default/any]"}},
		{"hosts ::1 with comment", "::1 a.com # x", []string{"1 domain allow=false a.com [/default/any]"}},
		{"hosts localhost skipped", "127.0.0.1 localhost\n::1 ip6-localhost ip6-loopback", nil},
		{"adblock", "||example.com^", []string{"1 domain allow=false example.com [/default/any]"}},
		{"adblock exception", "@@||example.com^", []string{"1 domain allow=true example.com [/default/any]"}},
		{"adblock comments and header", "[Adblock Plus 2.0]\n! Title: x\n||a.com^", []string{"3 domain allow=false a.com [/default/any]"}},
		{"platform tag", "# platform: Binance\nbinance.com\n# platform: OKX\nokx.com", []string{
			"2 domain allow=false binance.com [Binance/default/any]", "4 domain allow=false okx.com [OKX/default/any]"}},
		{"directive keys any case", "#Platform:Bybit\n#  SCOPE: Overseas\n# Action: log\nbybit.com", []string{
			"4 domain allow=false bybit.com [Bybit/log/overseas]"}},
		{"scope back to any", "# scope: overseas\na.com\n# scope: any\nb.com", []string{
			"2 domain allow=false a.com [/default/overseas]", "4 domain allow=false b.com [/default/any]"}},
		{"action default", "# action: refused\na.com\n# action: default\nb.com", []string{
			"2 domain allow=false a.com [/refused/any]", "4 domain allow=false b.com [/default/any]"}},
		{"comment with colon is not a directive", "# Note: see below\na.com", []string{"2 domain allow=false a.com [/default/any]"}},
		{"ipv4", "203.0.113.7", []string{"1 ip allow=false 203.0.113.7/32 [/default/any]"}},
		{"ipv4 prefix", "198.51.100.0/24", []string{"1 ip allow=false 198.51.100.0/24 [/default/any]"}},
		{"ipv6 prefix", "2001:db8::/32", []string{"1 ip allow=false 2001:db8::/32 [/default/any]"}},
		{"ipv6 address", "2001:db8::1", []string{"1 ip allow=false 2001:db8::1/128 [/default/any]"}},
		{"v4-mapped prefix", "::ffff:198.51.100.0/120", []string{"1 ip allow=false 198.51.100.0/24 [/default/any]"}},
		{"ip exception", "@@198.51.100.0/25", []string{"1 ip allow=true 198.51.100.0/25 [/default/any]"}},
		{"asn", "AS13335", []string{"1 asn allow=false AS13335 [/default/any]"}},
		{"asn lower case", "as64500", []string{"1 asn allow=false AS64500 [/default/any]"}},
		{"asn exception", "@@AS64501", []string{"1 asn allow=true AS64501 [/default/any]"}},
		{"v4-mapped /96 is all of IPv4", "::ffff:0.0.0.0/96", []string{"1 ip allow=false 0.0.0.0/0 [/default/any]"}},
		{"v4-mapped address", "::ffff:203.0.113.7", []string{"1 ip allow=false 203.0.113.7/32 [/default/any]"}},
		{"ipv6 everything", "::/0", []string{"1 ip allow=false ::/0 [/default/any]"}},
		{"ipv6 exception", "@@2001:db8:1::/48", []string{"1 ip allow=true 2001:db8:1::/48 [/default/any]"}},
		{"ip with trailing comment", "203.0.113.7 # exchange API", []string{"1 ip allow=false 203.0.113.7/32 [/default/any]"}},
		{"ip under platform and log action", "# platform: X\n# action: log\n192.0.2.0/24", []string{"3 ip allow=false 192.0.2.0/24 [X/log/any]"}},
		{"largest asn", "AS4294967295", []string{"1 asn allow=false AS4294967295 [/default/any]"}},
		{"asn under platform", "# platform: Y\nAS64496", []string{"2 asn allow=false AS64496 [Y/default/any]"}},
		{"single label", "wpad", []string{"1 domain allow=false wpad [/default/any]"}},
		{"public suffix allowed", "# allow-public-suffix\nco.uk\n*.github.io", []string{"2 domain allow=false co.uk [/default/any]", "3 wildcard allow=false github.io [/default/any]"}},
		{"exact public suffix", "=com", []string{"1 exact allow=false com [/default/any]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &recorder{}
			errs := parseList("f.txt", strings.NewReader(tt.in), r)
			if len(errs) != 0 {
				t.Fatalf("unexpected errors: %v", errs)
			}
			if strings.Join(r.out, "\n") != strings.Join(tt.want, "\n") {
				t.Fatalf("got\n%s\nwant\n%s", strings.Join(r.out, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	long := strings.Repeat("a", 64) + ".com"
	tests := []struct {
		name, in, want string
	}{
		{"two tokens", "a.com b.com", `f.txt:1: unexpected text after entry`},
		{"hosts other address", "10.0.0.1 a.com", `f.txt:1: hosts-file line must map names to 0.0.0.0, 127.0.0.1, :: or ::1: "10.0.0.1 a.com"`},
		{"url", "https://binance.com/", `f.txt:1: looks like a URL; write the bare domain (e.g. example.com): "https://binance.com/"`},
		{"path", "binance.com/login", `f.txt:1: looks like a URL`},
		{"bad char", "bin@nce.com", `f.txt:1: invalid character '@' in domain name: "bin@nce.com"`},
		{"empty label", "a..com", `f.txt:1: empty label in domain name`},
		{"leading dot", ".a.com", `f.txt:1: empty label in domain name`},
		{"long label", long, `f.txt:1: domain label longer than 63 characters`},
		{"long name", strings.Repeat("abcdefghi.", 26) + "com", `f.txt:1: domain name longer than 253 characters`},
		{"star inside", "a.*.com", `f.txt:1: '*' is only allowed as a leading "*." (subdomains only)`},
		{"bare star", "*", `f.txt:1: '*' is only allowed`},
		{"adblock options", "||a.com^$third-party", `f.txt:1: adblock options ($...) are not supported`},
		{"adblock no caret", "||a.com", `f.txt:1: adblock rule must look like ||example.com^`},
		{"bad ip", "300.1.2.3", `f.txt:1: invalid IP address`},
		{"bad prefix", "1.2.3.0/33", `f.txt:1: invalid IP prefix`},
		{"host bits", "198.51.100.7/24", `f.txt:1: prefix has host bits set; did you mean 198.51.100.0/24?`},
		{"asn zero", "AS0", `f.txt:1: AS0 is reserved and never announces addresses: "AS0"`},
		{"asn just past uint32", "AS4294967296", `f.txt:1: AS number out of range`},
		{"ipv6 zone", "fe80::1%eth0", `f.txt:1: invalid IP address`},
		{"ipv6 prefix with zone", "fe80::%eth0/64", `f.txt:1: invalid IP prefix`},
		{"three octets", "192.0.2", `f.txt:1: invalid IP address`},
		{"leading zero octet", "192.0.02.1", `f.txt:1: invalid IP address`},
		{"ipv6 host bits", "2001:db8::1/32", `f.txt:1: prefix has host bits set; did you mean 2001:db8::/32?`},
		{"ipv6 prefix too long", "2001:db8::/129", `f.txt:1: invalid IP prefix`},
		{"ip url", "http://192.0.2.1/", `f.txt:1: looks like a URL`},
		{"empty prefix length", "192.0.2.0/", `f.txt:1: invalid IP prefix`},
		{"asn range", "AS99999999999", `f.txt:1: AS number out of range`},
		{"bad scope", "# scope: abroad", `f.txt:1: unknown scope "abroad" (want any or overseas)`},
		{"bad action", "# action: block", `f.txt:1: unknown action "block"`},
		{"empty exception", "@@", `f.txt:1: empty exception`},
		{"bad idn", "a\u200d\u200d.com", `f.txt:1: invalid internationalized domain name`},
		{"error line number", "a.com\n\n# c\nbad name here", `f.txt:4: unexpected text after entry`},
		{"public suffix tld", "com", `f.txt:1: "com" is a public suffix: the rule would block every name registered under it (write "# allow-public-suffix" above it if that is meant): "com"`},
		{"public suffix two labels", "# platform: X\nco.uk", `f.txt:2: "co.uk" is a public suffix`},
		{"public suffix private", "*.github.io", `f.txt:1: "github.io" is a public suffix`},
		{"public suffix exception", "@@com", `f.txt:1: "com" is a public suffix`},
		{"public suffix adblock", "||co.uk^", `f.txt:1: "co.uk" is a public suffix`},
		{"public suffix hosts", "0.0.0.0 a.com com", `f.txt:1: "com" is a public suffix`},
		{"public suffix idn", "рф", `f.txt:1: "xn--p1ai" is a public suffix`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := parseList("f.txt", strings.NewReader(tt.in), &recorder{})
			if len(errs) == 0 {
				t.Fatalf("no error for %q", tt.in)
			}
			if got := errs[0].Error(); !strings.HasPrefix(got, tt.want) {
				t.Fatalf("error %q, want prefix %q", got, tt.want)
			}
		})
	}
}

func TestParseErrorCap(t *testing.T) {
	in := strings.Repeat("bad name\n", maxErrorsPerFile+50)
	errs := parseList("f.txt", strings.NewReader(in), &recorder{})
	if len(errs) != maxErrorsPerFile+1 {
		t.Fatalf("got %d errors, want %d", len(errs), maxErrorsPerFile+1)
	}
	if last := errs[len(errs)-1].Error(); last != "f.txt: 50 more errors not shown" {
		t.Fatalf("last error %q", last)
	}
}

func TestParseLongLine(t *testing.T) {
	in := "a.com\n" + strings.Repeat("x", maxLineLen+10) + "\nb.com"
	r := &recorder{}
	errs := parseList("f.txt", strings.NewReader(in), r)
	if len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), "f.txt:2: line longer than 65536 bytes") {
		t.Fatalf("errors: %v", errs)
	}
	if len(r.out) != 2 || !strings.HasPrefix(r.out[1], "3 domain") {
		t.Fatalf("entries around the long line: %v", r.out)
	}
}

func TestNormalizeName(t *testing.T) {
	for in, want := range map[string]string{"WWW.Binance.COM.": "www.binance.com", "bücher.de": "xn--bcher-kva.de"} {
		got, err := NormalizeName(in)
		if err != nil || got != want {
			t.Errorf("NormalizeName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := NormalizeName("a b"); err == nil {
		t.Error("NormalizeName accepted a space")
	}
}

// TestNormalizeNameFastPath holds normalizeName's one-pass path to
// normalizeNameSlow: the same name or the same error, for names at every
// limit and every byte in every position of a short name.
func TestNormalizeNameFastPath(t *testing.T) {
	cases := []string{"", ".", "..", "a", "a.", "A.B", "Example.COM.", "a..b", ".a", "a.b.", "a.b..", "*.x", "x.*", "a*b",
		"_srv._tcp.Example", "-a-.b-", "xn--bcher-kva.de", "bücher.de", "a b", "a/b", "http://x.com", "a:b", "a\x00b",
		strings.Repeat("a", 63), strings.Repeat("a", 64), strings.Repeat("a", 63) + "." + strings.Repeat("B", 63),
		strings.Repeat("a.", 126) + "a", strings.Repeat("a.", 127), strings.Repeat("a.", 127) + "a", strings.Repeat("x", 253), strings.Repeat("x", 254)}
	for c := 0; c < 256; c++ {
		for _, f := range []string{"%cab.cd", "ab%c.cd", "ab.%ccd", "ab.cd%c"} {
			cases = append(cases, fmt.Sprintf(f, c), strings.Replace(f, "%c", string([]byte{byte(c)}), 1))
		}
	}
	for _, s := range cases {
		fast, fmsg := normalizeName([]byte("pre"), []byte(s))
		slow, smsg := normalizeNameSlow([]byte("pre"), []byte(s))
		if string(fast) != string(slow) || fmsg != smsg {
			t.Errorf("normalizeName(%q) = %q %q, normalizeNameSlow %q %q", s, fast, fmsg, slow, smsg)
		}
	}
}

// TestParseListPipeMatchesDirect: a big file parsed on two goroutines (the
// entries handed over in batches, see parsepipe.go) gives its sink the
// same entries under the same sections, and the same errors with the same
// lines, as the same file fed to the sink on one goroutine (a window over
// every line takes that path).
func TestParseListPipeMatchesDirect(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	forms := []func(i int) string{
		func(i int) string { return fmt.Sprintf("n%d.example.com", i) },
		func(i int) string { return fmt.Sprintf("@@w%d.example.net", i) },
		func(i int) string { return fmt.Sprintf("*.s%d.example.org", i) },
		func(i int) string { return fmt.Sprintf("=e%d.example.io", i) },
		func(i int) string { return fmt.Sprintf("||a%d.example.de^", i) },
		func(i int) string { return fmt.Sprintf("0.0.0.0 h%d.example.com  localhost h%d.example.co.uk", i, i) },
		func(i int) string { return fmt.Sprintf("10.%d.%d.0/24", i%256, i/256%256) },
		func(i int) string { return fmt.Sprintf("AS%d", 1+i%60000) },
		func(i int) string { return fmt.Sprintf("# platform: P%d", i) },
		func(i int) string {
			return []string{"# action: nxdomain", "# action: default", "# scope: overseas", "# authority: A"}[i%4]
		},
		func(int) string { return "# allow-public-suffix" },
		func(i int) string {
			return []string{"co.uk", "github.io", "*.com", "=com", "foo.ck", "x.compute.amazonaws.com"}[i%6]
		},
		func(i int) string {
			return []string{"bad name", "a..b", "ex ample.com # c", "", "# just a comment", "http://x.com/"}[i%6]
		},
		func(i int) string { return fmt.Sprintf("  MiXeD%d.Example.COM.  # trailing", i) },
	}
	weights := []int{400, 40, 40, 40, 20, 20, 10, 10, 2, 2, 0, 0, 0, 10} // forms 10 to 12 at fixed lines
	var b strings.Builder
	for i := range 3 * pipeBatchLen {
		w := rng.IntN(596)
		k := 0
		for ; k < len(weights)-1 && w >= weights[k]; k++ {
			w -= weights[k]
		}
		switch {
		case i == 2*pipeBatchLen+100:
			k = 10 // public suffixes allowed from here on
		case i%700 == 3:
			k = 11 // at most 100 errors are kept: few of these
		case i%1500 == 7:
			k = 12
		}
		b.WriteString(forms[k](i))
		b.WriteByte('\n')
	}
	var piped, direct recorder
	perrs := parseList("big.txt", strings.NewReader(b.String()), &piped)
	all := int(^uint(0) >> 1)
	derrs := parseListWindow("big.txt", strings.NewReader(b.String()), &direct, []hunk{{1, all, 1, all}})
	if len(piped.out) < 2*pipeBatchLen {
		t.Fatalf("only %d entries: the pipe was not used", len(piped.out))
	}
	if !slices.Equal(piped.out, direct.out) {
		for i := range min(len(piped.out), len(direct.out)) {
			if piped.out[i] != direct.out[i] {
				t.Fatalf("entry %d: piped %q, direct %q", i, piped.out[i], direct.out[i])
			}
		}
		t.Fatalf("%d entries piped, %d direct", len(piped.out), len(direct.out))
	}
	pe, de := fmt.Sprint(perrs), fmt.Sprint(derrs)
	if pe != de {
		t.Fatalf("errors differ:\npiped  %s\ndirect %s", pe, de)
	}
	if !strings.Contains(pe, "public suffix") {
		t.Fatalf("no public suffix errors: %s", pe)
	}
}
