package blocklist

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

// TestRPZPipedMatchesSequential checks that the streaming parser with its
// reading on another goroutine (readPiped) feeds exactly what it feeds on
// one (read): the same rules in the same order, with the same lines and
// sections, the same warnings, the same errors (file:line) and the same
// hand-over to the general parser, on random zones cut into blocks of
// every size from a line each to the default, with directives,
// parentheses over block boundaries, spread owners, errors and warnings.
func TestRPZPipedMatchesSequential(t *testing.T) {
	owners := []string{"a.example", "A.Example", "*.a.example", "*.A.EXAMPLE", "b.example", "*.b.example", "c-1_x.test",
		"*.com", "*.co.uk", "x.github.io", "single", "*.single", "a.example.rpz.test.", "out.example.", "@", "*",
		"a..b", "a*.b", "32.1.2.0.192.rpz-ip", "ns.x.rpz-nsdname", "x.rpz-future", "bäd.example", "xn--p1ai"}
	rdata := []string{"CNAME .", "CNAME *.", "CNAME rpz-passthru.", "CNAME rpz-drop.", "cname .", "CNAME rpz-tcp-only.",
		"CNAME walled.garden.", "CNAME rel", "A 192.0.2.1", "AAAA 2001:db8::1", `TXT "x"`, "60 CNAME .", "IN CNAME .",
		"1h CNAME .", "NS ns.example.", "CNAME", "A 1.2.3", "CH TXT x", "CNAME . extra"}
	tails := []string{"", "", "", " ", " ; comment", "\r", ` ; "quoted"`}
	rng := rand.New(rand.NewPCG(13, 2))
	g := &rpzZoneGen{rng: rng, owners: owners, rdata: rdata, blanks: []string{" "}, tails: tails, ttls: []string{"60", "1h"}, maxLines: 40, extra: true}
	defer func(b int) { rpzBlockBytes = b }(rpzBlockBytes)
	for i := range 1500 {
		var b strings.Builder
		if rng.IntN(20) > 0 {
			b.WriteString(rpzHead)
		}
		g.lines(&b)
		if rng.IntN(50) == 0 {
			b.WriteString("long CNAME . ;" + strings.Repeat("x", rpzMaxLine) + "\n")
		}
		if rng.IntN(3) == 0 {
			b.WriteString("last.example CNAME .") // no newline at the end
		}
		zone := b.String()
		rpzBlockBytes = []int{1, 7, 64, 300, 256 << 10}[i%5]
		want, wantErrs, wantG := parseRPZMode(zone, false, nil)
		got, gotErrs, gotG := parseRPZMode(zone, true, nil)
		if got != want || gotErrs != wantErrs || gotG != wantG {
			t.Fatalf("zone %d (blocks of %d bytes):\n%s\npiped:\n%s\n%s\n%v\nsequential:\n%s\n%s\n%v", i, rpzBlockBytes, zone, got, gotErrs, gotG, want, wantErrs, wantG)
		}
	}
}

// TestRPZPipedReadError checks that a read error ends the piped parse as
// it ends the sequential one: the lines before it parsed, then the error.
func TestRPZPipedReadError(t *testing.T) {
	defer func(b int) { rpzBlockBytes = b }(rpzBlockBytes)
	zone := rpzHead + strings.Repeat("a.example CNAME .\nb.example CNAME .\n", 3) + "c.exa"
	for _, bytes := range []int{1, 64, 256 << 10} {
		rpzBlockBytes = bytes
		fail := errors.New("disk on fire")
		want, wantErrs, _ := parseRPZMode(zone, false, fail)
		got, gotErrs, _ := parseRPZMode(zone, true, fail)
		if got != want || gotErrs != wantErrs {
			t.Errorf("blocks of %d: piped\n%s\n%s\nsequential\n%s\n%s", bytes, got, gotErrs, want, wantErrs)
		}
		if !strings.Contains(gotErrs, "read: disk on fire") {
			t.Errorf("blocks of %d: errors %s, want the read error", bytes, gotErrs)
		}
	}
}

// parseRPZMode runs the streaming parser on zone, piped or not (reading
// fails with fail at the end of zone when fail is not nil), and shows what
// it fed, the errors, and whether it handed the zone to the general
// parser.
func parseRPZMode(zone string, piped bool, fail error) (fed, errs string, general bool) {
	defer func(p bool) { rpzPipelined = p }(rpzPipelined)
	rpzPipelined = piped
	var r io.Reader = strings.NewReader(zone)
	if fail != nil {
		r = io.MultiReader(r, failingReader{fail})
	}
	rec := &recorder{}
	es, err := parseRPZStream("rpz.test.rpz", r, rec)
	var w []string
	for _, e := range rec.warns {
		w = append(w, e.Error())
	}
	var e []string
	for _, x := range es {
		e = append(e, x.Error())
	}
	return strings.Join(rec.out, "\n") + "\nwarnings:\n" + strings.Join(w, "\n"), strings.Join(e, "\n"), errors.Is(err, errRPZGeneral)
}

type failingReader struct{ err error }

func (r failingReader) Read([]byte) (int, error) { return 0, r.err }

