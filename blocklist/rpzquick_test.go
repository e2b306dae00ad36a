package blocklist

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// TestRPZQuickLines is the table of the lines the streaming parser's quick
// reader takes and the lines it must hand to the general line path. Every
// line is also loaded in a zone by the streaming parser and by the general
// parser, which must agree.
func TestRPZQuickLines(t *testing.T) {
	tests := []struct {
		line  string
		quick bool
		want  string // the rule, warning or error of the line ("" when none)
	}{
		{"bad.example CNAME .", true, "3 exact allow=false bad.example [/nxdomain/any]"},
		{"*.bad.example CNAME .", true, "3 wildcard allow=false bad.example [/nxdomain/any]"},
		{"q.example CNAME *.", true, "3 exact allow=false q.example [/nodata/any]"},
		{"ok.example CNAME rpz-passthru.", true, "3 exact allow=true ok.example [/nxdomain/any]"},
		{"gone.example CNAME rpz-drop.", true, "3 exact allow=false gone.example [/drop/any]"},
		{"Bad.EXAMPLE cname .", true, "3 exact allow=false bad.example [/nxdomain/any]"},
		{"*.UP.Example\tCNAME\t.", true, "3 wildcard allow=false up.example [/nxdomain/any]"},
		{"a-b_c.0.example CNAME . ; why", true, "3 exact allow=false a-b_c.0.example [/nxdomain/any]"},
		{"bad.example CNAME .  \r", true, "3 exact allow=false bad.example [/nxdomain/any]"},
		{"single CNAME .", true, "3 exact allow=false single [/nxdomain/any]"},
		{"xn--80aswg.xn--p1ai CNAME .", true, "3 exact allow=false xn--80aswg.xn--p1ai [/nxdomain/any]"},
		{strings.Repeat("a", 63) + ".example CNAME .", true, "3 exact allow=false " + strings.Repeat("a", 63) + ".example [/nxdomain/any]"},
		{"*.com CNAME .", true, `rpz.test.rpz:3: "com" is a public suffix`},
		{"*.co.uk CNAME .", true, `rpz.test.rpz:3: "co.uk" is a public suffix`},
		{"*.1.2.3.4 CNAME .", true, `rpz.test.rpz:3: "1.2.3.4" is a public suffix`},

		// Refused: the general line path reads them.
		{strings.Repeat("a", 64) + ".example CNAME .", false, "rpz.test.rpz:3: domain label longer than 63 characters"},
		{"bad..example CNAME .", false, "rpz.test.rpz:3: "},
		{".bad.example CNAME .", false, "rpz.test.rpz:3: "},
		{"bad.example.rpz.test. CNAME .", false, "3 exact allow=false bad.example [/nxdomain/any]"},
		{"bad.example. CNAME .", false, "rpz.test.rpz:3: owner name is outside the zone rpz.test."},
		{"bad.example 60 CNAME .", false, "3 exact allow=false bad.example [/nxdomain/any]"},
		{"bad.example IN CNAME .", false, "3 exact allow=false bad.example [/nxdomain/any]"},
		{"bad.example CNAME RPZ-DROP.", false, "3 exact allow=false bad.example [/drop/any]"},
		{"bad.example CNAME rpz-tcp-only.", false, "rpz.test.rpz:3: the TCP-only action is not supported; ignored"},
		{"bad.example CNAME walled.garden.", false, "3 exact allow=false bad.example [/local-data/any] {bad.example.rpz.test. 300 IN CNAME walled.garden.}"},
		{"bad.example CNAME bad.example.", false, "3 exact allow=true bad.example [/nxdomain/any]"},
		{"bad.example CNAME . x", false, "rpz.test.rpz:3: "},
		{`bad.example CNAME . ; "quoted"`, false, "3 exact allow=false bad.example [/nxdomain/any]"},
		{"bad.example A 192.0.2.1", false, "3 exact allow=false bad.example [/local-data/any] {bad.example.rpz.test. 300 IN A 192.0.2.1}"},
		{"bad.example CNAMEX .", false, "rpz.test.rpz:3: "},
		{"ns.x.rpz-nsdname CNAME .", false, "rpz.test.rpz:3: NSDNAME triggers are not supported; ignored"},
		{"x.RPZ-future CNAME .", false, "rpz.test.rpz:3: unknown RPZ trigger .rpz-future; ignored"},
		{"32.1.2.0.192.rpz-ip CNAME .", false, "3 ip allow=false 192.0.2.1/32 [/nxdomain/any]"},
		{"* CNAME .", false, "rpz.test.rpz:3: a wildcard over every name is not supported"},
		{"*. CNAME .", false, "rpz.test.rpz:3: "},
		{"a.*.example CNAME .", false, `rpz.test.rpz:3: '*' is only allowed as a leading "*."`},
		{"*.*.example CNAME .", false, `rpz.test.rpz:3: '*' is only allowed as a leading "*."`},
		{"a*b.example CNAME .", false, `rpz.test.rpz:3: '*' is only allowed as a leading "*."`},
		{"@ CNAME .", false, "rpz.test.rpz:3: record at the zone apex is not a policy trigger; ignored"},
		{"bad/x.example CNAME .", false, "rpz.test.rpz:3: "},
		{"bäd.example CNAME .", false, "3 exact allow=false xn--bd-via.example [/nxdomain/any]"},
		{" CNAME .", false, "rpz.test.rpz:3: "},
		{"; bad.example CNAME .", false, ""},
		{"bad.example ( CNAME . )", false, "3 exact allow=false bad.example [/nxdomain/any]"},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			p := &rpzStream{file: "rpz.test.rpz", sink: &recorder{}, origin: "rpz.test."}
			for n, l := range strings.SplitAfter(rpzHead, "\n") {
				if l != "" {
					if err := p.feed(n+1, []byte(l)); err != nil {
						t.Fatal(err)
					}
				}
			}
			if got := p.originApex && p.haveTTL && p.quick(3, []byte(tt.line+"\n")); got != tt.quick {
				t.Errorf("quick = %v, want %v", got, tt.quick)
			}
			zone := rpzHead + tt.line + "\n"
			fast, general := &recorder{}, &recorder{}
			fe := parseRPZ("rpz.test.rpz", strings.NewReader(zone), fast)
			ge := parseRPZGeneral("rpz.test.rpz", strings.NewReader(zone), general)
			var got []string
			for _, e := range fe {
				got = append(got, e.Error())
			}
			for _, w := range fast.warns {
				got = append(got, w.Error())
			}
			if len(fe) == 0 {
				got = append(got, fast.out...)
			}
			if tt.want == "" && len(got) > 0 || tt.want != "" && (len(got) != 1 || !strings.HasPrefix(got[0], tt.want)) {
				t.Errorf("got %q, want one starting %q", got, tt.want)
			}
			if len(fe) > 0 || len(ge) > 0 {
				if len(fe) == 0 || len(ge) == 0 || fe[0].Line != ge[0].Line {
					t.Errorf("errors %v, general parser %v", fe, ge)
				}
			} else if f, g := rpzOutcome(fast, fe), rpzOutcome(general, ge); f != g {
				t.Errorf("streaming parser:\n%s\ngeneral parser:\n%s", f, g)
			}
		})
	}
}

