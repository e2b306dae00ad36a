package blocklist

import (
	"bytes"
	"github.com/miekg/dns"
	"net/netip"
	"strings"
	"testing"
)

// checkSink is an entrySink that checks every entry the parser emits is
// well formed, and keeps the names for the round trip.
type checkSink struct {
	t       *testing.T
	lines   int
	domains []checkedDomain
}

type checkedDomain struct {
	name  string
	kind  MatchKind
	allow bool
}

func (c *checkSink) beginSection(Section) {}
func (c *checkSink) useSection(Section)   {}
func (c *checkSink) restart()             { c.domains = nil }
func (c *checkSink) repeatedOwner() bool  { return false }

func (c *checkSink) line(n int) {
	if n < 1 || n > c.lines {
		c.t.Fatalf("entry on line %d of %d", n, c.lines)
	}
}

func (c *checkSink) addDomain(name []byte, kind MatchKind, allow bool, line int) {
	c.line(line)
	s := string(name)
	if norm, err := NormalizeName(s); err != nil || norm != s {
		c.t.Fatalf("emitted name %q is not canonical: %q, %v", s, norm, err)
	}
	c.domains = append(c.domains, checkedDomain{s, kind, allow})
}

func (c *checkSink) addPrefix(p netip.Prefix, allow bool, line int) {
	c.line(line)
	if !p.IsValid() || p.Masked() != p || p.Addr().Is4In6() || p.Addr().Zone() != "" {
		c.t.Fatalf("emitted prefix %v is not canonical", p)
	}
}

func (c *checkSink) addASN(asn uint32, allow bool, line int) { c.line(line) }
func (c *checkSink) setLocalData([]dns.RR)                   {}
func (c *checkSink) warn(*LineError)                         {}

// FuzzParseList feeds arbitrary bytes to the list parser. It must not
// panic; every entry must be canonical and on a real line; every error
// must name the file and a real line; and a file without errors must
// compile into a snapshot that matches every name it listed.
func FuzzParseList(f *testing.F) {
	for _, s := range []string{
		"example.com\n*.example.net\n=www.example.org\n@@safe.example.com\n",
		"# platform: Binance\n# action: refused\n# scope: overseas\nbinance.com # main\n",
		"0.0.0.0 a.com b.com\n127.0.0.1 localhost\n::1 ip6-localhost\n",
		"||ads.example.com^\n@@||ok.example.com^\n[Adblock Plus 2.0]\n! comment\n",
		"192.0.2.0/24\n2001:db8::/32\n@@192.0.2.7\n::ffff:192.0.2.0/120\nAS64500\n@@as13335\n",
		"bücher.de\nxn--bcher-kva.de\n_dmarc.example.com\nEXAMPLE.COM.\n",
		"https://bad.example/\nc..com\n*.\n=\n@@\n10.0.0.1/8\n" + strings.Repeat("a", 64) + ".com\n",
		"a.com\r\nb.com\r\n\xff\xfe\n\x00\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		sink := &checkSink{t: t, lines: bytes.Count(data, []byte{'\n'}) + 1}
		errs := parseList("f.txt", bytes.NewReader(data), sink)
		for _, e := range errs {
			if e.File != "f.txt" || e.Line < 0 || e.Line > sink.lines || e.Msg == "" || len(e.Text) > 203 {
				t.Fatalf("bad error %#v", e)
			}
			_ = e.Error()
		}
		if len(errs) > 0 {
			return
		}
		b := newBuilder(0, 0)
		m := b.mark()
		if errs := parseList("f.txt", bytes.NewReader(data), b); len(errs) > 0 {
			t.Fatalf("second parse differs: %v", errs)
		}
		fs := &FileStatus{Name: "f.txt"}
		b.finishFile(fs, m)
		snap, err := b.compile(1, []*FileStatus{fs})
		if err != nil {
			return // too many rules: reported, not a crash
		}
		for _, d := range sink.domains {
			name := d.name
			if d.kind == MatchWildcard {
				name = "x." + name
			}
			if len(name) > 253 {
				continue
			}
			if mt := snap.MatchName(name); !mt.HasRule && !mt.HasAllow {
				t.Fatalf("listed %s %q (allow %v) does not match %q", d.kind, d.name, d.allow, name)
			}
		}
	})
}

// FuzzNormalizeName checks that canonical names are canonical: valid
// length, and normalizing twice changes nothing; and that the fast path
// of normalizeName answers as normalizeNameSlow does, and the list
// parser's one-pass read of a line holding a bare name as its general
// line path does.
func FuzzNormalizeName(f *testing.F) {
	for _, s := range []string{"Example.COM.", "bücher.de", "a..b", "*.x", "_srv.example", strings.Repeat("a.", 127), "xn--bcher-kva.de", "a\u3002b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !strings.ContainsAny(s, "\n") {
			checkPlainName(t, s) // the list parser's one-pass read of a bare name line
		}
		fast, fmsg := normalizeName([]byte("x"), []byte(s))
		slow, smsg := normalizeNameSlow([]byte("x"), []byte(s))
		if string(fast) != string(slow) || fmsg != smsg {
			t.Fatalf("normalizeName(%q) = %q %q, normalizeNameSlow %q %q", s, fast, fmsg, slow, smsg)
		}
		n, err := NormalizeName(s)
		if err != nil {
			return
		}
		if n == "" || len(n) > 253 || strings.HasSuffix(n, ".") || strings.ToLower(n) != n {
			t.Fatalf("NormalizeName(%q) = %q", s, n)
		}
		if again, err := NormalizeName(n); err != nil || again != n {
			t.Fatalf("NormalizeName(%q) = %q, then %q, %v", s, n, again, err)
		}
	})
}
