package blocklist

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// load writes files into a fresh directory and loads them into a store.
func load(t testing.TB, files map[string]string) (*Store, string) {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	st := NewStore(Options{Dirs: []string{dir}, Logger: discardLogger()})
	if _, err := st.Reload(context.Background(), "test"); err != nil {
		t.Fatal(err)
	}
	return st, dir
}

func TestMatchName(t *testing.T) {
	st, _ := load(t, map[string]string{"a.txt": `
# platform: Subtree
example.com
# platform: Wild
*.wild.test
# platform: Exact
=exact.test
# platform: Mixed
=www.mixed.test
*.mixed.test
@@safe.example.com
@@=open.test
open.test
@@*.kids.test
kids.test
`})
	s := st.Current()
	tests := []struct {
		name    string
		blocked bool
		rule    string // block rule text, "" when none
		allow   string // exception text, "" when none
	}{
		{"example.com", true, "example.com", ""},
		{"www.example.com", true, "example.com", ""},
		{"a.b.c.example.com", true, "example.com", ""},
		{"notexample.com", false, "", ""},
		{"example.com.evil", false, "", ""},
		{"com", false, "", ""},
		{"wild.test", false, "", ""},
		{"a.wild.test", true, "*.wild.test", ""},
		{"a.b.wild.test", true, "*.wild.test", ""},
		{"exact.test", true, "=exact.test", ""},
		{"www.exact.test", false, "", ""},
		{"www.mixed.test", true, "=www.mixed.test", ""},
		{"a.www.mixed.test", true, "*.mixed.test", ""},
		{"mixed.test", false, "", ""},
		{"safe.example.com", false, "example.com", "@@safe.example.com"},
		{"x.safe.example.com", false, "example.com", "@@safe.example.com"},
		{"open.test", false, "open.test", "@@=open.test"},
		{"www.open.test", true, "open.test", ""},
		{"kids.test", true, "kids.test", ""},
		{"a.kids.test", false, "kids.test", "@@*.kids.test"},
	}
	for _, tt := range tests {
		m := s.MatchName(tt.name)
		if m.Blocked() != tt.blocked {
			t.Errorf("%s: blocked=%v want %v", tt.name, m.Blocked(), tt.blocked)
		}
		got := ""
		if m.HasRule {
			got = s.Rule(m.Rule).Text
		}
		if got != tt.rule {
			t.Errorf("%s: rule %q want %q", tt.name, got, tt.rule)
		}
		got = ""
		if m.HasAllow {
			got = s.Rule(m.Allow).Text
		}
		if got != tt.allow {
			t.Errorf("%s: allow %q want %q", tt.name, got, tt.allow)
		}
	}
	r := s.Rule(s.MatchName("www.example.com").Rule)
	if r.Reason() != "blocked by a.txt:3 (Subtree)" {
		t.Errorf("reason %q", r.Reason())
	}
}

func TestMatchNameMostSpecificAndDuplicates(t *testing.T) {
	st, _ := load(t, map[string]string{
		"1.txt": "# platform: Parent\nexample.com\n# action: log\n# platform: Monitor\ndup.test\n",
		"2.txt": "# platform: Child\nwww.example.com\n# platform: Enforced\ndup.test\n=dup.test\n",
	})
	s := st.Current()
	if r := s.Rule(s.MatchName("a.www.example.com").Rule); r.Platform != "Child" || r.File != "2.txt" || r.Line != 2 {
		t.Errorf("most specific rule: got %+v", r)
	}
	// dup.test is listed three times; the enforced rule wins over the log one.
	r := s.Rule(s.MatchName("dup.test").Rule)
	if r.Platform != "Enforced" || r.Action != ActionDefault {
		t.Errorf("duplicate preference: got %+v", r)
	}
	r = s.Rule(s.MatchName("x.dup.test").Rule)
	if r.Platform != "Enforced" || r.Text != "dup.test" {
		t.Errorf("duplicate subtree: got %+v", r)
	}
}

func TestMatchIP(t *testing.T) {
	st, _ := load(t, map[string]string{"ips.txt": `
# platform: Wide
198.51.100.0/24
# platform: Narrow
198.51.100.128/25
# platform: Host
198.51.100.200
@@198.51.100.64/26
2001:db8::/32
@@2001:db8:1::/48
0.0.0.0/0
@@10.0.0.0/8
`})
	s := st.Current()
	tests := []struct {
		ip       string
		blocked  bool
		platform string
	}{
		{"198.51.100.1", true, "Wide"},
		{"198.51.100.127", false, "Wide"},
		{"198.51.100.65", false, "Wide"},
		{"198.51.100.129", true, "Narrow"},
		{"198.51.100.200", true, "Host"},
		{"198.51.100.201", true, "Narrow"},
		{"203.0.113.1", true, "Host"}, // 0.0.0.0/0 is listed under Host
		{"10.1.2.3", false, "Host"},
		{"2001:db8::1", true, "Host"},
		{"2001:db8:1::1", false, "Host"},
		{"2001:db9::1", false, ""},
		{"::ffff:198.51.100.129", true, "Narrow"},
	}
	for _, tt := range tests {
		m := s.MatchIP(netip.MustParseAddr(tt.ip))
		if m.Blocked() != tt.blocked {
			t.Errorf("%s: blocked=%v want %v", tt.ip, m.Blocked(), tt.blocked)
		}
		p := ""
		if m.HasRule {
			p = s.Rule(m.Rule).Platform
		}
		if p != tt.platform {
			t.Errorf("%s: platform %q want %q", tt.ip, p, tt.platform)
		}
	}
}