// TestRPZQuickMatchesGeneral is a fuzz-style equivalence check: random
// zones built of lines of the forms the quick reader takes, lines that
// look like them but that it must refuse, and the other lines of RPZ zones
// (local data, TTLs, comments, directives, continuations, special
// triggers, bad names) are loaded by the streaming parser and by the
// general parser, which must read the same rules and warnings, or both
// fail, with file:line errors (not always the same ones: the general
// parser stops at the first syntax error where the streaming one reads
// on, and a zone with errors is not parsed again by the general parser to
// group an owner's records spread over the zone, so an error of such an
// owner is on the line of its record instead of the owner's first line).
func TestRPZQuickMatchesGeneral(t *testing.T) {
	owners := []string{"a.example", "A.Example", "*.a.example", "*.A.EXAMPLE", "b.example", "*.b.example", "c-1_x.test",
		"*.com", "*.co.uk", "*.github.io", "x.github.io", "*.foo.ck", "*.1.2.3.4", "single", "*.single",
		"a.example.rpz.test.", "out.example.", "@", "*", "*.", "a..b", ".a", "a*.b", "*.*.a", "a.*.b",
		strings.Repeat("l", 63) + ".example", "*." + strings.Repeat("l", 64) + ".example", "32.1.2.0.192.rpz-ip",
		"24.0.2.0.192.rpz-ip", "ns.x.rpz-nsdname", "x.rpz-future", "y.RPZ-IP", "bäd.example", "a/b.example", "xn--p1ai"}
	rdata := []string{"CNAME .", "CNAME *.", "CNAME rpz-passthru.", "CNAME rpz-drop.", "cname .", "CNAME RPZ-PASSTHRU.",
		"CNAME rpz-tcp-only.", "CNAME rpz-later.", "CNAME walled.garden.", "CNAME a.example.", "CNAME rel", "A 192.0.2.1",
		"AAAA 2001:db8::1", `TXT "x"`, "60 CNAME .", "IN CNAME .", "IN 60 CNAME *.", "1h CNAME .", "NS ns.example.",
		"CNAME", "A 1.2.3", "CH TXT x", "CNAME . extra", "CNAMEX ."}
	blanks := []string{" ", "\t", "  \t"}
	tails := []string{"", "", "", " ", " ; comment", "\r", ` ; "quoted"`, " ;"}
	g := &rpzZoneGen{rng: rand.New(rand.NewPCG(13, 1)), owners: owners, rdata: rdata, blanks: blanks, tails: tails, ttls: []string{"60"}, maxLines: 10}
	for i := range 3000 {
		var b strings.Builder
		b.WriteString(rpzHead)
		g.lines(&b)
		zone := b.String()
		fast, general := &recorder{}, &recorder{}
		fe := parseRPZ("rpz.test.rpz", strings.NewReader(zone), fast)
		ge := parseRPZGeneral("rpz.test.rpz", strings.NewReader(zone), general)
		if len(fe) > 0 || len(ge) > 0 {
			// Both fail, and an error with a line in one has a line in the
			// other.
			lined := func(errs []*LineError) bool {
				return slices.ContainsFunc(errs, func(e *LineError) bool { return e.Line > 0 })
			}
			if len(fe) == 0 || len(ge) == 0 || lined(fe) != lined(ge) {
				t.Errorf("zone %d:\n%s\nerrors %v\ngeneral parser %v", i, zone, fe, ge)
			}
			continue
		}
		if f, g := rpzOutcome(fast, fe), rpzOutcome(general, ge); f != g {
			t.Errorf("zone %d:\n%s\nstreaming parser:\n%s\ngeneral parser:\n%s", i, zone, f, g)
		}
	}
}