// TestRPZPipedStops checks that the piped parse stops its reader before it
// returns, however it ends, so that the zone can be read again from the
// start (as parseRPZ does for the general parser): a zone that needs the
// general parser early, in a file much bigger than the blocks ahead.
func TestRPZPipedStops(t *testing.T) {
	var b strings.Builder
	b.WriteString(rpzHead + "$INCLUDE x\n")
	for i := range 200000 {
		fmt.Fprintf(&b, "n%d.example CNAME .\n", i)
	}
	r := &countingReader{r: strings.NewReader(b.String())}
	_, err := parseRPZStream("rpz.test.rpz", r, &recorder{})
	if !errors.Is(err, errRPZGeneral) {
		t.Fatalf("err %v, want the general parser", err)
	}
	// A reader still running would race with this read of r.n (go test
	// -race fails on it).
	if n := r.n; n >= int64(b.Len()) {
		t.Errorf("the reader read the whole zone (%d bytes) for a zone decided in its first line", n)
	}
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// TestRPZPipedBuildsSameTable checks that the piped parse, whose reader
// encodes the owners (addDomainEncoded), leaves a builder exactly as the
// parse on one goroutine leaves it (the domain table byte for byte, the
// sections, the address rules, the warnings), on zones big enough to fill
// many name pages: names and their wildcards, upper-case owners, a
// wildcard without its name, exceptions and other actions, local data,
// and lines the quick path does not read.
func TestRPZPipedBuildsSameTable(t *testing.T) {
	defer func(b int) { rpzBlockBytes = b }(rpzBlockBytes)
	rng := rand.New(rand.NewPCG(21, 3))
	for round, blocks := range []int{1 << 10, 256 << 10} {
		var z strings.Builder
		z.WriteString(rpzHead)
		for i := range 100000 {
			name := fmt.Sprintf("n%d-%x.%x.%s", i, rng.Uint32(), rng.Uint64(), []string{"example", "co.uk", "com", "github.io", "xn--p1ai", "test"}[rng.IntN(6)])
			act := []string{".", ".", ".", "*.", "rpz-passthru.", "rpz-drop."}[rng.IntN(6)]
			switch r := rng.IntN(50); {
			case r == 0:
				name = strings.ToUpper(name)
			case r == 1:
				fmt.Fprintf(&z, "*.%s CNAME %s\n", name, act) // no name before
				continue
			case r == 2:
				fmt.Fprintf(&z, "%s A 192.0.2.%d\n", name, rng.IntN(256))
				continue
			case r == 3:
				fmt.Fprintf(&z, "%s 60 IN CNAME %s ; slow path\n", name, act)
				continue
			}
			fmt.Fprintf(&z, "%s CNAME %s\n*.%s CNAME %s\n", name, act, name, act)
		}
		zone := z.String()
		rpzBlockBytes = blocks
		build := func(piped bool) *builder {
			defer func(p bool) { rpzPipelined = p }(rpzPipelined)
			rpzPipelined = piped
			b := newBuilder(0, 0)
			b.startFile()
			if errs, err := parseRPZStream("rpz.test.rpz", strings.NewReader(zone), b); err != nil || len(errs) > 0 {
				t.Fatalf("round %d: %v %v", round, err, errs)
			}
			return b
		}
		a, s := build(true), build(false)
		if a.s.dom.len() < 150000 || len(a.s.dom.pages) < 2 {
			t.Fatalf("round %d: %d rules on %d pages: the zone should fill pages", round, a.s.dom.len(), len(a.s.dom.pages))
		}
		if !reflect.DeepEqual(a.s.dom, s.s.dom) {
			t.Errorf("round %d: piped table differs: %d/%d rules, %d/%d shared, %d/%d pages", round, a.s.dom.len(), s.s.dom.len(), a.s.dom.shared, s.s.dom.shared, len(a.s.dom.pages), len(s.s.dom.pages))
		}
		if !reflect.DeepEqual(a.s.sections, s.s.sections) || !reflect.DeepEqual(a.s.ips, s.s.ips) || !reflect.DeepEqual(a.s.local, s.s.local) || !reflect.DeepEqual(a.warns, s.warns) {
			t.Errorf("round %d: piped sections, address rules, local data or warnings differ", round)
		}
	}
}

// TestDomainRulesAddPreEncoded checks that addPreEncoded with a name's
// encoding leaves the table exactly as add leaves it, across name blocks
// and pages, for names of every encoding (packed, a known suffix, raw).
func TestDomainRulesAddPreEncoded(t *testing.T) {
	var a, b domainRules
	rng := rand.New(rand.NewPCG(9, 4))
	for i := range 100000 {
		name := fmt.Appendf(nil, "n%d-%s.%s", i, strings.Repeat("x", rng.IntN(120)), []string{"com", "example", "xn--p1ai", "a_b", "co.uk"}[rng.IntN(5)])
		if rng.IntN(4) == 0 && i > 0 {
			name = a.name(uint32(a.len() - 1)) // the name before again
		}
		kind, line, sect := uint8(1)<<rng.IntN(6), 3+i, uint16(i/7000)
		a.add(name, kind, line, sect)
		b.addPreEncoded(appendEncoded(nil, name), kind, line, sect)
	}
	if len(a.pages) < 2 {
		t.Fatalf("%d pages: the test should cross pages", len(a.pages))
	}
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("addPreEncoded left a different table: %d/%d rules, %d/%d shared, %d/%d pages", a.len(), b.len(), a.shared, b.shared, len(a.pages), len(b.pages))
	}
}