func TestBuildIntervalsEdges(t *testing.T) {
	st, _ := load(t, map[string]string{"e.txt": "::/0\nffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff\n255.255.255.255\n0.0.0.0\n"})
	s := st.Current()
	for ip, text := range map[string]string{
		"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff": "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
		"ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe": "::/0",
		"255.255.255.255":                         "255.255.255.255",
		"255.255.255.254":                         "::/0",
		"0.0.0.0":                                 "0.0.0.0",
		"::":                                      "::/0",
	} {
		m := s.MatchIP(netip.MustParseAddr(ip))
		if !m.HasRule || s.Rule(m.Rule).Text != text {
			t.Errorf("%s: got %+v want %s", ip, m, text)
		}
	}
}

func TestMatchASN(t *testing.T) {
	st, _ := load(t, map[string]string{"asn.txt": "# platform: Host\nAS64500\nAS64501\n@@AS64501\n"})
	s := st.Current()
	if m := s.MatchASN(64500); !m.Blocked() || s.Rule(m.Rule).Text != "AS64500" {
		t.Errorf("AS64500: %+v", m)
	}
	if m := s.MatchASN(64501); m.Blocked() || !m.HasAllow {
		t.Errorf("AS64501 should be excepted: %+v", m)
	}
	if m := s.MatchASN(1); m.HasRule {
		t.Errorf("AS1 matched: %+v", m)
	}
}

func TestSnapshotTriggers(t *testing.T) {
	st, _ := load(t, map[string]string{"t.txt": "a.com\na.com\n*.b.com\n=c.com\n@@d.a.com\n198.51.100.0/24\n@@203.0.113.7\nAS64500\n"})
	s := st.Current()
	var got []string
	for tr := range s.Triggers() {
		r := s.Rule(tr.ID)
		switch tr.Type {
		case RuleDomain:
			got = append(got, fmt.Sprintf("%s %s %v = %s", tr.Name, tr.Kind, tr.Allow, r.Text))
		case RuleIP:
			got = append(got, fmt.Sprintf("%s %v = %s", tr.Prefix, tr.Allow, r.Text))
		case RuleASN:
			got = append(got, fmt.Sprintf("AS%d %v = %s", tr.ASN, tr.Allow, r.Text))
		}
	}
	want := "a.com domain false = a.com|a.com domain false = a.com|b.com wildcard false = *.b.com|c.com exact false = =c.com|d.a.com domain true = @@d.a.com|" +
		"198.51.100.0/24 false = 198.51.100.0/24|203.0.113.7/32 true = @@203.0.113.7|AS64500 false = AS64500"
	if strings.Join(got, "|") != want {
		t.Fatalf("triggers:\n%s\nwant\n%s", strings.Join(got, "|"), want)
	}
	n := 0
	for range s.Triggers() {
		n++
		if n == 2 {
			break // stopping early must not panic
		}
	}
}

// TestBuilderRepeatedOwner checks the builder's repeated-owner test on
// the rules of the file being parsed: a name listed again with a kind it
// already has (however far apart, allow bit or not) is repeated; the same
// name with another kind, the previous file's names and a name shared
// with the rule before the file are not.
func TestBuilderRepeatedOwner(t *testing.T) {
	type rule struct {
		name  string
		kind  MatchKind
		allow bool
	}
	many := func(n int, extra ...rule) []rule {
		var rs []rule
		for i := range n {
			rs = append(rs, rule{fmt.Sprintf("n%d.example", i), MatchExact, false}, rule{fmt.Sprintf("n%d.example", i), MatchWildcard, false})
		}
		return append(rs, extra...)
	}
	cases := []struct {
		name   string
		before []rule // the previous file's rules
		rules  []rule
		want   bool
	}{
		{"empty", nil, nil, false},
		{"pairs", nil, many(1000), false},
		{"exact again far apart", nil, many(1000, rule{"n3.example", MatchExact, false}), true},
		{"wildcard again far apart", nil, many(1000, rule{"n999.example", MatchWildcard, true}), true},
		{"subtree beside exact and wildcard", nil, many(1000, rule{"n5.example", MatchSubtree, false}), false},
		{"pair repeated at once", nil, []rule{{"a.example", MatchExact, false}, {"a.example", MatchExact, true}}, true},
		{"previous file", many(10), many(10), false},
		{"shared with the rule before the file", []rule{{"a.example", MatchExact, false}},
			[]rule{{"a.example", MatchWildcard, false}, {"b.example", MatchExact, false}, {"a.example", MatchWildcard, false}}, true},
		{"shared with the rule before the file, once", []rule{{"a.example", MatchExact, false}},
			[]rule{{"a.example", MatchExact, false}, {"b.example", MatchExact, false}}, false},
	}
	for _, c := range cases {
		b := newBuilder(0, 0)
		b.beginSection(Section{File: "a.rpz"})
		for i, r := range c.before {
			b.addDomain([]byte(r.name), r.kind, r.allow, i+1)
		}
		b.startFile()
		for i, r := range c.rules {
			b.addDomain([]byte(r.name), r.kind, r.allow, i+1)
		}
		if got := b.repeatedOwner(); got != c.want {
			t.Errorf("%s: repeatedOwner %v, want %v", c.name, got, c.want)
		}
	}
}