// rpzZoneGen writes random zone lines for the RPZ parsers' equivalence
// tests: blank and comment lines, $TTL and $ORIGIN, records of the owner
// before, records over lines in parentheses, and owner, blank, rdata and
// tail picked from its lists; with extra, also unbalanced parentheses and
// $INCLUDE. A list of one string is taken without drawing from rng.
type rpzZoneGen struct {
	rng                                *rand.Rand
	owners, rdata, blanks, tails, ttls []string
	maxLines                           int
	extra                              bool
}

func (g *rpzZoneGen) pick(s []string) string {
	if len(s) == 1 {
		return s[0]
	}
	return s[g.rng.IntN(len(s))]
}

// lines writes 1 to maxLines random lines to b.
func (g *rpzZoneGen) lines(b *strings.Builder) {
	for range 1 + g.rng.IntN(g.maxLines) {
		switch r := g.rng.IntN(40); {
		case r == 0:
			b.WriteString("\n")
		case r == 1:
			b.WriteString("; a comment\n")
		case r == 2:
			b.WriteString("$TTL " + g.pick(g.ttls) + "\n")
		case r == 3:
			b.WriteString("$ORIGIN " + g.pick([]string{"rpz.test.", "RPZ.Test.", "sub.rpz.test.", "other.test."}) + "\n")
		case r == 4:
			b.WriteString(g.pick(g.blanks) + g.pick(g.rdata) + g.pick(g.tails) + "\n") // the owner before
		case r == 5:
			b.WriteString(g.pick(g.owners) + " ( CNAME\n  . )\n") // over lines (and over the piped parse's blocks)
		case r == 6 && g.extra:
			b.WriteString(g.pick(g.owners) + " ( CNAME\n") // unbalanced
		case r == 7 && g.extra:
			b.WriteString("$INCLUDE other.zone\n")
		default:
			b.WriteString(g.pick(g.owners) + g.pick(g.blanks) + g.pick(g.rdata) + g.pick(g.tails) + "\n")
		}
	}
}

// TestDomainRulesAddAgain checks that adding a rule on the last rule's
// name with addAgain leaves the table exactly as add does, across name
// blocks and pages (pairs and runs of a name, on blocks' first rules).
func TestDomainRulesAddAgain(t *testing.T) {
	var a, b domainRules
	rng := rand.New(rand.NewPCG(3, 4))
	name := []byte("first.example")
	for i := range 200000 {
		again := i > 0 && rng.IntN(3) > 0
		if !again {
			name = fmt.Appendf(name[:0], "n%d-%s.example", i, strings.Repeat("x", rng.IntN(200)))
		}
		kind, line, sect := uint8(1)<<rng.IntN(6), 3+i+rng.IntN(2)*300, uint16(i/5000)
		a.add(name, kind, line, sect)
		if again {
			b.addAgain(name, kind, line, sect)
		} else {
			b.add(name, kind, line, sect)
		}
	}
	if len(a.pages) < 2 {
		t.Fatalf("%d pages: the test should cross pages", len(a.pages))
	}
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("addAgain left a different table: %d/%d rules, %d/%d shared, %d/%d pages",
			a.len(), b.len(), a.shared, b.shared, len(a.pages), len(b.pages))
	}
	var c domainRules
	c.addAgain([]byte("only.example"), 1, 1, 0) // no rule before: add
	if c.len() != 1 || string(c.name(0)) != "only.example" {
		t.Fatalf("addAgain on an empty table: %d rules", c.len())
	}
}

