package blocklist

import (
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// rpzHead is the SOA every test zone starts with (lines 1-2).
const rpzHead = "$TTL 300\n@ SOA ns.rpz.test. admin.rpz.test. 1 3600 600 86400 60\n"

func TestParseRPZTriggers(t *testing.T) {
	tests := []struct {
		name string
		in   string // after rpzHead; the first line here is line 3
		want []string
	}{
		{"nxdomain exact", "bad.example CNAME .", []string{"3 exact allow=false bad.example [/nxdomain/any]"}},
		{"nxdomain wildcard", "*.bad.example CNAME .", []string{"3 wildcard allow=false bad.example [/nxdomain/any]"}},
		{"nodata", "quiet.example CNAME *.", []string{"3 exact allow=false quiet.example [/nodata/any]"}},
		{"passthru", "ok.example CNAME rpz-passthru.", []string{"3 exact allow=true ok.example [/nxdomain/any]"}},
		{"legacy passthru", "ok.example CNAME ok.example.", []string{"3 exact allow=true ok.example [/nxdomain/any]"}},
		{"drop", "gone.example CNAME rpz-drop.", []string{"3 exact allow=false gone.example [/drop/any]"}},
		{"upper case and absolute owner", "BAD.Example.rpz.test. CNAME .", []string{"3 exact allow=false bad.example [/nxdomain/any]"}},
		{"local data A and AAAA", "garden.example A 192.0.2.1\ngarden.example AAAA 2001:db8::1", []string{
			"3 exact allow=false garden.example [/local-data/any] {garden.example.rpz.test. 300 IN A 192.0.2.1; garden.example.rpz.test. 300 IN AAAA 2001:db8::1}"}},
		{"local data CNAME", "www.bad.example CNAME walled.garden.", []string{
			"3 exact allow=false www.bad.example [/local-data/any] {www.bad.example.rpz.test. 300 IN CNAME walled.garden.}"}},
		{"local data wildcard CNAME target", "*.bad.example CNAME *.walled.garden.", []string{
			"3 wildcard allow=false bad.example [/local-data/any] {*.bad.example.rpz.test. 300 IN CNAME *.walled.garden.}"}},
		{"ip v4 host", "32.7.113.0.203.rpz-ip CNAME .", []string{"3 ip allow=false 203.0.113.7/32 [/nxdomain/any]"}},
		{"ip v4 prefix", "24.0.100.51.198.rpz-ip CNAME .", []string{"3 ip allow=false 198.51.100.0/24 [/nxdomain/any]"}},
		{"ip v6 zz", "128.1.zz.db8.2001.rpz-ip CNAME .", []string{"3 ip allow=false 2001:db8::1/128 [/nxdomain/any]"}},
		{"ip v6 zz prefix", "48.zz.1.db8.2001.rpz-ip CNAME *.", []string{"3 ip allow=false 2001:db8:1::/48 [/nodata/any]"}},
		{"ip v6 full", "128.8.7.6.5.4.3.2.1.rpz-ip CNAME .", []string{"3 ip allow=false 1:2:3:4:5:6:7:8/128 [/nxdomain/any]"}},
		{"ip passthru", "25.128.100.51.198.rpz-ip CNAME rpz-passthru.", []string{"3 ip allow=true 198.51.100.128/25 [/nxdomain/any]"}},
		{"ip local data", "32.7.113.0.203.rpz-ip A 192.0.2.9", []string{
			"3 ip allow=false 203.0.113.7/32 [/local-data/any] {32.7.113.0.203.rpz-ip.rpz.test. 300 IN A 192.0.2.9}"}},
		{"multi-line record and comments", "; comment\n\nbad.example ( CNAME ; why\n  . )\nnext.example CNAME .", []string{
			"5 exact allow=false bad.example [/nxdomain/any]", "7 exact allow=false next.example [/nxdomain/any]"}},
		{"continuation owner", "bad.example A 192.0.2.1\n  AAAA 2001:db8::1\nx.example CNAME .", []string{
			"3 exact allow=false bad.example [/local-data/any] {bad.example.rpz.test. 300 IN A 192.0.2.1; bad.example.rpz.test. 300 IN AAAA 2001:db8::1}",
			"5 exact allow=false x.example [/nxdomain/any]"}},
		{"file order, one section per policy", "a.example CNAME rpz-passthru.\nb.example CNAME *.\nc.example CNAME .", []string{
			"3 exact allow=true a.example [/nxdomain/any]", "4 exact allow=false b.example [/nodata/any]", "5 exact allow=false c.example [/nxdomain/any]"}},
		{"explicit TTL and class", "bad.example 60 IN CNAME .\nother.example IN 60 CNAME *.", []string{
			"3 exact allow=false bad.example [/nxdomain/any]", "4 exact allow=false other.example [/nodata/any]"}},
		{"TTL with a unit (general path for the record)", "garden.example 1h A 192.0.2.1", []string{
			"3 exact allow=false garden.example [/local-data/any] {garden.example.rpz.test. 3600 IN A 192.0.2.1}"}},
		{"TXT local data", `garden.example TXT "walled garden"`, []string{
			`3 exact allow=false garden.example [/local-data/any] {garden.example.rpz.test. 300 IN TXT "walled garden"}`}},
		{"owner records apart (general parser)", "garden.example A 192.0.2.1\nx.example CNAME .\ngarden.example AAAA 2001:db8::1", []string{
			"4 exact allow=false x.example [/nxdomain/any]",
			"3 exact allow=false garden.example [/local-data/any] {garden.example.rpz.test. 300 IN A 192.0.2.1; garden.example.rpz.test. 300 IN AAAA 2001:db8::1}"}},
		{"name and wildcard apart", "a.example CNAME .\nb.example CNAME .\n*.a.example CNAME .", []string{
			"3 exact allow=false a.example [/nxdomain/any]", "4 exact allow=false b.example [/nxdomain/any]", "5 wildcard allow=false a.example [/nxdomain/any]"}},
		{"relative CNAME target is local data", "a.example CNAME rpz-passthru", []string{
			"3 exact allow=false a.example [/local-data/any] {a.example.rpz.test. 300 IN CNAME rpz-passthru.rpz.test.}"}},
		{"apex NS ignored", "@ NS ns.rpz.test.\nbad.example CNAME .", []string{"4 exact allow=false bad.example [/nxdomain/any]"}},
		{"empty zone", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &recorder{}
			errs := parseRPZ("rpz.test.rpz", strings.NewReader(rpzHead+tt.in), r)
			if len(errs) > 0 {
				t.Fatalf("errors: %v", errs)
			}
			if len(r.warns) > 0 {
				t.Fatalf("warnings: %v", r.warns)
			}
			if strings.Join(r.out, "\n") != strings.Join(tt.want, "\n") {
				t.Fatalf("got\n%s\nwant\n%s", strings.Join(r.out, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestParseRPZOrigin(t *testing.T) {
	// Without $ORIGIN the file name is the zone; $ORIGIN overrides it.
	r := &recorder{}
	if errs := parseRPZ("lists/regulator.example.zone", strings.NewReader(rpzHead+"bad.example CNAME .\n"), r); len(errs) > 0 {
		t.Fatal(errs)
	}
	r2 := &recorder{}
	in := "$ORIGIN rpz.other.\n" + rpzHead + "bad.example CNAME .\nx.example.rpz.other. CNAME .\n"
	if errs := parseRPZ("whatever.rpz", strings.NewReader(in), r2); len(errs) > 0 {
		t.Fatal(errs)
	}
	if len(r.out) != 1 || len(r2.out) != 2 || !strings.Contains(r2.out[1], "x.example") {
		t.Fatalf("got %v and %v", r.out, r2.out)
	}
}

func TestParseRPZWarnings(t *testing.T) {
	in := rpzHead + `ns.bad.example.rpz-nsdname CNAME .
32.1.2.0.192.rpz-nsip CNAME .
32.1.0.0.10.rpz-client-ip CNAME .
slow.example CNAME rpz-tcp-only.
x.rpz-future CNAME .
y.example CNAME rpz-later.
@ TXT "zone metadata"
kept.example CNAME .
`
	r := &recorder{}
	errs := parseRPZ("w.rpz", strings.NewReader(in), r)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	want := []string{
		`w.rpz:3: NSDNAME triggers are not supported; ignored: "ns.bad.example.rpz-nsdname.w. 300 IN CNAME ."`,
		`w.rpz:4: NSIP triggers are not supported; ignored`,
		`w.rpz:5: client-IP triggers are not supported; ignored`,
		`w.rpz:6: the TCP-only action is not supported; ignored`,
		`w.rpz:7: unknown RPZ trigger .rpz-future; ignored`,
		`w.rpz:8: unknown RPZ action rpz-later.; ignored`,
		`w.rpz:9: record at the zone apex is not a policy trigger; ignored`,
	}
	if len(r.warns) != len(want) {
		t.Fatalf("got %d warnings: %v", len(r.warns), r.warns)
	}
	for i, w := range want {
		if got := r.warns[i].Error(); !strings.HasPrefix(got, w) {
			t.Errorf("warning %d: %q, want prefix %q", i, got, w)
		}
	}
	if len(r.out) != 1 || !strings.Contains(r.out[0], "kept.example") {
		t.Fatalf("rules: %v", r.out)
	}
}

func TestParseRPZErrors(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"no SOA", "bad.example 300 CNAME .", `z.rpz: no SOA record`},
		{"second SOA", rpzHead + "x 300 SOA a. b. 2 1 1 1 1", `z.rpz:3: second SOA record (the first is on line 2)`},
		{"no data", rpzHead + "bad.example CNAME\n", `z.rpz:3: record has no data`},
		{"syntax", rpzHead + "bad.example A 1.2.3\n", `z.rpz:3: `},
		{"unknown type", rpzHead + "bad.example BOGUS x\n", `z.rpz:3: `},
		{"outside zone", rpzHead + "bad.example. CNAME .", `z.rpz:3: owner name is outside the zone z.`},
		{"CNAME and other data", rpzHead + "a.example CNAME .\na.example A 192.0.2.1", `z.rpz:3: a CNAME cannot share its name with other records`},
		{"two CNAMEs", rpzHead + "a.example CNAME .\na.example CNAME *.", `z.rpz:3: more than one CNAME for one trigger`},
		{"two CNAMEs apart", rpzHead + "a.example CNAME .\nb.example CNAME .\na.example CNAME *.", `z.rpz:3: more than one CNAME for one trigger`},
		{"two IP CNAMEs apart", rpzHead + "32.1.2.0.192.rpz-ip CNAME .\nb.example CNAME .\n32.1.2.0.192.rpz-ip CNAME *.", `z.rpz:3: more than one CNAME for one trigger`},
		{"SOA after records", "$TTL 60\na.example CNAME .\n@ SOA a. b. 1 1 1 1 1\nb.example CNAME .\nb.example CNAME .", `z.rpz:4: more than one CNAME for one trigger`},
		{"missing TTL", "@ 60 SOA a. b. 1 1 1 1 1\n$TTL x\n", `z.rpz:`},
		{"bad owner", rpzHead + "a..example CNAME .", `z.rpz:3: `},
		{"NS below apex", rpzHead + "a.example NS ns.example.", `z.rpz:3: NS records cannot be policy data`},
		{"star inside", rpzHead + "a.*.example CNAME .", `z.rpz:3: '*' is only allowed as a leading "*."`},
		{"bare star", rpzHead + "* CNAME .", `z.rpz:3: a wildcard over every name is not supported`},
		{"wildcard on a public suffix", rpzHead + "ok.example CNAME .\n*.co.uk CNAME .", `z.rpz:4: "co.uk" is a public suffix`},
		{"wildcard on a public suffix, long form", rpzHead + "*.com.z. 60 IN CNAME .", `z.rpz:3: "com" is a public suffix`},
		{"rpz-ip no address", rpzHead + "32.rpz-ip CNAME .", `z.rpz:3: rpz-ip trigger needs a prefix length and an address`},
		{"rpz-ip bad length", rpzHead + "x.7.113.0.203.rpz-ip CNAME .", `z.rpz:3: rpz-ip trigger must start with a prefix length`},
		{"rpz-ip v4 length", rpzHead + "33.7.113.0.203.rpz-ip CNAME .", `z.rpz:3: IPv4 prefix length must be 1 to 32`},
		{"rpz-ip v4 octet", rpzHead + "32.7.113.0.256.rpz-ip CNAME .", `z.rpz:3: invalid IPv4 octet "256"`},
		{"rpz-ip host bits", rpzHead + "24.7.113.0.203.rpz-ip CNAME .", `z.rpz:3: rpz-ip prefix has host bits set; did you mean 24.0.113.0.203.rpz-ip?`},
		{"rpz-ip v6 two zz", rpzHead + "128.1.zz.2.zz.2001.rpz-ip CNAME .", `z.rpz:3: more than one "zz" in rpz-ip trigger`},
		{"rpz-ip v6 group", rpzHead + "128.1.zz.12345.2001.rpz-ip CNAME .", `z.rpz:3: invalid IPv6 group "12345"`},
		{"rpz-ip v6 short", rpzHead + "64.1.2.3.rpz-ip CNAME .", `z.rpz:3: rpz-ip trigger address is neither`},
		{"rpz-ip v6 length", rpzHead + "129.1.zz.2001.rpz-ip CNAME .", `z.rpz:3: IPv6 prefix length must be 1 to 128`},
		{"generate", rpzHead + "$GENERATE 1-3 host$ CNAME .", `z.rpz:3: $GENERATE is not supported in RPZ files`},
		{"include", rpzHead + "$INCLUDE /etc/passwd", `z.rpz:3: `},
		{"class", rpzHead + "a.example CH TXT x", `z.rpz:3: only class IN records are allowed`},
		{"error line after multi-line SOA", "$ORIGIN rpz.test.\n@ 60 SOA ns. admin. (\n 1 3600\n 600 86400 60 )\nok CNAME .\nbad_ CNAME rpz-passthru.x\n32.x.rpz-ip CNAME .", `z.rpz:7: `},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := parseRPZ("z.rpz", strings.NewReader(tt.in), &recorder{})
			if len(errs) == 0 {
				t.Fatalf("no error for %q", tt.in)
			}
			if got := errs[0].Error(); !strings.HasPrefix(got, tt.want) {
				t.Fatalf("error %q, want prefix %q", got, tt.want)
			}
		})
	}
}

func TestRPZIPNameRoundTrip(t *testing.T) {
	for _, s := range []string{
		"203.0.113.7/32", "198.51.100.0/24", "10.0.0.0/8", "2001:db8::1/128", "2001:db8:1::/48",
		"1:2:3:4:5:6:7:8/128", "2001:0:0:1::/64", "::1/128", "fe80::/10", "2001:db8:0:0:1:0:0:1/128",
	} {
		p := netip.MustParsePrefix(s)
		name := RPZIPName(p)
		labels := strings.Split(strings.TrimSuffix(name, ".rpz-ip"), ".")
		got, msg := decodeRPZIP(labels)
		if msg != "" || got != p {
			t.Errorf("%s -> %s -> %v %s", s, name, got, msg)
		}
	}
	if got := RPZIPName(netip.MustParsePrefix("2001:db8::1/128")); got != "128.1.zz.db8.2001.rpz-ip" {
		t.Errorf("RPZIPName = %s", got)
	}
	if got := RPZIPName(netip.MustParsePrefix("2001:db8:0:0:1:0:0:1/128")); got != "128.1.0.0.1.zz.db8.2001.rpz-ip" {
		t.Errorf("RPZIPName tie = %s", got)
	}
}

func TestRPZStoreLoad(t *testing.T) {
	st, _ := load(t, map[string]string{
		"reg.rpz": rpzHead + `bad.example CNAME .
*.bad.example CNAME .
ok.bad.example CNAME rpz-passthru.
garden.example A 192.0.2.1
32.7.113.0.203.rpz-ip CNAME rpz-drop.
x.rpz-nsdname CNAME .
`,
		"plain.txt": "other.example\n",
	})
	s := st.Current()
	for name, blocked := range map[string]bool{
		"bad.example": true, "www.bad.example": true, "ok.bad.example": false, "other.example": true,
		"x.other.example": true, "bad.example.org": false,
	} {
		if m := s.MatchName(name); m.Blocked() != blocked {
			t.Errorf("%s blocked=%v want %v", name, m.Blocked(), blocked)
		}
	}
	m := s.MatchName("garden.example")
	if !m.Blocked() || s.Section(m.Rule).Action != ActionLocalData || len(s.LocalData(m.Rule)) != 1 {
		t.Fatalf("local data: %+v %v", m, s.LocalData(m.Rule))
	}
	r := s.Rule(m.Rule)
	if r.Reason() != "blocked by reg.rpz:6" {
		t.Errorf("reason %q", r.Reason())
	}
	ip := s.MatchIP(netip.MustParseAddr("203.0.113.7"))
	if !ip.Blocked() || s.Section(ip.Rule).Action != ActionDrop {
		t.Errorf("ip trigger: %+v", ip)
	}
	f := s.File("reg.rpz")
	if f == nil || len(f.Warnings) != 1 || !strings.Contains(f.Warnings[0].Error(), "reg.rpz:8: NSDNAME") || f.Domains != 4 || f.IPs != 1 {
		t.Fatalf("file status: %+v", f)
	}
	// Local data survives a reload that copies the unchanged file.
	dir := st.Dirs()[0]
	write(t, dir, "plain.txt", "other.example\nmore.example\n")
	rep := reload(t, st)
	if change(rep, "reg.rpz").Change != ChangeUnchanged {
		t.Fatalf("rpz file not unchanged: %+v", rep.Files)
	}
	s = st.Current()
	m = s.MatchName("garden.example")
	if len(s.LocalData(m.Rule)) != 1 || s.File("reg.rpz").Warnings == nil {
		t.Fatal("local data or warnings lost on copy")
	}
	// A broken zone keeps its last good version, local data included.
	write(t, dir, "reg.rpz", rpzHead+"bad CNAME\n")
	rep = reload(t, st)
	if change(rep, "reg.rpz").Change != ChangeFailed {
		t.Fatalf("broken zone: %+v", rep.Files)
	}
	s = st.Current()
	if m := s.MatchName("garden.example"); len(s.LocalData(m.Rule)) != 1 || !s.MatchName("bad.example").Blocked() {
		t.Fatal("broken zone lost its last good rules")
	}
}

// TestParseRPZStreamMatchesGeneral checks that the streaming parser and the
// general parser read the same rules, warnings and errors from the same
// zones (the streaming parser feeds them in file order, the general one by
// policy, so the rules are compared as sets).
func TestParseRPZStreamMatchesGeneral(t *testing.T) {
	zones := []string{
		rpzHead + "a.example CNAME .\n*.a.example CNAME .\nok.a.example CNAME rpz-passthru.\n*.ok.a.example CNAME rpz-passthru.\n",
		rpzHead + "q.example CNAME *.\nd.example CNAME rpz-drop.\nl.example CNAME l.example.\nUP.Example CNAME .\n",
		rpzHead + "g.example A 192.0.2.1\ng.example AAAA 2001:db8::1\nh.example A 192.0.2.1\nw.example CNAME walled.garden.\n",
		rpzHead + "24.0.100.51.198.rpz-ip CNAME .\n128.1.zz.db8.2001.rpz-ip CNAME rpz-passthru.\n32.7.113.0.203.rpz-ip A 192.0.2.9\n",
		rpzHead + "@ NS ns.rpz.test.\n@ TXT \"meta\"\nns.x.rpz-nsdname CNAME .\nt.example CNAME rpz-tcp-only.\nu.example CNAME rpz-later.\n",
		"$ORIGIN rpz.test.\n$TTL 60\n@ IN SOA ns. admin. (\n 1 3600 ; serial\n 600 86400 60 )\nmulti ( CNAME\n . )\n  \t; comment\nplain 30 IN CNAME . ; trailing\n",
		rpzHead + "a.example CNAME .\nb.example CNAME *.\na.example CNAME .\n",
		rpzHead + "bad_name CNAME .\nbad..name CNAME .\n* CNAME .\nx.*.y CNAME .\n33.1.2.3.4.rpz-ip CNAME .\n",
		rpzHead + "c.example CNAME .\nc.example A 192.0.2.1\nn.example NS ns.example.\n",
		"a.example 60 CNAME .\n",
		"$TTL 000\n0 SOA 0000000000000000000000 00000 00\nA\n A 0.0.0.0", // a record without an owner (found by fuzzing: it panicked)
	}
	for i, z := range zones {
		fast, general := &recorder{}, &recorder{}
		fe := parseRPZ("rpz.test.rpz", strings.NewReader(z), fast)
		ge := parseRPZGeneral("rpz.test.rpz", strings.NewReader(z), general)
		// The general parser stops at the first syntax error; the
		// streaming one reports every line: compare the first errors.
		if len(fe) > 0 && len(ge) > 0 {
			if fe[0].Line != ge[0].Line {
				t.Errorf("zone %d: first error %v, general parser %v", i, fe[0], ge[0])
			}
			continue
		}
		if got, want := rpzOutcome(fast, fe), rpzOutcome(general, ge); got != want {
			t.Errorf("zone %d:\n%s\n--- streaming parser above, general parser below ---\n%s", i, got, want)
		}
	}
}

// rpzOutcome shows what a parser fed a recorder, for comparing the
// streaming parser with the general one: the rules as a set (the streaming
// parser feeds them in file order, the general one by policy), the
// warnings and the errors (and no rules when there are errors: a zone
// with errors loads nothing, whatever was fed).
//
// An exception's section is never used (the general parser gives it the
// last section of the zone, the streaming one nxdomain's), and the
// streaming parser puts an apex warning on the record's own line, the
// general one on the owner's first: both are left out.
func rpzOutcome(r *recorder, errs []*LineError) string {
	var out []string
	for _, o := range r.out {
		out = append(out, rpzSectRE.ReplaceAllString(o, "allow=true $1 [exception]"))
	}
	slices.Sort(out)
	var w []string
	for _, e := range r.warns {
		if strings.Contains(e.Msg, "zone apex") {
			e = &LineError{File: e.File, Text: e.Text, Msg: e.Msg}
		}
		w = append(w, e.Error())
	}
	slices.Sort(w)
	var es []string
	for _, e := range errs {
		es = append(es, e.Error())
	}
	slices.Sort(es)
	if len(es) > 0 {
		out = nil
	}
	return strings.Join(out, "\n") + "\nwarnings:\n" + strings.Join(w, "\n") + "\nerrors:\n" + strings.Join(es, "\n")
}

var rpzSectRE = regexp.MustCompile(`allow=true (\S+) \[[^]]*\]`)

// TestRPZSharedNames checks the pairs an RPZ zone makes (name and *.name,
// stored once, indexed once) alone and mixed with the same name in other
// files, where the pair becomes a list of rules sharing the name.
func TestRPZSharedNames(t *testing.T) {
	st, _ := load(t, map[string]string{
		"a.rpz":  rpzHead + "x.example CNAME .\n*.x.example CNAME .\ny.example CNAME *.\n*.y.example CNAME .\n",
		"b.txt":  "# action: log\ny.example\n",
		"c.txt":  "@@=ok.x.example\n",
		"d.rpz":  rpzHead + "p.example CNAME rpz-passthru.\n*.p.example CNAME .\n",
		"e.list": "p.example\n",
		"f.rpz":  rpzHead + "q.example CNAME .\n*.q.example CNAME .\n",
		"g.list": "*.q.example\n=q.example\n",
	})
	s := st.Current()
	tests := []struct {
		name, rule  string
		blocked     bool
		where       string
		allowedBy   string
		wantActions Action
	}{
		{"x.example", "=x.example", true, "a.rpz:3", "", ActionNXDomain},
		{"www.x.example", "*.x.example", true, "a.rpz:4", "", ActionNXDomain},
		{"ok.x.example", "*.x.example", false, "a.rpz:4", "c.txt:1", ActionNXDomain},
		{"y.example", "=y.example", true, "a.rpz:5", "", ActionNoData},
		{"www.y.example", "*.y.example", true, "a.rpz:6", "", ActionNXDomain},
		{"p.example", "p.example", false, "e.list:1", "d.rpz:3", ActionDefault},
		{"www.p.example", "*.p.example", true, "d.rpz:4", "", ActionNXDomain},
		{"q.example", "=q.example", true, "f.rpz:3", "", ActionNXDomain},
		{"www.q.example", "*.q.example", true, "f.rpz:4", "", ActionNXDomain},
	}
	for _, tt := range tests {
		m := s.MatchName(tt.name)
		if m.Blocked() != tt.blocked || !m.HasRule {
			t.Errorf("%s: blocked %v (%+v), want %v", tt.name, m.Blocked(), m, tt.blocked)
			continue
		}
		r := s.Rule(m.Rule)
		if r.Text != tt.rule || r.Where() != tt.where || r.Action != tt.wantActions {
			t.Errorf("%s: rule %s at %s (%s), want %s at %s (%s)", tt.name, r.Text, r.Where(), r.Action, tt.rule, tt.where, tt.wantActions)
		}
		if tt.allowedBy != "" && (!m.HasAllow || s.Rule(m.Allow).Where() != tt.allowedBy) {
			t.Errorf("%s: allowed by %+v, want %s", tt.name, m, tt.allowedBy)
		}
	}
	// Every rule is still reported once, with its own kind.
	var texts []string
	for tr := range s.Triggers() {
		texts = append(texts, s.Rule(tr.ID).Text+" "+s.Rule(tr.ID).Where())
	}
	slices.Sort(texts)
	want := []string{"*.p.example d.rpz:4", "*.q.example f.rpz:4", "*.q.example g.list:1", "*.x.example a.rpz:4", "*.y.example a.rpz:6",
		"=q.example f.rpz:3", "=q.example g.list:2", "=x.example a.rpz:3", "=y.example a.rpz:5", "@@=ok.x.example c.txt:1", "@@=p.example d.rpz:3", "p.example e.list:1", "y.example b.txt:2"}
	if !slices.Equal(texts, want) {
		t.Errorf("triggers\n%v\nwant\n%v", texts, want)
	}
}

// TestRPZStoreGeneralFallback loads, through the store, zones the
// streaming parser hands to the general parser (which reads the file again
// from the start), with and without a byte order mark.
func TestRPZStoreGeneralFallback(t *testing.T) {
	zone := rpzHead + "g.example A 192.0.2.1\nx.example CNAME .\ng.example AAAA 2001:db8::1\n"
	st, _ := load(t, map[string]string{"a.rpz": zone, "b.rpz": "\xEF\xBB\xBF" + zone})
	s := st.Current()
	for _, f := range []string{"a.rpz", "b.rpz"} {
		fs := s.File(f)
		if fs == nil || fs.Stale || len(fs.Errors) > 0 || fs.Domains != 2 {
			t.Fatalf("%s: %+v", f, fs)
		}
	}
	m := s.MatchName("g.example")
	if !m.Blocked() || len(s.LocalData(m.Rule)) != 2 || !s.MatchName("x.example").Blocked() {
		t.Fatalf("g.example: %+v %v", m, s.LocalData(m.Rule))
	}
}