// TestDupCheck holds the repeated-owner check that runs beside the
// streaming parser to a map: random rules (names with their wildcards,
// handed over as "again" or by name), with and without a planted repeat,
// small (checked at the end) and big (batches on another goroutine, the
// set grown many times).
func TestDupCheck(t *testing.T) {
	for _, tt := range []struct {
		rules  int
		repeat bool
	}{{10, false}, {10, true}, {5000, false}, {5000, true}, {300000, false}, {300000, true}} {
		rng := rand.New(rand.NewPCG(uint64(tt.rules), 7))
		var c dupCheck
		seen := map[string]uint8{}
		want := false
		var prev []byte
		for i := range tt.rules {
			name := fmt.Appendf(nil, "n%d.example", i)
			kind := MatchExact
			again := false
			switch {
			case tt.repeat && i == tt.rules-1-rng.IntN(3):
				name = fmt.Appendf(nil, "n%d.example", rng.IntN(i)) // a name handed over before
			case prev != nil && rng.IntN(2) == 0:
				name, kind, again = prev, MatchWildcard, true
			}
			bit := uint8(1) << kind
			if seen[string(name)]&bit != 0 {
				want = true
			}
			seen[string(name)] |= bit
			c.add(name, kind, again)
			prev = name
			if again {
				prev = nil
			}
		}
		if got := c.finish(); got != want {
			t.Errorf("%d rules, repeat %v: finish() = %v, want %v", tt.rules, tt.repeat, got, want)
		}
	}
	var c dupCheck
	c.add([]byte("a.example"), MatchExact, false)
	c.stop() // no goroutine: nothing to do
	for i := range 3 * dupBatchLen {
		c.add(fmt.Appendf(nil, "s%d.example", i), MatchExact, false)
	}
	c.stop() // ends the goroutine
}

// TestRPZBigZoneSpreadOwner loads, through the store, zones of more
// names than a batch of the repeated-owner check, with an owner whose
// records are spread (the general parser groups them) and without.
func TestRPZBigZoneSpreadOwner(t *testing.T) {
	zone := func(first, last, sub string) string {
		var b strings.Builder
		b.WriteString(rpzHead + first + ".example A 192.0.2.1\n")
		for i := range 3 * dupBatchLen {
			fmt.Fprintf(&b, "n%d.%s CNAME .\n*.n%d.%s CNAME .\n", i, sub, i, sub)
		}
		return b.String() + last + ".example AAAA 2001:db8::1\n"
	}
	spread, plain := zone("g", "g", "example"), zone("p", "q", "other")
	st, _ := load(t, map[string]string{"spread.rpz": spread, "plain.rpz": plain})
	s := st.Current()
	for f, rules := range map[string]int{"spread.rpz": 1 + 6*dupBatchLen, "plain.rpz": 2 + 6*dupBatchLen} {
		if fs := s.File(f); fs == nil || len(fs.Errors) > 0 || fs.Domains != rules {
			t.Fatalf("%s: %+v, want %d rules", f, fs, rules)
		}
	}
	m := s.MatchName("g.example")
	if !m.Blocked() || len(s.LocalData(m.Rule)) != 2 {
		t.Fatalf("g.example: %+v, local data %v (want the A and the AAAA)", m, s.LocalData(m.Rule))
	}
	if !s.MatchName("x.n12000.example").Blocked() || s.MatchName("n12288.example").Blocked() {
		t.Fatal("wildcards")
	}
}

// FuzzRPZStreamMatchesGeneral feeds arbitrary bytes to the streaming RPZ
// parser and the general one: neither may panic, and when both load the
// zone they must read the same rules and warnings (go test -fuzz; the
// seeds run with the tests).
func FuzzRPZStreamMatchesGeneral(f *testing.F) {
	for _, s := range []string{
		rpzHead + "a.example CNAME .\n*.a.example CNAME .\nB.x cname rpz-drop. ; c\n*.com CNAME .\n",
		rpzHead + "a..b CNAME .\n*. CNAME *.\nx.rpz-ip CNAME .\n  A 1.2.3.4\nq CNAME rpz-passthru.\n",
		"$TTL 000\n0 SOA 0000000000000000000000 00000 00\nA\n A 0.0.0.0", // panicked: a record without an owner
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fast, general := &recorder{}, &recorder{}
		fe := parseRPZ("rpz.test.rpz", bytes.NewReader(data), fast)
		ge := parseRPZGeneral("rpz.test.rpz", bytes.NewReader(data), general)
		if len(fe) == 0 && len(ge) == 0 {
			if a, b := rpzOutcome(fast, fe), rpzOutcome(general, ge); a != b {
				t.Fatalf("streaming parser:\n%s\ngeneral parser:\n%s", a, b)
			}
		}
	})
}
